"""Flask extensions, created unbound and bound to the app in create_app."""

from __future__ import annotations

import sqlite3
from typing import Any

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLite in WAL mode: readers (the web app) never block the fetcher's batch commits, and
    a commit costs one fsync instead of several. synchronous=FULL keeps every committed batch
    on disk before the server is told to delete its messages, even across a power loss."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()


@event.listens_for(Engine, "connect")
def _postgres_lz4(dbapi_connection: Any, connection_record: Any) -> None:
    """PostgreSQL compresses large values (raw mail, bodies, attachments) with pglz by default;
    lz4 costs a fraction of its CPU, and the fetch batch waits for it on every insert. Only new
    values are affected, and servers built without lz4 keep pglz."""
    if type(dbapi_connection).__module__.startswith("psycopg"):
        try:
            dbapi_connection.execute("SET default_toast_compression = lz4")
            dbapi_connection.commit()
        except Exception:  # noqa: BLE001 - no lz4 in this server: pglz stays, nothing else changes
            dbapi_connection.rollback()
