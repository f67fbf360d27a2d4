"""Mail Account Management screens (placeholder until the screens land)."""

from flask import Blueprint, render_template

bp = Blueprint("mail_accounts", __name__, url_prefix="/mail-accounts")


@bp.route("/")
def index():
    return render_template("mail_accounts/index.html", accounts=[])
