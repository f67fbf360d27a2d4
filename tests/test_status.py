"""What needs attention (page and `status` CLI), and the Fetch now state in the accounts list."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from scheduler import jobs
from webapp.extensions import db
from webapp.models import FetchRun, MailAccount, OAuth2Profile, SchedulerNode, utcnow
from webapp.postmaster.requests import request_fetch
from webapp.status.service import account_fetch_state, scheduler_alive


def make_account(n: int = 1, **fields) -> MailAccount:
    values = dict(
        type="IMAPS", host="mail.example.test", username=f"team{n}", password="pw",
        validity="valid", created_by="test", changed_by="test",
    )  # fmt: skip
    values.update(fields)
    account = MailAccount(**values)
    db.session.add(account)
    db.session.commit()
    return account


def add_run(account: MailAccount, status: str = "ok", **fields) -> FetchRun:
    now = utcnow()
    run = FetchRun(
        mail_account_id=account.id, trigger="button", status=status, started_at=now,
        finished_at=now, **fields,
    )  # fmt: skip
    db.session.add(run)
    db.session.commit()
    return run


def beat(owner: str = "scheduler@test", age: timedelta = timedelta(0)) -> None:
    jobs.heartbeat(owner, utcnow())
    node = db.session.get(SchedulerNode, owner)
    node.last_seen_at = utcnow() - age
    db.session.commit()


def test_fetch_states(app, app_ctx):
    account = make_account()
    assert account_fetch_state(account) == "never fetched"
    request_fetch(account)
    assert account_fetch_state(account) == "queued"
    account.lease_owner = "scheduler@x"
    account.lease_expires_at = utcnow() + timedelta(minutes=1)
    db.session.commit()
    assert account_fetch_state(account) == "running"
    account.lease_owner = account.lease_expires_at = account.fetch_requested_at = None
    add_run(account, new_tickets=3)
    assert account_fetch_state(account) == "done: 3 new tickets"
    add_run(account, new_tickets=1, follow_ups=2)
    assert account_fetch_state(account) == "done: 1 new ticket, 2 follow-ups"
    add_run(account, "error", error="login failed")
    assert account_fetch_state(account) == "error: login failed"


def test_fetch_now_queues_and_the_row_polls_until_done(app, admin_client):
    with app.app_context():
        account_id = make_account().id
    response = admin_client.post(f"/mail-accounts/{account_id}/fetch")
    assert response.status_code == 302
    with app.app_context():
        # The request only marked the account due: web workers never fetch.
        assert db.session.get(MailAccount, account_id).fetch_requested_at is not None
        assert db.session.query(FetchRun).count() == 0
    page = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert ">queued<" in page and 'data-pending="1"' in page
    # No full reload: static/account_state.js polls the JSON endpoint while it is pending.
    assert 'http-equiv="refresh"' not in page and "account_state.js" in page
    assert "No scheduler is alive" in page and "python -m scheduler" in page
    state = admin_client.get(f"/mail-accounts/state.json?id={account_id}").get_json()
    assert state["accounts"][0]["badge"] == "queued" and state["accounts"][0]["pending"]

    with app.app_context():
        beat()
        account = db.session.get(MailAccount, account_id)
        account.fetch_requested_at = None
        add_run(account, new_tickets=2)
    page = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert ">ok<" in page and ">2 new tickets<" in page and 'data-pending="1"' not in page
    assert "No scheduler is alive" not in page
    state = admin_client.get(f"/mail-accounts/state.json?id={account_id}").get_json()
    assert state["accounts"][0]["text"] == "2 new tickets" and not state["accounts"][0]["pending"]


def test_scheduler_alive_follows_the_heartbeat(app, app_ctx):
    assert not scheduler_alive()
    beat(age=timedelta(seconds=app.config["HEARTBEAT_STALE_SECONDS"] + 5))
    assert not scheduler_alive()
    beat("scheduler@other")
    assert scheduler_alive()


def status_json(runner) -> tuple[int, dict]:
    result = runner.invoke(args=["status", "--json"])
    return result.exit_code, json.loads(result.output)


def test_status_cli_is_ok_when_nothing_needs_attention(app, runner):
    with app.app_context():
        make_account(last_status="ok")
        beat()
    result = runner.invoke(args=["status"])
    assert result.exit_code == 0, result.output
    assert "OK: nothing needs attention" in result.output
    code, report = status_json(runner)
    assert code == 0 and report["ok"] is True
    assert report["schedulers"][0]["alive"] is True
    assert report["accounts"][0]["state"] == "never fetched"


@pytest.mark.parametrize(
    "problem, kind",
    [
        ("failing", "account_error"),
        ("reauth", "reauth"),
        ("no_scheduler", "scheduler"),
        ("stale", "scheduler"),
        ("secret", "secret_expiry"),
        ("secret_expired", "secret_expiry"),
    ],
)
def test_status_cli_lists_what_needs_attention(app, runner, problem, kind):
    today = utcnow().date()
    with app.app_context():
        make_account(last_status="ok")
        beat("scheduler@elsewhere", age=timedelta(days=0 if problem != "stale" else 1))
        if problem == "stale":
            beat("scheduler@alive")
            db.session.get(SchedulerNode, "scheduler@alive").hostname = "another-host"
            db.session.commit()
        if problem == "no_scheduler":
            jobs.forget_node("scheduler@elsewhere")
        if problem == "failing":
            make_account(2, last_status="error", last_message="error: login failed")
        if problem == "reauth":
            make_account(2, type="IMAPOAuth2", needs_reauth=True, last_status="reauth")
        if problem.startswith("secret"):
            expires = today + timedelta(days=-1 if problem == "secret_expired" else 29)
            for name, day in (("soon", expires), ("later", today + timedelta(days=31))):
                db.session.add(
                    OAuth2Profile(
                        name=name,
                        provider="MicrosoftAzure",
                        client_id="c",
                        tenant_id="t",
                        secret_expires_on=day,
                    )  # fmt: skip
                )
            db.session.commit()
    code, report = status_json(runner)
    assert code == 1
    assert [item["kind"] for item in report["attention"]] == [kind], report["attention"]
    result = runner.invoke(args=["status"])
    assert result.exit_code == 1 and f"ATTENTION {kind}" in result.output


def test_invalid_accounts_need_no_attention(app, runner):
    with app.app_context():
        make_account(validity="invalid", last_status="error")
        beat()
    code, report = status_json(runner)
    assert code == 0, report


def test_status_page(app, client, admin_client):
    assert client.get("/status/").status_code in (200, 302)
    with app.app_context():
        make_account(2, last_status="error", last_message="error: login failed")
    page = admin_client.get("/status/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "login failed" in text and "No scheduler is alive" in text
    assert 'href="/status/"' in text  # the navigation entry


def test_status_page_requires_sign_in(app):
    response = app.test_client().get("/status/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
