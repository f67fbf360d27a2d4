"""Shared fixtures: the app on a fresh database, a signed-in client, the CLI runner, and the
real servers (Dovecot, the local identity provider, Chromium, PostgreSQL)."""

from __future__ import annotations

import os
import uuid

import pytest
from cryptography.fernet import Fernet

from tests.browser import *  # noqa: F403  (browser, live_server, sign_in)
from tests.idp.fixtures import *  # noqa: F403  (idp, ms_tenant, idp_redirect_uris)
from tests.servers.fixtures import *  # noqa: F403  (dovecot, mail_user)
from webapp import create_app
from webapp.auth.service import create_admin
from webapp.extensions import db
from webapp.seed import seed_database

ADMIN_NAME = "admin"
ADMIN_PASSWORD = "correct horse battery"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, message: str) -> None:
    """Skip locally when a real part is missing; in CI a missing part is a failure."""
    if condition:
        return
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def database_server_url():
    """PostgreSQL server URL when POSTMASTER_TEST_DB=postgres, else None (SQLite files)."""
    if os.environ.get("POSTMASTER_TEST_DB") != "postgres":
        return None
    return os.environ.get("POSTMASTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


@pytest.fixture
def database_url(tmp_path, database_server_url):
    """A fresh, empty database for one test: a SQLite file, or a new PostgreSQL database."""
    if database_server_url is None:
        yield f"sqlite:///{tmp_path / 'postmaster.sqlite'}"
        return
    from sqlalchemy import create_engine, text

    name = f"pm_test_{uuid.uuid4().hex[:12]}"
    admin_engine = create_engine(f"{database_server_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{database_server_url}/{name}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin_engine.dispose()


@pytest.fixture
def app_config(tmp_path, database_url) -> dict:
    """The test settings; a test may change them before asking for `app`."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "WTF_CSRF_ENABLED": False,
        "TESTING_FAULTS": True,
        "MAIL_TIMEOUT": 10.0,
    }


@pytest.fixture
def app(app_config, tmp_path):
    app = create_app(app_config)
    app.instance_path = str(tmp_path / "instance")
    with app.app_context():
        db.create_all()
        seed_database()
        create_admin(ADMIN_NAME, ADMIN_PASSWORD)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_client(client):
    """A test client signed in as the admin."""
    response = client.post("/login", data={"username": ADMIN_NAME, "password": ADMIN_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield
