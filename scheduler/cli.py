"""`flask --app wsgi scheduler run`: the same scheduler process as `python -m scheduler`.

Registered in wsgi.py (the composition root): webapp never imports scheduler.
"""

from __future__ import annotations

import sys

from flask import Flask, current_app
from flask.cli import AppGroup

from .runner import run_scheduler

scheduler_cli = AppGroup("scheduler", help="The fetch scheduler.")


@scheduler_cli.command("run")
def scheduler_run() -> None:
    """Run one scheduler process (same as `python -m scheduler`) until SIGTERM/Ctrl-C."""
    # The real app, not the proxy: the scheduler's threads push their own app contexts.
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]  # LocalProxy
    sys.exit(run_scheduler(app))
