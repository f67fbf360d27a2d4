"""Failed mail: mail the pipeline could not process (service) and its screen (views).

Its commands belong to the `ticket` group (`ticket failed`, `ticket reprocess-failed`), so
they are defined in tickets/cli.py on top of this service.
"""

from __future__ import annotations

from flask import Flask

from . import views


def init_app(app: Flask) -> None:
    """Register the Failed mail screen."""
    app.register_blueprint(views.bp)
