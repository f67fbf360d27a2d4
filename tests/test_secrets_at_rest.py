"""Secrets at rest: no key means one clear line (never a traceback with the password), the web
app does not start without a key, and instance/ is private."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tests.fetching import REPO
from webapp import create_app, crypto, prepare_instance
from webapp.extensions import db
from webapp.mail_accounts.service import create_mail_account
from webapp.mail_accounts.validators import MailAccountInput

PASSWORD = "hunter2-very-secret"


ADD_ACCOUNT = (
    "-m", "flask", "mail-account", "add", "--type", "IMAPS", "--host", "mail.example.com",
    "--username", "u@example.com", "--password-stdin", "--dispatch", "to",
)  # fmt: skip


def keyless_env(tmp_path: Path) -> dict[str, str]:
    """A database migrated with `flask db upgrade` (not `flask setup`): no key anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTMASTER_")}
    env.update(
        FLASK_APP="wsgi",
        POSTMASTER_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'postmaster.sqlite'}",
        POSTMASTER_ENCRYPTION_KEY_FILE=str(tmp_path / "encryption.key"),
    )
    return env


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, input=stdin,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def no_key(app, tmp_path):
    """The running app loses its key (as a database migrated without `flask setup`)."""
    crypto.configure("", tmp_path / "no-such.key")
    yield
    crypto.configure(app.config["ENCRYPTION_KEYS"], Path("unused"))


def test_a_failed_statement_never_shows_its_parameters(app_ctx):
    with pytest.raises(SQLAlchemyError) as error:
        db.session.execute(text("SELECT :secret FROM no_such_table"), {"secret": PASSWORD})
    db.session.rollback()
    assert PASSWORD not in str(error.value)
    assert "hidden" in str(error.value)


def test_saving_a_secret_without_a_key_never_shows_the_password(app_ctx, no_key):
    data = MailAccountInput(
        type="IMAPS", host="mail.example.com", username="u@example.com", password=PASSWORD,
        dispatch="to",
    )  # fmt: skip
    with pytest.raises(SQLAlchemyError) as error:
        create_mail_account(data, "test")
    db.session.rollback()
    assert isinstance(error.value.orig, crypto.MissingEncryptionKey)  # type: ignore[attr-defined]
    assert PASSWORD not in str(error.value)


def test_commands_without_a_key_say_what_to_do_in_one_line_and_write_nothing(tmp_path):
    env = keyless_env(tmp_path)
    migrated = run(env, "-m", "flask", "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    added = run(env, *ADD_ACCOUNT, stdin=PASSWORD + "\n")
    assert added.returncode == 2
    assert added.stderr.splitlines() == [f"Error: {crypto.NO_KEY_MESSAGE}"]
    assert PASSWORD not in added.stdout + added.stderr
    with sqlite3.connect(tmp_path / "postmaster.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM mail_account").fetchone() == (0,)
    rotated = run(env, "-m", "flask", "keys", "rotate")
    assert (rotated.returncode, rotated.stderr.splitlines()) == (
        2,
        [f"Error: {crypto.NO_KEY_MESSAGE}"],
    )
    assert not (tmp_path / "encryption.key").exists()


def test_the_web_app_and_the_scheduler_do_not_start_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)
    with pytest.raises(crypto.MissingEncryptionKey, match="flask --app wsgi setup"):
        create_app({
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "ENCRYPTION_KEY_FILE": str(tmp_path / "encryption.key"),
        })  # fmt: skip
    env = keyless_env(tmp_path)
    scheduler = run(env, "-m", "scheduler")
    assert scheduler.returncode != 0
    assert crypto.NO_KEY_MESSAGE in scheduler.stderr


def test_setup_creates_a_private_key_file_and_then_secrets_can_be_stored(tmp_path):
    env = keyless_env(tmp_path)
    setup = run(env, "-m", "flask", "setup")
    assert setup.returncode == 0, setup.stderr
    key = tmp_path / "encryption.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    added = run(env, *ADD_ACCOUNT, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    raw = (tmp_path / "postmaster.sqlite").read_bytes()
    assert PASSWORD.encode() not in raw


def test_the_instance_directory_and_the_sqlite_database_are_private(tmp_path, app_config):
    old = os.umask(0o022)
    try:
        app_config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        app = create_app(app_config)
        with app.app_context():
            db.create_all()
            db.session.execute(text("SELECT 1"))
            db.session.remove()
            db.engine.dispose()
        app.instance_path = str(tmp_path / "instance")
        prepare_instance(app)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "instance").stat().st_mode) == 0o700
    for name in ("fresh.sqlite", "fresh.sqlite-wal", "fresh.sqlite-shm"):
        if (tmp_path / name).exists():
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_a_key_file_others_can_read_is_warned_about_at_start(
    tmp_path, app_config, caplog, monkeypatch
):
    # Alembic's logging setup (tests/test_migrations.py runs first) disables existing loggers.
    monkeypatch.setattr(logging.getLogger("webapp"), "disabled", False)
    key = tmp_path / "encryption.key"
    key.write_text(app_config["ENCRYPTION_KEYS"] + "\n")
    key.chmod(0o644)
    app_config.update(ENCRYPTION_KEYS="", ENCRYPTION_KEY_FILE=str(key))
    with caplog.at_level(logging.WARNING, logger="webapp"):
        create_app(app_config)
    assert f"chmod 600 {key}" in caplog.text
