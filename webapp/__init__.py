"""Postmaster: fetch team mailboxes into ticket queues."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from . import (
    addresses,
    auth,
    crypto,
    dashboard,
    errors,
    failed_mail,
    keys,
    mail_accounts,
    navigation,
    oauth,
    proxy,
    queues,
    security,
    settings,
    setup,
    status,
    tickets,
)
from .config import DEV_SECRET_KEY, DefaultConfig
from .extensions import csrf, db, migrate

# Every screen area, in the order of the navigation; each registers its blueprint and its
# command group in init_app.
FEATURES = (
    dashboard,
    tickets,
    failed_mail,
    mail_accounts,
    oauth,
    queues,
    addresses,
    settings,
    status,
)


def create_app(test_config: dict | None = None) -> Flask:
    """The app factory: config, checks, extensions, then every feature registers itself."""
    app = Flask(__name__, instance_relative_config=True)
    load_config(app, test_config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    check_config(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).parent.parent / "migrations"))
    csrf.init_app(app)
    crypto.configure(crypto.load_keys(app.config["ENCRYPTION_KEYS"], app.instance_path))

    # The sign-in guard first: it runs before every request of every feature.
    for part in (auth, security, errors, navigation, setup, keys):
        part.init_app(app)
    for feature in FEATURES:
        feature.init_app(app)
    proxy.init_app(app)
    return app


def load_config(app: Flask, test_config: dict | None) -> None:
    """Defaults in code, then instance/config.py, then POSTMASTER_* environment variables."""
    app.config.from_object(DefaultConfig)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env("POSTMASTER")
    else:
        app.config.from_mapping(test_config)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        db_path = os.path.join(app.instance_path, "postmaster.sqlite")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{db_path}"
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # Several processes (web, scheduler, CLI) share one SQLite file: wait for locks.
        # A copy: the default dict is shared by every app in the process (tests mix databases).
        options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.setdefault("connect_args", {"timeout": 30})
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def check_config(app: Flask) -> None:
    """Refuse to start in production mode with unsafe settings."""
    if not app.config["PRODUCTION"]:
        return
    problem = secret_key_problem(app.config["SECRET_KEY"]) or _cookie_and_url_problem(app)
    if problem:
        raise RuntimeError(problem)
    if not crypto.load_keys(app.config["ENCRYPTION_KEYS"], app.instance_path):
        raise RuntimeError(
            "No encryption key: set POSTMASTER_ENCRYPTION_KEYS or create instance/encryption.key"
        )


# Secret keys from examples and habits: whoever knows the key can forge an admin's session.
PLACEHOLDER_SECRET_KEYS = frozenset(
    {
        DEV_SECRET_KEY,
        "change-me",
        "changeme",
        "change_me",
        "change-this",
        "changeit",
        "secret",
        "secret-key",
        "secret_key",
        "secretkey",
        "dev",
        "development",
        "test",
        "test-secret",
        "password",
        "postmaster",
        "default",
        "xxx",
        "todo",
    }
)
MIN_SECRET_KEY_BYTES = 32
MAKE_SECRET_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def secret_key_problem(secret_key: object) -> str | None:
    """Why a production secret key is unsafe, with how to make a good one; None if fine."""
    value = secret_key.decode() if isinstance(secret_key, bytes) else str(secret_key or "")
    normalized = value.strip().lower()
    if not normalized:
        reason = "is not set"
    elif normalized in PLACEHOLDER_SECRET_KEYS or "change-me" in normalized:
        reason = "is a placeholder from an example"
    elif len(value.encode()) < MIN_SECRET_KEY_BYTES:
        reason = f"is shorter than {MIN_SECRET_KEY_BYTES} bytes"
    else:
        return None
    return (
        f"POSTMASTER_SECRET_KEY {reason}: anyone who can guess it can sign in as an admin. "
        f"Set it to a random value made with {MAKE_SECRET_KEY} "
        "(in /etc/postmaster/postmaster.env), then start again."
    )


def _cookie_and_url_problem(app: Flask) -> str | None:
    if app.config["SESSION_COOKIE_SECURE"] is not True:
        return (
            "POSTMASTER_SESSION_COOKIE_SECURE must be true in production mode, so the session "
            "cookie is only sent over https. Set POSTMASTER_SESSION_COOKIE_SECURE=true."
        )
    if not str(app.config["PUBLIC_URL"] or "").startswith("https://"):
        return (
            "POSTMASTER_PUBLIC_URL must be set in production mode to the https:// address the "
            "admins use, e.g. POSTMASTER_PUBLIC_URL=https://helpdesk.example.com/postmaster."
        )
    return None
