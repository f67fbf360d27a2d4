"""The per-account lease: whoever holds it is the only one fetching that account.

A lease has an owner, an expiry and a generation that grows with every claim. The fetch path
renews it inside every batch transaction and before every server-side delete, so a fetch that
stalled past its expiry (and was taken over) can never store or delete again. Claims are
conditional UPDATEs, which are atomic on PostgreSQL and SQLite alike.

A lease whose owner is a process on this host that no longer exists (kill -9) is taken over
at once instead of after its expiry. A claim closes, in its own transaction, any run of the
account still marked unfinished: the run log never shows two fetches of one account at once.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Result, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from ..extensions import db
from ..models import FetchRun, MailAccount, utcnow
from ..states import FetchStatus


class LeaseLost(Exception):
    """Another fetcher took this account over; stop without storing or deleting."""


@dataclass(frozen=True)
class Lease:
    account_id: int
    owner: str
    generation: int


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed: Session.execute is typed as returning a Result, and
    for those statements it is a CursorResult."""
    return cast(CursorResult[Any], result).rowcount


def make_owner(kind: str) -> str:
    """A lease owner name that says who holds it: kind, host, pid and a random suffix."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Holder:
    """Who holds a live lease, and until when (naive UTC)."""

    owner: str
    generation: int
    expires_at: datetime


def owner_process(owner: str) -> tuple[str, int] | None:
    """The host and pid in a make_owner() name, or None for any other name."""
    _kind, at, rest = owner.partition("@")
    parts = rest.rsplit(":", 2)
    if not at or len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def owner_is_dead(owner: str) -> bool:
    """True only when the owner is a process on this host that no longer exists.

    Anything in doubt counts as alive: another host, a name without a pid, this very process,
    or a live process with that pid (even an unrelated one that reused the pid).
    """
    process = owner_process(owner)
    if process is None:
        return False
    host, pid = process
    if host != socket.gethostname() or pid <= 0 or pid == os.getpid():
        return False
    return not _process_exists(pid)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:  # a killed process its parent has not reaped yet (a zombie) holds nothing
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _free_or_expired(now: datetime) -> ColumnElement[bool]:
    return or_(MailAccount.lease_owner.is_(None), MailAccount.lease_expires_at < now)


def claim_account(account_id: int, owner: str, seconds: float) -> Lease | None:
    """Take the account's lease if nobody holds it, the holder's lease expired, or the holder
    is a process on this host that died (then at once, without waiting for the expiry)."""
    lease = _claim(account_id, owner, seconds)
    if lease is not None:
        return lease
    holder = lease_holder(account_id)
    if holder is None:  # released in between: try once more
        return _claim(account_id, owner, seconds)
    if not owner_is_dead(holder.owner):
        return None
    # Compare-and-set on the dead owner and its generation: of two takers, one wins.
    taken = (MailAccount.lease_owner == holder.owner) & (
        MailAccount.lease_generation == holder.generation
    )
    return _claim(
        account_id, owner, seconds, available=taken, why=f"its holder {holder.owner} is gone"
    )


def _claim(
    account_id: int,
    owner: str,
    seconds: float,
    *conditions: ColumnElement[bool],
    available: ColumnElement[bool] | None = None,
    why: str = "its lease expired",
) -> Lease | None:
    """One conditional UPDATE: free (or expired) plus any extra conditions, or nothing."""
    now = utcnow()
    if available is None:
        available = _free_or_expired(now)
    result = db.session.execute(
        update(MailAccount)
        .where(MailAccount.id == account_id, available, *conditions)
        .values(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=seconds),
            lease_generation=MailAccount.lease_generation + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        db.session.rollback()
        return None
    generation = db.session.execute(
        select(MailAccount.lease_generation).where(MailAccount.id == account_id)
    ).scalar_one()
    close_unfinished_runs([account_id], owner, now, why)
    db.session.commit()
    return Lease(account_id, owner, generation)


def close_unfinished_runs(account_ids: list[int], owner: str, now: datetime, why: str) -> None:
    """End the runs of accounts just claimed that never recorded their end (their fetcher
    died or lost the lease), in the claim's transaction: a run's interval never overlaps the
    next one's."""
    line = f"error: run ended: {why}; taken over by {owner}"
    db.session.execute(
        update(FetchRun)
        .where(FetchRun.mail_account_id.in_(account_ids), FetchRun.finished_at.is_(None))
        .values(
            finished_at=now,
            status=FetchStatus.ERROR,
            error=line.removeprefix("error: "),
            log=func.coalesce(FetchRun.log + "\n", "") + line,
        )
        .execution_options(synchronize_session=False)
    )


