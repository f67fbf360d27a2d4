"""One scheduler process: APScheduler's in-memory jobs claim due accounts from the database and
hand them to a bounded pool of fetch workers.

No APScheduler job store is shared: the jobs here are the same in every process (claim, heartbeat,
retention) and the database rows (next_run_at, the lease) decide which process fetches what.
Start as many processes as you like against one PostgreSQL database.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from webapp.models import utcnow
from webapp.postmaster.lease import Lease, claim_due_accounts, make_owner
from webapp.states import FetchTrigger

from . import jobs
from .push import PushManager

log = logging.getLogger("scheduler")

RETENTION_EVERY = timedelta(hours=1)


@dataclass
class Running:
    lease: Lease
    deadline: float  # time.monotonic() after which the fetch gives up between steps


class SchedulerProcess:
    """Claims due accounts into free worker slots; stops cleanly on SIGTERM/SIGINT."""

    def __init__(self, app: Flask) -> None:
        config = app.config
        self.app = app
        self.owner = make_owner("scheduler")
        self.workers = max(1, int(config["SCHEDULER_WORKERS"]))
        self.poll_seconds = float(config["SCHEDULER_POLL_SECONDS"])
        self.lease_seconds = float(config["LEASE_SECONDS"])
        self.fetch_deadline = float(config["FETCH_DEADLINE_SECONDS"])
        # The heartbeat also renews running leases: beat several times per lease period.
        self.heartbeat_seconds = max(
            0.5, min(float(config["HEARTBEAT_STALE_SECONDS"]) / 4, self.lease_seconds / 3)
        )
        # A fetch blocked in a read gives up after MAIL_TIMEOUT; nobody waits longer than that.
        self.stop_wait = float(config["MAIL_TIMEOUT"])
        self.started_at = utcnow()
        self.stopping = threading.Event()
        self.stop_requested_at = 0.0
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.running: dict[int, Running] = {}
        self.claim_again = False
        self.claiming = threading.Lock()
        # Accounts whose IDLE connection saw new mail: fetched before due accounts, and again
        # after a fetch of theirs that was already running.
        self.pushed: set[int] = set()
        self.push = PushManager(app, self.owner, self.request_push_fetch)
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fetch")
        self.apscheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    # --- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        self._install_signal_handlers()
        with self.app.app_context():
            jobs.heartbeat(self.owner, self.started_at)
        log.info(
            "scheduler %s started: %d workers, poll every %.1fs, lease %.0fs",
            self.owner,
            self.workers,
            self.poll_seconds,
            self.lease_seconds,
        )
        now = datetime.now(UTC)
        add = self.apscheduler.add_job
        add(self._claim_job, "interval", seconds=self.poll_seconds, id="claim", next_run_time=now)
        add(self._heartbeat_job, "interval", seconds=self.heartbeat_seconds, id="heartbeat")
        add(self._push_job, "interval", seconds=self.poll_seconds, id="push", next_run_time=now)
        add(
            self._retention_job,
            "interval",
            seconds=RETENTION_EVERY.total_seconds(),
            id="retention",
            next_run_time=now + timedelta(seconds=30),
        )
        self.apscheduler.start()
        while not self.stopping.wait(1.0):
            pass
        return self._shutdown()

    def _install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self.stopping.is_set():
                # Ctrl-C in scripts/run.sh sends SIGINT to the whole group and then the script's
                # SIGTERM: only a signal well after the first one means "exit now".
                if time.monotonic() - self.stop_requested_at > 2.0:
                    log.warning("second %s: exiting now", name)
                    self._release_running()
                    os._exit(1)
                return
            log.info("%s: stopping after the current step of running fetches", name)
            self.stop_requested_at = time.monotonic()
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _shutdown(self) -> int:
        """Stop claiming, let fetches stop at their next step, release, remove the heartbeat."""
        self.apscheduler.shutdown(wait=True)
        self.push.stop_all()
        deadline = time.monotonic() + self.stop_wait
        with self.idle:
            while self.running and time.monotonic() < deadline:
                self.idle.wait(timeout=max(0.0, deadline - time.monotonic()))
            stuck = list(self.running.values())
        if stuck:
            # A thread blocked past the read timeout cannot be killed: give its lease back
            # (its next commit or delete then fails the generation check) and leave.
            log.warning("%d fetches did not stop in time; releasing their leases", len(stuck))
            self._release_running()
        else:
            self.pool.shutdown(wait=True)
        with self.app.app_context():
            jobs.forget_node(self.owner)
        log.info("scheduler %s stopped", self.owner)
        if stuck:
            logging.shutdown()
            os._exit(0)  # do not wait for the stuck threads at interpreter exit
        return 0

    def _release_running(self) -> None:
        # No self.lock: this also runs in a signal handler, which may interrupt its holder.
        leases = [r.lease for r in list(self.running.values())]
        with self.app.app_context():
            for lease in leases:
                jobs.give_back(lease, due_again=True)

    # --- jobs --------------------------------------------------------------------------------

    def _claim_job(self) -> None:
        """Fill free worker slots with due accounts; repeat while a finished fetch asked."""
        with self.claiming:
            while not self.stopping.is_set():
                self.claim_again = False
                with self.lock:
                    free = self.workers - len(self.running)
                    mine = list(self.running)
                if free <= 0:
                    return
                try:
                    with self.app.app_context():
                        pushed, gone = jobs.claim_pushed(self._pushed_now(mine), self.owner, free)
                        with self.lock:
                            self.pushed.difference_update(gone)
                        for lease in pushed:
                            self._start(lease, FetchTrigger.PUSH)
                        # Never an account this process still runs: its lease may have run
                        # out under load, but a second fetch of it here would overlap the first.
                        mine = [*mine, *(lease.account_id for lease in pushed)]
                        free -= len(pushed)
                        leases = claim_due_accounts(self.owner, self.lease_seconds, free, mine)
                except Exception:
                    log.exception("claiming due accounts failed (database down?); retrying")
                    return
                for lease in leases:
                    self._start(lease)
                if not leases and not pushed and not self.claim_again:
                    return

    def _start(self, lease: Lease, trigger: FetchTrigger | None = None) -> None:
        with self.lock:
            self.running[lease.account_id] = Running(lease, time.monotonic() + self.fetch_deadline)
            self.pushed.discard(lease.account_id)
        self.pool.submit(self._fetch_task, lease, trigger)

    def _pushed_now(self, running: list[int]) -> list[int]:
        """Accounts with new mail on their IDLE connection that are not being fetched here."""
        with self.lock:
            return sorted(self.pushed.difference(running))

    def request_push_fetch(self, account_id: int) -> None:
        """Called by an IDLE connection's thread: fetch the account as soon as a slot is free."""
        with self.lock:
            self.pushed.add(account_id)
        self._wake_claim()

    def _push_job(self) -> None:
        try:
            with self.app.app_context():
                self.push.sync()
        except Exception:
            log.exception("push connections: sync failed (database down?)")

    def _fetch_task(self, lease: Lease, trigger: FetchTrigger | None = None) -> None:
        """One worker: its own app context, hence its own database session."""
        try:
            with self.app.app_context():
                if self.stopping.is_set():  # claimed just before the stop: hand it back
                    jobs.give_back(lease, due_again=True)
                    return
                stop = lambda: self._should_stop(lease)  # noqa: E731
                jobs.fetch_claimed(lease, self.owner, stop, trigger)
        except Exception:
            log.exception("worker for mail account %s failed", lease.account_id)
        finally:
            with self.idle:
                running = self.running.get(lease.account_id)
                if running is not None and running.lease == lease:
                    del self.running[lease.account_id]
                self.idle.notify_all()
            self._wake_claim()

    def _should_stop(self, lease: Lease) -> bool:
        if self.stopping.is_set():
            return True
        with self.lock:
            running = self.running.get(lease.account_id)
        if running is not None and time.monotonic() > running.deadline:
            log.warning("mail account %s passed its fetch deadline; stopping", lease.account_id)
            return True
        return False

    def _wake_claim(self) -> None:
        """A slot is free: claim now rather than at the next poll."""
        if self.stopping.is_set():
            return
        self.claim_again = True
        if self.claiming.locked():
            return  # the running claim job sees claim_again and loops once more
        try:
            self.apscheduler.modify_job("claim", next_run_time=datetime.now(UTC))
        except Exception:  # shutting down, or the job is gone: the next poll covers it
            pass

    def _heartbeat_job(self) -> None:
        with self.lock:
            leases = [r.lease for r in self.running.values() if time.monotonic() <= r.deadline]
        try:
            with self.app.app_context():
                jobs.heartbeat(self.owner, self.started_at)
                for lease in jobs.renew_running(leases):
                    log.warning("lost the lease of mail account %s", lease.account_id)
        except Exception:
            log.exception("heartbeat failed (database down?)")

    def _retention_job(self) -> None:
        try:
            with self.app.app_context():
                log.info("retention: %s", jobs.run_retention())
        except Exception:
            log.exception("retention failed")


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s",
    )
    # APScheduler logs every job run at INFO: far too chatty for a job every few seconds.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def run_scheduler(app: Flask) -> int:
    """Run one scheduler process until it is told to stop; returns the exit code."""
    configure_logging()
    return SchedulerProcess(app).run()
