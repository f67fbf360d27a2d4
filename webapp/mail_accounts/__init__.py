"""Mail Accounts: the seed's screens (views, forms), their CLI group and the shared service."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from . import cli, views

    app.register_blueprint(views.bp)
    app.cli.add_command(cli.mail_account_cli)
