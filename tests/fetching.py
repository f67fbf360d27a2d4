"""Helpers for fetch tests: accounts pointing at the test Dovecot, and the CLI as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flask import Flask

from webapp.extensions import db
from webapp.models import Article, FailedMail, MailAccount, Ticket

REPO = Path(__file__).resolve().parent.parent


def port_for(dovecot, account_type: str) -> int:
    """The test Dovecot's port for an account type."""
    return {
        "IMAP": dovecot.imap_port,
        "IMAPTLS": dovecot.imap_port,
        "IMAPS": dovecot.imaps_port,
        "IMAPOAuth2": dovecot.imaps_port,
        "POP3": dovecot.pop3_port,
        "POP3TLS": dovecot.pop3_port,
        "POP3S": dovecot.pop3s_port,
        "POP3OAuth2": dovecot.pop3s_port,
    }[account_type]


def add_account(dovecot, user, account_type: str = "IMAPS", **fields) -> int:
    """A valid mail account for a test Dovecot user; returns its id (needs an app context).

    Polled only (push=False) unless the test asks for push: a scheduler test about polling
    must not see runs started by an IDLE connection."""
    values = dict(
        type=account_type,
        host="127.0.0.1",
        port=port_for(dovecot, account_type),
        username=user.username,
        password=user.password,
        trusted=False,
        dispatch="to",
        validity="valid",
        push=False,
        created_by="test",
        changed_by="test",
    )
    values.update(fields)
    account = MailAccount(**values)
    db.session.add(account)
    db.session.commit()
    return account.id


def stored_message_ids() -> list[str]:
    """Message-IDs of every stored article and failed mail (a message counted once each)."""
    ids = [m for (m,) in db.session.query(Article.message_id)]
    failed = db.session.query(FailedMail).count()
    return ids + ["<failed>"] * failed


def ticket_count() -> int:
    return db.session.query(Ticket).count()


def cli_env(app: Flask, **extra: str) -> dict[str, str]:
    """Environment for running `flask --app wsgi ...` against the test app's database."""
    env = dict(os.environ)
    env.update(
        FLASK_APP="wsgi",
        POSTMASTER_SQLALCHEMY_DATABASE_URI=app.config["SQLALCHEMY_DATABASE_URI"],
        POSTMASTER_ENCRYPTION_KEYS=app.config["ENCRYPTION_KEYS"],
        POSTMASTER_SECRET_KEY="test-secret",
        POSTMASTER_TESTING_FAULTS="true",
        POSTMASTER_MAIL_TIMEOUT="10",
        POSTMASTER_LEASE_SECONDS=str(app.config["LEASE_SECONDS"]),
    )
    if app.config.get("MAIL_CA_FILE"):
        env["POSTMASTER_MAIL_CA_FILE"] = app.config["MAIL_CA_FILE"]
    env.update(extra)
    return env


def run_cli(app: Flask, *args: str, timeout: float = 120, **env: str):
    """Run the real CLI in a child process (so a test can have it killed)."""
    return subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=REPO,
        env=cli_env(app, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
