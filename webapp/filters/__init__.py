"""PostMaster Filters: the screens (views, forms), the `postmaster-filter` command group and
the shared service. The matching itself is the fetch engine's (webapp.postmaster.filters)."""

from __future__ import annotations

from flask import Flask

from . import cli, views


def init_app(app: Flask) -> None:
    """Register the PostMaster Filters screens and the `postmaster-filter` command group."""
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.filter_cli)
