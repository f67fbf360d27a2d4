"""Admin users: creating one and checking a sign-in (with lockout), shared by the sign-in
screen, `flask setup` and `flask admin create`."""

from __future__ import annotations

from datetime import timedelta

from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import AdminUser, utcnow


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
