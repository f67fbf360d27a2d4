"""Admins and sign-in: the service (create an admin, set and check a password), the sign-in screen
with the guard in front of every other page (views), and `flask admin create|set-password`.

Every screen records who changed a row: `current_admin_name` is exported here for them.
"""

from __future__ import annotations

from flask import Flask

from . import cli, views
from .views import current_admin_name

__all__ = ["current_admin_name", "init_app"]


def init_app(app: Flask) -> None:
    """Register sign-in/out, the sign-in guard and the `admin` command group."""
    app.register_blueprint(views.bp)
    app.before_request(views.load_signed_in_admin)
    app.cli.add_command(cli.admin_cli)
