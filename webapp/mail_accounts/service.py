"""Mail account operations shared by the screens and the CLI: one validation, one way to save.

The input and its checks live in `validators`; the create and update functions validate again
and raise `ValidationError` on bad input, so nothing is half-written. OAuth2 accounts are
saved through the provider sign-in (`webapp.oauth.flow`); testing and fetching call the fetch
engine. Nothing here reads the Flask request: the views and the CLI hand everything over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select

from ..account_types import ACCOUNT_TYPES
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
    SeenMessage,
)
from ..oauth.app_tokens import login_refused_hint
from ..oauth.flow import (
    ConsentError,
    ConsentStart,
    LinkError,
    Pending,
    begin_consent,
    pending_actor,
)
from ..oauth.providers import provider_host_warning
from ..oauth.tokens import OAuth2TokenError, store_tokens
from ..postmaster.connection_test import ConnectionReport, test_connection
from ..postmaster.fetch import FetchOptions, FetchResult, fetch_account
from ..postmaster.lease import make_owner
from ..postmaster.mailbox import MailError, MailLoginError
from ..postmaster.push import forget_unsupported, push_status
from ..postmaster.requests import mark_fetch_requested, request_fetch
from ..states import FetchStatus, FetchTrigger
from ..timefmt import iso_utc
from ..validation import ValidationError
from .validators import MailAccountInput, clean, input_from_account


def validate_mail_account_input(
    data: MailAccountInput, account: MailAccount | None = None
) -> dict[str, str]:
    """{field: message} for bad input; empty when `data` may be saved (for `account` if given)."""
    return clean(data, account)[1]


def create_mail_account(
    data: MailAccountInput, actor: str | None, commit: bool = True
) -> MailAccount:
    """Validate and add a mail account; raises ValidationError.

    commit=False leaves the commit to the caller (OAuth2 saves the account with its tokens)."""
    values, errors = clean(data, None)
    if errors:
        raise ValidationError(errors)
    account = MailAccount(**values, created_by=actor, changed_by=actor)
    db.session.add(account)
    if commit:
        db.session.commit()
    return account


def update_mail_account(
    account: MailAccount,
    data: MailAccountInput,
    actor: str | None,
    commit: bool = True,
    consented: bool = False,
) -> bool:
    """Validate and change a mail account; an empty password keeps the stored one.

    True when the change dropped the OAuth2 tokens: the host, port or TLS verification of an
    OAuth2 account changed, and its tokens were consented for the old server only (as a
    password account must type its password again). The account then needs authorization.
    consented=True: the caller stores tokens just consented for the new values (no commit)."""
    values, errors = clean(data, account)
    if errors:
        db.session.rollback()
        raise ValidationError(errors)
    moved = server_changed(account, values) and not consented
    refetch = account.last_status == FetchStatus.ERROR or connection_changed(account, values)
    for key, value in values.items():
        setattr(account, key, value)
    account.mark_changed(actor)
    forget_unsupported(account)
    dropped = False
    if account.oauth2_token is not None and (not account.account_type.oauth2 or moved):
        account.oauth2_token = None  # not for this server (or no longer OAuth2): drop
        dropped = account.account_type.oauth2
    if dropped:
        account.needs_reauth = True
    if refetch and account.validity == "valid" and not account.needs_reauth:
        # A stale error must not stay red until the next interval: fetch at once.
        mark_fetch_requested(account)
    if commit:
        db.session.commit()
    return dropped


# What the login and the folder depend on: saving a change to one of them fetches at once,
# and a test of unsaved values is stopped only by problems in these fields.
CONNECTION_FIELDS = (
    "type", "host", "port", "username", "password", "folder", "verify_tls",
    "oauth2_profile_id", "shared_mailbox",
)  # fmt: skip


def connection_changed(account: MailAccount, values: dict[str, Any]) -> bool:
    """The validated `values` change how the account logs in or which folder it reads."""
    return any(
        name in values and values[name] != getattr(account, name) for name in CONNECTION_FIELDS
    )


def server_changed(account: MailAccount, values: dict[str, Any]) -> bool:
    """The validated `values` send the login to another server than the account's."""
    new_type = ACCOUNT_TYPES.get(str(values.get("type", account.type)), account.account_type)
    port = values.get("port") or new_type.default_port
    return (
        str(values.get("host", account.host)).lower() != account.host.lower()
        or port != account.effective_port
        or bool(values.get("verify_tls", account.verify_tls)) != bool(account.verify_tls)
    )


