"""PostMaster Filters: the screen (views, forms), the CLI group and the shared service.

The matching itself is the fetch engine's (webapp.postmaster.filters).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from . import cli, views

    app.register_blueprint(views.bp)
    app.cli.add_command(cli.filter_cli)
