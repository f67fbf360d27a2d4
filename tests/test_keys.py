"""Encryption keys: `flask keys rotate` and `flask keys retire`, with other processes running."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, event, text

from tests.fetching import REPO
from tests.servers.dovecot import free_port
from tests.test_proxy_nginx import csrf_token, stop, wait_for_port
from webapp import crypto
from webapp.extensions import db
from webapp.models import MailAccount, OAuth2Token

ADMIN_PASSWORD = "keys test password"


@pytest.fixture
def key_path(app_config, tmp_path) -> Path:
    """The test app uses a key file (as `flask setup` makes it) instead of fixed keys."""
    path = tmp_path / "keys" / "encryption.key"
    crypto.write_key_file(path, [app_config["ENCRYPTION_KEYS"]])
    app_config["ENCRYPTION_KEYS"] = ""
    app_config["ENCRYPTION_KEY_FILE"] = str(path)
    return path


def add_mail_account(password: str = "mailbox password") -> MailAccount:
    account = MailAccount(
        type="IMAPS", host="mail.example.com", username="support@example.com", password=password,
        dispatch="to", validity="valid",
    )  # fmt: skip
    db.session.add(account)
    db.session.commit()
    return account


def test_rotate_adds_a_key_to_the_file_atomically_and_keeps_it_private(key_path, runner, app_ctx):
    old = crypto.read_key_file(key_path)
    account = add_mail_account()
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 1 secrets" in result.output
    keys = crypto.read_key_file(key_path)
    assert len(keys) == 2 and keys[1:] == old
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["encryption.key"]  # no temp file
    stored = db.session.execute(
        text("SELECT password FROM mail_account WHERE id = :id"), {"id": account.id}
    ).scalar()
    Fernet(keys[0].encode()).decrypt(stored.encode())  # the new key alone reads it


def test_retire_refuses_while_a_secret_uses_an_old_key_and_says_how_many(key_path, runner, app_ctx):
    account = add_mail_account()
    # A new key put in front by hand (or a rotation that stopped half-way).
    crypto.write_key_file(
        key_path, [Fernet.generate_key().decode(), *crypto.read_key_file(key_path)]
    )
    refused = runner.invoke(args=["keys", "retire"])
    assert refused.exit_code == 2
    assert "1 stored secrets still use an old key (mail_account.password: 1)" in refused.output
    assert "keys rotate" in refused.output
    assert len(crypto.read_key_file(key_path)) == 2
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    retired = runner.invoke(args=["keys", "retire"])
    assert retired.exit_code == 0, retired.output
    assert "Retired 2 old keys" in retired.output
    assert len(crypto.read_key_file(key_path)) == 1
    db.session.expire_all()
    assert db.session.get(MailAccount, account.id).password == "mailbox password"
    assert "nothing to retire" in runner.invoke(args=["keys", "retire"]).output


def test_a_rotation_never_overwrites_a_token_refreshed_meanwhile(app, runner, app_ctx):
    account = add_mail_account()
    db.session.add(OAuth2Token(mail_account_id=account.id, refresh_token="old refresh token"))
    db.session.commit()
    # The next key goes first in the setting; the token was written with the old key.
    app.config["ENCRYPTION_KEYS"] = (
        Fernet.generate_key().decode() + "," + app.config["ENCRYPTION_KEYS"]
    )
    other = create_engine(
        app.config["SQLALCHEMY_DATABASE_URI"], **app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    )
    refreshed = []

    def refresh_in_another_connection(conn, cursor, statement, parameters, context, many):
        # Just before the rotation writes the token: the scheduler refreshes it and commits.
        if statement.startswith("UPDATE oauth2_token SET refresh_token") and not refreshed:
            with other.begin() as c:
                c.execute(
                    text("UPDATE oauth2_token SET refresh_token = :t WHERE mail_account_id = :id"),
                    {"t": crypto.encrypt("new refresh token"), "id": account.id},
                )
            refreshed.append(True)

    event.listen(db.engine, "before_cursor_execute", refresh_in_another_connection)
    try:
        result = runner.invoke(args=["keys", "rotate"])
    finally:
        event.remove(db.engine, "before_cursor_execute", refresh_in_another_connection)
        other.dispose()
    assert result.exit_code == 0, result.output
    assert refreshed
    db.session.expire_all()
    assert db.session.get(OAuth2Token, account.id).refresh_token == "new refresh token"
    stored = db.session.execute(text("SELECT refresh_token FROM oauth2_token")).scalar()
    assert crypto.uses_newest_key(stored)


# --- a running gunicorn and `flask keys rotate` in another process --------------------------


@pytest.fixture
def web(tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    """gunicorn serving a database whose key is in a key file; (base URL, the CLI's env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTMASTER_")}
    env.update(
        FLASK_APP="wsgi",
        POSTMASTER_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'postmaster.sqlite'}",
        POSTMASTER_ENCRYPTION_KEY_FILE=str(tmp_path / "encryption.key"),
        POSTMASTER_SECRET_KEY="keys-test-secret",
        POSTMASTER_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    flask(env, "setup")
    flask(env, "mail-account", "add", "--type", "IMAPS", "--host", "mail.example.com",
          "--username", "rotating@example.com", "--password-stdin", "--dispatch", "to",
          stdin="mailbox password\n")  # fmt: skip
    port, log = free_port(), tmp_path / "gunicorn.log"
    gunicorn = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen(
        [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "2", "wsgi:app"],
        cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(port, proc, log, timeout=120)
        yield f"http://127.0.0.1:{port}", env
    finally:
        stop(proc)


def flask(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flask", *args], cwd=REPO, env=env, input=stdin,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_running_web_app_keeps_showing_accounts_after_keys_rotate_and_retire(web):
    base, env = web
    http = requests.Session()
    login = http.get(f"{base}/login")
    signed_in = http.post(
        f"{base}/login",
        data={
            "csrf_token": csrf_token(login.text),
            "username": "admin",
            "password": ADMIN_PASSWORD,
        },
    )
    assert signed_in.status_code == 200 and "Sign out" in signed_in.text, signed_in.text
    account_id = re.search(r'href="/mail-accounts/(\d+)"', http.get(f"{base}/mail-accounts/").text)
    assert account_id, "the account is listed"
    pages = [f"{base}/mail-accounts/", f"{base}/mail-accounts/{account_id.group(1)}"]

    def all_pages_show_the_account() -> None:
        for _ in range(4):  # enough requests to reach both workers
            for url in pages:
                page = http.get(url)
                assert page.status_code == 200, (url, page.status_code)
                assert "rotating@example.com" in page.text

    all_pages_show_the_account()  # both workers read the account with the first key
    assert "Re-encrypted 1 secrets" in flask(env, "keys", "rotate")
    all_pages_show_the_account()
    assert "Retired 1 old keys" in flask(env, "keys", "retire")
    all_pages_show_the_account()
