"""The start page and the health check."""

from __future__ import annotations

from flask import Blueprint, Flask, redirect, url_for
from sqlalchemy import text
from werkzeug.wrappers import Response

from .extensions import db

bp = Blueprint("dashboard", __name__)


@bp.route("/")
def index() -> Response:
    return redirect(url_for("mail_accounts.index"))


@bp.route("/healthz")
def healthz() -> tuple[dict[str, str], int] | dict[str, str]:
    """200 when the database answers; no sign-in, no secrets (for the reverse proxy)."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        return {"status": "error", "database": "unreachable"}, 503
    return {"status": "ok"}


def init_app(app: Flask) -> None:
    """Register the start page and /healthz."""
    app.register_blueprint(bp)
