"""scripts/run.sh starts the web app and the scheduler; Ctrl-C (SIGINT to the terminal's
process group) stops both cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from tests.fetching import REPO
from tests.servers.dovecot import free_port, live_processes_in_group

pytestmark = pytest.mark.slow


def test_run_script_starts_both_and_ctrl_c_stops_both(tmp_path):
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
    engine = create_engine(db_url)
    try:
        deadline = time.monotonic() + 90
        web_ok = scheduler_ok = False
        while time.monotonic() < deadline and not (web_ok and scheduler_ok):
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                web_ok = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
                with engine.connect() as conn:
                    nodes = conn.execute(text("SELECT count(*) FROM scheduler_node")).scalar()
                scheduler_ok = nodes == 1
            except Exception:
                pass
            time.sleep(0.3)
        assert web_ok and scheduler_ok, log.read_text(errors="replace")

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            processes = subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(proc.pid)],
                                       capture_output=True, text=True).stdout  # fmt: skip
            raise AssertionError(f"{processes}\n{log.read_text(errors='replace')}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text(errors="replace")
    assert code == 0, output
    time.sleep(0.5)
    assert live_processes_in_group(proc.pid) == [], output
    assert "scheduler" in output and "stopped" in output, output
    with engine.connect() as conn:
        # The scheduler exited cleanly: it removed its own heartbeat.
        assert conn.execute(text("SELECT count(*) FROM scheduler_node")).scalar() == 0, output
    engine.dispose()
