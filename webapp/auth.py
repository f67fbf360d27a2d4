"""Sign-in, sign-out and the guard that makes every other page require a signed-in admin."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Flask, flash, g, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired

from .extensions import db
from .models import AdminUser, utcnow

bp = Blueprint("auth", __name__)

# Endpoints reachable without signing in.
# The OAuth2 callback checks its own binding (session, or a one-time CLI link): see oauth/flow.py.
PUBLIC_ENDPOINTS = {"auth.login", "dashboard.healthz", "static", "oauth2.callback"}


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Sign in")


class AdminError(Exception):
    """Bad input for an admin user, with a message for the admin."""


def create_admin(username: str, password: str) -> AdminUser:
    """Add an admin user with an scrypt password hash."""
    username = username.strip()
    if not username:
        raise AdminError("The username must not be empty")
    if len(password) < 8:
        raise AdminError("The password must have at least 8 characters")
    if db.session.query(AdminUser).filter_by(username=username).first():
        raise AdminError(f"An admin named {username!r} already exists")
    user = AdminUser(username=username, password_hash=generate_password_hash(password))
    db.session.add(user)
    db.session.commit()
    return user


def authenticate(username: str, password: str, max_failures: int, lock_seconds: int) -> AdminUser:
    """Check a sign-in; lock the user for a while after repeated failures."""
    user = db.session.query(AdminUser).filter_by(username=username.strip()).first()
    now = utcnow()
    if user is not None and user.locked_until and user.locked_until > now:
        raise AdminError("Too many failed sign-ins. Try again in a few minutes.")
    if user is None or not check_password_hash(user.password_hash, password):
        if user is not None:
            user.failed_logins += 1
            if user.failed_logins >= max_failures:
                user.locked_until = now + timedelta(seconds=lock_seconds)
                user.failed_logins = 0
            db.session.commit()
        raise AdminError("Wrong username or password.")
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    db.session.commit()
    return user


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = authenticate(
                form.username.data,
                form.password.data,
                current_app_config("LOGIN_MAX_FAILURES"),
                current_app_config("LOGIN_LOCK_SECONDS"),
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
def logout():
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def current_app_config(key: str):
    from flask import current_app

    return current_app.config[key]


def _safe_next(target: str | None) -> str:
    """Only redirect to a path on this site after sign-in."""
    # "//host" and "/\\host" are other sites to a browser.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return url_for("mail_accounts.index")


def load_signed_in_admin() -> None:
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


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(load_signed_in_admin)
