"""Ask the scheduler to fetch an account soon ("Fetch now"); web workers never fetch."""

from __future__ import annotations

from ..extensions import db
from ..models import MailAccount, utcnow


def mark_fetch_requested(account: MailAccount) -> None:
    """Mark the account due now, in the caller's transaction (no commit)."""
    now = utcnow()
    account.fetch_requested_at = now
    account.next_run_at = now


def request_fetch(account: MailAccount) -> None:
    """Mark the account due now; a scheduler process picks it up within seconds."""
    mark_fetch_requested(account)
    db.session.commit()
