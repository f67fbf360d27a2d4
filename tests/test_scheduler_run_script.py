"""scripts/run.sh starts the web app and the scheduler; Ctrl-C (SIGINT to the terminal's
process group) stops both within 10 s, whatever state they are in."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from tests.fetching import REPO
from tests.servers.dovecot import free_port, live_processes_in_group

pytestmark = pytest.mark.slow

STOP_SECONDS = 10  # the promise in scripts/run.sh


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path, str, int]:
    db_url = f"sqlite:///{tmp_path / 'run.sqlite'}"
    port = free_port()
    env = dict(os.environ)
    env.update(
        POSTMASTER_SQLALCHEMY_DATABASE_URI=db_url,
        POSTMASTER_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        POSTMASTER_SECRET_KEY="run-test",
        POSTMASTER_ADMIN_PASSWORD="run script password",
        POSTMASTER_PORT=str(port),
        POSTMASTER_SCHEDULER_POLL_SECONDS="0.5",
    )
    log = tmp_path / "run.log"
    # Its own session and process group, like a terminal's foreground job.
    proc = subprocess.Popen(
        ["bash", "scripts/run.sh"], cwd=REPO, env=env, start_new_session=True,
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return proc, log, db_url, port


def _wait_for(condition, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.1)


def _ctrl_c_and_time_the_stop(proc: subprocess.Popen, log: Path) -> None:
    """Ctrl-C; the whole group is gone within STOP_SECONDS and run.sh exits 0."""
    os.killpg(proc.pid, signal.SIGINT)
    started = time.monotonic()
    try:
        code = proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        processes = subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(proc.pid)],
                                   capture_output=True, text=True).stdout  # fmt: skip
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"{processes}\n{log.read_text(errors='replace')}") from None
    output = log.read_text(errors="replace")
    assert code == 0, output
    remaining = STOP_SECONDS - (time.monotonic() - started)
    deadline = time.monotonic() + max(remaining, 0.5)
    while live_processes_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_processes_in_group(proc.pid) == [], output
    assert "Postmaster stopped." in output, output


def _stop_if_running(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_run_script_starts_both_and_ctrl_c_stops_both(tmp_path):
    proc, log, db_url, port = _start(tmp_path)
    engine = create_engine(db_url)

    def both_up() -> bool:
        try:
            web_ok = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
            with engine.connect() as conn:
                nodes = conn.execute(text("SELECT count(*) FROM scheduler_node")).scalar()
        except Exception:
            return False
        return web_ok and nodes == 1

    try:
        _wait_for(both_up, proc, log)
        _ctrl_c_and_time_the_stop(proc, log)
    finally:
        _stop_if_running(proc)
    output = log.read_text(errors="replace")
    assert "scheduler" in output and "stopped" in output, output
    with engine.connect() as conn:
        # The scheduler exited cleanly: it removed its own heartbeat.
        assert conn.execute(text("SELECT count(*) FROM scheduler_node")).scalar() == 0, output
    engine.dispose()


def test_ctrl_c_while_a_web_worker_is_still_booting_stops_everything(tmp_path):
    proc, log, _db_url, _port = _start(tmp_path)
    try:
        # gunicorn logs this line when it forks a worker, before the worker has loaded the app
        # or installed its signal handlers: the state in which a worker used to miss Ctrl-C.
        _wait_for(lambda: b"Booting worker" in log.read_bytes(), proc, log)
        _ctrl_c_and_time_the_stop(proc, log)
    finally:
        _stop_if_running(proc)
