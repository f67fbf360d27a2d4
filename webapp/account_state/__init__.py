"""Account state: what the admin sees of each mail account after a fetch.

- service.py: account labels as the admin names them, the one status badge of a row, the
  oversized mail left on the server (list, dismiss, fetch it anyway once), the fetch log of
  a run, and the JSON the list and Status poll while a fetch runs
- views.py: those screens and the JSON endpoint
"""

from __future__ import annotations

from flask import Flask

from ..timefmt import screen_time


def init_app(app: Flask) -> None:
    """Register the account-state screens and the `when` template filter (screen times)."""
    from . import views

    app.register_blueprint(views.bp)
    app.add_template_filter(screen_time, "when")
