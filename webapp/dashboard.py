"""The start page and the health check."""

from flask import Blueprint, redirect, url_for
from sqlalchemy import text

from .extensions import db

bp = Blueprint("dashboard", __name__)


@bp.route("/")
def index():
    return redirect(url_for("mail_accounts.index"))


@bp.route("/healthz")
def healthz():
    """200 when the database answers; no sign-in, no secrets (for the reverse proxy)."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        return {"status": "error", "database": "unreachable"}, 503
    return {"status": "ok"}
