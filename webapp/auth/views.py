"""Sign-in, sign-out and the guard that makes every other page require a signed-in admin."""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote, urlsplit

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
            return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def safe_next(target: str | None) -> str:
    """The page to go to after sign-in: `next` if it is a path on this site, else the default."""
    if target and _is_local_path(target):
        return target
    return url_for("mail_accounts.index")


def _is_local_path(target: str) -> bool:
    """A path starting with one "/", with no scheme, host, backslash, whitespace or control
    character, also after percent-decoding: browsers drop tabs and newlines and read a
    backslash as "/", so "/<tab>/evil.example" would be "//evil.example", another site."""
    decoded = unquote(target)
    for text in (target, decoded):
        if "\\" in text or any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in text):
            return False
    try:
        parts = urlsplit(target)
    except ValueError:
        return False
    return (
        not parts.scheme
        and not parts.netloc
        and target.startswith("/")
        and not target.startswith("//")
        and not decoded.startswith("//")
    )


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
