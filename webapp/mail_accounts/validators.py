"""What an admin typed for a mail account, and the checks that turn it into column values.

`MailAccountInput` holds the input as typed (strings, so the form and the CLI hand over the
same thing). `clean` runs one small check per field, in the order the form shows them, and
returns the normalized column values with {field: message} errors. Messages never repeat a
password.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..account_types import (
    ACCOUNT_TYPES,
    AFTER_FETCH_CHOICES,
    DISPATCH_CHOICES,
    VALIDITIES,
    AccountType,
)
from ..extensions import db
from ..models import MailAccount, OAuth2Profile, Queue
from ..oauth.providers import default_mail_host
from ..validation import is_valid_host, parse_whole_number

PASSWORD_AGAIN = "Enter the password again: the host, port or type changed"
MAX_FETCH_INTERVAL = 24 * 60
MAX_PORT = 65535
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    push: bool = True  # Fetch on arrival (IMAP IDLE); ignored for POP3

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (for the OAuth2 consent, which parks it encrypted)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MailAccountInput:
        """The input back from `to_dict` (unknown keys are ignored)."""
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
        push=account.push,
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


def _lookup(model: type, value: Any) -> Any:
    try:
        ident = _int(value)
    except ValueError:
        return None
    return db.session.get(model, ident) if ident is not None else None


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


@dataclass
class _Check:
    """One run of the checks: the input, what is known so far, and what is wrong."""

    data: MailAccountInput
    account: MailAccount | None
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    account_type: AccountType | None = None

    @property
    def oauth2(self) -> bool:
        return bool(self.account_type and self.account_type.oauth2)

    @property
    def is_imap(self) -> bool:
        return bool(self.account_type and self.account_type.is_imap)


def _check_type(c: _Check) -> None:
    type_name = _text(c.data.type)
    c.account_type = ACCOUNT_TYPES.get(type_name)
    if not type_name:
        c.errors["type"] = "Choose a type."
    elif c.account_type is None:
        c.errors["type"] = "Choose one of: " + ", ".join(ACCOUNT_TYPES) + "."
    c.values["type"] = type_name


def _check_username(c: _Check) -> None:
    username = _text(c.data.username)
    if not username:
        c.errors["username"] = "Enter the username of the mail account."
    elif len(username) > 320 or _CONTROL.search(username):
        c.errors["username"] = "The username is too long or contains control characters."
    c.values["username"] = username


def _check_host_and_port(c: _Check) -> None:
    """Host and port (a "host:port" typed in Host goes to Port)."""
    host, port_text = _check_host(c)
    c.values["host"] = host.lower() if host else host
    c.values["port"] = _check_port(c, port_text)


def _check_host(c: _Check) -> tuple[str, str]:
    """The host without a port, and the port text (from Port or from Host)."""
    host = _text(c.data.host)
    port_text = _text(c.data.port)
    if not host and c.oauth2:
        host = _default_oauth2_host(c)
    if not host:
        c.errors["host"] = "Enter the host name or IP address of the mail server."
    elif "://" in host or host.lower().startswith(("imap:", "imaps:", "pop3:", "pop3s:", "pop:")):
        c.errors["host"] = "Enter only the host name, without a scheme like imaps://."
    elif re.search(r"\s", host) or _CONTROL.search(host):
        c.errors["host"] = "The host must not contain spaces."
    else:
        host, host_port = split_host_port(host)
        if host_port is not None:
            if port_text and port_text != host_port:
                c.errors["port"] = "The port in Host differs from the Port field."
            port_text = host_port
        if "host" not in c.errors and not is_valid_host(host):
            c.errors["host"] = "Enter a valid host name (like mail.example.com) or an IP address."
    return host, port_text


def _default_oauth2_host(c: _Check) -> str:
    """The provider's mail host for the protocol (Microsoft 365, or Gmail for Google)."""
    profile = _lookup(OAuth2Profile, c.data.oauth2_profile_id)
    provider = profile.provider if profile is not None else "MicrosoftAzure"
    return default_mail_host(provider, c.account_type.protocol if c.account_type else "imap")


def _check_port(c: _Check, port_text: str) -> int | None:
    try:
        return parse_whole_number(port_text, 1, MAX_PORT)
    except ValueError as e:
        c.errors.setdefault("port", str(e))
        return None


def _check_password(c: _Check) -> None:
    """Required for new password accounts; again when host, port or type change."""
    password = c.data.password or ""
    if c.oauth2:
        c.values["password"] = None
    elif password:
        if _CONTROL.search(password.replace("\t", "")):
            c.errors["password"] = "The password must not contain line breaks."
        c.values["password"] = password
    else:
        _check_stored_password(c)


def _check_stored_password(c: _Check) -> None:
    """No password typed: keep the stored one (not in values) unless the server changed."""
    account = c.account
    if account is None or not account.password:
        c.errors["password"] = "Enter the password of the mail account."
    elif c.account_type is not None and (
        account.type != c.values["type"]
        or account.host.lower() != c.values["host"]
        or account.effective_port != (c.values["port"] or c.account_type.default_port)
    ):
        c.errors["password"] = PASSWORD_AGAIN


def _check_folder(c: _Check) -> None:
    """IMAP folder (IMAP only; empty means INBOX)."""
    folder = _text(c.data.folder)
    if folder and _CONTROL.search(folder):
        c.errors["folder"] = "The folder name must not contain control characters."
    c.values["folder"] = (folder or None) if c.is_imap else None


