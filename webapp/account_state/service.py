"""What the admin sees of each mail account: its name, its one status badge, the oversized
mail it left on the server, the fetch log of its runs, and the JSON the screens poll.

Shared by the Mail Accounts list and page, Status and `status --json`; nothing here reads the
Flask request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from ..extensions import db
from ..models import FetchRun, MailAccount, OversizedMessage, utcnow
from ..postmaster.requests import request_fetch
from ..settings.store import get_int_setting
from ..states import FetchStatus
from ..timefmt import screen_time

# The badge of a row: its kind (the CSS class) and the word shown.
BADGE_NAMES = {
    "ok": "ok",
    "warning": "warning",
    "error": "error",
    "reauth": "needs re-authorization",
    "running": "running",
    "queued": "queued",
    "never": "never fetched",
}
PENDING_KINDS = ("queued", "running")
SHORT_MESSAGE = 80  # characters of the message shown beside the badge


# --- names ----------------------------------------------------------------------------------


def account_label(account: MailAccount) -> str:
    """`support@example.com — IMAPS mail.example.com:993 INBOX`: as the admin names it."""
    where = f"{account.type} {account.host}:{account.effective_port}"
    if account.account_type.is_imap:
        where += f" {account.effective_folder}"
    return f"{account.username} — {where}"


def account_labels(accounts: Iterable[MailAccount] | None = None) -> dict[int, str]:
    """The label of every account (all of them by default), never two the same: accounts
    that would share one get their comment, or their number when that does not tell."""
    if accounts is None:
        accounts = db.session.scalars(select(MailAccount).order_by(MailAccount.id))
    accounts = list(accounts)
    labels = {a.id: account_label(a) for a in accounts}
    groups: dict[str, list[MailAccount]] = {}
    for account in accounts:
        groups.setdefault(labels[account.id], []).append(account)
    for label, group in groups.items():
        if len(group) < 2:
            continue
        comments = [(a.comment or "").strip() for a in group]
        for account, comment in zip(group, comments, strict=True):
            extra = comment if comment and comments.count(comment) == 1 else f"no. {account.id}"
            labels[account.id] = f"{label} ({extra})"
    return labels


# --- the badge ------------------------------------------------------------------------------


@dataclass
class Badge:
    kind: str  # a key of BADGE_NAMES
    text: str  # the short message beside it
    detail: str  # the whole message, for the account page

    @property
    def name(self) -> str:
        return BADGE_NAMES[self.kind]

    @property
    def pending(self) -> bool:
        return self.kind in PENDING_KINDS


def lease_live(account: MailAccount, now: datetime) -> bool:
    """A fetcher holds the account's lease right now."""
    return bool(account.lease_owner and account.lease_expires_at and account.lease_expires_at > now)


def latest_runs(account_ids: Sequence[int]) -> dict[int, FetchRun]:
    """The newest fetch run of each account, in one query."""
    if not account_ids:
        return {}
    newest = (
        select(FetchRun.mail_account_id, func.max(FetchRun.id).label("id"))
        .where(FetchRun.mail_account_id.in_(account_ids))
        .group_by(FetchRun.mail_account_id)
        .subquery()
    )
    runs = db.session.scalars(select(FetchRun).join(newest, FetchRun.id == newest.c.id))
    return {run.mail_account_id: run for run in runs}


# "IMAP mail.example.com:993 (SSL/TLS): ": the server every error names first; the row shows
# the server already, so its short message starts after it (the account page shows it all).
_SERVER_PREFIX = re.compile(r"^(?:IMAP|POP3) \S+ \([^)]*\): ")


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = _SERVER_PREFIX.sub("", line)
    return line if len(line) <= SHORT_MESSAGE else line[: SHORT_MESSAGE - 1] + "…"


def counts_text(run: FetchRun) -> str:
    """`3 new tickets, 1 follow-up`: the counts that are not zero ("no new mail")."""
    parts = []
    for count, one, many in (
        (run.new_tickets, "new ticket", "new tickets"),
        (run.follow_ups, "follow-up", "follow-ups"),
        (run.ignored, "ignored", "ignored"),
        (run.failed, "failed mail", "failed mails"),
    ):
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    return ", ".join(parts) or "no new mail"


def oversized_text(count: int) -> str:
    noun = "message" if count == 1 else "messages"
    return f"{count} {noun} over the size limit left on the server"


