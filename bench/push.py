"""`python -m bench.fetch --scenario push`: delivery -> ticket latency with push (IMAP IDLE).

--accounts (default 100) IMAPS accounts with Fetch on arrival and a 12-hour fetch interval
(so nothing but push can fetch during the measurement) idle in one `python -m scheduler` with
the default settings. Once every account is connected, --messages single mails (default 300)
are delivered into random accounts' Maildirs, one every --gap seconds (0.2), then one burst
of 50 into one account. A watcher polls the database every 20 ms for the articles by
Message-ID: the latency of a mail is the time from its delivery (the rename into new/) to the
first poll that sees its article. Afterwards the scheduler gets SIGTERM and the usual
exactly-once check runs (one article, one dedupe key, one raw mail per message; mailboxes
empty).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING

from bench.idle_push import push_runs as count_push_runs
from tests.mailgen import make_mail

if TYPE_CHECKING:
    from bench.fetch import Bench

BURST = 50


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


class ArticleWatcher:
    """Polls the database for articles; remembers when each Message-ID was first seen."""

    def __init__(self, url: str, interval: float = 0.02) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(url)
        self.seen: dict[str, float] = {}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        from sqlalchemy import text

        sql = text("SELECT message_id FROM article WHERE id > :last ORDER BY id")
        last_sql = text("SELECT coalesce(max(id), 0) FROM article")
        last = 0
        while not self._stop.is_set():
            with self.engine.connect() as conn:
                rows = conn.execute(sql, {"last": last}).all()
                if rows:
                    last = conn.execute(last_sql).scalar() or last
            now = time.time()
            for (message_id,) in rows:
                self.seen.setdefault(message_id, now)
            self._stop.wait(self.interval)

    def wait_for(self, ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i in self.seen for i in ids):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()


def _connected(url: str, accounts: int) -> tuple[int, int]:
    """(accounts idling, finished runs)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        idling = conn.execute(
            text("SELECT count(*) FROM mail_account WHERE push_state = 'connected'")
        ).scalar()
        runs = conn.execute(
            text("SELECT count(*) FROM fetch_run WHERE finished_at IS NOT NULL")
        ).scalar()
    engine.dispose()
    return int(idling or 0), int(runs or 0)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _deliver(ctx: Bench, user: str, tag: str, sent: dict[str, float]) -> str:
    message_id = f"<push-{tag}@bench>"
    raw = make_mail(subject=f"push {tag}", message_id=message_id)
    ctx.dovecot.deliver(user, raw)
    sent[message_id] = time.time()
    return message_id


def _start(database, ctx: Bench, log) -> subprocess.Popen:
    from bench.fetch import REPO

    env = database.env(ctx.dovecot.ca_file)
    return subprocess.Popen(
        [sys.executable, "-m", "scheduler"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )


def _wait_connected(database, accounts: int, proc: subprocess.Popen, timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout and proc.poll() is None:
        idling, runs = _connected(database.url, accounts)
        if idling >= accounts and runs >= accounts:
            return time.perf_counter() - started
        time.sleep(0.5)
    raise RuntimeError(f"only {_connected(database.url, accounts)} of {accounts} connected")


def _measure(ctx: Bench, users: list[str], messages: int, gap: float, watcher) -> dict:
    """Deliver single mails, then one burst; latencies of the single mails."""
    rng = random.Random(15)
    sent: dict[str, float] = {}
    for i in range(messages):
        _deliver(ctx, rng.choice(users), f"single-{i}", sent)
        time.sleep(gap)
    singles = list(sent)
    ok = watcher.wait_for(singles, 120)
    burst_sent = time.time()
    burst = [_deliver(ctx, users[0], f"burst-{i}", sent) for i in range(BURST)]
    ok = watcher.wait_for(burst, 120) and ok
    latencies = [watcher.seen[m] - sent[m] for m in singles if m in watcher.seen]
    return {
        "ok": ok,
        "ids": list(sent),
        "latencies": latencies,
        "burst_seconds": max(watcher.seen.get(m, float("nan")) for m in burst) - burst_sent,
    }


def scenario_push(ctx: Bench, accounts: int, messages: int, gap: float) -> None:
    """100 idling accounts; delivery -> ticket latency (target: median <= 2 s, p95 <= 5 s)."""
    from bench.fetch import ChildRun, Database, exactly_once

    dbkind = "postgresql" if "postgresql" in ctx.dbs else "sqlite"
    print(f"push: {accounts} accounts, {messages} mails every {gap}s, then {BURST} at once")
    users = [ctx.boxes.load([])[0] for _ in range(accounts)]
    database = Database(dbkind, ctx.pg_url, ctx.tmp)
    try:
        accounts_ = [(u, ctx.boxes.port("imap"), "IMAPS") for u in users]
        ids = database.setup(accounts_, 1000, push=True)
        _set_interval(database, ids)
        with tempfile.TemporaryFile() as log:
            proc = _start(database, ctx, log)
            watcher = ArticleWatcher(database.url)
            try:
                connect_seconds = _wait_connected(database, accounts, proc, 300)
                cpu_before, wall_before = _cpu_seconds(proc.pid), time.perf_counter()
                result = _measure(ctx, users, messages, gap, watcher)
                cpu = _cpu_seconds(proc.pid) - cpu_before
                wall = time.perf_counter() - wall_before
            finally:
                watcher.stop()
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=120)
            log.seek(0)
            output = log.read().decode("utf-8", "replace")
        counts = database.counts()
        push_runs = count_push_runs(database)
    finally:
        database.drop()
    n = len(result["ids"])
    left = sum(ctx.boxes.remaining(u) for u in users)
    problems = exactly_once(counts, n) + (f"; {left} messages left on the server" if left else "")
    latencies = result["latencies"]
    summary = {
        "accounts": accounts,
        "db": dbkind,
        "connect_seconds": round(connect_seconds, 2),
        "messages": n,
        "median_seconds": round(statistics.median(latencies), 3) if latencies else None,
        "p95_seconds": round(_percentile(latencies, 0.95), 3) if latencies else None,
        "max_seconds": round(max(latencies), 3) if latencies else None,
        "burst_of_50_seconds": round(result["burst_seconds"], 3),
        "push_runs": push_runs,
        "scheduler_cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 2),
    }
    ctx.extra["push"] = summary
    print(f"  push latency: {summary}", flush=True)
    ok = result["ok"] and not problems and proc.returncode == 0
    run = ChildRun(proc.returncode, wall, 0.0, "", output)
    note = f"{problems} rc {proc.returncode} {output[-600:]}"
    ctx.results.add("push", f"scheduler, push -> {dbkind}", "imap", n, 0, run, ok, note)
    for u in users:
        ctx.boxes.drop(u)


def _set_interval(database, ids: list[int]) -> None:
    from webapp.extensions import db
    from webapp.models import MailAccount

    with database.app.app_context():
        for account in db.session.query(MailAccount).filter(MailAccount.id.in_(ids)):
            account.fetch_interval_minutes = 12 * 60
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
