"""Push (Fetch on arrival, IMAP IDLE) with real scheduler processes and the real test Dovecot:
mail delivered while the connection idles becomes a ticket without waiting for the interval,
and a server that closes the connection, a Dovecot restart, an expiring OAuth2 token or a
killed scheduler all end with every mail stored exactly once."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.fetching import add_account, stored_message_ids
from tests.mailgen import make_mail
from tests.oauth_helpers import make_profile
from tests.scheduling import log_text, start_scheduler, stop_scheduler, wait_for
from tests.servers.dovecot import Dovecot
from tests.servers.fixtures import MailUser
from webapp.extensions import db
from webapp.models import FetchRun, MailAccount

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

HOURS = 12 * 60  # the accounts' fetch interval: only push can fetch within a test


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    app_config["LEASE_SECONDS"] = 5
    return app_config


def push_env(**extra: str) -> dict[str, str]:
    env = dict(POSTMASTER_PUSH_LEASE_SECONDS="5", POSTMASTER_PUSH_BACKOFF_MAX_SECONDS="2")
    env.update(extra)
    return env


def new_user(server: Dovecot, prefix: str = "push") -> MailUser:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    server.add_user(name, "pw-" + name)
    return MailUser(name, "pw-" + name, server)


def deliver(user: MailUser, prefix: str, n: int = 1) -> list[str]:
    ids = [f"<{prefix}-{i}-{uuid.uuid4().hex[:6]}@test>" for i in range(n)]
    user.server.deliver_many(
        user.username, (make_mail(subject=f"{prefix} {i}", message_id=m) for i, m in enumerate(ids))
    )
    return ids


def account(account_id: int) -> MailAccount:
    found = db.session.get(MailAccount, account_id)
    assert found is not None
    return found


def connected(account_id: int) -> bool:
    a = account(account_id)
    return a.push_state == "connected" and a.push_owner is not None


def push_runs(account_id: int) -> int:
    return db.session.query(FetchRun).filter_by(mail_account_id=account_id, trigger="push").count()


def stored(ids: list[str]) -> bool:
    return set(ids) <= set(stored_message_ids())


def assert_exactly_once(ids: list[str]) -> None:
    db.session.rollback()
    got = stored_message_ids()
    assert sorted(got) == sorted(ids)


def server_empty(user: MailUser) -> bool:
    try:
        return user.server.message_count(user.username) == 0
    except FileNotFoundError:  # Dovecot expunged a file while it was listed
        return False


def first_run_done(account_id: int) -> bool:
    return db.session.query(FetchRun).filter_by(mail_account_id=account_id).count() > 0 and all(
        r.finished_at is not None
        for r in db.session.query(FetchRun).filter_by(mail_account_id=account_id)
    )


def test_mail_delivered_while_idle_becomes_a_ticket_without_waiting_for_the_interval(
    app, app_ctx, admin_client, dovecot, tmp_path
):
    user = new_user(dovecot)
    account_id = add_account(dovecot, user, "IMAPS", fetch_interval_minutes=HOURS, push=True)
    # IDLE re-issued every second (RFC 2177's 29 minutes, shortened): the rounds below span
    # many re-issues on one connection.
    env = push_env(POSTMASTER_PUSH_IDLE_SECONDS="1")
    proc = start_scheduler(app, tmp_path / "scheduler.log", **env)
    try:
        wait_for(lambda: connected(account_id) and first_run_done(account_id), 60, "idling")
        page = admin_client.get(f"/mail-accounts/{account_id}").get_data(as_text=True)
        assert "push: connected since" in page
        assert dovecot.imap_sessions(user.username) == 1
        since = account(account_id).push_since

        ids: list[str] = []
        for round_ in range(3):
            ids += deliver(user, f"one{round_}")
            wait_for(lambda ids=ids: stored(ids), 60, "the pushed mail", step=0.05)
        assert push_runs(account_id) >= 3, log_text(proc)
        assert account(account_id).push_since == since  # re-issued, never reconnected

        # A burst: every message once, however many runs the debounce made of it.
        ids += deliver(user, "burst", 50)
        wait_for(lambda: stored(ids), 60, "the burst")
        assert_exactly_once(ids)
        wait_for(lambda: server_empty(user), 60, "the deletes on the server")
    finally:
        code = stop_scheduler(proc)
    assert code == 0, log_text(proc)
    db.session.expire_all()
    assert account(account_id).push_owner is None  # a clean stop gives the connection back


def test_server_closing_the_connection_reconnects_and_stores_every_mail_once(
    app, app_ctx, dovecot, tmp_path
):
    user = new_user(dovecot, "kick")
    account_id = add_account(dovecot, user, "IMAPS", fetch_interval_minutes=HOURS, push=True)
    proc = start_scheduler(app, tmp_path / "scheduler.log", **push_env())
    try:
        wait_for(lambda: connected(account_id) and first_run_done(account_id), 60, "idling")
        ids: list[str] = []
        for round_ in range(3):
            since = account(account_id).push_since
            dovecot.kick(user.username)  # the server closes the IDLE connection
            ids += deliver(user, f"kicked{round_}", 3)
            wait_for(
                lambda since=since: (
                    connected(account_id) and account(account_id).push_since != since
                ),
                60,
                "the reconnect",
            )
            wait_for(lambda ids=ids: stored(ids), 60, "the mail delivered around the kick")
        ids += deliver(user, "after")
        wait_for(lambda: stored(ids), 60, "mail after the reconnects")
        assert_exactly_once(ids)
    finally:
        code = stop_scheduler(proc)
    assert code == 0, log_text(proc)


def test_a_restart_of_dovecot_reconnects_and_stores_every_mail_once(app, app_ctx, tmp_path):
    with Dovecot() as server:  # its own Dovecot: the session's one stays up for the others
        user = new_user(server, "restart")
        account_id = add_account(
            server, user, "IMAP", port=server.imap_port, fetch_interval_minutes=HOURS, push=True
        )
        proc = start_scheduler(app, tmp_path / "scheduler.log", **push_env())
        try:
            wait_for(lambda: connected(account_id) and first_run_done(account_id), 60, "idling")
            ids = deliver(user, "before")
            wait_for(lambda: stored(ids), 60, "mail before the restart")
            since = account(account_id).push_since
            server.restart()
            ids += deliver(user, "while-down", 5)
            wait_for(
                lambda: connected(account_id) and account(account_id).push_since != since,
                90,
                "the reconnect after the restart",
            )
            ids += deliver(user, "after", 5)
            wait_for(lambda: stored(ids), 60, "every mail of the restart")
            assert_exactly_once(ids)
        finally:
            code = stop_scheduler(proc)
        assert code == 0, log_text(proc)


def test_sigkill_of_the_scheduler_while_idling_loses_and_duplicates_nothing(
    app, app_ctx, dovecot, tmp_path
):
    user = new_user(dovecot, "killed")
    account_id = add_account(dovecot, user, "IMAPS", fetch_interval_minutes=HOURS, push=True)
    first = start_scheduler(app, tmp_path / "first.log", **push_env())
    second = None
    try:
        wait_for(lambda: connected(account_id) and first_run_done(account_id), 60, "idling")
        ids = deliver(user, "before", 3)
        wait_for(lambda: stored(ids), 60, "mail before the kill")
        stop_scheduler(first, signal.SIGKILL)
        ids += deliver(user, "orphaned", 5)  # nobody idles now
        second = start_scheduler(app, tmp_path / "second.log", **push_env())
        wait_for(
            lambda: connected(account_id) and owner_pid(account_id) == second.pid,
            60,
            "the second scheduler's connection",
        )
        ids += deliver(user, "after", 3)
        wait_for(lambda: stored(ids), 60, "every mail")
        assert_exactly_once(ids)
    finally:
        if first.poll() is None:
            stop_scheduler(first, signal.SIGKILL)
        if second is not None:
            code = stop_scheduler(second)
            assert code == 0, log_text(second)


def owner_pid(account_id: int) -> int | None:
    owner = account(account_id).push_owner
    return int(owner.rsplit(":", 2)[1]) if owner else None


def test_two_schedulers_never_both_hold_idle_for_one_account(app, app_ctx, dovecot, tmp_path):
    users = [new_user(dovecot, f"two{i}") for i in range(4)]
    ids = [add_account(dovecot, u, "IMAPS", fetch_interval_minutes=HOURS, push=True) for u in users]
    procs = [start_scheduler(app, tmp_path / f"s{i}.log", **push_env()) for i in range(2)]
    try:
        wait_for(
            lambda: all(connected(i) and first_run_done(i) for i in ids), 60, "every account idling"
        )
        pids = {p.pid for p in procs}
        for _ in range(10):  # a few seconds of lease renewals and polls of both processes
            db.session.rollback()
            db.session.expire_all()
            for account_id, user in zip(ids, users, strict=True):
                assert owner_pid(account_id) in pids
                assert dovecot.imap_sessions(user.username) == 1
            time.sleep(0.3)
        mail = [m for u in users for m in deliver(u, "two", 2)]
        wait_for(lambda: stored(mail), 60, "mail of every account")
        assert_exactly_once(mail)
    finally:
        codes = [stop_scheduler(p) for p in procs]
    assert codes == [0, 0], [log_text(p) for p in procs]


def test_an_account_switched_off_made_invalid_or_deleted_drops_its_connection(
    app, app_ctx, dovecot, tmp_path
):
    user = new_user(dovecot, "off")
    account_id = add_account(dovecot, user, "IMAPS", fetch_interval_minutes=HOURS, push=True)
    proc = start_scheduler(app, tmp_path / "scheduler.log", **push_env())

    def dropped() -> bool:
        a = db.session.get(MailAccount, account_id)
        return (a is None or a.push_owner is None) and dovecot.imap_sessions(user.username) == 0

    def idling() -> bool:
        return connected(account_id) and dovecot.imap_sessions(user.username) == 1

    try:
        wait_for(lambda: idling() and first_run_done(account_id), 60, "idling")
        account(account_id).push = False
        db.session.commit()
        wait_for(dropped, 30, "the connection of the account switched off")
        account(account_id).push = True
        db.session.commit()
        wait_for(idling, 30, "the connection of the account switched on again")
        account(account_id).validity = "invalid"
        db.session.commit()
        wait_for(dropped, 30, "the connection of the invalid account")
        account(account_id).validity = "valid"
        db.session.commit()
        wait_for(idling, 30, "the connection of the valid account")
        db.session.delete(account(account_id))
        db.session.commit()
        wait_for(dropped, 30, "the connection of the deleted account")
    finally:
        code = stop_scheduler(proc)
    assert code == 0, log_text(proc)


@pytest.fixture
def idp_redirect_uris() -> list[str]:
    return ["http://localhost/oauth2/callback"]


def test_an_expiring_oauth2_token_reconnects_with_a_fresh_one_and_loses_nothing(
    app, app_ctx, admin_client, idp, ms_tenant, dovecot, tmp_path
):
    from tests.test_oauth_fetch import link, new_mailbox

    dovecot.trust_jwt_key(idp.kid, idp.public_key_pem)
    profile_id = make_profile(idp, ms_tenant)
    idp.access_token_lifetime = 20  # the connection must renew it every few seconds
    username = new_mailbox(idp, ms_tenant, dovecot, "pushed")
    account_id = link(
        admin_client, idp, dovecot, profile_id, username, push="y", fetch_interval_minutes="720"
    )
    assert account(account_id).push is True

    def refreshes() -> int:
        return sum(1 for r in idp.token_requests if r["grant_type"] == "refresh_token")

    proc = start_scheduler(app, tmp_path / "scheduler.log", **push_env())
    try:
        wait_for(lambda: connected(account_id) and first_run_done(account_id), 60, "idling")
        ids: list[str] = []
        for round_ in range(3):
            before = refreshes()
            wait_for(lambda before=before: refreshes() > before, 60, "a reconnect with a new token")
            ids += deliver(MailUser(username, "", dovecot), f"token{round_}", 2)
            wait_for(lambda ids=ids: stored(ids), 60, "the mail of this token")
        assert_exactly_once(ids)
        assert push_runs(account_id) >= 1
        token = account(account_id).oauth2_token
        assert token.access_token not in log_text(proc)
        assert token.refresh_token not in log_text(proc)
    finally:
        code = stop_scheduler(proc)
    assert code == 0, log_text(proc)
