"""Fetch benchmark (issue 6): our ingest against plain loops and the classic fetchers.

    .venv/bin/python -m bench.fetch [--messages 10000] [--runs 3] [--only imap|pop3]
                                    [--scenario basic|accounts|large|filters|push] [--json FILE]

Starts the same private Dovecot the tests use (tests/servers/dovecot.py; needs root), loads a
fresh mailbox for every single measurement (tests/mailgen.realistic_corpus) and runs each
fetcher as its own child process, so wall time and peak RSS (VmHWM polled from /proc) are
are comparable. Wall time includes interpreter start-up; so does the baseline's.

basic     per protocol: baseline loop (parse_mail), naive loop (email.message_from_bytes),
          getmail6 and fetchmail when installed, and our CLI fetch into SQLite and PostgreSQL.
accounts  200 accounts x 50 messages fetched by one `python -m scheduler` per pool size.
large     one 25 MB message among small ones (peak RSS), then 10,000 vs --large-messages
          (default 100,000) messages over IMAP into SQLite (growth must stay linear).
filters   our CLI fetch without filters and with --filters (default 50) valid PostMaster
          filters of 3 conditions each (every mail matches one); the cost must be <= 10 %.
push      delivery -> ticket latency with --accounts (use 100) idling IMAP accounts
          (bench/push.py); target median <= 2 s, 95th percentile <= 5 s.

Every run of ours is checked: each loaded message is exactly one article or failed mail, one
dedupe key each, and the mailbox is empty afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.mailgen import make_mail, realistic_corpus  # noqa: E402
from tests.servers.dovecot import Dovecot  # noqa: E402

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432"
PASSWORD = "bench-password"
MB = 1024 * 1024


# -- measuring child processes ---------------------------------------------------------------


@dataclass
class ChildRun:
    returncode: int
    seconds: float
    maxrss_mb: float
    stdout: str
    stderr: str
    tree_mb: float = 0.0  # PSS with its child processes (PeakRss.tree_mb)


def run_child(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600, cwd: Path = REPO
) -> ChildRun:
    """Run one process; wall time and its own peak RSS, output captured in files."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        peak = PeakRss(proc.pid)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        seconds = time.perf_counter() - started
        peak.stop()
        out.seek(0)
        err.seek(0)
        return ChildRun(
            proc.returncode,
            seconds,
            peak.mb,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            peak.tree_mb,
        )


