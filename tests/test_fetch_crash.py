"""A fetch killed at any step loses nothing and duplicates nothing on the next run, and the
next run starts at once: the dead process's lease is taken over, not waited out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.fetching import REPO, add_account, cli_env, run_cli, stored_message_ids
from tests.mailgen import make_mail
from tests.scheduling import assert_runs_never_overlap, wait_for
from webapp.extensions import db
from webapp.models import FetchRun
from webapp.settings.store import set_setting

CRASH_POINTS = ["before_fetch", "before_commit", "after_commit", "during_delete", "after_delete"]


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    # Far longer than any test: a rerun that waited for the killed fetcher's lease to expire
    # would say "busy" instead.
    app_config["LEASE_SECONDS"] = 300
    return app_config


def load(mail_user, n: int) -> list[str]:
    ids = [f"<crash-{i}@test>" for i in range(n)]
    for i, message_id in enumerate(ids):
        mail_user.deliver(make_mail(subject=f"crash {i}", message_id=message_id))
    return ids


def assert_exactly_once(ids: list[str], dovecot, mail_user) -> None:
    db.session.expire_all()
    assert sorted(stored_message_ids()) == sorted(ids)
    assert dovecot.message_count(mail_user.username) == 0
    assert_runs_never_overlap()  # the killed runs were ended by the rerun's takeover


def rerun_at_once(app, account_id: int, **env: str):
    """Fetch again right after a kill: it must take the dead process's lease over."""
    rerun = run_cli(app, "mail-account", "fetch", "--mail-account-id", str(account_id), **env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "busy" not in rerun.stdout, rerun.stdout
    return rerun


@pytest.mark.parametrize("account_type", ["IMAPS", "POP3S"])
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_fetch_then_rerun_stores_each_message_once(
    app, app_ctx, dovecot, mail_user, account_type, point
):
    ids = load(mail_user, 12)
    account_id = add_account(dovecot, mail_user, account_type)
    app.config["FETCH_BATCH_SIZE"] = 5
    # A delete after every batch, so the second delete of the run is the one killed.
    env = {"POSTMASTER_FETCH_BATCH_SIZE": "5", "POSTMASTER_FETCH_DELETE_EVERY": "5"}
    crashed = run_cli(app, "mail-account", "fetch", POSTMASTER_CRASH_AT=f"{point}:2", **env)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    rerun_at_once(app, account_id, **env)
    assert_exactly_once(ids, dovecot, mail_user)


@pytest.mark.parametrize("account_type", ["IMAPS", "POP3S"])
def test_killed_with_committed_batches_not_yet_deleted_then_rerun_finishes_them(
    app, app_ctx, dovecot, mail_user, account_type
):
    """Deletes wait for FETCH_DELETE_EVERY messages: a kill before that leaves committed
    mail on the server, which the next run recognises and only deletes."""
    ids = load(mail_user, 12)
    account_id = add_account(dovecot, mail_user, account_type)
    env = {"POSTMASTER_FETCH_BATCH_SIZE": "3", "POSTMASTER_FETCH_DELETE_EVERY": "100"}
    crashed = run_cli(app, "mail-account", "fetch", POSTMASTER_CRASH_AT="after_commit:3", **env)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    assert dovecot.message_count(mail_user.username) == 12  # nine committed, none deleted
    rerun = rerun_at_once(app, account_id, **env)
    assert "duplicates 9" in rerun.stdout
    assert_exactly_once(ids, dovecot, mail_user)


def test_sigkill_at_a_random_moment_loses_and_duplicates_nothing(app, app_ctx, dovecot, mail_user):
    """Killed wherever the fetch happens to be once it has made progress (no fault point)."""
    ids = load(mail_user, 300)
    add_account(dovecot, mail_user, "IMAPS")
    set_setting("MaxMessagesPerRun", "5000")
    db.session.commit()
    env = cli_env(app, POSTMASTER_FETCH_BATCH_SIZE="20")
    for _ in range(2):
        before = len(stored_message_ids())
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "mail-account", "fetch"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda b=before: len(stored_message_ids()) > b, 120, "a batch stored")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        db.session.expire_all()
        last = db.session.query(FetchRun).order_by(FetchRun.id.desc()).first()
        # Proof that the kill hit a fetch in progress: its run never recorded an end.
        assert last is not None and last.finished_at is None, "the fetch ended before the kill"
    final = run_cli(app, "mail-account", "fetch", POSTMASTER_FETCH_BATCH_SIZE="20")
    assert final.returncode == 0, final.stdout + final.stderr
    assert "busy" not in final.stdout, final.stdout
    assert_exactly_once(ids, dovecot, mail_user)