def delete_mail_account(account: MailAccount) -> None:
    """Delete an account with its OAuth2 token, fetch runs and dedupe state; articles stay."""
    account_id = account.id
    for model in (FetchRun, SeenMessage, FolderState, OversizedMessage):
        db.session.query(model).filter_by(mail_account_id=account_id).delete()
    db.session.query(OAuth2PendingAuthorization).filter_by(mail_account_id=account_id).delete()
    for linked in (Article, FailedMail):
        db.session.query(linked).filter_by(mail_account_id=account_id).update(
            {"mail_account_id": None}
        )
    db.session.delete(account)  # the token goes with it (cascade)
    db.session.commit()


def get_mail_account(account_id: int) -> MailAccount | None:
    """The account with this id, or None."""
    return db.session.get(MailAccount, account_id)


def count_mail_accounts() -> int:
    """How many accounts there are (valid or not)."""
    return db.session.query(MailAccount).count()


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


def recent_fetch_runs(account: MailAccount, limit: int = 20) -> list[FetchRun]:
    """The account's latest fetch runs, newest first (the edit screen's history)."""
    return (
        db.session.query(FetchRun)
        .filter_by(mail_account_id=account.id)
        .order_by(FetchRun.started_at.desc(), FetchRun.id.desc())
        .limit(limit)
        .all()
    )


def push_line(account: MailAccount) -> str | None:
    """The account page's "push: ..." line (None for POP3)."""
    return push_status(account)


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
        "push": account.push,
        "push_status": push_status(account),
        "has_password": bool(account.password),
        "last_status": account.last_status,
        "last_run_at": iso_utc(account.last_run_at),
        "next_run_at": iso_utc(account.next_run_at),
        "created_at": iso_utc(account.created_at),
        "created_by": account.created_by,
        "changed_at": iso_utc(account.changed_at),
        "changed_by": account.changed_by,
    }


# ----- OAuth2: saving through the provider sign-in -----


def needs_consent(data: MailAccountInput, account: MailAccount | None) -> bool:
    """A new account, a dead grant, or a changed identity needs the provider sign-in.

    The identity is the type, username, profile and shared-mailbox flag, and the server the
    token goes to (host, port, TLS verification); other fields of an OAuth2 account are saved
    directly."""
    if account is None or account.needs_reauth or account.oauth2_token is None:
        return True
    return identity_changed(data, account)


def identity_changed(data: MailAccountInput, account: MailAccount) -> bool:
    """The type, username, profile, shared-mailbox flag or the server changed."""
    values, _ = clean(data, account)
    return (
        server_changed(account, values)
        or str(data.type).strip() != account.type
        or str(data.username).strip() != account.username
        or str(data.oauth2_profile_id or "").strip() != str(account.oauth2_profile_id or "")
        or bool(data.shared_mailbox) != bool(account.shared_mailbox)
    )


def host_warning(account: MailAccount | None, data: MailAccountInput | None = None) -> str | None:
    """A warning when a Microsoft Azure (Google) profile's token would go to a host that is not
    Microsoft 365's (Gmail's)."""
    if data is not None:
        values, _ = clean(data, account)
        host, profile_id = values.get("host"), values.get("oauth2_profile_id")
    elif account is not None:
        host, profile_id = account.host, account.oauth2_profile_id
    else:
        return None
    profile = db.session.get(OAuth2Profile, profile_id) if profile_id else None
    if profile is None or not host:
        return None
    return provider_host_warning(profile.provider, str(host))