class PeakRss:
    """Polls /proc/PID/status VmHWM (the high-water mark of the process's own memory).

    Not wait4's ru_maxrss: Linux carries the parent's RSS at fork into the child's ru_maxrss
    across exec, so every child of this (big) process would report at least its size.
    VmHWM only grows, so polling every 10 ms misses at most a peak in the last 10 ms.

    tree_mb: the peak of the sum of the PSS (/proc/PID/smaps_rollup: shared pages divided
    among the processes that share them) of the process and all its live descendants (the
    parser's worker processes and their forkserver), sampled every 50 ms; descendants are
    looked for every 0.2 s. What the fetch needs in all, where VmHWM sees one process.
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.kb = 0
        self.tree_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)
        self._thread.start()

    @staticmethod
    def _hwm(pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def _descendants(self) -> set[int]:
        parents: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/stat") as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                    parents[int(entry.name)] = int(fields[1])
                except (OSError, IndexError, ValueError):
                    pass
        found, frontier = {self.pid}, [self.pid]
        while frontier:
            parent = frontier.pop()
            for pid, ppid in parents.items():
                if ppid == parent and pid not in found:
                    found.add(pid)
                    frontier.append(pid)
        return found

    def _poll(self, interval: float) -> None:
        pids, last_scan, last_tree = {self.pid}, 0.0, 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_scan > 0.2:
                pids, last_scan = self._descendants(), now
            if now - last_tree > 0.05:
                self.tree_kb = max(self.tree_kb, sum(self._pss(pid) for pid in pids))
                last_tree = now
            kb = self._hwm(self.pid)
            if kb is not None:
                self.kb = max(self.kb, kb)
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return self.kb / 1024

    @property
    def tree_mb(self) -> float:
        return self.tree_kb / 1024


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- mailboxes -------------------------------------------------------------------------------


class Mailboxes:
    """Fresh Dovecot users, each loaded with a corpus, on one private Dovecot."""

    def __init__(self, dovecot: Dovecot) -> None:
        self.dovecot = dovecot
        self.counter = 0

    def load(self, raws: Iterable[bytes]) -> tuple[str, int, int]:
        """A new user with these messages; returns (username, count, total bytes)."""
        self.counter += 1
        user = f"bench{self.counter}-{uuid.uuid4().hex[:6]}"
        self.dovecot.add_user(user, PASSWORD)
        stats = [0, 0]

        def counted() -> Iterator[bytes]:
            for raw in raws:
                stats[0] += 1
                stats[1] += len(raw)
                yield raw

        self.dovecot.deliver_many(user, counted())
        return user, stats[0], stats[1]

    def port(self, protocol: str) -> int:
        return self.dovecot.imaps_port if protocol == "imap" else self.dovecot.pop3s_port

    def remaining(self, user: str) -> int:
        return self.dovecot.message_count(user)

    def drop(self, user: str) -> None:
        """Free the disk of a finished measurement."""
        shutil.rmtree(self.dovecot.home(user), ignore_errors=True)


def corpus(n: int, seed: int) -> Iterator[bytes]:
    return realistic_corpus(n, seed=seed)


# -- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    tool: str
    protocol: str
    messages: int
    mbytes: float
    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    tree_mb: list[float] = field(default_factory=list)  # with child processes
    ok: bool = True
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def rate(self) -> float:
        return self.messages / self.median if self.seconds else float("nan")

    @property
    def spread(self) -> str:
        """Min-max around the median, in percent (the noise of this machine)."""
        if len(self.seconds) < 2:
            return "-"
        med = self.median
        low, high = (min(self.seconds) / med - 1) * 100, (max(self.seconds) / med - 1) * 100
        return f"{low:+.0f}/{high:+.0f}%"

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(
            median_seconds=self.median,
            messages_per_second=self.rate,
            mb_per_second=self.mbytes / self.median if self.seconds else None,
            peak_rss_mb=max(self.rss_mb) if self.rss_mb else None,
            peak_tree_mb=max(self.tree_mb) if self.tree_mb else None,
        )
        return data


class Results:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], Result] = {}

    def add(
        self,
        scenario: str,
        tool: str,
        protocol: str,
        n: int,
        nbytes: int,
        run: ChildRun,
        ok: bool,
        note: str = "",
    ) -> Result:
        key = (scenario, tool, protocol)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = Result(scenario, tool, protocol, n, nbytes / MB)
        if ok:
            row.seconds.append(run.seconds)
            row.rss_mb.append(run.maxrss_mb)
            row.tree_mb.append(run.tree_mb)
        else:
            row.ok = False
            row.note = note[:600]  # the problem first, then the tail of the output
        print(
            f"  {scenario:8} {tool:26} {protocol:5} {n:7} msgs {run.seconds:8.2f}s "
            f"{n / run.seconds:7.0f}/s rss {run.maxrss_mb:6.0f} MB "
            f"(+children {run.tree_mb:4.0f} MB) {'ok' if ok else 'FAILED'}"
            + (f" ({note[-300:]})" if note and not ok else ""),
            flush=True,
        )
        return row

    def get(self, scenario: str, tool: str, protocol: str) -> Result | None:
        return self.rows.get((scenario, tool, protocol))

    def table(self) -> str:
        head = (
            f"| scenario | fetcher | proto | msgs | median s | spread | msg/s | MB/s | "
            f"peak RSS MB | with children MB | ours/baseline | ours/getmail6 |\n|{'---|' * 12}"
        )
        lines = [head]
        for row in self.rows.values():
            base = self.get(row.scenario, "baseline loop (parse_mail)", row.protocol)
            getmail = self.get(row.scenario, "getmail6", row.protocol)
            ratio = gm = ""
            if row.tool.startswith("ours") and row.seconds:
                if base and base.seconds:
                    ratio = f"{row.rate / base.rate:.2f}x"
                if getmail and getmail.seconds:
                    gm = f"{row.rate / getmail.rate:.1f}x"
            if not row.ok:
                lines.append(
                    f"| {row.scenario} | {row.tool} | {row.protocol} | {row.messages} | "
                    f"FAILED: {row.note[-120:]} ||||||||"
                )
                continue
            lines.append(
                f"| {row.scenario} | {row.tool} | {row.protocol} | {row.messages} | "
                f"{row.median:.2f} | {row.spread} | {row.rate:.0f} | "
                f"{row.mbytes / row.median:.1f} | {max(row.rss_mb):.0f} | "
                f"{max(row.tree_mb):.0f} | {ratio} | {gm} |"
            )
        return "\n".join(lines)


# -- the fetchers ----------------------------------------------------------------------------


def baseline(
    ctx: Bench, protocol: str, parse: str, raws: Iterable[bytes], scenario: str, tool: str
) -> Result:
    user, n, nbytes = ctx.boxes.load(raws)
    run = run_child(
        [
            sys.executable,
            "-m",
            "bench.loops",
            protocol,
            "--parse",
            parse,
            "--port",
            str(ctx.boxes.port(protocol)),
            "--user",
            user,
            "--password",
            PASSWORD,
            "--ca",
            ctx.dovecot.ca_file,
        ]
    )
    ok, note = run.returncode == 0, run.stderr
    if ok:
        got = json.loads(run.stdout.strip().splitlines()[-1])
        left = ctx.boxes.remaining(user)
        ok = got["count"] == n and left == 0
        note = f"fetched {got['count']} of {n}, {left} left on the server"
    ctx.boxes.drop(user)
    return ctx.results.add(scenario, tool, protocol, n, nbytes, run, ok, note)


def getmail6(ctx: Bench, protocol: str, raws: Iterable[bytes], scenario: str) -> None:
    user, n, nbytes = ctx.boxes.load(raws)
    with tempfile.TemporaryDirectory(prefix="bench-getmail-") as tmp:
        maildir = Path(tmp) / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        # getmail6 refuses to deliver as root: it runs as "nobody", as a user's cron job would.
        for path in [Path(tmp), maildir, *maildir.iterdir()]:
            shutil.chown(path, "nobody", "nogroup")
        retriever = "SimpleIMAPSSLRetriever" if protocol == "imap" else "SimplePOP3SSLRetriever"
        rc = Path(tmp) / "getmailrc"
        rc.write_text(
            f"[retriever]\ntype = {retriever}\nserver = 127.0.0.1\n"
            f"port = {ctx.boxes.port(protocol)}\nusername = {user}\npassword = {PASSWORD}\n"
            f"ca_certs = {ctx.dovecot.ca_file}\n"
            + ('mailboxes = ("INBOX",)\n' if protocol == "imap" else "")
            + f"\n[destination]\ntype = Maildir\npath = {maildir}/\n\n"
            "[options]\ndelete = true\nread_all = true\nverbose = 0\n"
            "message_log_syslog = false\n"
        )
        shutil.chown(rc, "nobody", "nogroup")
        run = run_child(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "getmail",
                f"--rcfile={rc}",
                f"--getmaildir={tmp}",
            ],
            env=dict(os.environ, HOME=tmp),
        )
        got = len(list((maildir / "new").iterdir()))
    left = ctx.boxes.remaining(user)
    ok = run.returncode == 0 and got == n and left == 0
    note = f"rc {run.returncode}, {got} of {n} in the Maildir, {left} left; {run.stderr}"
    ctx.results.add(scenario, "getmail6", protocol, n, nbytes, run, ok, note)
    ctx.boxes.drop(user)


def fetchmail(ctx: Bench, protocol: str, raws: Iterable[bytes], scenario: str) -> None:
    user, n, nbytes = ctx.boxes.load(raws)
    with tempfile.TemporaryDirectory(prefix="bench-fetchmail-") as tmp:
        maildir = Path(tmp) / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        # Its MDA runs once per message, as with procmail or maildrop: a Maildir file each.
        # Named by the shell's PID, which 10,000 deliveries reuse: --backup keeps both files.
        mda = (
            f"/bin/sh -c 'cat > {maildir}/tmp/$$ && "
            f"mv --backup=numbered {maildir}/tmp/$$ {maildir}/new/$$'"
        )
        rc = Path(tmp) / "fetchmailrc"
        rc.write_text(
            "set no syslog\n"
            f"poll 127.0.0.1 service {ctx.boxes.port(protocol)} "
            f"protocol {'IMAP' if protocol == 'imap' else 'POP3'}\n"
            f'  user "{user}" password "{PASSWORD}" is root here\n'
            f'  ssl sslcertck sslcertfile "{ctx.dovecot.ca_file}" sslcommonname "localhost"\n'
            f'  nokeep fetchall mda "{mda.replace(chr(34), chr(92) + chr(34))}"\n'
        )
        rc.chmod(0o600)
        env = dict(os.environ, HOME=tmp, FETCHMAILHOME=tmp)
        run = run_child(
            ["fetchmail", "-f", str(rc), "--nosyslog", "-N", "--pidfile", f"{tmp}/pid"], env=env
        )
        got = len(list((maildir / "new").iterdir()))
    left = ctx.boxes.remaining(user)
    # fetchmail leaves a message without a header/body separator on the server (counted).
    ok = run.returncode == 0 and got + left == n
    note = f"rc {run.returncode}, {got} of {n} delivered, {left} left; {run.stderr[-300:]}"
    if left and os.environ.get("BENCH_DEBUG"):
        print(run.stdout[-3000:], ctx.dovecot.messages(user)[0][:1500])
    row = ctx.results.add(scenario, "fetchmail", protocol, n, nbytes, run, ok, note)
    if ok and left:
        row.note = f"left {left} malformed message(s) on the server"
    ctx.boxes.drop(user)


class Database:
    """A fresh SQLite file or PostgreSQL database with the schema, seed and accounts."""

    def __init__(self, kind: str, pg_url: str, tmp: Path) -> None:
        from cryptography.fernet import Fernet

        self.kind = kind
        self.pg_url = pg_url
        self.keys = Fernet.generate_key().decode()
        if kind == "sqlite":
            self.name = str(tmp / f"bench-{uuid.uuid4().hex[:8]}.sqlite")
            self.url = f"sqlite:///{self.name}"
        else:
            self.name = f"pm_bench_{uuid.uuid4().hex[:10]}"
            self._admin(f'CREATE DATABASE "{self.name}"')
            self.url = f"{pg_url}/{self.name}"
        self.app = self._app()
        from webapp.extensions import db
        from webapp.seed import seed_database

        with self.app.app_context():
            db.create_all()
            seed_database()
            db.session.remove()
            db.engine.dispose()

    def _admin(self, sql: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(f"{self.pg_url}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(sql))
        engine.dispose()

    def _app(self):
        from webapp import create_app

        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": self.url,
                "ENCRYPTION_KEYS": self.keys,
                "SECRET_KEY": "bench",
                # Own dict: create_app fills SQLite's connect_args into the one it is given, and
                # DefaultConfig's shared {} would leak them into a later PostgreSQL app.
                "SQLALCHEMY_ENGINE_OPTIONS": {},
            }
        )
        return app

    def setup(
        self, accounts: list[tuple[str, int, str]], cap: int, filters: int = 0, push: bool = False
    ) -> list[int]:
        """Mail accounts (user, port, type), the per-run cap above N and `filters` PostMaster
        filters; returns the account ids. Polled only unless `push`."""
        from webapp.extensions import db
        from webapp.models import MailAccount
        from webapp.settings.store import set_setting

        with self.app.app_context():
            rows = [
                MailAccount(
                    type=account_type,
                    host="127.0.0.1",
                    port=port,
                    username=user,
                    password=PASSWORD,
                    trusted=False,
                    dispatch="to",
                    validity="valid",
                    push=push,
                    created_by="bench",
                    changed_by="bench",
                )
                for user, port, account_type in accounts
            ]
            db.session.add_all(rows)
            set_setting("MaxMessagesPerRun", str(cap))
            set_setting("MaxMessageSizeMB", "64")
            db.session.commit()
            add_bench_filters(filters)
            ids = [r.id for r in rows]
            db.session.remove()
            db.engine.dispose()
        return ids

    def env(self, ca_file: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            FLASK_APP="wsgi",
            POSTMASTER_SQLALCHEMY_DATABASE_URI=self.url,
            POSTMASTER_ENCRYPTION_KEYS=self.keys,
            POSTMASTER_SECRET_KEY="bench-secret",
            POSTMASTER_MAIL_CA_FILE=ca_file,
        )
        env.update(extra)
        return env

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func, select

        from webapp.extensions import db
        from webapp.models import Article, FailedMail, FetchRun, RawMail, SeenMessage

        with self.app.app_context():

            def count(col):
                return db.session.scalar(select(func.count(col)))

            result = {
                "articles": count(Article.id),
                "failed": count(FailedMail.id),
                "seen": count(SeenMessage.id),
                # Keys are unique per account (uid:<uidvalidity>:<uid> repeats across accounts).
                "seen_keys": db.session.scalar(
                    select(func.count()).select_from(
                        select(SeenMessage.mail_account_id, SeenMessage.key).distinct().subquery()
                    )
                ),
                "raw": count(RawMail.id),
                "runs_finished": db.session.scalar(
                    select(func.count(FetchRun.id)).where(FetchRun.finished_at.is_not(None))
                ),
            }
            db.session.remove()
            db.engine.dispose()
        return result

    def drop(self) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(self.name + suffix).unlink(missing_ok=True)
        else:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def add_bench_filters(n: int) -> None:
    """n valid filters of 3 conditions each on the corpus' headers and body: filter i takes
    the mail of customer i (so every mail matches one of 50 filters) and sets its priority."""
    from webapp.filters.service import FilterInput, create_filter
    from webapp.postmaster.filters import Condition

    third = [
        Condition("X-Loop", ".", negate=True),
        Condition("To", "^support[0-2]@"),
        Condition("Body", "(error|fehler) code {i}\\b", negate=True),
    ]
    for i in range(n):
        conditions = [
            Condition("From", f"@customer{i}\\.example\\.test>?$"),
            Condition("Subject", "[a-z]|[^a-z]"),
            Condition(third[i % 3].header, third[i % 3].pattern.format(i=i), third[i % 3].negate),
        ]
        create_filter(
            FilterInput(f"bench-{i:03}", conditions, [("X-OTOBO-Priority", "4 high")]), "bench"
        )


def exactly_once(counts: dict[str, int], n: int) -> str:
    """'' when every loaded message is one article or failed mail with one key; else why not."""
    problems = []
    if counts["articles"] + counts["failed"] != n:
        problems.append(f"{counts['articles']} articles + {counts['failed']} failed != {n}")
    if counts["seen"] != n or counts["seen_keys"] != n:
        problems.append(f"{counts['seen']} dedupe keys ({counts['seen_keys']} distinct) != {n}")
    if counts["raw"] != n:
        problems.append(f"{counts['raw']} raw mails != {n}")
    return "; ".join(problems)


def ours(
    ctx: Bench,
    protocol: str,
    dbkind: str,
    raws: Iterable[bytes],
    scenario: str,
    tool: str | None = None,
    filters: int = 0,
) -> Result:
    user, n, nbytes = ctx.boxes.load(raws)
    database = Database(dbkind, ctx.pg_url, ctx.tmp)
    try:
        account_type = "IMAPS" if protocol == "imap" else "POP3S"
        (account_id,) = database.setup(
            [(user, ctx.boxes.port(protocol), account_type)], n + 1, filters
        )
        run = run_child(
            [
                *ctx.wrap,
                sys.executable,
                "-m",
                "flask",
                "--app",
                "wsgi",
                "mail-account",
                "fetch",
                "--mail-account-id",
                str(account_id),
            ],
            env=database.env(ctx.dovecot.ca_file),
        )
        counts = database.counts()
    finally:
        database.drop()
    left = ctx.boxes.remaining(user)
    problems = exactly_once(counts, n)
    if left:
        problems += f"; {left} messages left on the server"
    ok = run.returncode == 0 and not problems
    note = f"rc {run.returncode}: {problems} {run.stdout[-200:]} {run.stderr[-600:]}"
    ctx.boxes.drop(user)
    return ctx.results.add(
        scenario, tool or f"ours CLI -> {dbkind}", protocol, n, nbytes, run, ok, note
    )


# -- scenarios -------------------------------------------------------------------------------


@dataclass
class Bench:
    dovecot: Dovecot
    boxes: Mailboxes
    results: Results
    tmp: Path
    pg_url: str | None
    dbs: list[str]
    classic: bool
    wrap: list[str] = field(default_factory=list)  # e.g. a profiler around our CLI
    extra: dict = field(default_factory=dict)


def scenario_basic(ctx: Bench, n: int, runs: int, protocols: list[str]) -> None:
    for r in range(runs):
        print(f"basic: run {r + 1} of {runs}, {n} messages", flush=True)
        for protocol in protocols:
            seed = 1000 + r
            if not ctx.wrap:  # profiling: ours only
                baseline(
                    ctx,
                    protocol,
                    "pipeline",
                    corpus(n, seed),
                    "basic",
                    "baseline loop (parse_mail)",
                )
                baseline(ctx, protocol, "naive", corpus(n, seed), "basic", "naive loop (compat32)")
            if ctx.classic and not ctx.wrap and shutil.which("getmail"):
                getmail6(ctx, protocol, corpus(n, seed), "basic")
            if ctx.classic and not ctx.wrap and shutil.which("fetchmail"):
                fetchmail(ctx, protocol, corpus(n, seed), "basic")
            for dbkind in ctx.dbs:
                ours(ctx, protocol, dbkind, corpus(n, seed), "basic")


def scenario_filters(ctx: Bench, n: int, runs: int, protocols: list[str], filters: int) -> None:
    """Our fetch without and with `filters` PostMaster filters, alternating, same corpus."""
    plain, filtered = "ours CLI -> {}", f"ours CLI -> {{}} + {filters} filters"
    for r in range(runs):
        print(f"filters: run {r + 1} of {runs}, {n} messages, {filters} filters", flush=True)
        for protocol in protocols:
            for dbkind in ctx.dbs:
                ours(ctx, protocol, dbkind, corpus(n, 1000 + r), "filters", plain.format(dbkind))
                ours(
                    ctx,
                    protocol,
                    dbkind,
                    corpus(n, 1000 + r),
                    "filters",
                    filtered.format(dbkind),
                    filters=filters,
                )
    costs = {}
    for protocol in protocols:
        for dbkind in ctx.dbs:
            base = ctx.results.get("filters", plain.format(dbkind), protocol)
            with_filters = ctx.results.get("filters", filtered.format(dbkind), protocol)
            if base and with_filters and base.seconds and with_filters.seconds:
                costs[f"{protocol}/{dbkind}"] = with_filters.median / base.median - 1
    ctx.extra["filter_cost"] = costs
    ctx.extra["filter_engine"] = filter_engine_cost(n, filters)
    for key, cost in costs.items():
        print(f"\n{filters} filters cost {cost:+.1%} of fetch time on {key} (target <= +10%)")


def filter_engine_cost(n: int, filters: int, repeat: int = 5) -> dict:
    """The filters alone, in process, against parse_mail of the same mails (a ratio stays
    steady on a loaded machine, unlike the wall time of two fetches): best of `repeat`."""
    from webapp.postmaster.filters import apply_filters, load_filters
    from webapp.postmaster.pipeline import parse_or_error

    raws = list(corpus(n, 1000))
    with tempfile.TemporaryDirectory(prefix="postmaster-bench-") as tmp:
        database = Database("sqlite", "", Path(tmp))
        with database.app.app_context():
            add_bench_filters(filters)
            started = time.perf_counter()
            compiled = load_filters()
            compile_s = time.perf_counter() - started
        database.drop()
    # Interleaved mail by mail, so both see the same load; best of `repeat` passes.
    parse_s = filter_s = float("inf")
    mails = 0
    for _ in range(repeat):
        log: list[str] = []
        parsing = filtering = 0.0
        mails = 0
        for raw in raws:
            started = time.perf_counter()
            mail = parse_or_error(raw)
            parsed = time.perf_counter()
            if isinstance(mail, Exception):
                continue
            apply_filters(compiled, mail, log)
            parsing += parsed - started
            filtering += time.perf_counter() - parsed
            mails += 1
        parse_s, filter_s = min(parse_s, parsing), min(filter_s, filtering)
    result = {
        "compile_ms": compile_s * 1000,
        "parse_us_per_message": parse_s / mails * 1e6,
        "filter_us_per_message": filter_s / mails * 1e6,
        "matched": sum(line.startswith("filter ") for line in log),
        "mails": mails,
    }
    result["filter_vs_parse"] = result["filter_us_per_message"] / result["parse_us_per_message"]
    print(
        f"filter engine: {filters} filters compiled in {result['compile_ms']:.1f} ms; "
        f"{result['filter_us_per_message']:.0f} us per message against "
        f"{result['parse_us_per_message']:.0f} us to parse it "
        f"({result['filter_vs_parse']:.1%}); {result['matched']} matches in {mails} mails",
        flush=True,
    )
    return result


def scenario_accounts(ctx: Bench, accounts: int, per_account: int, pools: list[int]) -> None:
    """One scheduler process fetches all accounts; time from start until every run finished."""
    from sqlalchemy import create_engine, text

    from webapp.config import DefaultConfig

    dbkind = "postgresql" if "postgresql" in ctx.dbs else "sqlite"
    n = accounts * per_account
    for workers in pools:
        print(f"accounts: {accounts} x {per_account} messages, {workers} workers", flush=True)
        raws = list(corpus(n, 77 + workers))
        users, nbytes = [], 0
        for i in range(accounts):
            user, _, size = ctx.boxes.load(raws[i * per_account : (i + 1) * per_account])
            users.append(user)
            nbytes += size
        del raws
        database = Database(dbkind, ctx.pg_url, ctx.tmp)
        try:
            database.setup([(u, ctx.boxes.port("imap"), "IMAPS") for u in users], per_account + 1)
            env = database.env(
                ctx.dovecot.ca_file,
                POSTMASTER_SCHEDULER_WORKERS=str(workers),
                POSTMASTER_SCHEDULER_POLL_SECONDS="0.2",
            )
            engine = create_engine(database.url)
            done_at: list[float] = []

            def watch(proc: subprocess.Popen, started: float, engine=engine, done_at=done_at):
                sql = text("SELECT count(*) FROM fetch_run WHERE finished_at IS NOT NULL")
                while proc.poll() is None:
                    with engine.connect() as conn:
                        finished = conn.execute(sql).scalar()
                    if finished >= accounts:
                        done_at.append(time.perf_counter() - started)
                        os.kill(proc.pid, signal.SIGTERM)
                        return
                    if time.perf_counter() - started > 1800:
                        os.kill(proc.pid, signal.SIGTERM)
                        return
                    time.sleep(0.1)

            with tempfile.TemporaryFile() as log:
                started = time.perf_counter()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "scheduler"],
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
                watcher = threading.Thread(target=watch, args=(proc, started), daemon=True)
                watcher.start()
                peak = PeakRss(proc.pid)
                proc.wait()
                peak.stop()
                watcher.join()
                log.seek(0)
                output = log.read().decode("utf-8", "replace")
            engine.dispose()
            seconds = done_at[0] if done_at else time.perf_counter() - started
            run = ChildRun(proc.returncode, seconds, peak.mb, "", output)
            counts = database.counts()
        finally:
            database.drop()
        left = sum(ctx.boxes.remaining(u) for u in users)
        problems = exactly_once(counts, n)
        if left:
            problems += f"; {left} messages left on the server"
        ok = bool(done_at) and not problems
        tool = f"scheduler {workers} workers" + (
            " (default)" if workers == DefaultConfig.SCHEDULER_WORKERS else ""
        )
        ctx.results.add(
            "accounts",
            f"{tool} -> {dbkind}",
            "imap",
            n,
            nbytes,
            run,
            ok,
            f"{problems} {output[-600:]}",
        )
        for u in users:
            ctx.boxes.drop(u)


def _with_big_message(small: int, big_mb: int, seed: int) -> Iterator[bytes]:
    """small realistic mails with one big_mb MB mail (a PDF attachment) in the middle."""
    import random

    rng = random.Random(seed)
    for i, raw in enumerate(corpus(small, seed)):
        if i == small // 2:
            blob = rng.randbytes(big_mb * MB * 3 // 4)  # base64 makes it ~big_mb MB
            yield make_mail(
                subject="Big scan",
                body="See the attached scan.",
                attachments=[("scan.pdf", "application/pdf", blob)],
                message_id=f"<big.{seed}@bench.example.test>",
            )
        yield raw


def scenario_large(ctx: Bench, protocols: list[str], big_n: int, runs: int) -> None:
    print("large: one 25 MB message among 500 small ones", flush=True)
    for r in range(runs):
        for protocol in protocols:
            baseline(
                ctx,
                protocol,
                "pipeline",
                _with_big_message(500, 25, 5 + r),
                "25MB",
                "baseline loop (parse_mail)",
            )
            for dbkind in ctx.dbs:
                ours(ctx, protocol, dbkind, _with_big_message(500, 25, 5 + r), "25MB")
    if big_n:
        base_n = max(big_n // 10, 1)
        print(f"large: {base_n} then {big_n} messages, IMAP into SQLite", flush=True)
        growth: dict = {"small_messages": base_n, "big_messages": big_n}
        # The baseline loop on the same two mailboxes: how much of the growth is the server's.
        for name, fetch in (
            (
                "ours",
                lambda n, seed: ours(
                    ctx, "imap", "sqlite", corpus(n, seed), "growth", f"ours CLI -> sqlite ({n})"
                ),
            ),
            (
                "baseline",
                lambda n, seed: baseline(
                    ctx, "imap", "pipeline", corpus(n, seed), "growth", f"baseline loop ({n})"
                ),
            ),
        ):
            small, big = fetch(base_n, 9), fetch(big_n, 10)
            if small.seconds and big.seconds:
                growth[f"{name}_small_seconds"] = small.median
                growth[f"{name}_big_seconds"] = big.median
                growth[f"{name}_time_ratio"] = big.median / small.median
                print(
                    f"growth: {name}: {big_n} take {big.median / small.median:.2f}x the "
                    f"time of {base_n}",
                    flush=True,
                )
        ctx.extra["growth"] = growth


# -- main ------------------------------------------------------------------------------------


def postgres_url() -> str | None:
    url = os.environ.get("POSTMASTER_BENCH_PG_URL", DEFAULT_PG_URL)
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(f"{url}/postgres", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return url
    except Exception as e:  # no server: SQLite only
        print(f"PostgreSQL not available ({type(e).__name__}); SQLite only", flush=True)
        return None


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["load_before"] = os.getloadavg()
    except OSError:
        pass
    return info


def add_idle_arguments(p: argparse.ArgumentParser) -> None:
    """Options of --scenario idle-accounts (bench/idle.py)."""
    g = p.add_argument_group("idle-accounts")
    g.add_argument("--idle-accounts", type=int, default=1000, help="accounts with no new mail")
    g.add_argument("--idle-interval", type=int, default=1, help="fetch interval (minutes)")
    g.add_argument("--idle-seconds", type=float, default=180, help="steady phase (seconds)")
    g.add_argument("--idle-fixed-seconds", type=float, default=60, help="nothing-due phase")
    g.add_argument(
        "--push-accounts",
        type=int,
        default=0,
        help="of these, accounts on IMAP IDLE push (200 in issue 15; PUSH_MAX_CONNECTIONS)",
    )


def run_idle_accounts(ctx: Bench, args: argparse.Namespace) -> dict:
    from bench.idle import scenario_idle_accounts

    return scenario_idle_accounts(
        ctx,
        args.idle_accounts,
        args.idle_interval,
        args.idle_seconds,
        args.idle_fixed_seconds,
        args.push_accounts,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fetch benchmark (docs/benchmarks.md)")
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--only", choices=["imap", "pop3"])
    p.add_argument(
        "--scenario",
        choices=["basic", "accounts", "large", "filters", "push", "idle-accounts"],
        default="basic",
    )
    p.add_argument("--gap", type=float, default=0.2, help="seconds between mails (push)")
    p.add_argument("--filters", type=int, default=50, help="PostMaster filters (filters)")
    p.add_argument(
        "--db",
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql (skipped when no server)",
    )
    p.add_argument("--no-classic", action="store_true", help="skip getmail6 and fetchmail")
    p.add_argument("--accounts", type=int, help="accounts: 200, push: 100")
    p.add_argument("--per-account", type=int, default=50)
    p.add_argument("--pools", default="1,2,4,8", help="scheduler pool sizes (accounts)")
    p.add_argument(
        "--large-messages",
        type=int,
        default=100_000,
        help="the big mailbox of --scenario large (0: skip)",
    )
    add_idle_arguments(p)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument(
        "--profile",
        type=Path,
        help="run our CLI fetch under py-spy (must be installed), collapsed stacks to this file",
    )
    args = p.parse_args(argv)

    if os.geteuid() != 0:
        print("the private Dovecot needs root (it hands mail to uid 8)", file=sys.stderr)
        return 2
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    pg_url = postgres_url() if "postgresql" in dbs else None
    if pg_url is None:
        dbs = [d for d in dbs if d != "postgresql"]
    protocols = [args.only] if args.only else ["imap", "pop3"]
    info = machine()
    print(f"machine: {info}", flush=True)
    results = Results()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="postmaster-bench-") as tmp, Dovecot() as dovecot:
        wrap = []
        if args.profile:
            wrap = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-r",
                "250",
                "-f",
                "raw",
                *(["--idle"] if os.environ.get("BENCH_PROFILE_IDLE") else []),
                "-o",
                str(args.profile),
                "--",
            ]
        ctx = Bench(
            dovecot, Mailboxes(dovecot), results, Path(tmp), pg_url, dbs, not args.no_classic, wrap
        )
        if args.scenario == "basic":
            scenario_basic(ctx, args.messages, args.runs, protocols)
        elif args.scenario == "filters":
            scenario_filters(ctx, args.messages, args.runs, protocols, args.filters)
        elif args.scenario == "push":
            from bench.push import scenario_push

            scenario_push(ctx, args.accounts or 100, min(args.messages, 300), args.gap)
        elif args.scenario == "idle-accounts":
            ctx.extra["idle_accounts"] = run_idle_accounts(ctx, args)
            if not ctx.extra["idle_accounts"]["ok"]:
                results.rows[("idle", "", "")] = Result("idle", "", "", 0, 0, ok=False)
        elif args.scenario == "accounts":
            pools = [int(x) for x in args.pools.split(",")]
            scenario_accounts(ctx, args.accounts or 200, args.per_account, pools)
        else:
            scenario_large(ctx, protocols, args.large_messages, args.runs)
    print()
    print(results.table())
    growth = ctx.extra.get("growth", {})
    for name in ("ours", "baseline"):
        if f"{name}_time_ratio" in growth:
            print(
                f"\n{name}: {growth['big_messages']} messages took "
                f"{growth[f'{name}_time_ratio']:.2f}x the time of {growth['small_messages']}"
                + (" (target <= 11x)" if name == "ours" else "")
            )
    if args.json:
        payload = {
            "machine": info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "total_seconds": time.perf_counter() - started,
            "results": [r.as_dict() for r in results.rows.values()],
            **ctx.extra,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0 if all(r.ok for r in results.rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
