"""What the scheduler's jobs do, each inside an app context the caller pushed.

The database decides what runs: these functions read and write only rows (leases, heartbeats,
retention), so any number of scheduler processes can run them side by side.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete

from webapp.extensions import db
from webapp.models import MailAccount, SchedulerNode, utcnow
from webapp.postmaster.fetch import FetchOptions, fetch_with_lease
from webapp.postmaster.lease import (
    Lease,
    LeaseLost,
    claim_account,
    release_lease,
    renew_lease,
    rowcount,
)
from webapp.postmaster.retention import purge_old_records
from webapp.postmaster.runs import next_run_at
from webapp.states import FetchTrigger

log = logging.getLogger("scheduler")

# Jitter of the next run: up to this share of the interval, at most MAX_JITTER_SECONDS, either
# way, so accounts added or started together drift apart instead of connecting in one second.
JITTER_SHARE = 0.1
MAX_JITTER_SECONDS = 30.0
# Heartbeats of scheduler processes gone this long are removed (the status page shows them
# as stale until then).
FORGET_NODE_AFTER = timedelta(days=1)


def fetch_claimed(
    lease: Lease,
    owner: str,
    should_stop: Callable[[], bool],
    trigger: FetchTrigger | None = None,
) -> str:
    """Fetch one claimed account; returns the summary line. Never raises, always releases."""
    account = db.session.get(MailAccount, lease.account_id)
    if account is None:  # deleted between claim and start
        return "deleted"
    if trigger is None:
        requested = account.fetch_requested_at is not None
        trigger = FetchTrigger.BUTTON if requested else FetchTrigger.SCHEDULER
    label = f"{account.id} {account.type} {account.username}@{account.host}"
    db.session.rollback()  # no transaction open while a fetch of minutes starts
    try:
        options = FetchOptions(
            trigger=trigger, owner=owner, should_stop=should_stop, next_run_jitter=jitter_seconds
        )
        result = fetch_with_lease(lease, options)
    except Exception:  # one broken account never stops the scheduler
        log.exception("fetch of mail account %s crashed", label)
        give_back(lease, due_again=False)
        return "crashed"
    summary = result.summary()
    log.info("mail account %s (%s): %s", label, trigger, summary)
    return summary


def claim_pushed(account_ids: list[int], owner: str, limit: int) -> tuple[list[Lease], list[int]]:
    """Claim the fetch lease of accounts whose IDLE connection saw new mail; returns the
    leases and the accounts to forget (deleted or no longer valid).

    One that another fetcher holds is in neither list and stays wanted: the caller asks again
    at the next poll, so mail that came after that fetch listed the folder is not left for
    the next interval."""
    leases: list[Lease] = []
    forget: list[int] = []
    seconds = current_app.config["LEASE_SECONDS"]
    for account_id in account_ids:
        if len(leases) >= limit:
            break
        account = db.session.get(MailAccount, account_id)
        valid = account is not None and account.validity == "valid"
        db.session.rollback()
        if not valid:
            forget.append(account_id)
            continue
        lease = claim_account(account_id, owner, seconds)
        if lease is not None:
            leases.append(lease)
    return leases, forget


def give_back(lease: Lease, due_again: bool) -> None:
    """Release a lease we hold without a finished fetch: due now, or after one interval."""
    try:
        db.session.rollback()
        account = db.session.get(MailAccount, lease.account_id)
        if account is None:
            return
        now = utcnow()
        release_lease(lease, now if due_again else next_run_at(account, now))
    except Exception:
        log.exception("could not release the lease of mail account %s", lease.account_id)
        db.session.rollback()


def jitter_seconds(interval: timedelta) -> float:
    """A random move of the next run: up to JITTER_SHARE of the interval, at most
    MAX_JITTER_SECONDS, either way (finish_run applies it when the run ends)."""
    limit = min(interval.total_seconds() * JITTER_SHARE, MAX_JITTER_SECONDS)
    return random.uniform(-limit, limit)


def renew_running(leases: list[Lease]) -> list[Lease]:
    """Extend the leases of fetches still within their deadline; returns the ones lost.

    The fetch itself renews at every commit; this covers one slow step (a large mailbox's
    listing, a slow server) taking longer than LEASE_SECONDS. It stops with the process, so a
    dead scheduler's leases still expire.
    """
    seconds = current_app.config["LEASE_SECONDS"]
    lost = []
    for lease in leases:
        try:
            renew_lease(lease, seconds)
            db.session.commit()
        except LeaseLost:
            db.session.rollback()
            lost.append(lease)
    return lost


def heartbeat(owner: str, started_at: datetime) -> None:
    """Say this scheduler process is alive (one row per process)."""
    node = db.session.get(SchedulerNode, owner)
    now = utcnow()
    if node is None:
        node = SchedulerNode(
            owner=owner, hostname=socket.gethostname(), pid=os.getpid(), started_at=started_at
        )
        db.session.add(node)
    node.last_seen_at = now
    db.session.commit()


def forget_node(owner: str) -> None:
    """A clean exit removes its heartbeat: no stale warning for a scheduler that stopped."""
    db.session.rollback()
    db.session.execute(delete(SchedulerNode).where(SchedulerNode.owner == owner))
    db.session.commit()


def forget_dead_nodes() -> int:
    """Remove heartbeats of processes that died long ago (SIGKILL, power loss)."""
    cutoff = utcnow() - FORGET_NODE_AFTER
    result = db.session.execute(delete(SchedulerNode).where(SchedulerNode.last_seen_at < cutoff))
    db.session.commit()
    return rowcount(result)


def run_retention() -> str:
    """Purge old fetch logs and finished dedupe keys (settings on the Settings screen)."""
    report = purge_old_records()
    forget_dead_nodes()
    return report
