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
    filters,
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
    filters,
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
    if app.config["SECRET_KEY"] == DEV_SECRET_KEY:
        raise RuntimeError("POSTMASTER_SECRET_KEY must be set in production mode")
    if not crypto.load_keys(app.config["ENCRYPTION_KEYS"], app.instance_path):
        raise RuntimeError(
            "No encryption key: set POSTMASTER_ENCRYPTION_KEYS or create instance/encryption.key"
        )
