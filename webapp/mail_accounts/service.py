"""Mail account operations shared by the screens and the CLI: one validation, one way to save.

The input and its checks live in `validators`; the create and update functions validate again
and raise `ValidationError` on bad input, so nothing is half-written.
"""

from __future__ import annotations

from typing import Any

from ..extensions import db
from ..models import (
    Article,
    FailedMail,
    FetchRun,
    FolderState,
    MailAccount,
    OAuth2PendingAuthorization,
    OversizedMessage,
    SeenMessage,
)
from ..timefmt import iso_utc
from ..validation import ValidationError
from .validators import MailAccountInput, clean


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


def update_mail_account(account: MailAccount, data: MailAccountInput, actor: str | None) -> None:
    """Validate and change a mail account; an empty password keeps the stored one."""
    values, errors = clean(data, account)
    if errors:
        db.session.rollback()
        raise ValidationError(errors)
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
    for linked in (Article, FailedMail):
        db.session.query(linked).filter_by(mail_account_id=account_id).update(
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
        "last_run_at": iso_utc(account.last_run_at),
        "next_run_at": iso_utc(account.next_run_at),
        "created_at": iso_utc(account.created_at),
        "created_by": account.created_by,
        "changed_at": iso_utc(account.changed_at),
        "changed_by": account.changed_by,
    }
