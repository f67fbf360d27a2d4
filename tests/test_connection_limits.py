"""Connections to one host are limited (MAX_CONNECTIONS_PER_HOST) across every process,
fetches beyond the limit wait and are fetched later, TLS sessions are resumed, and a run that
finds nothing still records what the admin needs (issue 15). Real Dovecot behind a counting
TCP proxy."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from tests.fetching import add_account
from tests.mailgen import make_mail
from tests.scheduling import log_text, start_scheduler, stop_scheduler, wait_for
from tests.servers.dovecot import Dovecot
from tests.servers.fixtures import require_dovecot
from tests.servers.proxy import CountingProxy
from webapp.extensions import db
from webapp.models import Article, FetchRun, MailAccount
from webapp.postmaster.fetch import fetch_account
from webapp.postmaster.hosts import claim_shared_slot, held_shared_slots, host_slots
from webapp.postmaster.lease import Lease, claim_account, make_owner, release_lease
from webapp.postmaster.mailbox import MailboxSettings, open_mailbox
from webapp.postmaster.mailbox.tls import forget_sessions
from webapp.states import FetchStatus

pytestmark = [pytest.mark.dovecot]

ACCOUNTS = 15
LIMIT = 3


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    app_config["MAX_CONNECTIONS_PER_HOST"] = LIMIT
    app_config["MAIL_TIMEOUT"] = 60.0  # held connections wait at the proxy meanwhile
    return app_config


@pytest.fixture
def proxy(dovecot) -> Iterator[CountingProxy]:
    proxy = CountingProxy(dovecot.imaps_port)
    yield proxy
    proxy.close()


def accounts_with_one_mail(dovecot, proxy: CountingProxy, n: int) -> list[int]:
    """n Dovecot users with one message each, as IMAPS accounts reached through the proxy."""
    ids = []
    for i in range(n):
        name = f"limit{i}-{uuid.uuid4().hex[:8]}"
        dovecot.add_user(name, "pw-" + name)
        dovecot.deliver(name, make_mail(subject=f"mail {i}", message_id=f"<{name}@test>"))
        user = type("User", (), {"username": name, "password": "pw-" + name})
        ids.append(add_account(dovecot, user, "IMAPS", port=proxy.port))
    return ids


def mailboxes_left(dovecot, account_ids: list[int]) -> int:
    names = [db.session.get(MailAccount, a).username for a in account_ids]
    return sum(dovecot.message_count(name) for name in names)


def wait_for_every_account_fetched() -> None:
    wait_for(
        lambda: (
            db.session.query(MailAccount).filter(MailAccount.last_status == FetchStatus.OK).count()
            == ACCOUNTS
        ),
        120,
        "every account fetched",
    )


def test_fetches_beyond_the_host_limit_wait_and_are_fetched_later(app, app_ctx, dovecot, proxy):
    ids = accounts_with_one_mail(dovecot, proxy, ACCOUNTS)
    todo = list(ids)
    results = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                account_id = todo.pop()
            with app.app_context():
                result = fetch_account(account_id)
            with lock:
                results.append(result)

    proxy.hold()  # the first connections stay open until we look
    threads = [threading.Thread(target=worker) for _ in range(2 * LIMIT)]
    for thread in threads:
        thread.start()
    try:
        wait_for(
            lambda: proxy.counts()[0] == LIMIT and host_slots.waiting("127.0.0.1") == LIMIT,
            60,
            f"{LIMIT} connections open and {LIMIT} fetches waiting",
        )
        assert proxy.counts()[0] == LIMIT  # the waiting ones opened nothing
    finally:
        proxy.release()
        for thread in threads:
            thread.join(120)

    _, max_open, total = proxy.counts()
    assert max_open <= LIMIT
    assert total == ACCOUNTS
    assert sorted(r.account_id for r in results) == sorted(ids)
    assert {r.status for r in results} == {FetchStatus.OK}
    assert sum(r.fetched for r in results) == ACCOUNTS
    assert db.session.query(Article).count() == ACCOUNTS
    assert mailboxes_left(dovecot, ids) == 0
    waited = [r for r in results if any("for a free connection to 127.0.0.1" in x for x in r.log)]
    assert len(waited) >= LIMIT


def test_scheduler_never_opens_more_than_the_limit_to_one_host(
    app, app_ctx, dovecot, proxy, tmp_path
):
    ids = accounts_with_one_mail(dovecot, proxy, ACCOUNTS)
    proxy.hold()
    proc = start_scheduler(
        app,
        tmp_path / "scheduler.log",
        POSTMASTER_SCHEDULER_WORKERS=str(2 * LIMIT),
        POSTMASTER_MAX_CONNECTIONS_PER_HOST=str(LIMIT),
        POSTMASTER_MAIL_TIMEOUT="60",
    )
    try:
        # Every worker has started a run while the first LIMIT connections are held: the
        # other runs cannot connect before one of those ends, so they wait for a slot.
        wait_for(
            lambda: (
                db.session.query(FetchRun).filter(FetchRun.finished_at.is_(None)).count()
                == 2 * LIMIT
                and proxy.counts()[0] == LIMIT
            ),
            60,
            f"a run started in every worker and {LIMIT} connections open",
        )
        proxy.release()
        wait_for_every_account_fetched()
    finally:
        proxy.release()
        assert stop_scheduler(proc) == 0, log_text(proc)
    _, max_open, _ = proxy.counts()
    assert max_open <= LIMIT
    assert db.session.query(Article).count() == ACCOUNTS
    assert mailboxes_left(dovecot, ids) == 0
    logs = [r.log or "" for r in db.session.query(FetchRun)]
    assert sum("for a free connection to 127.0.0.1" in log for log in logs) >= LIMIT


def test_two_schedulers_together_never_open_more_than_the_limit_to_one_host(
    app, app_ctx, dovecot, proxy, tmp_path
):
    ids = accounts_with_one_mail(dovecot, proxy, ACCOUNTS)
    proxy.hold()
    env = dict(
        POSTMASTER_SCHEDULER_WORKERS=str(2 * LIMIT),
        POSTMASTER_MAX_CONNECTIONS_PER_HOST=str(LIMIT),
        POSTMASTER_MAIL_TIMEOUT="60",
    )
    procs = [start_scheduler(app, tmp_path / f"s{i}.log", **env) for i in range(2)]

    def running_owners() -> set[str]:
        unfinished = db.session.query(FetchRun).filter(FetchRun.finished_at.is_(None))
        return {run.owner for run in unfinished}

    try:
        # Both processes run 2 * LIMIT fetches while the first LIMIT connections are held:
        # each process alone would let LIMIT of its own connect.
        wait_for(
            lambda: (
                db.session.query(FetchRun).filter(FetchRun.finished_at.is_(None)).count()
                == 4 * LIMIT
                and len(running_owners()) == 2
                and proxy.counts()[0] == LIMIT
            ),
            90,
            f"runs in both schedulers and {LIMIT} connections open",
        )
        proxy.release()
        wait_for_every_account_fetched()
    finally:
        proxy.release()
        codes = [stop_scheduler(proc) for proc in procs]
        assert codes == [0, 0], [log_text(proc) for proc in procs]
    _, max_open, total = proxy.counts()
    assert max_open <= LIMIT
    assert total == ACCOUNTS
    assert db.session.query(Article).count() == ACCOUNTS
    assert mailboxes_left(dovecot, ids) == 0
    assert held_shared_slots("127.0.0.1") == 0


def lease_of(dovecot, owner: str) -> Lease:
    """The fetch lease of a new account that is never connected to (the slot tests need only
    its lease)."""
    user = type("User", (), {"username": f"slot-{uuid.uuid4().hex[:8]}", "password": "pw"})
    lease = claim_account(add_account(dovecot, user, host="Mail.Example.test"), owner, 300)
    assert lease is not None
    return lease


OTHER_NODE = "scheduler@other-node.test:4242:abcdef"  # a process on another host: alive


def test_a_slot_held_by_another_process_is_not_taken_until_its_fetch_ends(app_ctx, dovecot):
    holder = lease_of(dovecot, OTHER_NODE)
    assert claim_shared_slot("mail.example.test", 1, holder) == 0
    waiter = lease_of(dovecot, make_owner("cli"))
    assert claim_shared_slot("MAIL.EXAMPLE.TEST", 1, waiter) is None  # one host, any case
    assert held_shared_slots("mail.example.test") == 1
    release_lease(holder, None)
    assert claim_shared_slot("mail.example.test", 1, waiter) == 0


def test_a_slot_whose_fetch_lease_expired_is_taken(app_ctx, dovecot):
    holder = lease_of(dovecot, OTHER_NODE)
    assert claim_shared_slot("mail.example.test", 1, holder) == 0
    account = db.session.get(MailAccount, holder.account_id)
    account.lease_expires_at = account.lease_expires_at.replace(year=2000)
    db.session.commit()
    assert claim_shared_slot("mail.example.test", 1, lease_of(dovecot, make_owner("cli"))) == 0


def test_a_slot_of_a_killed_process_is_taken_at_once(app_ctx, dovecot):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    owner = f"scheduler@{socket.gethostname()}:{int(dead.stdout)}:dead01"
    holder = lease_of(dovecot, owner)  # its lease is live for five minutes, but nobody can renew it
    assert claim_shared_slot("mail.example.test", 1, holder) == 0
    assert claim_shared_slot("mail.example.test", 1, lease_of(dovecot, make_owner("cli"))) == 0


def test_a_higher_limit_adds_slots(app_ctx, dovecot):
    leases = [lease_of(dovecot, OTHER_NODE) for _ in range(3)]
    assert claim_shared_slot("mail.example.test", 1, leases[0]) == 0
    assert claim_shared_slot("mail.example.test", 1, leases[1]) is None
    assert claim_shared_slot("mail.example.test", 3, leases[1]) == 1
    assert claim_shared_slot("mail.example.test", 3, leases[2]) == 2


def test_a_fetch_waits_for_a_slot_held_by_another_process(app, app_ctx, dovecot, mail_user):
    app.config["MAX_CONNECTIONS_PER_HOST"] = 1
    dovecot.deliver(mail_user.username, make_mail(subject="waits", message_id="<waits@test>"))
    account_id = add_account(dovecot, mail_user)
    holder = lease_of(dovecot, OTHER_NODE)
    assert claim_shared_slot("127.0.0.1", 1, holder) == 0
    results = []

    def fetch() -> None:
        with app.app_context():
            results.append(fetch_account(account_id))

    thread = threading.Thread(target=fetch)
    thread.start()
    try:
        wait_for(
            lambda: db.session.query(FetchRun).filter_by(mail_account_id=account_id).count() == 1,
            30,
            "the fetch started",
        )
        db.session.expire_all()
        assert dovecot.message_count(mail_user.username) == 1  # not fetched while it waits
        assert not results
    finally:
        release_lease(holder, None)
        thread.join(60)
    assert [r.status for r in results] == [FetchStatus.OK]
    assert results[0].fetched == 1
    assert any("for a free connection to 127.0.0.1" in line for line in results[0].log)
    assert held_shared_slots("127.0.0.1") == 0


def test_a_run_that_finds_nothing_records_its_time_and_status(app, app_ctx, dovecot, mail_user):
    account_id = add_account(dovecot, mail_user)
    for _ in range(2):
        assert fetch_account(account_id).status == FetchStatus.OK
    db.session.expire_all()
    account = db.session.get(MailAccount, account_id)
    runs = db.session.query(FetchRun).filter_by(mail_account_id=account_id).all()
    assert account.last_run_at is not None
    assert account.last_status == FetchStatus.OK
    assert account.last_message.startswith("ok: fetched 0")
    assert account.next_run_at > account.last_run_at
    assert [(r.status, r.fetched) for r in runs] == [(FetchStatus.OK, 0)] * 2
    assert all(r.finished_at is not None and "0 messages on the server" in r.log for r in runs)


@pytest.fixture(scope="module")
def resuming_dovecot() -> Iterator[Dovecot]:
    """A Dovecot whose login processes are shared, so TLS sessions can be resumed."""
    require_dovecot()
    server = Dovecot(shared_login=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_the_second_connection_resumes_the_tls_session(resuming_dovecot, protocol):
    name = f"resume-{protocol}-{uuid.uuid4().hex[:8]}"
    resuming_dovecot.add_user(name, "pw")
    port = resuming_dovecot.imaps_port if protocol == "imap" else resuming_dovecot.pop3s_port
    settings = MailboxSettings(
        protocol=protocol,
        security="ssl",
        host="127.0.0.1",
        port=port,
        username=name,
        password="pw",
        ca_file=resuming_dovecot.ca_file,
        timeout=30,
    )
    forget_sessions()
    reused = []
    for _ in range(2):
        with open_mailbox(settings) as mailbox:
            assert mailbox.message_count() == 0
            reused.append(mailbox.tls_session_reused)
    assert reused == [False, True]


def test_fetch_log_says_when_the_tls_session_was_resumed(app, app_ctx, resuming_dovecot):
    app.config["MAIL_CA_FILE"] = resuming_dovecot.ca_file
    name = f"resume-fetch-{uuid.uuid4().hex[:8]}"
    resuming_dovecot.add_user(name, "pw")
    user = type("User", (), {"username": name, "password": "pw"})
    account_id = add_account(resuming_dovecot, user, "IMAPS")
    forget_sessions()
    logs = [fetch_account(account_id).log for _ in range(2)]
    assert "TLS session resumed" not in logs[0]
    assert "TLS session resumed" in logs[1]
