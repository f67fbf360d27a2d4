"""Queues: the screens (views, forms), the `queue` command group and the shared service."""

from __future__ import annotations

from flask import Flask

from . import cli, views


def init_app(app: Flask) -> None:
    """Register the Queues screens and the `queue` command group."""
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.queue_cli)
