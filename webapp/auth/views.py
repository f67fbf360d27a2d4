"""Sign-in, sign-out and the guard that makes every other page require a signed-in admin."""

from __future__ import annotations

import time
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
from .service import AdminError, Throttle, authenticate, end_sessions

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
                # The client's address: behind POSTMASTER_TRUSTED_PROXIES, ProxyFix has put the
                # address the trusted proxy saw here.
                request.remote_addr or "unknown",
                _throttle(),
            )
        except AdminError as e:
            flash(str(e), "error")
        else:
            session.clear()
            session["admin_user_id"] = user.id
            session["session_version"] = user.session_version
            session["signed_in_at"] = int(time.time())
            session.permanent = True
            return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


def _throttle() -> Throttle:
    config = current_app.config
    return Throttle(
        free_failures=int(config["LOGIN_FREE_FAILURES"]),
        first_delay=float(config["LOGIN_FIRST_DELAY_SECONDS"]),
        max_delay=float(config["LOGIN_MAX_DELAY_SECONDS"]),
    )


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    if g.admin is not None:
        end_sessions(g.admin.id)  # a copy of the cookie must not stay signed in
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
    g.admin = _session_admin()
    if g.admin is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.endpoint is None:
            return None  # a 404 stays a 404
        # script_root: behind a proxy with a path prefix, "next" must include the prefix.
        target = request.script_root + request.full_path.rstrip("?")
        return redirect(url_for("auth.login", next=target))
    return None


def _session_admin() -> AdminUser | None:
    """The admin of this session, unless it was ended (sign-out, new password) or is older
    than SESSION_MAX_AGE_HOURS since sign-in, whatever the activity."""
    user_id = session.get("admin_user_id")
    if not user_id:
        return None
    admin = db.session.get(AdminUser, user_id)
    signed_in_at = session.get("signed_in_at")
    max_age = float(current_app.config["SESSION_MAX_AGE_HOURS"]) * 3600
    if (
        admin is None
        or session.get("session_version") != admin.session_version
        or not isinstance(signed_in_at, int)
        or time.time() - signed_in_at > max_age
    ):
        session.clear()
        return None
    return admin


def current_admin_name() -> str | None:
    """The signed-in admin's name, for the Created/Changed by columns."""
    admin = getattr(g, "admin", None)
    return admin.username if admin is not None else None
