"""The add/edit form. Fields are plain text and selects: all checks live in
`validators.clean`, shared with the CLI."""

from __future__ import annotations

import json
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)

from ..account_types import (
    ACCOUNT_TYPES,
    AFTER_FETCH_CHOICES,
    DISPATCH_CHOICES,
    OAUTH2_DEFAULT_HOST,
    VALIDITIES,
)
from ..extensions import db
from ..formfields import Required, ask_again, range_help
from ..models import MailAccount, OAuth2Profile, Queue
from ..oauth.providers import default_mail_host
from .validators import MAX_FETCH_INTERVAL, MAX_PORT, MailAccountInput

TRUSTED_HELP = (
    "If Yes is selected, any X-OTOBO headers attached to an incoming message are evaluated "
    "and executed. Because the X-OTOBO header can execute some actions in the ticket system, "
    "you should set this option to Yes only for known senders."
)
DISPATCH_HELP = (
    "By email To: field: the message goes to the queue linked with its To: address on the "
    "Email Addresses screen, else to the default queue (Raw). By selected Queue: every message "
    "goes to the chosen queue; the To: address is disregarded."
)
PUSH_HELP = (
    "Keep an IMAP IDLE connection open and fetch new mail within seconds of its arrival, "
    "when the server announces IDLE; the fetch interval stays as the safety net. Ignored "
    "for POP3."
)
VERIFY_TLS_HELP = (
    "Warning: turning this off allows man-in-the-middle attacks (someone between this server "
    "and the mail server can read the password and the mail). Only turn it off for a mail "
    "server with a self-signed certificate on a network you trust."
)


# Per-type facts for static/mail_accounts.js (port placeholder, which fields to show).
TYPE_INFO = json.dumps(
    {
        t.name: {"port": t.default_port, "imap": t.is_imap, "oauth2": t.oauth2}
        for t in ACCOUNT_TYPES.values()
    }
)


