"""Status: what needs attention (service), its page (views) and `flask status` (cli).

The Mail Accounts list shows each account's fetch state and whether a scheduler is alive;
it reads them from here, so those names are exported.
"""

from __future__ import annotations

from flask import Flask

from . import cli, views
from .service import (
    START_COMMAND,
    account_fetch_state,
    fetch_states,
    is_pending,
    scheduler_alive,
)

__all__ = [
    "START_COMMAND",
    "account_fetch_state",
    "fetch_states",
    "init_app",
    "is_pending",
    "scheduler_alive",
]


def init_app(app: Flask) -> None:
    """Register the Status page and the `status` command."""
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.status_command)
