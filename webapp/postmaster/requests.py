"""Ask the scheduler to fetch an account soon ("Fetch now"); web workers never fetch."""

from __future__ import annotations

from ..extensions import db
from ..models import MailAccount, utcnow


def request_fetch(account: MailAccount) -> None:
    """Mark the account due now; a scheduler process picks it up within seconds."""
    now = utcnow()
    account.fetch_requested_at = now
    account.next_run_at = now
    db.session.commit()
