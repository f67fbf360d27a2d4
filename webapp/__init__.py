"""Postmaster: fetch team mailboxes into ticket queues."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from flask import Flask
from sqlalchemy.engine import make_url

from . import (
    a11y,
    account_state,
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
from .cli_common import GuardedGroup
from .config import DEV_SECRET_KEY, DefaultConfig
from .extensions import csrf, db, migrate

log = logging.getLogger(__name__)

# Every screen area, in the order of the navigation; each registers its blueprint and its
# command group in init_app.
FEATURES = (
    dashboard,
    tickets,
    failed_mail,
    mail_accounts,
    account_state,
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
    # Every command passes through it: one line and exit 2 for a missing encryption key.
    app.cli = GuardedGroup(app.name)
    load_config(app, test_config)
    prepare_instance(app)
    check_config(app)
    configure_encryption(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).parent.parent / "migrations"))
    csrf.init_app(app)

    # The sign-in guard first: it runs before every request of every feature.
    for part in (auth, security, errors, navigation, a11y, setup, keys):
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
    if not app.config.get("ENCRYPTION_KEY_FILE"):
        app.config["ENCRYPTION_KEY_FILE"] = str(crypto.key_file(app.instance_path))
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app)


def engine_options(app: Flask) -> dict:
    """The engine options of every database: statement parameters (passwords and tokens among
    them) never appear in an error or a log line; SQLite waits for locks."""
    # A copy: the default dict is shared by every app in the process (tests mix databases).
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    options["hide_parameters"] = True
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # Several processes (web, scheduler, CLI) share one SQLite file: wait for locks.
        options.setdefault("connect_args", {"timeout": 30})
    return options


def prepare_instance(app: Flask) -> None:
    """instance/ holds the key file and the SQLite database: only its owner may read it.
    The directory is made 0700 and a new SQLite file 0600 (SQLite gives its -wal and -shm
    files the database file's mode)."""
    instance = Path(app.instance_path)
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(instance, 0o700)
    database = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if database.get_backend_name() != "sqlite" or database.database in (None, "", ":memory:"):
        return
    path = Path(database.database)
    if not path.is_absolute():
        path = instance / path  # where Flask-SQLAlchemy puts a relative SQLite path
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite takes an empty file
    _tighten(path, 0o600)


def _tighten(path: Path, mode: int) -> None:
    """Take away group and other permissions from a file or directory we own."""
    try:
        st = path.stat()
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
            log.warning("%s was readable by others: now mode %o", path, mode)
    except OSError as e:
        log.warning("cannot restrict the permissions of %s: %s", path, e)


def configure_encryption(app: Flask) -> None:
    """Install the encryption keys. Without one the web app and the scheduler do not start;
    a command still loads (`flask setup` creates the key; the others fail in one line)."""
    key_path = Path(app.config["ENCRYPTION_KEY_FILE"])
    crypto.configure(app.config["ENCRYPTION_KEYS"], key_path)
    if not crypto.fixed_keys(app.config["ENCRYPTION_KEYS"]) and crypto.key_file_is_exposed(
        key_path
    ):
        log.warning(
            "The encryption key file %s can be read by group or others: chmod 600 %s",
            key_path,
            key_path,
        )
    if crypto.has_key():
        return
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        raise crypto.MissingEncryptionKey()

    @app.before_request
    def _no_key() -> tuple[str, int] | None:
        # `flask run` without a key: every page says what to do instead of failing later.
        if crypto.has_key():
            return None
        return "Postmaster is not set up: " + crypto.NO_KEY_MESSAGE + "\n", 503


def check_config(app: Flask) -> None:
    """Refuse to start in production mode with unsafe settings."""
    if not app.config["PRODUCTION"]:
        return
    problem = secret_key_problem(app.config["SECRET_KEY"]) or _cookie_and_url_problem(app)
    if problem:
        raise RuntimeError(problem)
    if app.config.get("OAUTH2_GOOGLE_BASE_URL"):
        raise RuntimeError("OAUTH2_GOOGLE_BASE_URL is for tests only: unset it in production.")
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
