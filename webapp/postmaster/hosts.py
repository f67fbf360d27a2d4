"""At most MAX_CONNECTIONS_PER_HOST mail connections to one host at a time, per process.

Microsoft 365 throttles clients that open many connections at once, so every fetch takes a
slot of its host (lowercased name) before it connects and gives it back when the connection is
closed. A fetch that finds its host full waits for a slot (its lease is kept alive by the
scheduler's heartbeat meanwhile) instead of failing, and gives up only when it is told to stop.
The slots are counted in this process: the scheduler's worker threads share them, and N
scheduler processes reach one host with at most N times the limit.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

WAIT_STEP = 0.5  # seconds between checks of should_stop while waiting


class SlotWaitStopped(Exception):
    """Told to stop while waiting for a connection slot."""


class HostSlots:
    """Open connections per host, and how many fetches wait for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()

    def open_count(self, host: str) -> int:
        with self._cond:
            return self._open[host.lower()]

    def waiting(self, host: str) -> int:
        with self._cond:
            return self._waiting[host.lower()]

    def acquire(
        self, host: str, limit: int, should_stop: Callable[[], bool] | None
    ) -> float | None:
        """Take a slot of host (limit <= 0: no limit); the seconds waited, None if it was free."""
        key = host.lower()
        started = time.monotonic()
        waited = False
        with self._cond:
            if limit > 0 and self._open[key] >= limit:
                waited = True
                self._waiting[key] += 1
                try:
                    while self._open[key] >= limit:
                        if should_stop is not None and should_stop():
                            raise SlotWaitStopped()
                        self._cond.wait(WAIT_STEP)
                finally:
                    self._waiting[key] -= 1
            self._open[key] += 1
        return time.monotonic() - started if waited else None

    def release(self, host: str) -> None:
        key = host.lower()
        with self._cond:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(
        self, host: str, limit: int, should_stop: Callable[[], bool] | None = None
    ) -> Iterator[float | None]:
        """The with block holds one slot of host; yields the seconds waited (None: no wait)."""
        waited = self.acquire(host, limit, should_stop)
        try:
            yield waited
        finally:
            self.release(host)


host_slots = HostSlots()  # the one of this process