def _copy_flags(c: _Check) -> None:
    """The yes/no fields need no check."""
    c.values["trusted"] = bool(c.data.trusted)
    c.values["verify_tls"] = bool(c.data.verify_tls)
    c.values["push"] = bool(c.data.push)


def _check_dispatch(c: _Check) -> None:
    dispatch = _text(c.data.dispatch) or "to"
    if dispatch not in DISPATCH_CHOICES:
        c.errors["dispatch"] = "Choose how to dispatch: to (by To: field) or queue."
    c.values["dispatch"] = dispatch
    c.values["queue_id"] = None
    if dispatch == "queue":
        _check_queue(c)


def _check_queue(c: _Check) -> None:
    """The queue for dispatching by selected Queue: it exists and is valid (or already set)."""
    queue = _lookup(Queue, c.data.queue_id)
    if _text(c.data.queue_id) == "":
        c.errors["queue_id"] = "Choose the queue for dispatching by selected Queue."
    elif queue is None:
        c.errors["queue_id"] = "There is no such queue."
    elif queue.validity != "valid" and (c.account is None or c.account.queue_id != queue.id):
        c.errors["queue_id"] = "This queue is not valid."
    else:
        c.values["queue_id"] = queue.id


def _check_validity(c: _Check) -> None:
    validity = _text(c.data.validity) or "valid"
    if validity not in VALIDITIES:
        c.errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."
    c.values["validity"] = validity


def _check_comment(c: _Check) -> None:
    comment = _text(c.data.comment)
    if len(comment) > 2000:
        c.errors["comment"] = "The comment is too long (at most 2000 characters)."
    c.values["comment"] = comment or None


def _check_after_fetch(c: _Check) -> None:
    after_fetch = _text(c.data.after_fetch) or "delete"
    c.values["move_folder"] = None
    if after_fetch not in AFTER_FETCH_CHOICES:
        c.errors["after_fetch"] = "Choose one of: " + ", ".join(AFTER_FETCH_CHOICES) + "."
    elif after_fetch == "move":
        _check_move_folder(c)
    c.values["after_fetch"] = after_fetch


def _check_move_folder(c: _Check) -> None:
    """Moving needs IMAP and a folder other than the fetched one."""
    move_folder = _text(c.data.move_folder)
    folder = _text(c.data.folder)
    source = (folder or "INBOX") if c.is_imap else "INBOX"
    if c.account_type is not None and not c.is_imap:
        c.errors["after_fetch"] = "Moving to another folder is only possible with IMAP."
    elif not move_folder:
        c.errors["move_folder"] = "Enter the folder to move fetched mail to."
    elif _CONTROL.search(move_folder):
        c.errors["move_folder"] = "The folder name must not contain control characters."
    elif move_folder == source or (move_folder.upper() == "INBOX" and source.upper() == "INBOX"):
        c.errors["move_folder"] = "The folder to move to must differ from the fetched folder."
    else:
        c.values["move_folder"] = move_folder


def _check_fetch_interval(c: _Check) -> None:
    try:
        interval = parse_whole_number(c.data.fetch_interval_minutes, 1, MAX_FETCH_INTERVAL)
    except ValueError as e:
        c.errors["fetch_interval_minutes"] = str(e)
        interval = None
    c.values["fetch_interval_minutes"] = interval


def _check_oauth2_profile(c: _Check) -> None:
    """OAuth2 types need a valid profile; the other types keep neither profile nor flag."""
    c.values["oauth2_profile_id"] = None
    c.values["shared_mailbox"] = False
    if not c.oauth2:
        return
    profile = _lookup(OAuth2Profile, c.data.oauth2_profile_id)
    if _text(c.data.oauth2_profile_id) == "":
        c.errors["oauth2_profile_id"] = "Choose the OAuth2 profile."
    elif profile is None:
        c.errors["oauth2_profile_id"] = "There is no such OAuth2 profile."
    elif profile.validity != "valid":
        c.errors["oauth2_profile_id"] = "This OAuth2 profile is not valid."
    else:
        c.values["oauth2_profile_id"] = profile.id
    c.values["shared_mailbox"] = bool(c.data.shared_mailbox)


def _check_duplicate(c: _Check) -> None:
    """The same mailbox twice would fetch (and delete) each message twice."""
    assert c.account_type is not None  # only called when the type was valid
    protocol = c.account_type.protocol
    duplicate = db.session.query(MailAccount).filter(
        MailAccount.host == c.values["host"],
        MailAccount.username == c.values["username"],
        MailAccount.type.in_([t.name for t in ACCOUNT_TYPES.values() if t.protocol == protocol]),
    )
    if c.account is not None:
        duplicate = duplicate.filter(MailAccount.id != c.account.id)
    for other in duplicate:
        if (other.folder or None) == c.values["folder"]:
            c.errors["username"] = (
                "A mail account for this username, host and folder already exists."
            )
            break


# In the order of the form: the first problem of a field is the one shown.
_CHECKS: tuple[Callable[[_Check], None], ...] = (
    _check_type,
    _check_username,
    _check_host_and_port,
    _check_password,
    _check_folder,
    _copy_flags,
    _check_dispatch,
    _check_validity,
    _check_comment,
    _check_after_fetch,
    _check_fetch_interval,
    _check_oauth2_profile,
)


def clean(
    data: MailAccountInput, account: MailAccount | None, duplicates: bool = True
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validated, normalized column values and {field: message} errors (for `account` if given).

    duplicates=False skips the check for another account on the same mailbox (a connection
    test of unsaved values may try it)."""
    c = _Check(data, account)
    for check in _CHECKS:
        check(c)
    if duplicates and not c.errors:
        _check_duplicate(c)
    return c.values, c.errors
