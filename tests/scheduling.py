"""Helpers for scheduler tests: scheduler processes against the test app's database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from tests.fetching import REPO, cli_env
from webapp.extensions import db
from webapp.models import FetchRun


def start_scheduler(
    app: Flask, log_path: Path, *, via_flask: bool = False, **env: str
) -> subprocess.Popen:
    """A real scheduler process (`python -m scheduler` or `flask scheduler run`)."""
    args = ["-m", "flask", "scheduler", "run"] if via_flask else ["-m", "scheduler"]
    settings = dict(
        POSTMASTER_SCHEDULER_POLL_SECONDS="0.5",
        POSTMASTER_HEARTBEAT_STALE_SECONDS="10",
    )
    settings.update(env)
    log = open(log_path, "ab")  # noqa: SIM115  (closed by stop_scheduler)
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=cli_env(app, **settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.log_file = log  # type: ignore[attr-defined]
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def stop_scheduler(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal the process and wait; returns its exit code."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout=timeout)
    finally:
        proc.log_file.close()  # type: ignore[attr-defined]


def log_text(proc: subprocess.Popen) -> str:
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    """Poll the database (fresh session state each time) until the condition holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        db.session.expire_all()
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_runs_never_overlap() -> int:
    """No account was fetched by two holders at once, from the FetchRun log.

    Every run has an end: a run whose process was killed (or lost its lease) is ended by the
    claim that takes the account over, in the claim's own transaction.
    Returns the number of runs checked.
    """
    db.session.rollback()
    db.session.expire_all()
    runs = db.session.query(FetchRun).order_by(FetchRun.mail_account_id, FetchRun.started_at).all()
    by_account: dict[int, list[FetchRun]] = {}
    for run in runs:
        by_account.setdefault(run.mail_account_id, []).append(run)
    for account_runs in by_account.values():
        generations = [r.lease_generation for r in account_runs]
        assert len(set(generations)) == len(generations), f"a lease generation ran twice: {runs}"
        for run in account_runs:
            assert run.finished_at is not None, f"run {run.id} of {run.owner} never finished"
        for first, second in zip(account_runs, account_runs[1:], strict=False):
            assert second.started_at >= first.finished_at, (
                f"runs {first.id} ({first.owner}, generation {first.lease_generation}) and "
                f"{second.id} ({second.owner}, generation {second.lease_generation}) "
                f"of account {first.mail_account_id} overlap"
            )
    return len(runs)
