"""Push (IMAP IDLE) in the database: which accounts want a connection, the connection's lease,
its state, and the line the account page shows.

The IDLE connection has its own lease (push_owner, push_expires_at, push_generation), apart
from the fetch lease: one scheduler process holds it while it keeps the connection and renews
it at every poll, so each account idles in exactly one process. Claims are conditional
UPDATEs, as in lease.py; a holder that is a dead process of this host is taken over at once.
New mail on the connection never fetches here: the scheduler runs the normal fetch under the
normal fetch lease.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update

from ..account_types import ACCOUNT_TYPES
from ..extensions import db
from ..models import MailAccount, utcnow
from ..states import PushState
from .lease import owner_is_dead, rowcount

IMAP_TYPES = [t.name for t in ACCOUNT_TYPES.values() if t.is_imap]
MAX_DETAIL = 500


@dataclass(frozen=True)
class PushTarget:
    """An account that wants an IDLE connection now."""

    account_id: int
    fingerprint: str  # changes when anything the connection depends on changes
    owner: str | None  # the live holder of the push lease, if any
    claimable: bool  # free, expired, or held by a dead process of this host


def wants_push(account: MailAccount) -> bool:
    """Valid IMAP account with Fetch on arrival on and a usable login."""
    return (
        account.account_type.is_imap
        and bool(account.push)
        and account.validity == "valid"
        and not account.needs_reauth
    )


def _fingerprint(account: MailAccount) -> str:
    """What the connection depends on (the password only as part of a hash)."""
    parts = (
        account.type,
        account.host,
        account.effective_port,
        account.username,
        account.effective_folder,
        account.verify_tls,
        account.password or "",
        account.oauth2_profile_id,
        account.shared_mailbox,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def push_targets(recheck_seconds: float) -> dict[int, PushTarget]:
    """Every account that wants an IDLE connection; a server that did not announce IDLE is
    asked again only after recheck_seconds."""
    now = utcnow()
    recheck = now - timedelta(seconds=recheck_seconds)
    accounts = db.session.scalars(
        select(MailAccount).where(
            MailAccount.type.in_(IMAP_TYPES),
            MailAccount.push.is_(True),
            MailAccount.validity == "valid",
            MailAccount.needs_reauth.is_(False),
            or_(
                MailAccount.push_state.is_(None),
                MailAccount.push_state != PushState.UNSUPPORTED,
                MailAccount.push_since.is_(None),
                MailAccount.push_since < recheck,
            ),
        )
    ).all()
    targets = {}
    for account in accounts:
        live = _live(account, now)
        owner = account.push_owner if live else None
        claimable = owner is None or owner_is_dead(owner)
        targets[account.id] = PushTarget(account.id, _fingerprint(account), owner, claimable)
    db.session.rollback()
    return targets


def _live(account: MailAccount, now: datetime) -> bool:
    expires = account.push_expires_at
    return bool(account.push_owner and expires and expires > now)


def claim_push(account_id: int, owner: str, seconds: float) -> int | None:
    """Take the push lease of a still-wanted account; its generation, or None if taken."""
    now = utcnow()
    holder = db.session.execute(
        select(MailAccount.push_owner, MailAccount.push_generation).where(
            MailAccount.id == account_id
        )
    ).one_or_none()
    if holder is None:
        db.session.rollback()
        return None
    free: ColumnElement[bool] = or_(
        MailAccount.push_owner.is_(None), MailAccount.push_expires_at < now
    )
    if holder[0] and owner_is_dead(holder[0]):
        dead = (MailAccount.push_owner == holder[0]) & (MailAccount.push_generation == holder[1])
        free = or_(free, dead)
    result = db.session.execute(
        update(MailAccount)
        .where(
            MailAccount.id == account_id,
            MailAccount.push.is_(True),
            MailAccount.validity == "valid",
            free,
        )
        .values(
            push_owner=owner,
            push_expires_at=now + timedelta(seconds=seconds),
            push_generation=MailAccount.push_generation + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        db.session.rollback()
        return None
    generation = db.session.execute(
        select(MailAccount.push_generation).where(MailAccount.id == account_id)
    ).scalar_one()
    db.session.commit()
    return int(generation)


def renew_push(owner: str, held: dict[int, int], seconds: float) -> set[int]:
    """Extend the push leases `owner` holds ({account id: generation}); returns the lost ones."""
    if not held:
        return set()
    ids = list(held)
    db.session.execute(
        update(MailAccount)
        .where(MailAccount.id.in_(ids), MailAccount.push_owner == owner)
        .values(push_expires_at=utcnow() + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    still = dict(
        db.session.execute(
            select(MailAccount.id, MailAccount.push_generation).where(
                MailAccount.id.in_(ids), MailAccount.push_owner == owner
            )
        ).all()
    )
    db.session.commit()
    return {i for i, generation in held.items() if still.get(i) != generation}


def _mine(account_id: int, owner: str, generation: int) -> ColumnElement[bool]:
    return (
        (MailAccount.id == account_id)
        & (MailAccount.push_owner == owner)
        & (MailAccount.push_generation == generation)
    )


def set_push_state(
    account_id: int,
    owner: str,
    generation: int,
    state: PushState,
    detail: str | None = None,
    since: datetime | None = None,
) -> bool:
    """Record the connection's state while holding its lease; False if no longer ours."""
    db.session.rollback()
    result = db.session.execute(
        update(MailAccount)
        .where(_mine(account_id, owner, generation))
        .values(
            push_state=state,
            push_since=since or utcnow(),
            push_detail=(detail or "")[:MAX_DETAIL] or None,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return rowcount(result) == 1


def release_push(
    account_id: int,
    owner: str,
    generation: int,
    state: PushState | None = None,
    detail: str | None = None,
) -> None:
    """Give the push lease back, leaving `state` for the account page (None: no connection)."""
    db.session.rollback()
    db.session.execute(
        update(MailAccount)
        .where(_mine(account_id, owner, generation))
        .values(
            push_owner=None,
            push_expires_at=None,
            push_state=state,
            push_since=utcnow() if state else None,
            push_detail=(detail or "")[:MAX_DETAIL] or None,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def mark_limit_reached(account_ids: list[int], max_connections: int) -> None:
    """Accounts nobody idles on because this process is full: say so on the account page."""
    if not account_ids:
        return
    now = utcnow()
    db.session.execute(
        update(MailAccount)
        .where(
            MailAccount.id.in_(account_ids),
            or_(MailAccount.push_owner.is_(None), MailAccount.push_expires_at < now),
            or_(MailAccount.push_state.is_(None), MailAccount.push_state != PushState.LIMIT),
        )
        .values(
            push_state=PushState.LIMIT,
            push_since=now,
            push_detail=f"PUSH_MAX_CONNECTIONS={max_connections}",
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def forget_unsupported(account: MailAccount) -> None:
    """An edited account is asked about IDLE again at once (in the caller's transaction)."""
    if account.push_state == PushState.UNSUPPORTED:
        account.push_state = None
        account.push_since = None
        account.push_detail = None


def push_status(account: MailAccount, now: datetime | None = None) -> str | None:
    """The account page's "push: ..." line; None for POP3."""
    if not account.account_type.is_imap:
        return None
    now = now or utcnow()
    if not account.push:
        return "switched off (fetched every interval)"
    if account.validity != "valid":
        return "off: the account is not valid"
    if account.needs_reauth:
        return "off: re-authorization needed"
    live = _live(account, now)
    state, since, detail = account.push_state, account.push_since, account.push_detail
    at = f"{since:%Y-%m-%d %H:%M:%S} UTC" if since else "?"
    if state == PushState.UNSUPPORTED:
        return f"not announced by the server (no IDLE in CAPABILITY, checked {at}): polled"
    if live and state == PushState.CONNECTED:
        return f"connected since {at}"
    if live and state == PushState.RECONNECTING:
        return f"reconnecting after error: {detail or 'unknown'} (since {at})"
    if state == PushState.LIMIT and not live:
        return f"connection limit reached ({detail or 'PUSH_MAX_CONNECTIONS'}): polled"
    if live:
        return "connecting"
    return "not connected: no scheduler process holds the connection (polled meanwhile)"
