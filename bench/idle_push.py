"""The push part of `--scenario idle-accounts --push-accounts N` (bench/idle.py).

The last N accounts get "Fetch on arrival": the scheduler holds one IMAP IDLE connection for
each (PUSH_MAX_CONNECTIONS, default 200, must allow N). Here: the bench Dovecot's process
limit raised for N connections, the gauges read from outside (RSS and threads of the
scheduler, its established connections to the IMAPS port, `doveadm who`), the push mails of
the check phase (delivered, never "Fetch now") and switching push off for the last phase.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

from tests.mailgen import make_mail

if TYPE_CHECKING:
    from bench.fetch import Bench, Database

PUSH_TRICKLE = 5  # push accounts that get one mail in the check phase


def raise_process_limit(ctx: Bench, connections: int) -> None:
    """Room for `connections` idling IMAPS sessions: each holds an imap process and an
    imap-login process (the TLS proxy), and the bench Dovecot allows 200 of each."""
    path = ctx.dovecot.config_file
    with open(path) as handle:
        config = handle.read()
    limit = max(200, connections + 100)
    config = re.sub(r"default_process_limit = \d+", f"default_process_limit = {limit}", config)
    with open(path, "w") as handle:
        handle.write(config)
    ctx.dovecot.restart()  # no session yet: nothing is lost


def gauges(pid: int, imaps_port: int) -> dict[str, int]:
    """RSS (kB) and threads of the scheduler process, and its connections to Dovecot."""
    values = {"rss_kb": 0, "threads": 0, "mail_connections": 0}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    values["rss_kb"] = int(line.split()[1])
                elif line.startswith("Threads:"):
                    values["threads"] = int(line.split()[1])
        values["mail_connections"] = established_to(pid, imaps_port)
    except OSError:
        pass
    return values


def established_to(pid: int, port: int) -> int:
    """Established TCP connections of process `pid` to `port` (from /proc, no tools)."""
    inodes = set()
    for fd in _listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open(f"/proc/{pid}/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def dovecot_sessions(ctx: Bench, prefix: str = "idle") -> int:
    """IMAP sessions of the bench's users that Dovecot counts (`doveadm who -1`)."""
    try:
        output = ctx.dovecot.doveadm("who", "-1")
    except Exception:
        return -1
    count = 0
    for line in output.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith(prefix) and fields[1] == "imap":
            count += 1
    return count


def _scalar(database: Database, sql: str, **params: Any) -> Any:
    from sqlalchemy import create_engine, text

    engine = create_engine(database.url)
    with engine.connect() as conn:
        value = conn.execute(text(sql), params).scalar()
    engine.dispose()
    return value


def connected(database: Database) -> int:
    sql = "SELECT count(*) FROM mail_account WHERE push_state = 'connected'"
    return int(_scalar(database, sql))


def held(database: Database) -> int:
    """Push leases held (a connection, or one being made)."""
    return int(_scalar(database, "SELECT count(*) FROM mail_account WHERE push_owner IS NOT NULL"))


def deliver_push_mail(ctx: Bench, push_users: list[str]) -> tuple[list[str], float]:
    """One mail each into the first PUSH_TRICKLE push accounts; their Message-IDs."""
    ids = []
    for user in push_users[:PUSH_TRICKLE]:
        message_id = f"<push-{user}@bench>"
        ctx.dovecot.deliver(user, make_mail(subject=f"push {user}", message_id=message_id))
        ids.append(message_id)
    return ids, time.perf_counter()


def stored_once(database: Database, message_ids: list[str]) -> dict[str, int]:
    """{Message-ID: articles with it} for the push mails."""
    from sqlalchemy import bindparam, create_engine, text

    engine = create_engine(database.url)
    sql = text(
        "SELECT message_id, count(*) FROM article WHERE message_id IN :ids GROUP BY message_id"
    ).bindparams(bindparam("ids", expanding=True))
    with engine.connect() as conn:
        rows = dict(conn.execute(sql, {"ids": message_ids}).all())
    engine.dispose()
    return {m: int(rows.get(m, 0)) for m in message_ids}


def push_runs(database: Database) -> int:
    return int(_scalar(database, "SELECT count(*) FROM fetch_run WHERE trigger = 'push'"))


def switch_push_off(database: Database) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(database.url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE mail_account SET push = false WHERE push"))
    engine.dispose()


def _rate(phase: dict[str, float], key: str) -> float:
    return phase.get(key, 0) / phase["seconds"]


def report_push(report: dict[str, Any]) -> None:
    """What the idling connections add: phase 2 (push on, nothing due) less phase 4 (off)."""
    on, off = report.get("fixed"), report.get("fixed_without_push")
    if not on or not off:
        return
    n = report["push_accounts"]
    cpu = _rate(on, "cpu") - _rate(off, "cpu")
    push = {
        "connections_idling": n,
        "scheduler_cpu_share": cpu,
        "scheduler_cpu_seconds_per_hour": 3600 * cpu,
        "dovecot_cpu_share": _rate(on, "dovecot_cpu") - _rate(off, "dovecot_cpu"),
        "sql_per_second": _rate(on, "sql") - _rate(off, "sql"),
        "commits_per_second": _rate(on, "commits") - _rate(off, "commits"),
        "push_syncs_per_second": _rate(on, "push_syncs"),
        "idle_commands_in_phase": on.get("idle_commands", 0),
        "idle_phase_seconds": on["seconds"],
        "mail_connections_held": on.get("end_mail_connections", 0),
        "doveadm_who_imap": report.get("doveadm_who_imap"),
        "rss_mb_at_start": report.get("start_gauges", {}).get("rss_kb", 0) / 1024,
        "rss_mb_with_push": on.get("end_rss_kb", 0) / 1024,
        "threads_with_push": on.get("end_threads", 0),
        "threads_without_push": off.get("end_threads", 0),
        "mail_connections_without_push": off.get("end_mail_connections", 0),
    }
    report.setdefault("derived", {})["push"] = push
    print(
        f"  push, {n} connections idling (phase 2 less phase 4): scheduler "
        f"{cpu:.2%} of a core = {3600 * cpu:.0f} CPU s per hour (in the hour above), Dovecot "
        f"{push['dovecot_cpu_share']:.2%}; {push['sql_per_second']:.2f} SQL statements/s, "
        f"{push['commits_per_second']:.2f} commits/s ({push['push_syncs_per_second']:.2f} "
        f"syncs/s); {push['idle_commands_in_phase']} IDLE commands in {on['seconds']:.0f} s\n"
        f"  scheduler RSS {push['rss_mb_at_start']:.0f} MB at start, "
        f"{push['rss_mb_with_push']:.0f} MB with push, {push['threads_with_push']} threads "
        f"({push['threads_without_push']} without); connections held "
        f"{push['mail_connections_held']} (doveadm who: {push['doveadm_who_imap']}, "
        f"{push['mail_connections_without_push']} after push off); "
        f"{report.get('push_mails', 0)} push mails stored in "
        f"{report.get('push_mails_stored_seconds')} s by {report.get('push_runs_in_check')} "
        "push runs",
        flush=True,
    )
