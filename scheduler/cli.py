"""`flask --app wsgi scheduler run`: the same scheduler process as `python -m scheduler`.

Registered in wsgi.py (the composition root): webapp never imports scheduler.
"""

from __future__ import annotations

import sys

from flask import current_app
from flask.cli import AppGroup

from .runner import run_scheduler

scheduler_cli = AppGroup("scheduler", help="The fetch scheduler.")


@scheduler_cli.command("run")
def scheduler_run() -> None:
    """Run one scheduler process (same as `python -m scheduler`) until SIGTERM/Ctrl-C."""
    sys.exit(run_scheduler(current_app._get_current_object()))
