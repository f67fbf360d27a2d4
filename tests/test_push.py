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
    return (
        db.session.query(FetchRun).filter_by(mail_account_id=account_id, trigger="push").count()
    )


def stored(ids: list[str]) -> bool:
    return set(ids) <= set(stored_message_ids())


def assert_exactly_once(ids: list[str]) -> None:
    db.session.rollback()
    got = stored_message_ids()
    assert sorted(got) == sorted(ids)


def first_run_done(account_id: int) -> bool:
    return db.session.query(FetchRun).filter_by(mail_account_id=account_id).count() > 0 and all(
        r.finished_at is not None
        for r in db.session.query(FetchRun).filter_by(mail_account_id=account_id)
    )


def test_mail_delivered_while_idle_becomes_a_ticket_without_waiting_for_the_interval(
    app, app_ctx, admin_client, dovecot, tmp_path
):
    user = new_user(dovecot)
    account_id = add_account(dovecot, user, "IMAPS", fetch_interval_minutes=HOURS)
    proc = start_scheduler(app, tmp_path / "scheduler.log", **push_env())
    try:
        wait_for(lambda: connected(account_id) and first_run_done(account_id), 60, "idling")
        page = admin_client.get(f"/mail-accounts/{account_id}").get_data(as_text=True)
        assert "push: connected since" in page
        assert dovecot.imap_sessions(user.username) == 1

        ids = deliver(user, "one")
        wait_for(lambda: stored(ids), 60, "the pushed mail", step=0.05)
        assert push_runs(account_id) >= 1, log_text(proc)

        # A burst: every message once, however many runs the debounce made of it.
        ids += deliver(user, "burst", 50)
        wait_for(lambda: stored(ids), 60, "the burst")
        assert_exactly_once(ids)
        assert dovecot.message_count(user.username) == 0
    finally:
        code = stop_scheduler(proc)
    assert code == 0, log_text(proc)
    db.session.expire_all()
    assert account(account_id).push_owner is None  # a clean stop gives the connection back
