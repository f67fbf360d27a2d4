"""The per-account lease: a dead local holder is taken over at once, a live one is named in
the busy message, and a run whose lease was taken over never overlaps the next run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.fetching import add_account
from tests.mailgen import make_mail
from tests.scheduling import assert_runs_never_overlap
from webapp.extensions import db
from webapp.models import FetchRun, MailAccount, utcnow
from webapp.postmaster.fetch import FetchOptions, fetch_account, fetch_with_lease
from webapp.postmaster.lease import claim_account, claim_due_accounts, owner_is_dead
from webapp.postmaster.runs import FetchResult, RunState, finish_run
from webapp.states import FetchStatus

HOST = socket.gethostname()


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    app_config["LEASE_SECONDS"] = 300
    return app_config


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    """The pid of a running process that is not a fetcher (like a reused pid)."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(
    app_ctx, dovecot, mail_user, dead_pid
):
    mail_user.deliver(make_mail())
    account_id = add_account(dovecot, mail_user, "IMAPS")
    dead = claim_account(account_id, f"cli@{HOST}:{dead_pid}:ab12cd", 300)
    assert dead is not None
    result = fetch_account(account_id, FetchOptions(owner=f"cli@{HOST}:{os.getpid()}:ef34ab"))
    assert result.status == FetchStatus.OK, result.message
    assert result.new_tickets == 1
    run = db.session.get(FetchRun, result.run_id)
    assert run.lease_generation == dead.generation + 1


def test_of_two_takers_of_a_dead_lease_only_one_wins(app_ctx, dovecot, mail_user, dead_pid):
    account_id = add_account(dovecot, mail_user, "IMAPS")
    assert claim_account(account_id, f"cli@{HOST}:{dead_pid}:ab12cd", 300) is not None
    mine = f"cli@{HOST}:{os.getpid()}:"
    first = claim_account(account_id, mine + "aaaaaa", 300)
    second = claim_account(account_id, mine + "bbbbbb", 300)  # the holder is now alive
    assert first is not None
    assert second is None


@pytest.mark.parametrize("where", ["live process with that pid", "other host", "not a pid"])
def test_a_lease_that_may_be_alive_is_busy_and_says_who_and_until_when(
    app_ctx, dovecot, mail_user, live_pid, where
):
    owner = {
        "live process with that pid": f"scheduler@{HOST}:{live_pid}:ab12cd",
        "other host": f"scheduler@not-{HOST}:{os.getpid() + 1}:ab12cd",
        "not a pid": "someone-else",
    }[where]
    assert not owner_is_dead(owner)
    account_id = add_account(dovecot, mail_user, "IMAPS")
    assert claim_account(account_id, owner, 300) is not None
    expires = db.session.get(MailAccount, account_id).lease_expires_at
    result = fetch_account(account_id)
    assert result.status == FetchStatus.BUSY
    until = expires.strftime("%H:%M:%S")
    assert result.message == f"already being fetched by {owner} (lease until {until} UTC)"


def test_the_scheduler_claim_takes_over_a_dead_local_holder_at_once(
    app_ctx, dovecot, mail_user, dead_pid
):
    account_id = add_account(dovecot, mail_user, "IMAPS")
    assert claim_account(account_id, f"scheduler@{HOST}:{dead_pid}:ab12cd", 300) is not None
    leases = claim_due_accounts(f"scheduler@{HOST}:{os.getpid()}:cd34ef", 300, 5)
    assert [lease.account_id for lease in leases] == [account_id]


def test_the_scheduler_never_claims_an_account_it_still_runs(app_ctx, dovecot, mail_user):
    account_id = add_account(dovecot, mail_user, "IMAPS")
    owner = f"scheduler@{HOST}:{os.getpid()}:cd34ef"
    assert claim_due_accounts(owner, 300, 5, exclude=[account_id]) == []
    assert [lease.account_id for lease in claim_due_accounts(owner, 300, 5)] == [account_id]


def test_a_run_whose_lease_was_taken_over_ends_before_the_next_run_starts(
    app_ctx, dovecot, mail_user
):
    """The old fetch stalls past its lease, another takes over and finishes, and only then
    does the old one notice (LeaseLost) and write its end: the runs must not overlap."""
    mail_user.deliver(make_mail())
    account_id = add_account(dovecot, mail_user, "IMAPS")
    stalled = claim_account(account_id, "stalled", 300)
    run = FetchRun(mail_account_id=account_id, trigger="scheduler", owner="stalled")
    run.lease_generation = stalled.generation
    db.session.add(run)
    db.session.commit()
    db.session.execute(
        update(MailAccount)
        .where(MailAccount.id == account_id)
        .values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()

    taken = claim_account(account_id, "taker", 300)
    assert taken is not None
    newer = fetch_with_lease(taken, FetchOptions(owner="taker"))
    assert newer.status == FetchStatus.OK, newer.message

    account = db.session.get(MailAccount, account_id)
    late = FetchResult(account_id, FetchStatus.ERROR, "The lease was taken over")
    finish_run(RunState(account, account_id, stalled, run, late, FetchOptions(owner="stalled")))

    assert assert_runs_never_overlap() == 2
    db.session.expire_all()
    old = db.session.get(FetchRun, run.id)
    assert old.status == FetchStatus.ERROR
    assert "taken over by taker" in old.log
    account = db.session.get(MailAccount, account_id)
    assert account.last_status == FetchStatus.OK  # the late end leaves the account alone
    assert account.lease_owner is None
