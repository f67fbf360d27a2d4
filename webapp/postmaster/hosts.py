"""At most MAX_CONNECTIONS_PER_HOST mail connections to one host at a time, in all processes.

Microsoft 365 throttles clients that open many connections at once, so every fetch takes a
slot of its host (lowercased name) before it connects and gives it back when the connection is
closed. Two gates, in this order:

- HostSlots, in this process: the scheduler's worker threads wait on a condition, without
  touching the database, until fewer than the limit of them hold the host.
- The host_connection_slot rows, shared by every scheduler and CLI process (on one database).
  A row names the fetch lease that holds it, and counts only while that lease is live, so a
  holder that is killed or taken over frees its slot without any cleanup.

A fetch that finds its host full waits for a slot instead of failing (its lease is kept alive
meanwhile) and gives up only when it is told to stop. IDLE push connections take no slot:
they are bounded by PUSH_MAX_CONNECTIONS per scheduler process, and the fetch a push starts
takes one like any other.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import HostConnectionSlot, MailAccount, table_of, utcnow
from .lease import Lease, owner_is_dead, renew_lease, rowcount

WAIT_STEP = 0.5  # seconds between checks of should_stop while waiting


class SlotWaitStopped(Exception):
    """Told to stop while waiting for a connection slot."""


class HostSlots:
    """Open connections per host, and how many fetches wait for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()

    def open_count(self, host: str) -> int:
        with self._cond:
            return self._open[host.lower()]

    def waiting(self, host: str) -> int:
        with self._cond:
            return self._waiting[host.lower()]

    def acquire(
        self, host: str, limit: int, should_stop: Callable[[], bool] | None
    ) -> float | None:
        """Take a slot of host (limit <= 0: no limit); the seconds waited, None if it was free."""
        key = host.lower()
        started = time.monotonic()
        waited = False
        with self._cond:
            if limit > 0 and self._open[key] >= limit:
                waited = True
                self._waiting[key] += 1
                try:
                    while self._open[key] >= limit:
                        if should_stop is not None and should_stop():
                            raise SlotWaitStopped()
                        self._cond.wait(WAIT_STEP)
                finally:
                    self._waiting[key] -= 1
            self._open[key] += 1
        return time.monotonic() - started if waited else None

    def release(self, host: str) -> None:
        key = host.lower()
        with self._cond:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(
        self, host: str, limit: int, should_stop: Callable[[], bool] | None = None
    ) -> Iterator[float | None]:
        """The with block holds one slot of host; yields the seconds waited (None: no wait)."""
        waited = self.acquire(host, limit, should_stop)
        try:
            yield waited
        finally:
            self.release(host)


host_slots = HostSlots()  # the one of this process


# ----- the slots shared by every process, in the database ---------------------------------


def _held(slot: Any, now: datetime) -> ColumnElement[bool]:
    """The fetch lease a slot row names is still live (same owner and generation, unexpired)."""
    return exists().where(
        MailAccount.id == slot.c.account_id,
        MailAccount.lease_owner == slot.c.lease_owner,
        MailAccount.lease_generation == slot.c.lease_generation,
        MailAccount.lease_expires_at >= now,
    )


def _free(slot: Any, now: datetime, dead_owners: list[str]) -> ColumnElement[bool]:
    free = or_(slot.c.lease_owner.is_(None), ~_held(slot, now))
    if dead_owners:  # a killed process on this host: its name can never renew or release
        free = or_(free, slot.c.lease_owner.in_(dead_owners))
    return free


def _add_missing_slot_rows(host: str, limit: int) -> bool:
    """Insert the rows 0..limit-1 of host that are missing; False if none were."""
    table = table_of(HostConnectionSlot)
    present = db.session.execute(
        select(func.count()).select_from(table).where(table.c.host == host, table.c.slot < limit)
    ).scalar_one()
    if present >= limit:
        return False
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    db.session.execute(
        dialect.insert(table).on_conflict_do_nothing(index_elements=["host", "slot"]),
        [{"host": host, "slot": n} for n in range(limit)],
    )
    db.session.commit()
    return True


def _dead_slot_owners(host: str) -> list[str]:
    owners = db.session.execute(
        select(HostConnectionSlot.lease_owner)
        .where(HostConnectionSlot.host == host, HostConnectionSlot.lease_owner.is_not(None))
        .distinct()
    ).scalars()
    return [o for o in owners if o and owner_is_dead(o)]


