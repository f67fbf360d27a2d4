"""Postmaster: fetch team mailboxes into ticket queues."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from . import crypto
from .config import DEV_SECRET_KEY, DefaultConfig
from .extensions import csrf, db, migrate


def create_app(test_config: dict | None = None) -> Flask:
    """The app factory: config layers, checks, extensions, blueprints, CLI, proxy."""
    app = Flask(__name__, instance_relative_config=True)
    load_config(app, test_config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    check_config(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).parent.parent / "migrations"))
    csrf.init_app(app)
    crypto.configure(crypto.load_keys(app.config["ENCRYPTION_KEYS"], app.instance_path))

    from . import auth, errors, security

    auth.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    register_blueprints(app)

    from . import cli

    cli.init_app(app)
    from . import proxy

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


def register_blueprints(app: Flask) -> None:
    """One blueprint per screen area."""
    from . import addresses, dashboard, mail_accounts, oauth, queues, settings

    app.register_blueprint(dashboard.bp)
    mail_accounts.init_app(app)
    queues.init_app(app)
    addresses.init_app(app)
    settings.init_app(app)

    oauth.init_app(app)
    from . import status

    status.init_app(app)

    from . import failed_mail, tickets

    tickets.init_app(app)
    failed_mail.init_app(app)

    from .navigation import NAV_ITEMS

    @app.context_processor
    def navigation() -> dict:
        return {"nav_items": [(e, label) for e, label in NAV_ITEMS if e in app.view_functions]}
