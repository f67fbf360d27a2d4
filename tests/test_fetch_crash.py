"""A fetch killed at any step loses nothing and duplicates nothing on the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.fetching import REPO, add_account, cli_env, run_cli, stored_message_ids
from tests.mailgen import make_mail
from webapp.extensions import db
from webapp.settings.store import set_setting

CRASH_POINTS = ["before_fetch", "before_commit", "after_commit", "during_delete", "after_delete"]


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    app_config["LEASE_SECONDS"] = 2  # a killed fetcher's lease runs out quickly
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
    time.sleep(2.1)  # the dead fetcher's lease expires
    rerun = run_cli(app, "mail-account", "fetch", "--mail-account-id", str(account_id), **env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
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
    time.sleep(2.1)
    rerun = run_cli(app, "mail-account", "fetch", "--mail-account-id", str(account_id), **env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "duplicates 9" in rerun.stdout
    assert_exactly_once(ids, dovecot, mail_user)


def test_sigkill_at_a_random_moment_loses_and_duplicates_nothing(app, app_ctx, dovecot, mail_user):
    ids = load(mail_user, 300)
    add_account(dovecot, mail_user, "IMAPS")
    set_setting("MaxMessagesPerRun", "5000")
    db.session.commit()
    env = cli_env(app, POSTMASTER_FETCH_BATCH_SIZE="20")
    for delay in (0.8, 1.5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "mail-account", "fetch"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(2.1)
    final = run_cli(app, "mail-account", "fetch", POSTMASTER_FETCH_BATCH_SIZE="20")
    assert final.returncode == 0, final.stdout + final.stderr
    assert_exactly_once(ids, dovecot, mail_user)
