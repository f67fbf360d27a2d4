"""Sign-in, sign-out and the guard that makes every other page require a signed-in admin."""

from __future__ import annotations

import time
import unicodedata
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    abort,
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
from ..formfields import ask_again
from ..models import AdminUser
from .forms import AddAdminForm, ChangePasswordForm, LoginForm
from .service import (
    AdminError,
    Throttle,
    authenticate,
    change_own_password,
    check_new_password,
    create_admin,
    delete_admin,
    end_sessions,
    get_admin,
    list_admins,
)

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


# ----- the Admins screen: change one's own password, add and remove admins -----


@bp.route("/admins/")
def admins() -> str:
    return render_template("auth/admins.html", admins=list_admins(), me=g.admin)


@bp.route("/admins/password", methods=["GET", "POST"])
def change_password() -> Response | str:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            version = change_own_password(
                g.admin,
                form.current_password.data,
                form.new_password.data,
                form.new_password_again.data,
            )
        except AdminError as e:
            target = {"current": form.current_password, "again": form.new_password_again}.get(
                e.field, form.new_password
            )
            target.errors = [*target.errors, str(e)]
        else:
            session["session_version"] = version  # this browser stays signed in
            flash("Your password was changed; your other sessions have ended.", "success")
            return redirect(url_for("auth.admins"))
    if request.method == "POST":
        for field in (form.current_password, form.new_password, form.new_password_again):
            ask_again(field, "password")
    return render_template("auth/password.html", form=form)


@bp.route("/admins/add", methods=["GET", "POST"])
def add_admin() -> Response | str:
    form = AddAdminForm()
    if form.validate_on_submit():
        try:
            check_new_password(form.password.data, form.password_again.data)
            user = create_admin(form.username.data, form.password.data)
        except AdminError as e:
            target = {"username": form.username, "again": form.password_again}.get(
                e.field, form.password
            )
            target.errors = [*target.errors, str(e)]
        else:
            flash(f"Admin {user.username} added.", "success")
            return redirect(url_for("auth.admins"))
    if request.method == "POST":
        ask_again(form.password, "password")
        ask_again(form.password_again, "password")
    return render_template("auth/admin_form.html", form=form)


@bp.route("/admins/<int:admin_id>/delete", methods=["GET", "POST"])
def remove_admin(admin_id: int) -> Response | str:
    """GET: the confirmation page; POST: remove (never yourself, never the last admin)."""
    target = get_admin(admin_id)
    if target is None:
        abort(404)
    if request.method == "GET":
        return render_template("auth/admin_delete.html", target=target, me=g.admin)
    name = target.username
    try:
        delete_admin(target, g.admin)
    except AdminError as e:
        flash(str(e), "error")
    else:
        flash(f"Admin {name} removed; their sessions have ended.", "success")
    return redirect(url_for("auth.admins"))
