"""Two scheduler processes against one PostgreSQL database and the test Dovecot: every
message exactly once, never one account in two fetches at once, and a SIGKILLed process's
accounts are taken over at once (its process is gone). Runs on PostgreSQL in both test passes."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.conftest import require
from tests.fetching import add_account, stored_message_ids
from tests.mailgen import make_mail
from tests.scheduling import (
    assert_runs_never_overlap,
    log_text,
    start_scheduler,
    stop_scheduler,
    wait_for,
)
from webapp.extensions import db
from webapp.models import FetchRun, MailAccount, SchedulerNode
from webapp.settings.store import set_setting

pytestmark = [pytest.mark.dovecot, pytest.mark.postgres, pytest.mark.slow]

ACCOUNTS = 20
MESSAGES = 100
LEASE_SECONDS = 3


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request, database_server_url, tmp_path):
    """PostgreSQL in both passes (row locks are the point), and also one SQLite file: the
    same code must stay correct for several processes on one machine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'multi.sqlite'}"
        return
    server = database_server_url or os.environ.get(
        "POSTMASTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"
    )
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    name = f"pm_multi_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as e:
        admin.dispose()
        require(False, f"the multi-scheduler test needs PostgreSQL at {server}: {e}")
    yield f"{server}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    app_config["LEASE_SECONDS"] = LEASE_SECONDS
    return app_config


def setup_mailboxes(dovecot) -> list[str]:
    """ACCOUNTS fresh users with MESSAGES mails each, and one IMAPS/POP3S account per user."""
    ids: list[str] = []
    for n in range(ACCOUNTS):
        username = f"multi{n}-{uuid.uuid4().hex[:6]}"
        password = uuid.uuid4().hex
        dovecot.add_user(username, password)
        mine = [f"<m{n}-{i}-{uuid.uuid4().hex[:6]}@test>" for i in range(MESSAGES)]
        dovecot.deliver_many(username, (make_mail(subject=m, message_id=m) for m in mine))
        ids += mine

        class User:  # what add_account needs
            pass

        user = User()
        user.username, user.password = username, password
        add_account(dovecot, user, "IMAPS" if n % 2 == 0 else "POP3S")
    return ids


def owner_of(pid: int) -> str:
    return db.session.query(SchedulerNode).filter_by(pid=pid).one().owner


def node_pids() -> set[int]:
    return {n.pid for n in db.session.query(SchedulerNode)}


def test_two_schedulers_share_the_work_and_survive_a_sigkill(app, app_ctx, dovecot, tmp_path):
    ids = setup_mailboxes(dovecot)
    set_setting("FetchIntervalMinutes", "1")
    db.session.commit()
    env = dict(POSTMASTER_FETCH_BATCH_SIZE="10", POSTMASTER_SCHEDULER_WORKERS="4")
    started = time.monotonic()
    # The victim kills itself (SIGKILL) right after its third batch commit: it is then provably
    # in the middle of fetching an account, holding that account's lease, whatever the timing.
    victim = start_scheduler(app, tmp_path / "a.log", POSTMASTER_CRASH_AT="after_commit:3", **env)
    survivor = start_scheduler(app, tmp_path / "b.log", via_flask=True, **env)
    try:
        victim.wait(timeout=120)
        assert victim.returncode == -signal.SIGKILL, log_text(victim)
        db.session.expire_all()
        victim_owner = owner_of(victim.pid)  # its heartbeat row outlives it
        orphaned = {a.id for a in db.session.query(MailAccount).filter_by(lease_owner=victim_owner)}
        assert orphaned, "the victim died holding no lease"
        wait_for(lambda: survivor.pid in node_pids(), 30, "the survivor's heartbeat")
        survivor_owner = owner_of(survivor.pid)

        # The survivor takes the orphans over (their holder is gone) and finishes everything.
        wait_for(lambda: len(stored_message_ids()) >= len(ids), 240, "every message stored")
        wait_for(
            lambda: (
                db.session.query(MailAccount).filter(MailAccount.lease_owner.isnot(None)).count()
                == 0
            ),
            60,
            "all leases released",
        )
    finally:
        if victim.poll() is None:
            stop_scheduler(victim, signal.SIGKILL)
        code = stop_scheduler(survivor)
    elapsed = time.monotonic() - started
    assert code == 0, log_text(survivor)

    db.session.expire_all()
    stored = stored_message_ids()
    assert len(stored) == len(set(stored)), "a message was stored twice"
    assert sorted(stored) == sorted(ids), "a message was lost"
    for account in db.session.query(MailAccount):
        assert dovecot.message_count(account.username) == 0
    checked = assert_runs_never_overlap()  # the victim's runs were ended by the takeover

    runs = db.session.query(FetchRun).all()
    for account_id in orphaned:
        takeover = [
            r for r in runs if r.mail_account_id == account_id and r.owner == survivor_owner
        ]
        assert takeover, f"account {account_id} of the killed scheduler was not taken over"
    print(
        f"\n{len(ids)} messages, {ACCOUNTS} accounts, {checked} runs, "
        f"{len(orphaned)} taken over after SIGKILL, {elapsed:.1f}s"
    )