def claim_shared_slot(host: str, limit: int, lease: Lease) -> int | None:
    """Take a free slot of host for the fetch holding lease; its number, or None if all
    `limit` slots are held by live fetches (of any process).

    The slot is found by a plain SELECT and taken by an UPDATE that checks again that it is
    free: atomic under SQLite's write lock. PostgreSQL locks the row first (FOR UPDATE SKIP
    LOCKED), so the UPDATE's fresh snapshot sees the lease of whoever took it just before.
    """
    key = host.lower()
    table = table_of(HostConnectionSlot)
    now = utcnow()
    locking = db.session.get_bind().dialect.name == "postgresql"

    def lowest_free(dead: list[str]) -> int | None:
        candidate = (
            select(table.c.slot)
            .where(table.c.host == key, table.c.slot < limit, _free(table, now, dead))
            .order_by(table.c.slot)
            .limit(1)
        )
        if locking:
            candidate = candidate.with_for_update(skip_locked=True)
        return db.session.execute(candidate).scalar()

    dead: list[str] = []
    number = lowest_free(dead)
    if number is None and _add_missing_slot_rows(key, limit):  # a new host, or a higher limit
        number = lowest_free(dead)
    if number is None:  # all held: is a holder a killed process of this host?
        dead = _dead_slot_owners(key)
        number = lowest_free(dead) if dead else None
    if number is None:
        db.session.rollback()
        return None
    result = db.session.execute(
        update(table)
        .where(table.c.host == key, table.c.slot == number, _free(table, now, dead))
        .values(
            account_id=lease.account_id,
            lease_owner=lease.owner,
            lease_generation=lease.generation,
        )
    )
    if rowcount(result) != 1:
        db.session.rollback()
        return None
    db.session.commit()
    return int(number)


def release_shared_slot(host: str, number: int, lease: Lease) -> None:
    """Give the slot back at once (a fetch that ends by an exception skips this: its lease's
    release frees the slot just the same)."""
    table = table_of(HostConnectionSlot)
    db.session.execute(
        update(table)
        .where(
            table.c.host == host.lower(),
            table.c.slot == number,
            table.c.lease_owner == lease.owner,
            table.c.lease_generation == lease.generation,
        )
        .values(account_id=None, lease_owner=None, lease_generation=None)
    )
    db.session.commit()


def held_shared_slots(host: str) -> int:
    """Slots of host held by live fetches now, in every process (for tests and the bench)."""
    table = table_of(HostConnectionSlot)
    count = db.session.execute(
        select(func.count())
        .select_from(table)
        .where(table.c.host == host.lower(), table.c.lease_owner.is_not(None))
        .where(_held(table, utcnow()))
    ).scalar_one()
    db.session.rollback()
    return int(count)


def wait_for_shared_slot(
    host: str, limit: int, lease: Lease, should_stop: Callable[[], bool] | None
) -> tuple[int, float | None]:
    """Claim a shared slot of host, waiting while all are held; (slot, seconds waited or None).

    The lease is renewed while waiting (the CLI has no heartbeat to do it), so a long wait
    never lets another fetcher take the account over.
    """
    started = time.monotonic()
    renew_every = float(current_app.config["LEASE_SECONDS"]) / 3
    renewed = started
    first = True
    while True:
        number = claim_shared_slot(host, limit, lease)
        if number is not None:
            return number, None if first else time.monotonic() - started
        first = False
        if should_stop is not None and should_stop():
            raise SlotWaitStopped()
        if time.monotonic() - renewed >= renew_every:
            renew_lease(lease, float(current_app.config["LEASE_SECONDS"]))
            db.session.commit()
            renewed = time.monotonic()
        time.sleep(WAIT_STEP)


@contextlib.contextmanager
def connection_slot(
    host: str, limit: int, lease: Lease, should_stop: Callable[[], bool] | None = None
) -> Iterator[float | None]:
    """The with block holds a slot of host in this process and in the database (limit <= 0:
    no limit); yields the seconds waited for them (None: both were free)."""
    if limit <= 0:
        yield None
        return
    with host_slots.slot(host, limit, should_stop) as waited_here:
        number, waited_shared = wait_for_shared_slot(host, limit, lease, should_stop)
        waits = [w for w in (waited_here, waited_shared) if w is not None]
        yield sum(waits) if waits else None
        # Not in a finally: after an exception the session may hold a failed batch, and the
        # run's end releases the lease, which frees the slot anyway.
        release_shared_slot(host, number, lease)
