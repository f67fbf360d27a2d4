"""Sign-in, sign-out and the guard that makes every other page require a signed-in admin."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from ..extensions import db
from ..models import AdminUser
from .forms import LoginForm
from .service import AdminError, authenticate

bp = Blueprint("auth", __name__)

# Endpoints reachable without signing in.
# The OAuth2 callback checks its own binding (session, or a one-time CLI link): see oauth/flow.py.
PUBLIC_ENDPOINTS = {"auth.login", "dashboard.healthz", "static", "oauth2.callback"}


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = authenticate(
                form.username.data,
                form.password.data,
                current_app.config["LOGIN_MAX_FAILURES"],
                current_app.config["LOGIN_LOCK_SECONDS"],
            )
        except AdminError as e:
            flash(str(e), "error")
        else:
            session.clear()
            session["admin_user_id"] = user.id
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def _safe_next(target: str | None) -> str:
    """Only redirect to a path on this site after sign-in."""
    # "//host" and "/\\host" are other sites to a browser.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return url_for("mail_accounts.index")


def load_signed_in_admin() -> Response | None:
    """Require a signed-in admin for every endpoint except the public ones."""
    user_id = session.get("admin_user_id")
    g.admin = db.session.get(AdminUser, user_id) if user_id else None
    if g.admin is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.endpoint is None:
            return None  # a 404 stays a 404
        # script_root: behind a proxy with a path prefix, "next" must include the prefix.
        target = request.script_root + request.full_path.rstrip("?")
        return redirect(url_for("auth.login", next=target))
    return None


def current_admin_name() -> str | None:
    """The signed-in admin's name, for the Created/Changed by columns."""
    admin = getattr(g, "admin", None)
    return admin.username if admin is not None else None
