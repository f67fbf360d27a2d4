"""Retention: purge old fetch logs and prune dedupe keys of mail already gone from the server.

Keys of mail kept on the server (after_fetch "keep") have finished_at NULL and stay forever:
without them the next run would take that mail again.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ColumnElement, delete, select

from ..extensions import db
from ..models import FetchRun, SeenMessage, utcnow
from ..settings.store import get_int_setting

# Rows per DELETE: short transactions, so fetches committing meanwhile never wait long.
CHUNK = 5000


def purge_fetch_runs(days: int) -> int:
    """Delete fetch logs started more than `days` ago."""
    cutoff = utcnow() - timedelta(days=days)
    return _delete_in_chunks(FetchRun, FetchRun.started_at < cutoff)


def prune_seen_messages(days: int) -> int:
    """Delete dedupe keys of messages finished (deleted/moved) on the server `days` ago."""
    cutoff = utcnow() - timedelta(days=days)
    condition = SeenMessage.finished_at.is_not(None) & (SeenMessage.finished_at < cutoff)
    return _delete_in_chunks(SeenMessage, condition)


def _delete_in_chunks(
    model: type[FetchRun] | type[SeenMessage], condition: ColumnElement[bool]
) -> int:
    """Delete the rows that meet the condition, CHUNK rows per transaction; how many."""
    total = 0
    while True:
        ids = list(db.session.execute(select(model.id).where(condition).limit(CHUNK)).scalars())
        if not ids:
            db.session.rollback()
            return total
        db.session.execute(
            delete(model).where(model.id.in_(ids)).execution_options(synchronize_session=False)
        )
        db.session.commit()
        total += len(ids)


def purge_old_records() -> str:
    """Apply both retention settings; returns a line for the log."""
    runs = purge_fetch_runs(get_int_setting("FetchLogRetentionDays"))
    keys = prune_seen_messages(get_int_setting("DedupeRetentionDays"))
    return f"purged {runs} fetch logs and {keys} dedupe keys of deleted mail"
