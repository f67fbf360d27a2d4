"""Mail account logic shared by the screens and the CLI: one validation, one way to save.

`MailAccountInput` holds what an admin typed (strings as typed, so the form and the CLI hand
over the same thing); `validate_mail_account_input` returns {field: message}; the create and
update functions validate again and raise `MailAccountValidationError` on bad input, so
nothing is half-written. Messages never repeat a password.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..account_types import (
    ACCOUNT_TYPES,
    AFTER_FETCH_CHOICES,
    DISPATCH_CHOICES,
    OAUTH2_DEFAULT_HOST,
    VALIDITIES,
)
from ..extensions import db
from ..models import (
    Article,
    FailedMail,
    FetchRun,
    FolderState,
    MailAccount,
    OAuth2PendingAuthorization,
    OAuth2Profile,
    OversizedMessage,
    Queue,
    SeenMessage,
)

PASSWORD_AGAIN = "Enter the password again: the host, port or type changed"
MAX_FETCH_INTERVAL = 24 * 60
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MailAccountValidationError(ValueError):
    """Bad input: `errors` maps a field name to a message for the admin."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class MailAccountInput:
    """A mail account as typed in the form or given to the CLI (before validation)."""

    type: str = ""
    username: str = ""
    password: str | None = None  # empty on edit: keep the stored password
    host: str = ""
    port: str | int | None = None
    folder: str | None = None
    trusted: bool = False
    dispatch: str = "to"
    queue_id: str | int | None = None
    validity: str = "valid"
    comment: str | None = None
    verify_tls: bool = True
    after_fetch: str = "delete"
    move_folder: str | None = None
    fetch_interval_minutes: str | int | None = None
    oauth2_profile_id: str | int | None = None
    shared_mailbox: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for the OAuth2 hook, which stores it encrypted)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MailAccountInput:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def input_from_account(account: MailAccount) -> MailAccountInput:
    """The stored values as input (password left empty: keep it), e.g. for a CLI update."""
    return MailAccountInput(
        type=account.type,
        username=account.username,
        password=None,
        host=account.host,
        port=account.port,
        folder=account.folder,
        trusted=account.trusted,
        dispatch=account.dispatch,
        queue_id=account.queue_id,
        validity=account.validity,
        comment=account.comment,
        verify_tls=account.verify_tls,
        after_fetch=account.after_fetch,
        move_folder=account.move_folder,
        fetch_interval_minutes=account.fetch_interval_minutes,
        oauth2_profile_id=account.oauth2_profile_id,
        shared_mailbox=account.shared_mailbox,
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _int(value: Any) -> int | None:
    """An int from user input; None when empty; ValueError when not a whole number."""
    text = _text(value)
    if not text:
        return None
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(text)
    return int(text)


def split_host_port(host: str) -> tuple[str, str | None]:
    """'host:port' or '[v6]:port' into host and port text; a bare IPv6 address stays whole."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            rest = host[end + 1 :]
            return host[1:end], (rest[1:] if rest.startswith(":") else (rest or None))
        return host, None
    if host.count(":") == 1:
        name, port = host.split(":")
        return name, port
    return host, None


def is_valid_host(host: str) -> bool:
    """A DNS host name or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return len(host) <= 253 and bool(_HOSTNAME.match(host)) and not host.replace(".", "").isdigit()


def _clean(
    data: MailAccountInput, account: MailAccount | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validated, normalized column values and {field: message} errors."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}

    # Type
    type_name = _text(data.type)
    account_type = ACCOUNT_TYPES.get(type_name)
    if not type_name:
        errors["type"] = "Choose a type."
    elif account_type is None:
        errors["type"] = "Choose one of: " + ", ".join(ACCOUNT_TYPES) + "."
    values["type"] = type_name
    oauth2 = bool(account_type and account_type.oauth2)
    is_imap = bool(account_type and account_type.is_imap)

    # Username
    username = _text(data.username)
    if not username:
        errors["username"] = "Enter the username of the mail account."
    elif len(username) > 320 or _CONTROL.search(username):
        errors["username"] = "The username is too long or contains control characters."
    values["username"] = username

    # Host and port (a "host:port" typed in Host goes to Port)
    host = _text(data.host)
    port_text = _text(data.port)
    if not host and oauth2:
        host = OAUTH2_DEFAULT_HOST
    if not host:
        errors["host"] = "Enter the host name or IP address of the mail server."
    elif "://" in host or host.lower().startswith(("imap:", "imaps:", "pop3:", "pop3s:", "pop:")):
        errors["host"] = "Enter only the host name, without a scheme like imaps://."
    elif re.search(r"\s", host) or _CONTROL.search(host):
        errors["host"] = "The host must not contain spaces."
    else:
        host, host_port = split_host_port(host)
        if host_port is not None:
            if port_text and port_text != host_port:
                errors["port"] = "The port in Host differs from the Port field."
            port_text = host_port
        if "host" not in errors and not is_valid_host(host):
            errors["host"] = "Enter a valid host name (like mail.example.com) or an IP address."
    values["host"] = host.lower() if host else host
    port: int | None = None
    try:
        port = _int(port_text)
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(port_text)
    except ValueError:
        errors.setdefault("port", "The port must be a number from 1 to 65535.")
        port = None
    values["port"] = port

    # Password: required for new password accounts; again when host, port or type change
    password = data.password or ""
    if oauth2:
        values["password"] = None
    elif password:
        if _CONTROL.search(password.replace("\t", "")):
            errors["password"] = "The password must not contain line breaks."
        values["password"] = password
    else:
        stored = account.password if account is not None else None
        if not stored:
            errors["password"] = "Enter the password of the mail account."
        elif account_type is not None and (
            account.type != type_name
            or account.host.lower() != values["host"]
            or account.effective_port != (port or account_type.default_port)
        ):
            errors["password"] = PASSWORD_AGAIN
        # else: keep the stored password (not in values)

    # IMAP folder (IMAP only; empty means INBOX)
    folder = _text(data.folder)
    if folder and _CONTROL.search(folder):
        errors["folder"] = "The folder name must not contain control characters."
    values["folder"] = (folder or None) if is_imap else None

    values["trusted"] = bool(data.trusted)

    # Dispatching and queue
    dispatch = _text(data.dispatch) or "to"
    if dispatch not in DISPATCH_CHOICES:
        errors["dispatch"] = "Choose how to dispatch: to (by To: field) or queue."
    values["dispatch"] = dispatch
    values["queue_id"] = None
    if dispatch == "queue":
        queue = _lookup(Queue, data.queue_id)
        if _text(data.queue_id) == "":
            errors["queue_id"] = "Choose the queue for dispatching by selected Queue."
        elif queue is None:
            errors["queue_id"] = "There is no such queue."
        elif queue.validity != "valid" and (account is None or account.queue_id != queue.id):
            errors["queue_id"] = "This queue is not valid."
        else:
            values["queue_id"] = queue.id

    validity = _text(data.validity) or "valid"
    if validity not in VALIDITIES:
        errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."
    values["validity"] = validity

    comment = _text(data.comment)
    if len(comment) > 2000:
        errors["comment"] = "The comment is too long (at most 2000 characters)."
    values["comment"] = comment or None

    values["verify_tls"] = bool(data.verify_tls)

    # After fetching
    after_fetch = _text(data.after_fetch) or "delete"
    move_folder = _text(data.move_folder)
    values["move_folder"] = None
    if after_fetch not in AFTER_FETCH_CHOICES:
        errors["after_fetch"] = "Choose one of: " + ", ".join(AFTER_FETCH_CHOICES) + "."
    elif after_fetch == "move":
        source = (folder or "INBOX") if is_imap else "INBOX"
        if account_type is not None and not is_imap:
            errors["after_fetch"] = "Moving to another folder is only possible with IMAP."
        elif not move_folder:
            errors["move_folder"] = "Enter the folder to move fetched mail to."
        elif _CONTROL.search(move_folder):
            errors["move_folder"] = "The folder name must not contain control characters."
        elif move_folder == source or (
            move_folder.upper() == "INBOX" and source.upper() == "INBOX"
        ):
            errors["move_folder"] = "The folder to move to must differ from the fetched folder."
        else:
            values["move_folder"] = move_folder
    values["after_fetch"] = after_fetch

    try:
        interval = _int(data.fetch_interval_minutes)
        if interval is not None and not 1 <= interval <= MAX_FETCH_INTERVAL:
            raise ValueError(interval)
    except ValueError:
        errors["fetch_interval_minutes"] = (
            f"The fetch interval must be a number of minutes from 1 to {MAX_FETCH_INTERVAL}."
        )
        interval = None
    values["fetch_interval_minutes"] = interval

    # OAuth2
    values["oauth2_profile_id"] = None
    values["shared_mailbox"] = False
    if oauth2:
        profile = _lookup(OAuth2Profile, data.oauth2_profile_id)
        if _text(data.oauth2_profile_id) == "":
            errors["oauth2_profile_id"] = "Choose the OAuth2 profile."
        elif profile is None:
            errors["oauth2_profile_id"] = "There is no such OAuth2 profile."
        elif profile.validity != "valid":
            errors["oauth2_profile_id"] = "This OAuth2 profile is not valid."
        else:
            values["oauth2_profile_id"] = profile.id
        values["shared_mailbox"] = bool(data.shared_mailbox)

    # The same mailbox twice would fetch (and delete) each message twice.
    if not errors:
        duplicate = db.session.query(MailAccount).filter(
            MailAccount.host == values["host"],
            MailAccount.username == username,
            MailAccount.type.in_(
                [t.name for t in ACCOUNT_TYPES.values() if t.protocol == account_type.protocol]
            ),
        )
        if account is not None:
            duplicate = duplicate.filter(MailAccount.id != account.id)
        for other in duplicate:
            if (other.folder or None) == values["folder"]:
                errors["username"] = (
                    "A mail account for this username, host and folder already exists."
                )
                break
    return values, errors


def _lookup(model: type, value: Any) -> Any:
    try:
        ident = _int(value)
    except ValueError:
        return None
    return db.session.get(model, ident) if ident is not None else None


def validate_mail_account_input(
    data: MailAccountInput, account: MailAccount | None = None
) -> dict[str, str]:
    """{field: message} for bad input; empty when `data` may be saved (for `account` if given)."""
    return _clean(data, account)[1]


def create_mail_account(
    data: MailAccountInput, actor: str | None, commit: bool = True
) -> MailAccount:
    """Validate and add a mail account; raises MailAccountValidationError.

    commit=False leaves the commit to the caller (OAuth2 saves the account with its tokens)."""
    values, errors = _clean(data, None)
    if errors:
        raise MailAccountValidationError(errors)
    account = MailAccount(**values, created_by=actor, changed_by=actor)
    db.session.add(account)
    if commit:
        db.session.commit()
    return account


def update_mail_account(account: MailAccount, data: MailAccountInput, actor: str | None) -> None:
    """Validate and change a mail account; an empty password keeps the stored one."""
    values, errors = _clean(data, account)
    if errors:
        db.session.rollback()
        raise MailAccountValidationError(errors)
    for key, value in values.items():
        setattr(account, key, value)
    account.changed_by = actor
    if account.account_type.oauth2 is False and account.oauth2_token is not None:
        account.oauth2_token = None  # no longer an OAuth2 account: drop its tokens
    db.session.commit()


def delete_mail_account(account: MailAccount) -> None:
    """Delete an account with its OAuth2 token, fetch runs and dedupe state; articles stay."""
    account_id = account.id
    for model in (FetchRun, SeenMessage, FolderState, OversizedMessage):
        db.session.query(model).filter_by(mail_account_id=account_id).delete()
    db.session.query(OAuth2PendingAuthorization).filter_by(mail_account_id=account_id).delete()
    for model in (Article, FailedMail):
        db.session.query(model).filter_by(mail_account_id=account_id).update(
            {"mail_account_id": None}
        )
    db.session.delete(account)  # the token goes with it (cascade)
    db.session.commit()


def list_mail_accounts(include_invalid: bool = True, query: str = "") -> list[MailAccount]:
    """Accounts sorted by host then username; `query` narrows like the filter box."""
    q = db.session.query(MailAccount)
    if not include_invalid:
        q = q.filter(MailAccount.validity == "valid")
    accounts = q.order_by(MailAccount.host, MailAccount.username, MailAccount.id).all()
    needle = query.strip().lower()
    if needle:
        accounts = [a for a in accounts if needle in _haystack(a)]
    return accounts


def _haystack(account: MailAccount) -> str:
    parts = [account.host, account.username, account.type, account.comment or "", account.validity]
    return " ".join(parts).lower()


def account_summary(account: MailAccount) -> dict[str, Any]:
    """What `mail-account list --json` prints: everything but secrets."""
    return {
        "id": account.id,
        "type": account.type,
        "host": account.host,
        "port": account.port,
        "effective_port": account.effective_port,
        "username": account.username,
        "folder": account.folder,
        "trusted": account.trusted,
        "dispatch": account.dispatch,
        "queue": account.queue.name if account.queue else None,
        "validity": account.validity,
        "comment": account.comment,
        "verify_tls": account.verify_tls,
        "after_fetch": account.after_fetch,
        "move_folder": account.move_folder,
        "fetch_interval_minutes": account.fetch_interval_minutes,
        "oauth2_profile": account.oauth2_profile.name if account.oauth2_profile else None,
        "shared_mailbox": account.shared_mailbox,
        "has_password": bool(account.password),
        "last_status": account.last_status,
        "last_run_at": _iso(account.last_run_at),
        "next_run_at": _iso(account.next_run_at),
        "created_at": _iso(account.created_at),
        "created_by": account.created_by,
        "changed_at": _iso(account.changed_at),
        "changed_by": account.changed_by,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
