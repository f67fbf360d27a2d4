"""Admin users: creating one, setting a password, and checking a sign-in with throttling per
client address, shared by the sign-in screen, `flask setup` and `flask admin`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Insert, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import AdminUser, OAuth2PendingAuthorization, SignInAttempt, table_of, utcnow

MIN_PASSWORD_LENGTH = 8
# The same for a wrong password and an unknown user: the page must not tell which names exist.
WRONG_CREDENTIALS = "Wrong username or password."
# Addresses with no attempt for this long start again from zero.
FORGET_AFTER = timedelta(days=1)


class AdminError(Exception):
    """Bad input for an admin user, with a message for the admin; `field` names what was
    wrong: "username", "password" (the new one), "again" or "current"."""

    def __init__(self, message: str, field: str = "password") -> None:
        super().__init__(message)
        self.field = field


class SignInThrottled(AdminError):
    """This client address must wait before it may try again."""


@dataclass(frozen=True)
class Throttle:
    """Sign-in throttling per client address: `free_failures` attempts freely, then each
    further attempt waits `first_delay` seconds, doubling per failure, at most `max_delay`."""

    free_failures: int = 5
    first_delay: float = 2.0
    max_delay: float = 900.0

    def delay_after(self, failures: int) -> float:
        """Seconds the address waits after its `failures`-th counted attempt."""
        if failures < self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures, 30)
        return min(self.first_delay * 2**exponent, self.max_delay)


def _validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters")


def create_admin(username: str, password: str) -> AdminUser:
    """Add an admin user with an scrypt password hash."""
    username = username.strip()
    if not username:
        raise AdminError("The username must not be empty", "username")
    if len(username) > 200 or any(not ch.isprintable() for ch in username):
        raise AdminError("The username is too long or contains control characters", "username")
    _validate_password(password)
    if db.session.query(AdminUser).filter_by(username=username).first():
        raise AdminError(f"An admin named {username!r} already exists", "username")
    user = AdminUser(username=username, password_hash=generate_password_hash(password))
    db.session.add(user)
    db.session.commit()
    return user


def set_admin_password(username: str, password: str) -> AdminUser:
    """Give an admin a new password; every session signed in before ends."""
    _validate_password(password)
    user = db.session.query(AdminUser).filter_by(username=username.strip()).first()
    if user is None:
        raise AdminError(f"There is no admin named {username!r}")
    user.password_hash = generate_password_hash(password)
    user.session_version += 1
    db.session.commit()
    return user


def end_sessions(user_id: int) -> None:
    """Sign the admin out everywhere: sessions carrying the old version no longer count."""
    db.session.execute(
        update(AdminUser)
        .where(AdminUser.id == user_id)
        .values(session_version=AdminUser.session_version + 1)
    )
    db.session.commit()


@cache
def _dummy_hash() -> str:
    """A hash made like the real ones, checked for unknown users so they take as long."""
    return generate_password_hash("no such admin: a password nobody has")


def authenticate(username: str, password: str, address: str, throttle: Throttle) -> AdminUser:
    """Check a sign-in from a client address.

    The attempt is counted before the password is checked, in one conditional UPDATE that
    also refuses an address that must still wait: parallel attempts cannot slip past the
    count. A successful sign-in clears the address's count. Raises SignInThrottled or
    AdminError(WRONG_CREDENTIALS), the same for unknown users and wrong passwords."""
    _count_attempt(address, throttle)
    user = db.session.query(AdminUser).filter_by(username=username.strip()).first()
    # Always one hash check, so an unknown name answers in the same time as a known one.
    valid = check_password_hash(user.password_hash if user else _dummy_hash(), password)
    if user is None or not valid:
        raise AdminError(WRONG_CREDENTIALS)
    db.session.execute(delete(SignInAttempt).where(SignInAttempt.address == address))
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def _count_attempt(address: str, throttle: Throttle) -> None:
    """Count one attempt for the address, or raise SignInThrottled while it must wait."""
    now = utcnow()
    db.session.execute(
        delete(SignInAttempt).where(SignInAttempt.last_attempt_at < now - FORGET_AFTER)
    )
    db.session.execute(_insert_ignore().values(address=address, failures=0, last_attempt_at=now))
    # The row stays locked until the commit, so a parallel attempt waits here and then sees
    # the new count and blocked_until.
    failures = db.session.execute(
        update(SignInAttempt)
        .where(
            SignInAttempt.address == address,
            or_(SignInAttempt.blocked_until.is_(None), SignInAttempt.blocked_until <= now),
        )
        .values(failures=SignInAttempt.failures + 1, last_attempt_at=now)
        .returning(SignInAttempt.failures)
    ).scalar()
    if failures is None:
        row = db.session.get(SignInAttempt, address, populate_existing=True)
        db.session.commit()
        raise SignInThrottled(_throttled_message(row.blocked_until if row else None, now))
    delay = throttle.delay_after(failures)
    if delay:
        db.session.execute(
            update(SignInAttempt)
            .where(SignInAttempt.address == address)
            .values(blocked_until=now + timedelta(seconds=delay))
        )
    db.session.commit()


def _throttled_message(blocked_until: datetime | None, now: datetime) -> str:
    seconds = max(1, math.ceil((blocked_until - now).total_seconds())) if blocked_until else 1
    return f"Too many failed sign-ins from your address; try again in {seconds} seconds."


def _insert_ignore() -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING for the address row, in the database's dialect."""
    table = table_of(SignInAttempt)
    if db.engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=["address"])
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=["address"])