def renew_lease(lease: Lease, seconds: float) -> None:
    """Extend the lease in the current transaction, or raise LeaseLost if it is not ours.

    Called right before a batch commit: on PostgreSQL the row stays locked until that commit,
    on SQLite the write lock does the same, so check and commit are one atomic step.
    """
    result = db.session.execute(
        update(MailAccount)
        .where(
            MailAccount.id == lease.account_id,
            MailAccount.lease_owner == lease.owner,
            MailAccount.lease_generation == lease.generation,
        )
        .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        raise LeaseLost(f"The lease of mail account {lease.account_id} was taken over")


def release_lease(lease: Lease, next_run_at: datetime | None) -> None:
    """Give the lease back and schedule the next run (no-op if it was taken over)."""
    db.session.rollback()
    release_in_transaction(lease, next_run_at)
    db.session.commit()


def release_in_transaction(lease: Lease, next_run_at: datetime | None) -> bool:
    """Release the lease in the current transaction; False if it is no longer ours."""
    result = db.session.execute(
        update(MailAccount)
        .where(
            MailAccount.id == lease.account_id,
            MailAccount.lease_owner == lease.owner,
            MailAccount.lease_generation == lease.generation,
        )
        .values(lease_owner=None, lease_expires_at=None, next_run_at=next_run_at)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def lease_holder(account_id: int) -> Holder | None:
    """Who holds a live lease on the account, if anyone."""
    owner, generation, expires = db.session.execute(
        select(
            MailAccount.lease_owner, MailAccount.lease_generation, MailAccount.lease_expires_at
        ).where(MailAccount.id == account_id)
    ).one()
    db.session.rollback()
    if owner and expires and expires > utcnow():
        return Holder(owner, generation, expires)
    return None


def _dead_local_owners(now: datetime) -> list[str]:
    """Owners of live leases that are processes on this host which no longer exist."""
    owners = db.session.execute(
        select(MailAccount.lease_owner)
        .where(MailAccount.lease_owner.is_not(None), MailAccount.lease_expires_at >= now)
        .distinct()
    ).scalars()
    return [o for o in owners if o and owner_is_dead(o)]


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Free, expired, or held by a dead process of this host (its owner name is unique to
    that process, so it can never renew or release again: the name is the compare-and-set)."""
    dead = _dead_local_owners(now)
    if not dead:
        return _free_or_expired(now)
    return or_(_free_or_expired(now), MailAccount.lease_owner.in_(dead))


def _due(now: datetime) -> ColumnElement[bool]:
    """Valid, and its next run has come (never run: due now) or someone pressed Fetch now."""
    return (MailAccount.validity == "valid") & or_(
        MailAccount.next_run_at.is_(None),
        MailAccount.next_run_at <= now,
        MailAccount.fetch_requested_at.is_not(None),
    )


def _due_order() -> tuple[ColumnElement[bool] | InstrumentedAttribute[Any], ...]:
    # "Fetch now" first, then accounts that never ran, then the longest overdue.
    return (
        MailAccount.fetch_requested_at.is_(None),
        MailAccount.next_run_at.is_not(None),
        MailAccount.next_run_at,
        MailAccount.id,
    )


def claim_due_accounts(
    owner: str, seconds: float, limit: int, exclude: Collection[int] = ()
) -> list[Lease]:
    """Claim up to `limit` due accounts for `owner` (never one in `exclude`: the caller is
    still running it); each claim bumps the lease generation.

    PostgreSQL: one transaction, SELECT ... FOR UPDATE SKIP LOCKED then UPDATE, so concurrent
    schedulers never wait on or double-claim a row. SQLite has no row locks: one conditional
    UPDATE per candidate, which its database-wide write lock makes atomic across processes.
    """
    if limit <= 0:
        return []
    now = utcnow()
    wanted = _claimable(now)
    if exclude:
        wanted = wanted & MailAccount.id.not_in(list(exclude))
    if db.session.get_bind().dialect.name == "postgresql":
        return _claim_due_locked(owner, seconds, limit, wanted)
    return _claim_due_conditional(owner, seconds, limit, wanted)


def _claim_due_locked(
    owner: str, seconds: float, limit: int, wanted: ColumnElement[bool]
) -> list[Lease]:
    now = utcnow()
    ids = list(
        db.session.execute(
            select(MailAccount.id)
            .where(_due(now), wanted)
            .order_by(*_due_order())
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if not ids:
        db.session.rollback()
        return []
    rows = db.session.execute(
        update(MailAccount)
        .where(MailAccount.id.in_(ids))
        .values(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=seconds),
            lease_generation=MailAccount.lease_generation + 1,
        )
        .returning(MailAccount.id, MailAccount.lease_generation)
        .execution_options(synchronize_session=False)
    ).all()
    close_unfinished_runs(ids, owner, now, "its lease expired or its holder died")
    db.session.commit()
    generations = dict(rows)  # RETURNING has no order: keep the claim order (Fetch now first)
    return [Lease(account_id, owner, generations[account_id]) for account_id in ids]


def _claim_due_conditional(
    owner: str, seconds: float, limit: int, wanted: ColumnElement[bool]
) -> list[Lease]:
    now = utcnow()
    candidates = list(
        db.session.execute(
            select(MailAccount.id)
            .where(_due(now), wanted)
            .order_by(*_due_order())
            .limit(limit * 4)  # some may be taken by another process before our UPDATE
        ).scalars()
    )
    db.session.rollback()
    leases: list[Lease] = []
    for account_id in candidates:
        if len(leases) >= limit:
            break
        # Still due and still claimable, in the same UPDATE.
        lease = _claim(
            account_id,
            owner,
            seconds,
            _due(utcnow()),
            available=wanted,
            why="its lease expired or its holder died",
        )
        if lease is not None:
            leases.append(lease)
    return leases
