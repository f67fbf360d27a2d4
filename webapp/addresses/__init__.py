"""Email Addresses: the screens (views, forms), the `system-address` command group and the
shared service."""

from __future__ import annotations

from flask import Flask

from . import cli, views


def init_app(app: Flask) -> None:
    """Register the Email Addresses screens and the `system-address` command group."""
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.system_address_cli)
