"""Mail over the size limit: left on the server, logged once, and kept in OversizedMessage
while it is there, so the account page and Status can list it.

A row goes when the message is no longer on the server over the limit (deleted there, or the
limit was raised), or once it was stored because an admin chose "fetch it anyway once"
(fetch_once: that message is taken at the next run, whatever the limit says).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, delete, select

from ..extensions import db
from ..models import OversizedMessage
from .ledger import FolderScope, dedupe_key, known_keys
from .mailbox import Mailbox, RemoteMessage


def _scope(state: FolderScope) -> ColumnElement[bool]:
    return (
        (OversizedMessage.mail_account_id == state.account_id)
        & (OversizedMessage.host == state.host)
        & (OversizedMessage.folder == state.folder)
    )


def fetch_once_keys(state: FolderScope) -> set[str]:
    """Dedupe keys of the oversized messages an admin asked to fetch anyway, once."""
    return set(
        db.session.execute(
            select(OversizedMessage.key).where(_scope(state), OversizedMessage.fetch_once)
        ).scalars()
    )


def uids_below(state: FolderScope, min_uid: int) -> list[int]:
    """IMAP UIDs below min_uid of the messages listed here (keys `uid:<uidvalidity>:<uid>`
    of this folder's UIDVALIDITY). Keep mode lists from the highest UID it took and asks for
    these by UID, so a row goes once its message does, and the message is taken once it is
    under the limit or an admin asked to fetch it once."""
    prefix = f"uid:{state.uidvalidity}:"
    keys = db.session.execute(
        select(OversizedMessage.key).where(_scope(state), OversizedMessage.key.startswith(prefix))
    ).scalars()
    return sorted(uid for uid in (int(k.removeprefix(prefix)) for k in keys) if uid < min_uid)


def report_oversized(
    state: FolderScope,
    mailbox: Mailbox,
    messages: Sequence[RemoteMessage],
    max_size: int,
    fetching: set[str] | frozenset[str] = frozenset(),
) -> int:
    """Keep OversizedMessage in step with the server: add the new ones (their headers only
    are read, and each is logged once) and drop those no longer there over the limit.

    messages: the listed messages over the limit that this run leaves on the server (the
    listing holds every message a row names that is still there: see uids_below).
    fetching: keys this run fetches anyway (their rows go once they are stored).
    Mail already stored (keep mode leaves it on the server) is not reported. Returns how many
    known messages over the limit stay on the server."""
    if not messages and not fetching and not _has_rows(state.account_id):
        return 0  # the common idle run: one indexed lookup, no writes
    # Rows of another host or folder (the account was changed) say nothing about this one.
    db.session.execute(
        delete(OversizedMessage).where(
            OversizedMessage.mail_account_id == state.account_id, ~_scope(state)
        )
    )
    keys = {dedupe_key(state, m): m for m in messages}
    stored = known_keys(state, list(keys))
    left = {k: m for k, m in keys.items() if k not in stored}
    rows = db.session.execute(
        select(OversizedMessage.id, OversizedMessage.key).where(_scope(state))
    ).all()
    known = {key for _id, key in rows}
    gone = [row_id for row_id, key in rows if key not in left and key not in fetching]
    if gone:
        db.session.execute(delete(OversizedMessage).where(OversizedMessage.id.in_(gone)))
    new = [m for k, m in left.items() if k not in known]
    _add_rows(state, mailbox, new, max_size)
    db.session.commit()
    return len(rows) - len(gone) - len(fetching & known) + len(new)


def forget_stored(state: FolderScope, keys: set[str]) -> None:
    """Drop the rows of oversized messages fetched anyway once they are stored."""
    stored = known_keys(state, sorted(keys))
    if stored:
        db.session.execute(
            delete(OversizedMessage).where(_scope(state), OversizedMessage.key.in_(stored))
        )
        db.session.commit()


def _add_rows(
    state: FolderScope, mailbox: Mailbox, new: Sequence[RemoteMessage], max_size: int
) -> None:
    """One row (and one log line) per message newly found over the limit."""
    envelopes = mailbox.envelope(new) if new else {}
    for m in new:
        envelope = envelopes.get(m.key)
        sender, subject = (envelope.sender, envelope.subject) if envelope else ("", "")
        state.log(
            f"{m.key}: {m.size} bytes is over the limit of {max_size} bytes; left on the server "
            f"(From: {sender}, Subject: {subject})"
        )
        db.session.add(
            OversizedMessage(
                mail_account_id=state.account_id,
                host=state.host,
                folder=state.folder,
                key=dedupe_key(state, m),
                size=m.size,
                from_addr=sender,
                subject=subject,
                sent_at=envelope.sent_at if envelope else None,
            )
        )


def _has_rows(account_id: int) -> bool:
    found = db.session.execute(
        select(OversizedMessage.id).where(OversizedMessage.mail_account_id == account_id).limit(1)
    ).first()
    return found is not None
