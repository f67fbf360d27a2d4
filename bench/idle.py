"""`--scenario idle-accounts` (issue 15): what 1,000 valid accounts with no new mail cost.

One `python -m scheduler` (run through bench/idle_child.py, which counts SQL statements, mail
connections and runs) fetches N real Dovecot users with empty INBOXes at a short interval
(--idle-interval minutes, default 1), so the hour at the default 10 minutes is measured in
minutes. Phases:

1. polling: every account is due at once (never run), then again after the short interval;
   --idle-seconds (default 180) of whatever runs the scheduler does: the CPU, SQL statements,
   commits and connections per run. On a loaded machine fewer runs happen; the cost per run
   stays.
2. nothing due: every next run moved a day ahead, --idle-fixed-seconds (default 60): the cost
   of the claim poll and the heartbeat alone, which does not shrink with a longer interval.
3. check: 20 accounts get one message and "Fetch now"; each must be stored exactly once, the
   mailboxes empty, and every account's last run ok.

CPU is utime + stime of the scheduler and all its descendants (the parse workers and their
forkserver), read from /proc. The cost per run is phase 1's CPU less phase 2's rate over the
same time, divided by the runs; one hour at the default interval is then
runs_per_hour x cost_per_run + 3600 x fixed_rate, with runs_per_hour = N x 60 / 10.

--push-accounts N (200 in the issue): the last N accounts have "Fetch on arrival" and idle on
one IMAP IDLE connection each (bench/idle_push.py; PUSH_MAX_CONNECTIONS, default 200, must
allow N). Phase 1 starts once all N are connected (their safety-net polls at the interval
are runs like the others'); phase 2 then includes the idling connections; the check also
delivers to 5 push accounts without "Fetch now" (each mail stored exactly once); and a 4th
phase, push switched off and every connection dropped, gives the nothing-due rate without
push, so that the push part (CPU of the scheduler and of Dovecot, SQL statements) is phase 2
less phase 4. Each sample also reads the scheduler's RSS, threads and connections to Dovecot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import idle_push
from bench.fetch import PASSWORD, REPO, Bench, Database
from tests.mailgen import make_mail

DEFAULT_INTERVAL_MINUTES = 10
TRICKLE = 20  # accounts that get one message at the end, fetched and checked
TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """utime + stime (+ reaped children's) of a process and its live descendants."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        stats[int(entry)] = (ppid, ticks / TICK)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


@dataclass
class Sample:
    at: float
    cpu: float
    dovecot_cpu: float
    stats: dict[str, int]
    gauges: dict[str, int]  # read at the sample, not summed: RSS, threads, connections

    def minus(self, other: Sample) -> dict[str, float]:
        keys = set(self.stats) | set(other.stats)
        delta: dict[str, float] = {k: self.stats.get(k, 0) - other.stats.get(k, 0) for k in keys}
        delta.update(
            seconds=self.at - other.at,
            cpu=self.cpu - other.cpu,
            dovecot_cpu=self.dovecot_cpu - other.dovecot_cpu,
        )
        delta.update({f"end_{k}": v for k, v in self.gauges.items()})
        return delta


class Watched:
    """The scheduler child and how to sample it."""

    def __init__(
        self, proc: subprocess.Popen[bytes], stats_file: Path, dovecot_pid: int, imaps_port: int
    ):
        self.proc = proc
        self.stats_file = stats_file
        self.dovecot_pid = dovecot_pid
        self.imaps_port = imaps_port

    def sample(self) -> Sample:
        time.sleep(0.6)  # the child writes its counters twice a second
        try:
            stats = json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            stats = {}
        return Sample(
            time.perf_counter(),
            tree_cpu_seconds(self.proc.pid),
            tree_cpu_seconds(self.dovecot_pid),
            stats,
            idle_push.gauges(self.proc.pid, self.imaps_port),
        )

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the scheduler exited with {self.proc.returncode}")


def make_users(ctx: Bench, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    users = [f"idle{i}-{tag}" for i in range(n)]
    for user in users:
        ctx.dovecot.add_user(user, PASSWORD)
    return users


def set_all_next_runs(database: Database, when_sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(database.url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE mail_account SET next_run_at = {when_sql}"))
    engine.dispose()


def accounts_run_once(database: Database) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database.url)
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM mail_account WHERE last_run_at IS NOT NULL")
        ).scalar_one()
    engine.dispose()
    return int(n)


def wait_until(condition: Any, timeout: float, watched: Watched, what: str) -> float:
    started = time.perf_counter()
    while not condition():
        watched.alive()
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return time.perf_counter() - started


def final_check(database: Database, ctx: Bench, users: list[str], push_ids: list[str]) -> str:
    """'' when the trickle and push mails are stored exactly once and every last run was ok."""
    from sqlalchemy import create_engine, text

    counts = database.counts()
    problems = []
    expected = TRICKLE + len(push_ids)
    if counts["articles"] + counts["failed"] != expected or counts["seen_keys"] != expected:
        problems.append(
            f"{counts['articles']} articles + {counts['failed']} failed, "
            f"{counts['seen_keys']} dedupe keys != {expected}"
        )
    not_once = {m: n for m, n in idle_push.stored_once(database, push_ids).items() if n != 1}
    if not_once:
        problems.append(f"push mails not stored exactly once: {not_once}")
    left = sum(ctx.dovecot.message_count(u) for u in users)
    if left:
        problems.append(f"{left} messages left on the server")
    engine = create_engine(database.url)
    with engine.connect() as conn:
        bad = conn.execute(
            text(
                "SELECT count(*) FROM mail_account "
                "WHERE last_run_at IS NOT NULL AND last_status != 'ok'"
            )
        ).scalar_one()
    engine.dispose()
    if bad:
        problems.append(f"{bad} accounts whose last run was not ok")
    return "; ".join(problems)


def start_scheduler(database: Database, ctx: Bench, stats_file: Path, log: Any) -> Watched:
    env = database.env(ctx.dovecot.ca_file)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.idle_child", str(stats_file)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    assert ctx.dovecot._process is not None  # the bench's own Dovecot: its master's pid
    return Watched(proc, stats_file, ctx.dovecot._process.pid, ctx.boxes.port("imap"))


def scenario_idle_accounts(
    ctx: Bench,
    accounts: int,
    minutes: int,
    steady_seconds: float,
    fixed_seconds: float,
    push_accounts: int = 0,
) -> dict[str, Any]:
    if not 0 <= push_accounts <= accounts - TRICKLE:
        raise SystemExit(f"--push-accounts: 0 to {accounts - TRICKLE} (the first {TRICKLE} poll)")
    dbkind = "postgresql" if "postgresql" in ctx.dbs else "sqlite"
    print(
        f"idle-accounts: {accounts} accounts ({push_accounts} on push), interval {minutes} min, "
        f"{dbkind}",
        flush=True,
    )
    if push_accounts:
        idle_push.raise_process_limit(ctx, push_accounts)
    users = make_users(ctx, accounts)
    polled = len(users) - push_accounts
    database = Database(dbkind, ctx.pg_url, ctx.tmp)
    stats_file = Path(tempfile.mkstemp(prefix="bench-idle-", suffix=".json")[1])
    report: dict[str, Any] = {
        "accounts": accounts,
        "push_accounts": push_accounts,
        "interval_minutes": minutes,
        "db": dbkind,
    }
    tail, push_ids = "", []
    try:
        port = ctx.boxes.port("imap")
        database.setup([(u, port, "IMAPS") for u in users[:polled]], 100)
        database.setup([(u, port, "IMAPS") for u in users[polled:]], 100, push=True)
        with database.app.app_context():
            from webapp.extensions import db
            from webapp.settings.store import set_setting

            set_setting("FetchIntervalMinutes", str(minutes))
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        with tempfile.TemporaryFile() as log:
            watched = start_scheduler(database, ctx, stats_file, log)
            try:
                phases = Phases(ctx, database, watched, users, push_accounts)
                report.update(phases.run(steady_seconds, fixed_seconds))
                push_ids = phases.push_ids
            finally:
                if watched.proc.poll() is None:
                    os.kill(watched.proc.pid, signal.SIGTERM)
                watched.proc.wait(timeout=120)
                log.seek(0)
                tail = log.read().decode("utf-8", "replace")[-2000:]
        problems = final_check(database, ctx, users, push_ids)
    except Exception as e:
        problems = f"{type(e).__name__}: {e}"
    finally:
        database.drop()
        stats_file.unlink(missing_ok=True)
        for user in users:
            ctx.boxes.drop(user)
    report["exactly_once"] = problems or "ok"
    report["ok"] = not problems
    if problems:
        report["log_tail"] = tail
    print_report(report)
    return report


class Phases:
    """The measured phases of one scheduler run (see the module's docstring)."""

    def __init__(
        self, ctx: Bench, database: Database, watched: Watched, users: list[str], push: int
    ) -> None:
        self.ctx = ctx
        self.database = database
        self.watched = watched
        self.users = users
        self.push = push
        self.push_users = users[len(users) - push :]
        self.push_ids: list[str] = []

    def run(self, steady_seconds: float, fixed_seconds: float) -> dict[str, Any]:
        watched, database = self.watched, self.database
        # Start-up (imports, create_app) is not part of any run: sample once the counters exist.
        wait_until(lambda: watched.stats_file.stat().st_size > 0, 120, watched, "the scheduler")
        result: dict[str, Any] = {"start_gauges": watched.sample().gauges}
        if self.push:
            took = wait_until(
                lambda: idle_push.connected(database) >= self.push, 900, watched, "push"
            )
            result["push_connect_seconds"] = round(took, 1)
            print(f"  {self.push} push connections in {took:.0f} s", flush=True)
        start = watched.sample()
        time.sleep(steady_seconds)
        steady_end = watched.sample()
        watched.alive()
        result["accounts_run"] = ran = accounts_run_once(database)
        print(f"  {ran} of {len(self.users)} accounts ran at least once", flush=True)
        result["steady"] = steady_end.minus(start)
        result["fixed"] = self.nothing_due(fixed_seconds)
        if self.push:
            result["doveadm_who_imap"] = idle_push.dovecot_sessions(self.ctx)
        result.update(self.check())
        if self.push:
            idle_push.switch_push_off(database)
            wait_until(lambda: idle_push.held(database) == 0, 120, watched, "push off")
            result["fixed_without_push"] = self.nothing_due(fixed_seconds)
        return result

    def nothing_due(self, seconds: float) -> dict[str, float]:
        set_all_next_runs(self.database, DAY_AHEAD[self.database.kind])
        time.sleep(5)  # runs already claimed finish
        begin = self.watched.sample()
        time.sleep(seconds)
        end = self.watched.sample()
        self.watched.alive()
        return end.minus(begin)

    def check(self) -> dict[str, Any]:
        """Fetch now for 20 polled accounts; one mail each into 5 push accounts, no Fetch now."""
        database, watched = self.database, self.watched
        for user in self.users[:TRICKLE]:
            self.ctx.dovecot.deliver(user, make_mail(subject=f"trickle {user}", body="New mail."))
        request_fetch_sql(database, TRICKLE)
        result: dict[str, Any] = {}
        if self.push:
            runs_before = idle_push.push_runs(database)
            self.push_ids, sent = idle_push.deliver_push_mail(self.ctx, self.push_users)
            stored = lambda: all(idle_push.stored_once(database, self.push_ids).values())  # noqa: E731
            wait_until(stored, 300, watched, "the push mails")
            result["push_mails"] = len(self.push_ids)
            result["push_mails_stored_seconds"] = round(time.perf_counter() - sent, 1)
            result["push_runs_in_check"] = idle_push.push_runs(database) - runs_before
        wait_until(lambda: trickle_done(database), 600, watched, "the accounts with mail")
        return result


DAY_AHEAD = {
    "postgresql": "CURRENT_TIMESTAMP + INTERVAL '1 day'",
    "sqlite": "datetime('now', '+1 day')",
}


def request_fetch_sql(database: Database, n: int) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(database.url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE mail_account SET fetch_requested_at = CURRENT_TIMESTAMP, "
                f"next_run_at = CURRENT_TIMESTAMP WHERE id <= (SELECT min(id) + {n - 1} "
                "FROM mail_account)"
            )
        )
    engine.dispose()


def trickle_done(database: Database) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(database.url)
    with engine.connect() as conn:
        pending = conn.execute(
            text("SELECT count(*) FROM mail_account WHERE fetch_requested_at IS NOT NULL")
        ).scalar_one()
    engine.dispose()
    return pending == 0


def print_report(report: dict[str, Any]) -> None:
    """The per-run cost and the hour at the default interval, from the measured phases."""
    steady, fixed = report.get("steady"), report.get("fixed")
    if not steady or not fixed:
        print(f"idle-accounts: FAILED {report.get('exactly_once')}", flush=True)
        return
    n, minutes = report["accounts"], report["interval_minutes"]
    runs = steady.get("runs", 0) or 1
    fixed_rate = fixed["cpu"] / fixed["seconds"]
    per_run = max(0.0, steady["cpu"] - fixed_rate * steady["seconds"]) / runs
    runs_per_hour = n * 60 / DEFAULT_INTERVAL_MINUTES
    hour = runs_per_hour * per_run + 3600 * fixed_rate
    statements_per_run = (
        steady.get("sql", 0) - fixed.get("sql", 0) / fixed["seconds"] * steady["seconds"]
    ) / runs
    fixed_sql_rate = fixed.get("sql", 0) / fixed["seconds"]
    derived = {
        "steady_runs": steady.get("runs", 0),
        "runs_per_second": steady.get("runs", 0) / steady["seconds"],
        "steady_cpu_share": steady["cpu"] / steady["seconds"],
        "fixed_cpu_share": fixed_rate,
        "cpu_ms_per_run": per_run * 1000,
        "dovecot_cpu_ms_per_run": steady["dovecot_cpu"] / runs * 1000,
        "sql_per_run": statements_per_run,
        "commits_per_run": steady.get("commits", 0) / runs,
        "connections_per_run": steady.get("connections", 0) / runs,
        "tls_resumed_per_run": steady.get("tls_resumed", 0) / runs,
        "fixed_sql_per_second": fixed_sql_rate,
        "runs_per_hour_at_default": runs_per_hour,
        "cpu_seconds_per_hour_at_default": hour,
        "core_share_at_default": hour / 3600,
        "sql_per_hour_at_default": runs_per_hour * statements_per_run + 3600 * fixed_sql_rate,
        "scaled_naively_from_steady": steady["cpu"]
        / steady["seconds"]
        * minutes
        / DEFAULT_INTERVAL_MINUTES,
    }
    report["derived"] = derived
    print(
        f"  polling ({minutes} min interval): {derived['steady_runs']} runs in "
        f"{steady['seconds']:.0f} s ({derived['runs_per_second']:.1f}/s), "
        f"{derived['steady_cpu_share']:.1%} of a core; "
        f"{derived['cpu_ms_per_run']:.1f} ms CPU, {derived['sql_per_run']:.1f} SQL statements, "
        f"{derived['commits_per_run']:.1f} commits, {derived['connections_per_run']:.2f} "
        f"connections per run; Dovecot {derived['dovecot_cpu_ms_per_run']:.1f} ms per run\n"
        f"  nothing due: {fixed_rate:.2%} of a core, {fixed_sql_rate:.2f} SQL statements/s\n"
        f"  => {n} accounts every {DEFAULT_INTERVAL_MINUTES} min: "
        f"{hour:.0f} CPU s per hour = {hour / 3600:.1%} of one core (target < 10 %), "
        f"{derived['sql_per_hour_at_default']:.0f} SQL statements per hour; "
        f"exactly once: {report['exactly_once']}",
        flush=True,
    )
    if report.get("push_accounts"):
        idle_push.report_push(report)
