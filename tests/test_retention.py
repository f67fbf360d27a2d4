"""Retention: old fetch logs purged, dedupe keys of deleted mail pruned, keep-mode keys kept."""

from __future__ import annotations

from datetime import timedelta

from scheduler import jobs
from webapp.extensions import db
from webapp.models import FetchRun, MailAccount, SchedulerNode, SeenMessage, utcnow
from webapp.postmaster import retention
from webapp.settings.store import set_setting


def setup_rows() -> MailAccount:
    account = MailAccount(
        type="IMAPS", host="h", username="u", password="p", created_by="t", changed_by="t"
    )
    db.session.add(account)
    db.session.commit()
    now = utcnow()
    for days in (1, 29, 31, 400):
        at = now - timedelta(days=days)
        db.session.add(
            FetchRun(
                mail_account_id=account.id,
                trigger="scheduler",
                started_at=at,
                finished_at=at,
                status="ok",
                log=f"{days} days old",
            )  # fmt: skip
        )
        for finished in (True, False):
            db.session.add(
                SeenMessage(
                    mail_account_id=account.id,
                    host="h",
                    folder="INBOX",
                    key=f"uid:1:{days}{int(finished)}",
                    outcome="stored",
                    created_at=at,
                    finished_at=at if finished else None,
                )  # fmt: skip
            )
    db.session.commit()
    return account


def test_purges_by_the_default_of_30_days(app, app_ctx):
    setup_rows()
    line = retention.purge_old_records()
    assert line == "purged 2 fetch logs and 2 dedupe keys of deleted mail"
    assert sorted(r.log for r in db.session.query(FetchRun)) == ["1 days old", "29 days old"]
    keys = {k.key for k in db.session.query(SeenMessage)}
    # Deleted on the server within 30 days, or kept on the server (finished_at NULL) at any age.
    assert keys == {"uid:1:11", "uid:1:291", "uid:1:10", "uid:1:290", "uid:1:310", "uid:1:4000"}


def test_follows_the_settings(app, app_ctx):
    setup_rows()
    set_setting("FetchLogRetentionDays", "500")
    set_setting("DedupeRetentionDays", "2")
    db.session.commit()
    assert retention.purge_old_records() == "purged 0 fetch logs and 3 dedupe keys of deleted mail"


def test_deletes_in_chunks(app, app_ctx, monkeypatch):
    setup_rows()
    monkeypatch.setattr(retention, "CHUNK", 1)
    assert retention.prune_seen_messages(30) == 2
    assert retention.purge_fetch_runs(0) == 4


def test_the_scheduler_job_also_forgets_long_dead_schedulers(app, app_ctx):
    setup_rows()
    db.session.add(
        SchedulerNode(owner="gone", hostname="h", pid=1, last_seen_at=utcnow() - timedelta(days=3))
    )
    db.session.commit()
    assert "purged 2 fetch logs" in jobs.run_retention()
    assert db.session.query(SchedulerNode).count() == 0
