"""Claiming due accounts (both databases), jitter, and the scheduler's heartbeat rows."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from scheduler import jobs
from webapp.extensions import db
from webapp.models import MailAccount, SchedulerNode, utcnow
from webapp.postmaster.lease import claim_due_accounts, release_lease
from webapp.postmaster.runs import next_run_at
from webapp.settings.store import set_setting


def make_account(n: int, **fields) -> int:
    values = dict(
        type="IMAPS",
        host="127.0.0.1",
        username=f"user{n}",
        password="pw",
        validity="valid",
        created_by="test",
        changed_by="test",
    )
    values.update(fields)
    account = MailAccount(**values)
    db.session.add(account)
    db.session.commit()
    return account.id


def test_claims_only_due_valid_free_accounts(app, app_ctx):
    now = utcnow()
    never_ran = make_account(1)
    overdue = make_account(2, next_run_at=now - timedelta(minutes=1))
    later = make_account(3, next_run_at=now + timedelta(minutes=5))
    requested = make_account(4, next_run_at=now + timedelta(minutes=5), fetch_requested_at=now)
    make_account(5, validity="invalid")
    make_account(6, validity="invalid", fetch_requested_at=now)
    make_account(7, lease_owner="other", lease_expires_at=now + timedelta(minutes=1))
    expired = make_account(
        8, lease_owner="dead", lease_expires_at=now - timedelta(seconds=1), lease_generation=7
    )

    leases = claim_due_accounts("me", 60, 10)
    claimed = {lease.account_id: lease for lease in leases}
    assert set(claimed) == {never_ran, overdue, requested, expired}
    assert later not in claimed
    # "Fetch now" goes first; every claim bumps the generation.
    assert leases[0].account_id == requested
    assert claimed[expired].generation == 8
    assert claimed[never_ran].generation == 1
    db.session.expire_all()
    account = db.session.get(MailAccount, overdue)
    assert account.lease_owner == "me" and account.lease_expires_at > now
    # Claimed accounts are not claimable again until released.
    assert claim_due_accounts("other", 60, 10) == []


def test_limit_is_respected(app, app_ctx):
    for n in range(5):
        make_account(n)
    assert len(claim_due_accounts("me", 60, 2)) == 2
    assert len(claim_due_accounts("me", 60, 0)) == 0
    assert len(claim_due_accounts("you", 60, 10)) == 3


def test_released_account_is_due_again_at_its_next_run(app, app_ctx):
    account_id = make_account(1)
    (lease,) = claim_due_accounts("me", 60, 5)
    release_lease(lease, utcnow() + timedelta(minutes=10))
    assert claim_due_accounts("me", 60, 5) == []
    release_lease(lease, utcnow())  # not ours any more: a no-op
    account = db.session.get(MailAccount, account_id)
    account.next_run_at = utcnow() - timedelta(seconds=1)  # e.g. a shorter interval saved
    db.session.commit()
    assert [x.account_id for x in claim_due_accounts("me", 60, 5)] == [account_id]


def test_concurrent_claimers_never_share_an_account(app):
    """Several claimers at once, each with its own session: every account claimed once."""
    with app.app_context():
        ids = {make_account(n) for n in range(40)}
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def claimer(owner: str) -> None:
        try:
            with app.app_context():
                barrier.wait()
                mine = claims.setdefault(owner, [])
                while batch := claim_due_accounts(owner, 60, 3):
                    mine.extend(lease.account_id for lease in batch)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=claimer, args=(f"t{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    everything = [account_id for mine in claims.values() for account_id in mine]
    assert sorted(everything) == sorted(ids)
    with app.app_context():
        generations = {a.lease_generation for a in db.session.query(MailAccount)}
        assert generations == {1}


@pytest.mark.parametrize("interval, limit", [(1, 6), (10, 30), (None, 30)])
def test_jitter_moves_the_next_run_a_little(app, app_ctx, interval, limit):
    set_setting("FetchIntervalMinutes", "10")
    db.session.commit()
    now = utcnow().replace(microsecond=0)
    planned = now + timedelta(minutes=interval or 10)
    account = db.session.get(MailAccount, make_account(1, fetch_interval_minutes=interval))
    offsets = {
        (next_run_at(account, now, jobs.jitter_seconds) - planned).total_seconds()
        for _ in range(20)
    }
    assert all(abs(o) <= limit for o in offsets)
    assert len(offsets) > 1


def test_heartbeat_row_per_process(app, app_ctx):
    started = utcnow()
    jobs.heartbeat("sched-a", started)
    jobs.heartbeat("sched-a", started)
    jobs.heartbeat("sched-b", started)
    assert {n.owner for n in db.session.query(SchedulerNode)} == {"sched-a", "sched-b"}
    jobs.forget_node("sched-a")
    node = db.session.get(SchedulerNode, "sched-b")
    node.last_seen_at = utcnow() - timedelta(days=2)
    db.session.commit()
    assert jobs.forget_dead_nodes() == 1
    assert db.session.query(SchedulerNode).count() == 0
