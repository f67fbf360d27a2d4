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
from ..models import AdminUser, SignInAttempt, table_of, utcnow

MIN_PASSWORD_LENGTH = 8
# The same for a wrong password and an unknown user: the page must not tell which names exist.
WRONG_CREDENTIALS = "Wrong username or password."
# Addresses with no attempt for this long start again from zero.
FORGET_AFTER = timedelta(days=1)


class AdminError(Exception):
    """Bad input for an admin user, with a message for the admin."""


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
        raise AdminError("The username must not be empty")
    _validate_password(password)
    if db.session.query(AdminUser).filter_by(username=username).first():
        raise AdminError(f"An admin named {username!r} already exists")
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
