"""The per-account lease: whoever holds it is the only one fetching that account.

A lease has an owner, an expiry and a generation that grows with every claim. The fetch path
renews it inside every batch transaction and before every server-side delete, so a fetch that
stalled past its expiry (and was taken over) can never store or delete again. Claims are
conditional UPDATEs, which are atomic on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Result, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from ..extensions import db
from ..models import MailAccount, utcnow


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


def _free_or_expired(now: datetime) -> ColumnElement[bool]:
    return or_(MailAccount.lease_owner.is_(None), MailAccount.lease_expires_at < now)


def claim_account(account_id: int, owner: str, seconds: float) -> Lease | None:
    """Take the account's lease if nobody holds it (or the holder's lease expired)."""
    return _claim(account_id, owner, seconds)


def _claim(
    account_id: int, owner: str, seconds: float, *conditions: ColumnElement[bool]
) -> Lease | None:
    """One conditional UPDATE: free (or expired) plus any extra conditions, or nothing."""
    now = utcnow()
    result = db.session.execute(
        update(MailAccount)
        .where(MailAccount.id == account_id, _free_or_expired(now), *conditions)
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
    db.session.commit()
    return Lease(account_id, owner, generation)


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
    db.session.execute(
        update(MailAccount)
        .where(
            MailAccount.id == lease.account_id,
            MailAccount.lease_owner == lease.owner,
            MailAccount.lease_generation == lease.generation,
        )
        .values(lease_owner=None, lease_expires_at=None, next_run_at=next_run_at)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def lease_holder(account_id: int) -> str | None:
    """Who holds a live lease on the account, if anyone."""
    owner, expires = db.session.execute(
        select(MailAccount.lease_owner, MailAccount.lease_expires_at).where(
            MailAccount.id == account_id
        )
    ).one()
    if owner and expires and expires > utcnow():
        return owner
    return None


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


def claim_due_accounts(owner: str, seconds: float, limit: int) -> list[Lease]:
    """Claim up to `limit` due accounts for `owner`; each claim bumps the lease generation.

    PostgreSQL: one transaction, SELECT ... FOR UPDATE SKIP LOCKED then UPDATE, so concurrent
    schedulers never wait on or double-claim a row. SQLite has no row locks: one conditional
    UPDATE per candidate, which its database-wide write lock makes atomic across processes.
    """
    if limit <= 0:
        return []
    if db.session.get_bind().dialect.name == "postgresql":
        return _claim_due_locked(owner, seconds, limit)
    return _claim_due_conditional(owner, seconds, limit)


def _claim_due_locked(owner: str, seconds: float, limit: int) -> list[Lease]:
    now = utcnow()
    ids = list(
        db.session.execute(
            select(MailAccount.id)
            .where(_due(now), _free_or_expired(now))
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
    db.session.commit()
    generations = dict(rows)  # RETURNING has no order: keep the claim order (Fetch now first)
    return [Lease(account_id, owner, generations[account_id]) for account_id in ids]


def _claim_due_conditional(owner: str, seconds: float, limit: int) -> list[Lease]:
    now = utcnow()
    candidates = list(
        db.session.execute(
            select(MailAccount.id)
            .where(_due(now), _free_or_expired(now))
            .order_by(*_due_order())
            .limit(limit * 4)  # some may be taken by another process before our UPDATE
        ).scalars()
    )
    db.session.rollback()
    leases: list[Lease] = []
    for account_id in candidates:
        if len(leases) >= limit:
            break
        lease = _claim_if_due(account_id, owner, seconds)
        if lease is not None:
            leases.append(lease)
    return leases


def _claim_if_due(account_id: int, owner: str, seconds: float) -> Lease | None:
    """claim_account plus the due check in the same UPDATE (still due, still free)."""
    return _claim(account_id, owner, seconds, _due(utcnow()))
