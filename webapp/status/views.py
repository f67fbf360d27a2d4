"""The Status page: what needs attention, for a signed-in admin."""

from __future__ import annotations

from flask import Blueprint, render_template

from .service import START_COMMAND, status_page

bp = Blueprint("status", __name__, url_prefix="/status")


@bp.route("/")
def index() -> str:
    return render_template("status/index.html", page=status_page(), start_command=START_COMMAND)
