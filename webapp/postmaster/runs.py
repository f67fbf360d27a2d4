"""Run bookkeeping: the state of one fetch while it runs, its counts, its fetch log (FetchRun),
the account's last status, and when the account is fetched next."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import FetchRun, MailAccount, utcnow
from ..settings.store import get_int_setting
from ..states import FetchStatus, FetchTrigger, OutcomeKind
from .lease import Lease, release_in_transaction
from .mailbox import RemoteMessage

# The fetch log kept per run (what --debug shows, the IMAP/POP3 conversation included, secrets
# masked): the first LOG_HEAD_LINES lines and the last LOG_TAIL_LINES, each cut at
# MAX_LOG_LINE characters, so a run of 100,000 messages stores a bounded log.
LOG_HEAD_LINES = 400
LOG_TAIL_LINES = 200
MAX_LOG_LINE = 1000

# The FetchResult counter of each outcome kind (duplicates are counted by the batch loop).
_COUNTERS = {
    OutcomeKind.NEW_TICKET: "new_tickets",
    OutcomeKind.FOLLOW_UP: "follow_ups",
    OutcomeKind.IGNORED: "ignored",
    OutcomeKind.FAILED: "failed",
}


@dataclass
class FetchResult:
    account_id: int
    status: FetchStatus  # ok | warning | error | busy | reauth
    message: str = ""
    run_id: int | None = None
    fetched: int = 0
    new_tickets: int = 0
    follow_ups: int = 0
    ignored: int = 0
    failed: int = 0
    oversized: int = 0
    duplicates: int = 0
    log: list[str] = field(default_factory=list)  # the first lines of the fetch log
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    log_dropped: int = 0  # lines between the head and the tail, not kept

    def add_log(self, line: str) -> None:
        """Keep a line of the fetch log (the head, then a rolling tail)."""
        if len(line) > MAX_LOG_LINE:
            line = line[:MAX_LOG_LINE] + " [...]"
        if len(self.log) < LOG_HEAD_LINES:
            self.log.append(line)
            return
        if len(self.log_tail) == self.log_tail.maxlen:
            self.log_dropped += 1
        self.log_tail.append(line)

    def log_text(self) -> str:
        """The fetch log as stored in FetchRun.log."""
        gap = [f"[... {self.log_dropped} lines left out ...]"] if self.log_dropped else []
        return "\n".join([*self.log, *gap, *self.log_tail])

    def summary(self) -> str:
        """One line with the counts, for the CLI and the overview."""
        counts = (
            f"fetched {self.fetched}, new tickets {self.new_tickets}, "
            f"follow-ups {self.follow_ups}, ignored {self.ignored}, failed {self.failed}, "
            f"oversized {self.oversized}, duplicates {self.duplicates}"
        )
        return f"{self.status}: {counts}" + (f" ({self.message})" if self.message else "")


@dataclass
class FetchOptions:
    trigger: FetchTrigger = FetchTrigger.CLI  # cli | scheduler | button ("Fetch now")
    owner: str = "cli"
    debug: Callable[[str], None] | None = None
    should_stop: Callable[[], bool] | None = None  # checked between batches
    # Seconds to move the next run by, given the interval (the scheduler's jitter): applied in
    # the transaction that ends the run, so a "Fetch now" or an edit never races it.
    next_run_jitter: Callable[[timedelta], float] | None = None


@dataclass
class RunState:
    """State of one fetch while it runs (a ledger.FolderScope once host and folder are set)."""

    account: MailAccount
    account_id: int  # read once: the ORM object expires at every batch commit
    lease: Lease
    run: FetchRun
    result: FetchResult
    options: FetchOptions
    host: str = ""
    folder: str = ""
    uidvalidity: int | None = None
    uidvalidity_changed: bool = False
    finished_keys: list[str] = field(default_factory=list)
    unfinished: list[RemoteMessage] = field(default_factory=list)  # committed, not yet deleted

    def log(self, line: str) -> None:
        """Add a line to the fetch log (and show it with --debug); the mailbox sends the
        protocol conversation here too, already masked."""
        self.result.add_log(line)
        if self.options.debug:
            self.options.debug(line)


def internal_error_text(error: Exception) -> str:
    """An unexpected error, in words safe to show: database errors carry their SQL
    parameters (mail content, ciphertext) in str(), so only the driver's error class is shown."""
    if isinstance(error, SQLAlchemyError):
        cause = type(getattr(error, "orig", None) or error).__name__
        return f"database error ({cause}); the batch was rolled back and stays on the server"
    return f"internal error ({type(error).__name__}): {error}"


def fail_run(state: RunState, status: FetchStatus, message: str) -> None:
    """Roll back the batch in progress and note why the run ends early."""
    db.session.rollback()
    state.result.status = status
    state.result.message = message
    state.log(f"{status}: {message}")


def count_outcome(result: FetchResult, kind: OutcomeKind | None) -> None:
    """Count one message's outcome in the result."""
    attr = _COUNTERS.get(kind) if kind is not None else None
    if attr:
        setattr(result, attr, getattr(result, attr) + 1)


def save_counts(run: FetchRun, result: FetchResult) -> None:
    """Copy the result's counters to the FetchRun row."""
    for name in ("fetched", "new_tickets", "follow_ups", "ignored", "failed", "oversized"):
        setattr(run, name, getattr(result, name))
    run.duplicates = result.duplicates


def finish_run(state: RunState) -> None:
    """Write the fetch log, the account's last status and next run, and release the lease:
    one transaction, so the run's end is recorded exactly when the lease is given back.

    A run whose lease was taken over was already ended by the claim that took it: only its
    counts and log lines are added, its end stays, and the account is left to the new holder.
    """
    db.session.rollback()
    run = db.session.get(FetchRun, state.run.id)
    account = db.session.get(MailAccount, state.account_id)
    # Both exist unless the account was deleted mid-run, which fails here as it always did.
    assert run is not None and account is not None
    result = state.result
    save_counts(run, result)
    now = utcnow()
    following = next_run_at(account, now, state.options.next_run_jitter)
    if not release_in_transaction(state.lease, following):
        run.log = "\n".join([result.log_text(), *([run.log] if run.log else [])])
        if run.finished_at is None:  # released (a stuck fetch at shutdown), never claimed
            run.finished_at = now
            run.status = result.status
            run.error = result.message or None
        db.session.commit()
        return
    run.finished_at = now
    run.status = result.status
    run.error = result.message or None
    run.log = result.log_text()
    account.last_run_at = now
    account.last_status = result.status if not account.needs_reauth else FetchStatus.REAUTH
    account.last_message = result.summary()
    account.fetch_requested_at = None
    db.session.commit()


def fetch_interval(account: MailAccount) -> timedelta:
    """How long the account waits between runs: its own interval or the setting."""
    minutes = account.fetch_interval_minutes or get_int_setting("FetchIntervalMinutes")
    return timedelta(minutes=minutes)


def next_run_at(
    account: MailAccount, now: datetime, jitter: Callable[[timedelta], float] | None = None
) -> datetime:
    """When the scheduler should fetch this account again (moved by jitter(interval) s)."""
    interval = fetch_interval(account)
    moved = timedelta(seconds=jitter(interval)) if jitter is not None else timedelta()
    return now + interval + moved
