"""Tickets created from mail: queue overview, ticket screens and downloads (views), their
queries (service) and the `ticket` command group (cli)."""

from __future__ import annotations

from flask import Flask

from . import cli, views


def init_app(app: Flask) -> None:
    """Register the ticket screens and the `ticket` command group."""
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.ticket_cli)