def badge(account: MailAccount, run: FetchRun | None, oversized: int, now: datetime) -> Badge:
    """The one badge of an account's row, from its lease, request, last run and oversized mail."""
    if lease_live(account, now):
        return Badge("running", "fetching now", "A fetch of this account is running.")
    if account.fetch_requested_at is not None:
        return Badge("queued", "waiting for the scheduler", "A fetch was requested.")
    if account.needs_reauth or account.last_status == FetchStatus.REAUTH:
        text = "press Re-authorize on the account"
        return Badge("reauth", text, f"The OAuth2 sign-in must be renewed: {text}.")
    if run is None:
        return Badge("never", "", "This account was never fetched.")
    message = run.error or account.last_message or ""
    if run.status == FetchStatus.RUNNING:  # its process died; the lease ran out
        text = "the last run was interrupted; the next one goes on"
        return Badge("warning", text, text)
    if run.status == FetchStatus.ERROR:
        return Badge("error", _short(message) or "the last fetch failed", message)
    if run.status == FetchStatus.WARNING:
        return Badge("warning", _short(message), message)
    if oversized:
        return Badge("warning", oversized_text(oversized), oversized_text(oversized))
    return Badge("ok", counts_text(run), counts_text(run))


# --- oversized mail -------------------------------------------------------------------------


def size_limit() -> int:
    """The size limit in bytes (Settings: maximum message size)."""
    return get_int_setting("MaxMessageSizeMB") * 1024 * 1024


def oversized_messages(
    account_id: int | None = None, include_dismissed: bool = False
) -> list[OversizedMessage]:
    """Mail still on the server over today's size limit, oldest first (one or all accounts)."""
    q = select(OversizedMessage).where(OversizedMessage.size > size_limit())
    if account_id is not None:
        q = q.where(OversizedMessage.mail_account_id == account_id)
    if not include_dismissed:
        q = q.where(OversizedMessage.dismissed_at.is_(None))
    q = q.order_by(OversizedMessage.mail_account_id, OversizedMessage.id)
    return list(db.session.scalars(q))


def oversized_counts(account_ids: Sequence[int]) -> dict[int, int]:
    """How many undismissed oversized messages each account left on the server."""
    if not account_ids:
        return {}
    rows = db.session.execute(
        select(OversizedMessage.mail_account_id, func.count())
        .where(
            OversizedMessage.mail_account_id.in_(account_ids),
            OversizedMessage.size > size_limit(),
            OversizedMessage.dismissed_at.is_(None),
        )
        .group_by(OversizedMessage.mail_account_id)
    )
    return {account_id: count for account_id, count in rows}


def get_oversized(account_id: int, oversized_id: int) -> OversizedMessage | None:
    """The oversized message with this id, if it belongs to this account."""
    row = db.session.get(OversizedMessage, oversized_id)
    return row if row is not None and row.mail_account_id == account_id else None


def dismiss_oversized(row: OversizedMessage) -> None:
    """The admin has seen it: no longer "needs attention" (it stays on the server)."""
    row.dismissed_at = utcnow()
    db.session.commit()


def fetch_oversized_once(row: OversizedMessage, account: MailAccount) -> None:
    """Take this one message at the next fetch, whatever the size limit; requested at once."""
    row.fetch_once = True
    row.dismissed_at = None
    request_fetch(account)  # commits


def describe_oversized(row: OversizedMessage) -> str:
    """One line for Status and the CLI: size, sender, subject and date."""
    sent = screen_time(row.sent_at) or "no date"
    return (
        f"{megabytes(row.size)} message left on the server (over the size limit): "
        f"from {row.from_addr or '(no sender)'}, subject {row.subject or '(no subject)'!r}, {sent}"
    )


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


# --- fetch runs -----------------------------------------------------------------------------


def get_run(account_id: int, run_id: int) -> FetchRun | None:
    """The fetch run with this id, if it is one of this account's."""
    run = db.session.get(FetchRun, run_id)
    return run if run is not None and run.mail_account_id == account_id else None


# --- what the screens poll ------------------------------------------------------------------


def account_badges(accounts: Sequence[MailAccount]) -> dict[int, Badge]:
    """The badge of each account, in three queries."""
    ids = [a.id for a in accounts]
    runs = latest_runs(ids)
    oversized = oversized_counts(ids)
    now = utcnow()
    return {a.id: badge(a, runs.get(a.id), oversized.get(a.id, 0), now) for a in accounts}


def account_states(account_ids: Sequence[int]) -> list[dict[str, Any]]:
    """What the list and Status need to redraw a row; no secret, nothing but the state."""
    accounts = list(
        db.session.scalars(select(MailAccount).where(MailAccount.id.in_(list(account_ids))))
    )
    badges = account_badges(accounts)
    return [
        {
            "id": a.id,
            "badge": badges[a.id].kind,
            "badge_name": badges[a.id].name,
            "text": badges[a.id].text,
            "pending": badges[a.id].pending,
            "last_run": screen_time(a.last_run_at) or "never",
            "next_run": screen_time(a.next_run_at) or "-",
        }
        for a in sorted(accounts, key=lambda a: a.id)
    ]


def account_panel(account: MailAccount) -> dict[str, Any]:
    """The account page's state: badge and its detail, oversized mail, the size limit."""
    return {
        "badge": account_badges([account])[account.id],
        "label": account_labels()[account.id],
        "oversized": oversized_messages(account.id, include_dismissed=True),
        "limit": megabytes(size_limit()),
    }