def save_oauth2_account(
    data: MailAccountInput,
    account: MailAccount | None,
    finish: bool,
    start: Callable[[], ConsentStart],
    actor: str | None,
) -> str | None:
    """Save an OAuth2 account directly (None) or return the provider's consent URL.

    Raises ValidationError. With a consent, the account is saved only by the callback;
    `start` is called only then (it may bind the browser session)."""
    errors = validate_mail_account_input(data, account)
    if errors:
        raise ValidationError(errors)
    if app_only_profile(data) is not None:
        save_app_only_account(data, account, actor)
        return None
    if account is not None and not needs_consent(data, account):
        update_mail_account(account, data, actor)
        return None
    try:
        return begin_consent(
            data.to_dict(), account.id if account is not None else None, finish, start()
        )
    except ConsentError as e:
        raise ValidationError({"oauth2_profile_id": str(e)}) from None


def app_only_profile(data: MailAccountInput) -> OAuth2Profile | None:
    """The input's OAuth2 profile when it uses app-only access (no sign-in per account)."""
    try:
        profile_id = int(str(data.oauth2_profile_id or "").strip())
    except ValueError:
        return None
    profile = db.session.get(OAuth2Profile, profile_id)
    return profile if profile is not None and profile.grant == "app_only" else None


def save_app_only_account(
    data: MailAccountInput, account: MailAccount | None, actor: str | None
) -> MailAccount:
    """Save an account of an app-only profile after logging in to its mailbox with the app's
    token (when it is new or its mailbox, server or profile changed); raises ValidationError
    saying in plain words what is wrong."""
    values, errors = clean(data, account)
    profile = app_only_profile(data)
    if errors or profile is None:
        raise ValidationError(errors or {"oauth2_profile_id": "Choose an app-only profile."})
    if profile.validity != "valid":
        raise ValidationError({"oauth2_profile_id": "This OAuth2 profile is not valid."})
    if account is None or account.needs_reauth or identity_changed(data, account):
        problem = check_app_only_login(values, profile)
        if problem:
            raise ValidationError({problem[0]: problem[1]})
    if account is None:
        account = create_mail_account(data, actor, commit=False)
    else:
        update_mail_account(account, data, actor, commit=False, consented=True)
    account.oauth2_token = None  # a delegated sign-in of before is not used any more
    account.needs_reauth = False
    db.session.commit()
    return account


def check_app_only_login(values: dict[str, Any], profile: OAuth2Profile) -> tuple[str, str] | None:
    """Take the app's token and log in to the mailbox of the (unsaved) values; (field, why)
    when it fails. Changes nothing on the server."""
    probe = MailAccount(**values)
    probe.oauth2_profile = profile
    try:
        test_connection(probe)  # takes the app's token first
    except OAuth2TokenError as e:
        return "oauth2_profile_id", e.admin_message
    except MailLoginError as e:
        token = profile.app_access_token or ""  # the one just refused
        hint = login_refused_hint(token, probe.account_type.protocol, probe.username)
        return "username", f"{e} {hint}"
    except MailError as e:
        return "host", str(e)
    return None


def begin_reauthorization(account: MailAccount, start: ConsentStart) -> str:
    """The consent URL to sign in again for an OAuth2 account, keeping every setting.

    Raises ConsentError (e.g. the profile is no longer valid)."""
    return begin_consent(input_from_account(account).to_dict(), account.id, True, start)


def link_signed_in_account(pending: Pending, token: dict, signed_in: str) -> MailAccount:
    """Create or update the account together with its tokens, in one transaction.

    Raises LinkError when the parked input no longer validates."""
    actor = pending_actor(pending)
    data = MailAccountInput.from_dict(pending.form_data)
    try:
        if pending.mail_account_id is None:
            account = create_mail_account(data, actor, commit=False)
        else:
            found = db.session.get(MailAccount, pending.mail_account_id)
            if found is None:
                raise LinkError("The mail account was deleted in the meantime.")
            update_mail_account(found, data, actor, commit=False, consented=True)
            store_tokens(found, token, signed_in)  # consented for the server just saved
            db.session.commit()
            return found
    except ValidationError as e:
        raise LinkError("; ".join(e.errors.values())) from None
    store_tokens(account, token, signed_in)
    db.session.commit()
    return account