# ----- the Admins screen and `flask admin`: list, change one's own password, delete -----

WRONG_CURRENT_PASSWORD = "The current password is wrong."
PASSWORDS_DIFFER = "The two new passwords differ."


def list_admins() -> list[AdminUser]:
    """Every admin, by name."""
    return db.session.query(AdminUser).order_by(AdminUser.username).all()


def get_admin(admin_id: int) -> AdminUser | None:
    """The admin with this id, or None."""
    return db.session.get(AdminUser, admin_id)


def check_new_password(password: str, again: str) -> None:
    """The new password, typed twice: long enough and the same both times (AdminError)."""
    _validate_password(password)
    if password != again:
        raise AdminError(PASSWORDS_DIFFER, "again")


def change_own_password(user: AdminUser, current: str, password: str, again: str) -> int:
    """The signed-in admin's new password; every session of `user` ends, and the new
    session version is returned for the caller's own session. Raises AdminError."""
    if not check_password_hash(user.password_hash, current):
        raise AdminError(WRONG_CURRENT_PASSWORD, "current")
    check_new_password(password, again)
    user.password_hash = generate_password_hash(password)
    user.session_version += 1
    db.session.commit()
    return user.session_version


def delete_admin(target: AdminUser, actor: AdminUser | None) -> None:
    """Remove an admin: never oneself (`actor`, None from the CLI) and never the last one.

    Every admin row is locked first, so two admins removing each other at once cannot leave
    none. Raises AdminError."""
    if actor is not None and actor.id == target.id:
        raise AdminError("You cannot remove yourself: another admin can.")
    target_id, name = target.id, target.username
    remaining = db.session.query(AdminUser).with_for_update().populate_existing().all()
    if target_id not in {a.id for a in remaining}:
        db.session.rollback()
        raise AdminError(f"There is no admin named {name!r}")
    if len(remaining) <= 1:
        db.session.rollback()
        raise AdminError(f"{name!r} is the last admin and cannot be removed.")
    db.session.execute(
        delete(OAuth2PendingAuthorization).where(
            OAuth2PendingAuthorization.admin_user_id == target_id
        )
    )
    db.session.execute(delete(AdminUser).where(AdminUser.id == target_id))
    db.session.commit()


def find_admin(username: str) -> AdminUser:
    """The admin with this name (AdminError when there is none)."""
    user = db.session.query(AdminUser).filter_by(username=username.strip()).first()
    if user is None:
        raise AdminError(f"There is no admin named {username!r}")
    return user