class MailAccountForm(FlaskForm):
    type = SelectField(
        "Type",
        choices={t.name: t.label for t in ACCOUNT_TYPES.values()},
        validate_choice=False,
        validators=[Required()],
        render_kw={"data-types": TYPE_INFO, "data-oauth2-host": OAUTH2_DEFAULT_HOST},
    )
    oauth2_profile_id = SelectField(
        "Profile", choices=[], validate_choice=False, validators=[Required()]
    )
    shared_mailbox = BooleanField(
        "Shared mailbox",
        description="Sign in at the provider as a user with access to this shared mailbox.",
    )
    username = StringField("Username", validators=[Required()], render_kw={"autocomplete": "off"})
    password = PasswordField("Password", render_kw={"autocomplete": "new-password"})
    host = StringField(
        "Host",
        validators=[Required()],
        description="Host name or IP address, e.g. imap.example.com (host:port also works).",
    )
    port = StringField(
        "Port",
        render_kw={"inputmode": "numeric"},
        description=range_help(1, MAX_PORT, "Empty: the type's default port."),
    )
    folder = StringField("IMAP Folder", description="Empty means INBOX.")
    trusted = SelectField(
        "Trusted",
        choices={"0": "No", "1": "Yes"},
        validate_choice=False,
        default="0",
        validators=[Required()],
        description=TRUSTED_HELP,
    )
    dispatch = SelectField(
        "Dispatching",
        choices=dict(DISPATCH_CHOICES),
        validate_choice=False,
        default="to",
        validators=[Required()],
        description=DISPATCH_HELP,
    )
    queue_id = SelectField("Queue *", choices=[], validate_choice=False)
    validity = SelectField(
        "Validity",
        choices={v: v for v in VALIDITIES},
        default="valid",
        validate_choice=False,
        validators=[Required()],
    )
    comment = TextAreaField("Comment", render_kw={"rows": 2})
    verify_tls = BooleanField("Verify TLS certificate", default=True, description=VERIFY_TLS_HELP)
    after_fetch = SelectField(
        "After fetching",
        choices=dict(AFTER_FETCH_CHOICES),
        default="delete",
        validate_choice=False,
    )
    move_folder = StringField("Move to folder *")
    push = BooleanField("Fetch on arrival (IMAP IDLE)", default=True, description=PUSH_HELP)
    fetch_interval_minutes = StringField(
        "Fetch interval (minutes)",
        render_kw={"inputmode": "numeric"},
        description=range_help(
            1, MAX_FETCH_INTERVAL, "Empty: the interval from the Settings screen."
        ),
    )
    submit = SubmitField("Save")
    submit_finish = SubmitField("Save and finish")
    # Try the values typed, before saving (the result comes back on the form).
    test = SubmitField("Test connection")
    list_folders = SubmitField("List folders")

    def __init__(self, *args: Any, account: MailAccount | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        queues = db.session.query(Queue).order_by(Queue.name)
        self.queue_id.choices = {
            "": "-",
            **{
                str(q.id): q.name
                for q in queues
                if q.validity == "valid" or (account is not None and account.queue_id == q.id)
            },
        }
        profiles = [
            p
            for p in db.session.query(OAuth2Profile).order_by(OAuth2Profile.name)
            if p.validity == "valid" or (account is not None and account.oauth2_profile_id == p.id)
        ]
        self.oauth2_profile_id.choices = {"": "-", **{str(p.id): p.name for p in profiles}}
        # The Host placeholder per profile and protocol (Gmail's hosts for a Google profile).
        hosts = {
            str(p.id): {proto: default_mail_host(p.provider, proto) for proto in ("imap", "pop3")}
            for p in profiles
        }
        self.oauth2_profile_id.render_kw = {"data-hosts": json.dumps(hosts)}
        if account is None:
            self.password.label.text = "Password *"
        else:
            self.password.description = "Leave empty to keep the stored password."

    @classmethod
    def for_account(cls, account: MailAccount) -> MailAccountForm:
        """The edit form filled from the account; the password is never filled in."""
        data = {
            "type": account.type,
            "username": account.username,
            "host": account.host,
            "port": str(account.port) if account.port else "",
            "folder": account.folder or "",
            "trusted": "1" if account.trusted else "0",
            "dispatch": account.dispatch,
            "queue_id": str(account.queue_id) if account.queue_id else "",
            "validity": account.validity,
            "comment": account.comment or "",
            "verify_tls": account.verify_tls,
            "after_fetch": account.after_fetch,
            "move_folder": account.move_folder or "",
            "fetch_interval_minutes": str(account.fetch_interval_minutes or ""),
            "oauth2_profile_id": str(account.oauth2_profile_id or ""),
            "shared_mailbox": account.shared_mailbox,
            "push": account.push,
        }
        return cls(data=data, account=account)

    @classmethod
    def for_input(cls, data: MailAccountInput, account: MailAccount | None) -> MailAccountForm:
        """The form filled with what was typed (after a failed sign-in); never the password."""
        values = data.to_dict()
        values.pop("password", None)
        values["trusted"] = "1" if data.trusted else "0"
        for name in ("port", "queue_id", "fetch_interval_minutes", "oauth2_profile_id"):
            values[name] = "" if values.get(name) is None else str(values[name])
        return cls(formdata=None, data=values, account=account)

    def to_input(self) -> MailAccountInput:
        """What was typed, for the service."""
        return MailAccountInput(
            type=self.type.data or "",
            username=self.username.data or "",
            password=self.password.data or None,
            host=self.host.data or "",
            port=self.port.data,
            folder=self.folder.data,
            trusted=self.trusted.data == "1",
            dispatch=self.dispatch.data or "",
            queue_id=self.queue_id.data,
            validity=self.validity.data or "",
            comment=self.comment.data,
            verify_tls=bool(self.verify_tls.data),
            after_fetch=self.after_fetch.data or "",
            move_folder=self.move_folder.data,
            fetch_interval_minutes=self.fetch_interval_minutes.data,
            oauth2_profile_id=self.oauth2_profile_id.data,
            shared_mailbox=bool(self.shared_mailbox.data),
            push=bool(self.push.data),
        )

    def port_placeholder(self) -> str:
        """The selected type's default port, shown in the empty Port field."""
        account_type = ACCOUNT_TYPES.get(self.type.data or "") or next(iter(ACCOUNT_TYPES.values()))
        return str(account_type.default_port)

    def is_oauth2(self) -> bool:
        """The selected type signs in with OAuth2."""
        account_type = ACCOUNT_TYPES.get(self.type.data or "")
        return bool(account_type and account_type.oauth2)

    def wants_test(self) -> bool:
        """Test connection or List folders was pressed: try the values, save nothing."""
        return bool(self.test.data or self.list_folders.data)

    def ask_password_again(self) -> None:
        """The form comes back after a POST: a password typed is never sent back, so say so."""
        if not self.is_oauth2():
            ask_again(self.password, "password")

    def add_errors(self, errors: dict[str, str]) -> None:
        """Show the service's {field: message} errors at their fields."""
        for name, message in errors.items():
            field = self._fields.get(name)
            if field is not None:
                field.errors = [*field.errors, message]
