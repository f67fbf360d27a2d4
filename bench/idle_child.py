"""`python -m bench.idle_child STATS_FILE`: `python -m scheduler` with counters (bench/idle.py).

The same scheduler process, plus what the idle-accounts benchmark reads from outside: SQL
statements by kind and commits (SQLAlchemy engine events), mail connections opened (calls of
socket.create_connection, which imaplib and poplib use), TLS handshakes that resumed a session,
fetch runs by outcome, and for push the IDLE commands sent (IdleMailbox.start_idle: the first of
each connection and every re-issue after PUSH_IDLE_SECONDS) and the PushManager syncs.
Written to STATS_FILE as JSON twice a second and at exit.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event

from scheduler import jobs
from scheduler.push import PushManager
from scheduler.runner import run_scheduler
from webapp import create_app
from webapp.extensions import db
from webapp.postmaster.mailbox.idle import IdleMailbox

counts: Counter[str] = Counter()
lock = threading.Lock()


def count(key: str, n: int = 1) -> None:
    with lock:
        counts[key] += n


def instrument_database(app: Any) -> None:
    with app.app_context():
        engine = db.engine

    def before_execute(_conn, _cursor, statement: str, _params, _context, executemany) -> None:
        kind = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        count("sql")
        count(f"sql_{kind.lower()}")

    event.listen(engine, "before_cursor_execute", before_execute)
    event.listen(engine, "commit", lambda _conn: count("commits"))


def instrument_connections() -> None:
    original = socket.create_connection

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        count("connections")
        return original(address, *args, **kwargs)

    socket.create_connection = create_connection  # type: ignore[assignment]


def instrument_runs() -> None:
    original: Callable[..., str] = jobs.fetch_claimed

    def fetch_claimed(*args: Any, **kwargs: Any) -> str:
        summary = original(*args, **kwargs)
        count("runs")
        count(f"runs_{summary.split(':', 1)[0]}")
        return summary

    jobs.fetch_claimed = fetch_claimed  # type: ignore[assignment]


def instrument_push() -> None:
    start_idle = IdleMailbox.start_idle
    sync = PushManager.sync

    def counted_start_idle(self: IdleMailbox) -> None:
        count("idle_commands")
        start_idle(self)

    def counted_sync(self: PushManager) -> None:
        count("push_syncs")
        sync(self)

    IdleMailbox.start_idle = counted_start_idle  # type: ignore[method-assign]
    PushManager.sync = counted_sync  # type: ignore[method-assign]


def tls_resumed() -> int:
    """Sessions reused so far, if this branch has TLS session reuse (else 0)."""
    try:
        from webapp.postmaster.mailbox import tls
    except ImportError:
        return 0
    stats = getattr(tls, "SESSION_STATS", None)
    return int(stats.get("reused", 0)) if isinstance(stats, dict) else 0


def write_stats(path: Path) -> None:
    with lock:
        data = dict(counts)
    data["tls_resumed"] = tls_resumed()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main() -> int:
    path = Path(sys.argv[1])
    app = create_app()
    instrument_database(app)
    instrument_connections()
    instrument_runs()
    instrument_push()
    stop = threading.Event()

    def writer() -> None:
        while not stop.wait(0.5):
            write_stats(path)

    threading.Thread(target=writer, name="bench-stats", daemon=True).start()
    try:
        return run_scheduler(app)
    finally:
        stop.set()
        write_stats(path)


if __name__ == "__main__":
    sys.exit(main())
