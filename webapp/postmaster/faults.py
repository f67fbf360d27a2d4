"""Named crash points of the fetch path, so tests can kill the process at every step.

Inert unless the app runs with TESTING_FAULTS (env POSTMASTER_TESTING_FAULTS=true) and the
environment names the point: POSTMASTER_CRASH_AT=after_commit (or after_commit:2 for the
second time the point is reached).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

from flask import current_app

_reached: Counter[str] = Counter()


def fault_point(name: str) -> None:
    """SIGKILL this process at the named step when a test asked for it."""
    if not current_app.config.get("TESTING_FAULTS"):
        return
    wanted = os.environ.get("POSTMASTER_CRASH_AT", "")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
