"""The scheduler as real processes against the test Dovecot: due accounts are fetched, web UI
changes apply without a restart, SIGTERM stops cleanly without loss or duplicates."""

from __future__ import annotations

import socket
import threading
import time

import pytest

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
from webapp.models import FetchRun, MailAccount, SchedulerNode, utcnow
from webapp.postmaster.requests import request_fetch

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    app_config["LEASE_SECONDS"] = 5
    return app_config


def load(mail_user, prefix: str, n: int) -> list[str]:
    ids = [f"<{prefix}-{i}@test>" for i in range(n)]
    mail_user.server.deliver_many(
        mail_user.username,
        (make_mail(subject=f"{prefix} {i}", message_id=m) for i, m in enumerate(ids)),
    )
    return ids


def runs_of(account_id: int) -> list[FetchRun]:
    return db.session.query(FetchRun).filter_by(mail_account_id=account_id).all()


def finished_runs(account_id: int) -> int:
    return sum(1 for r in runs_of(account_id) if r.finished_at is not None)


def test_scheduler_fetches_and_follows_web_changes(app, app_ctx, dovecot, tmp_path):
    users = []
    for _ in range(3):
        from tests.servers.fixtures import MailUser

        name = f"sched-{len(users)}-{time.time_ns() % 10**8}"
        dovecot.add_user(name, "pw-" + name)
        users.append(MailUser(name, "pw-" + name, dovecot))
    ids = load(users[0], "a", 5) + load(users[1], "b", 5)
    first = add_account(dovecot, users[0], "IMAPS")
    second = add_account(dovecot, users[1], "POP3S")

    proc = start_scheduler(app, tmp_path / "scheduler.log")
    try:
        # New accounts have next_run_at NULL: due at once, fetched without being asked.
        wait_for(lambda: finished_runs(first) and finished_runs(second), 60, "the first runs")
        assert sorted(stored_message_ids()) == sorted(ids), log_text(proc)
        node = db.session.query(SchedulerNode).one()
        assert node.pid == proc.pid
        for account_id in (first, second):
            account = db.session.get(MailAccount, account_id)
            assert account.lease_owner is None and account.last_status == "ok"
            # Next run one interval (10 minutes) ahead, give or take the jitter (<= 30 s).
            ahead = (account.next_run_at - account.last_run_at).total_seconds()
            assert 570 <= ahead <= 630, ahead
            run = runs_of(account_id)[0]
            assert run.trigger == "scheduler" and run.owner == node.owner

        # Added in the web UI while the scheduler runs: fetched without a restart.
        ids += load(users[2], "c", 3)
        third = add_account(dovecot, users[2], "IMAPS")
        wait_for(lambda: finished_runs(third) == 1, 60, "the new account's run")

        # Fetch now: due at once although its next run is 10 minutes away.
        ids += load(users[0], "a2", 2)
        request_fetch(db.session.get(MailAccount, first))
        wait_for(lambda: finished_runs(first) == 2, 60, "the requested run")
        assert sorted(r.trigger for r in runs_of(first)) == ["button", "scheduler"]
        assert db.session.get(MailAccount, first).fetch_requested_at is None

        # Invalidated: even a pending request is not fetched any more.
        account = db.session.get(MailAccount, second)
        account.validity = "invalid"
        db.session.commit()
        request_fetch(account)
        # Proof that the scheduler looked: a request for a valid account made after it is
        # served, and a claim that saw this request also saw the invalid one's.
        request_fetch(db.session.get(MailAccount, first))
        wait_for(lambda: finished_runs(first) == 3, 60, "the valid account's requested run")
        assert finished_runs(second) == 1
        assert sorted(stored_message_ids()) == sorted(ids)
    finally:
        code = stop_scheduler(proc)
    assert code == 0, log_text(proc)
    db.session.expire_all()
    assert db.session.query(SchedulerNode).count() == 0  # a clean exit removes its heartbeat
    assert_runs_never_overlap()


def test_sigterm_during_a_fetch_exits_promptly_without_loss(
    app, app_ctx, dovecot, mail_user, tmp_path
):
    ids = load(mail_user, "term", 400)
    account_id = add_account(dovecot, mail_user, "IMAPS")
    proc = start_scheduler(
        app, tmp_path / "scheduler.log", via_flask=True, POSTMASTER_FETCH_BATCH_SIZE="10"
    )
    try:
        wait_for(lambda: len(stored_message_ids()) >= 20, 60, "the first batches", step=0.05)
    finally:
        code = stop_scheduler(proc)
    assert code == 0, log_text(proc)
    # It stopped at the fetch's next step, not by giving up on it after the read timeout
    # (stop_scheduler fails if it takes more than 30 s at all).
    assert "did not stop in time" not in log_text(proc)
    db.session.expire_all()
    account = db.session.get(MailAccount, account_id)
    assert account.lease_owner is None, "the lease was not released"
    stored = stored_message_ids()
    assert len(stored) < len(ids), "the fetch finished before the signal; nothing was tested"
    assert len(stored) == len(set(stored))
    run = runs_of(account_id)[0]
    assert run.status == "warning" and run.finished_at is not None, run.log
    assert "stopped" in (run.error or "")
    # The rest comes with the next run (asked for now rather than in 10 minutes): every
    # message exactly once, none left on the server.
    request_fetch(account)
    proc = start_scheduler(app, tmp_path / "scheduler2.log")
    try:
        wait_for(lambda: finished_runs(account_id) == 2, 60, "the second run")
    finally:
        assert stop_scheduler(proc) == 0, log_text(proc)
    db.session.expire_all()
    assert sorted(stored_message_ids()) == sorted(ids)
    assert dovecot.message_count(mail_user.username) == 0
    assert_runs_never_overlap()


@pytest.fixture
def trickling_server():
    """A TCP server that sends one byte a second and never a whole IMAP greeting line: a read
    never times out, so the fetch thread is stuck for good (threads cannot be killed)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()
    clients: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                clients.append(server.accept()[0])
            except TimeoutError:
                pass
            for client in clients:
                try:
                    client.sendall(b"*")
                except OSError:
                    pass
            stop.wait(0.8)
        for client in clients:
            client.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], clients
    stop.set()
    thread.join(5)
    server.close()


def test_sigterm_with_a_fetch_stuck_in_a_read_exits_within_the_read_timeout(
    app, app_ctx, trickling_server, tmp_path
):
    port, clients = trickling_server
    account = MailAccount(
        type="IMAP", host="127.0.0.1", port=port, username="stuck", password="pw",
        validity="valid", created_by="test", changed_by="test",
    )  # fmt: skip
    db.session.add(account)
    db.session.commit()
    proc = start_scheduler(app, tmp_path / "scheduler.log", POSTMASTER_MAIL_TIMEOUT="3")
    try:
        wait_for(lambda: runs_of(account.id), 60, "the fetch to start")
        wait_for(lambda: bool(clients), 60, "the fetch to connect and wait for the greeting")
    finally:
        started = time.monotonic()
        code = stop_scheduler(proc)
        took = time.monotonic() - started
    assert code == 0, log_text(proc)
    # The read never times out (a byte a second): without the give-up after MAIL_TIMEOUT (3 s)
    # it would never exit. The bound is generous so that load cannot break it.
    assert took < 3 + 20, f"took {took:.1f}s"
    assert "did not stop in time; releasing their leases" in log_text(proc)
    db.session.expire_all()
    account = db.session.get(MailAccount, account.id)
    assert account.lease_owner is None  # another scheduler may take it at once
    assert account.next_run_at is not None and account.next_run_at <= utcnow()