# ----- testing and fetching -----


class ConnectionFailed(Exception):
    """The connection test failed; str() is for the admin and never holds a secret."""


def check_connection(account: MailAccount) -> ConnectionReport:
    """Log in, list folders and count messages; changes nothing. Raises ConnectionFailed."""
    try:
        return test_connection(account)
    except MailError as e:  # admin-readable, without secrets
        raise ConnectionFailed(str(e)) from None
    except OAuth2TokenError as e:  # no access token (e.g. re-authorization needed)
        raise ConnectionFailed(e.admin_message) from None


OAUTH2_NOT_LINKED = (
    "An OAuth2 account is tested with its stored sign-in, and this one has none yet: save it "
    "(you are sent to the provider's sign-in), then use Test connection."
)
OAUTH2_CHANGED = (
    "The stored sign-in is for the saved settings, not the ones typed here: save the account "
    "to sign in at the provider again, then use Test connection."
)


def check_unsaved_connection(
    data: MailAccountInput, account: MailAccount | None
) -> ConnectionReport:
    """Test what was typed in the form before it is saved: log in, list folders, count.

    Nothing is stored: the password typed is used for this test only; with `account` given
    and no password typed, the stored one is used (unless the server changed). OAuth2 types
    need the account's stored tokens, for unchanged sign-in settings. Raises ValidationError
    (only for the fields a connection needs) or ConnectionFailed."""
    values, errors = clean(data, account, duplicates=False)
    errors = {k: v for k, v in errors.items() if k in CONNECTION_FIELDS}
    if errors:
        raise ValidationError(errors)
    if ACCOUNT_TYPES[values["type"]].oauth2:
        profile = app_only_profile(data)
        if profile is not None:  # no sign-in per account: the app's token logs in
            probe = MailAccount(**values)  # never added to the session: nothing is written
            probe.oauth2_profile = profile
            return check_connection(probe)
        if account is None or account.oauth2_token is None or account.needs_reauth:
            raise ConnectionFailed(OAUTH2_NOT_LINKED)
        if needs_consent(data, account):
            raise ConnectionFailed(OAUTH2_CHANGED)
        return check_connection(account)
    trial = MailAccount(  # never added to the session: nothing is written
        type=values["type"],
        username=values["username"],
        host=values["host"],
        port=values["port"],
        folder=values["folder"],
        verify_tls=values["verify_tls"],
    )
    trial.password = values.get("password") or (account.password if account else None)
    return check_connection(trial)


def connection_ok_requests_fetch(account: MailAccount) -> bool:
    """After a successful Test connection: the next fetch is requested now (True), unless
    the account is not valid (it is not fetched then)."""
    if account.validity != "valid" or account.needs_reauth:
        return False
    request_fetch(account)
    return True


def request_fetch_now(account: MailAccount) -> None:
    """Mark the account due now; the scheduler fetches it within seconds."""
    request_fetch(account)


def valid_account_ids() -> list[int]:
    """The ids of every valid account, in the order `mail-account fetch` goes through them."""
    return list(
        db.session.execute(
            select(MailAccount.id)
            .where(MailAccount.validity == "valid")
            .order_by(MailAccount.host, MailAccount.username)
        ).scalars()
    )


def fetch_mail_accounts(
    account_ids: list[int], debug: Callable[[str], None] | None = None
) -> Iterator[tuple[str, FetchResult]]:
    """Fetch the accounts one after another (trigger cli); yields each label and result."""
    options = FetchOptions(trigger=FetchTrigger.CLI, owner=make_owner("cli"), debug=debug)
    for account_id in account_ids:
        account = db.session.get(MailAccount, account_id)
        assert account is not None  # the ids were read just before
        label = f"{account.id} {account.type} {account.username}@{account.host}"
        yield label, fetch_account(account_id, options)
