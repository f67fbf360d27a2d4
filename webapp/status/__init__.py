"""Status: what needs attention (service), its page (views) and `flask status` (cli)."""

from __future__ import annotations

from flask import Flask

from . import cli, views


def init_app(app: Flask) -> None:
    """Register the Status page and the `status` command."""
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.status_command)
