"""The dedupe ledger: which messages of a folder were committed, by key or by content.

A message's dedupe key (SeenMessage.key) is committed in the same transaction as its article,
before the server is told to delete it; the folder's UIDVALIDITY (FolderState) says whether
IMAP UIDs still mean the same messages.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import select, update

from ..extensions import db
from ..models import FolderState, SeenMessage, utcnow
from .mailbox import Mailbox, RemoteMessage

KEY_CHUNK = 500  # keys per IN (...) query


class FolderScope(Protocol):
    """The folder a fetch works on (the fetch's run state provides it)."""

    account_id: int
    host: str
    folder: str
    uidvalidity: int | None
    uidvalidity_changed: bool

    def log(self, line: str) -> None: ...


def dedupe_key(state: FolderScope, message: RemoteMessage) -> str:
    """The message's SeenMessage.key: its UID under the folder's UIDVALIDITY, or its UIDL."""
    if message.uid is not None:
        return f"uid:{state.uidvalidity}:{message.uid}"
    return f"uidl:{message.key}"


def known_keys(state: FolderScope, keys: list[str]) -> set[str]:
    """Which of these dedupe keys are committed already (chunked IN queries, indexed)."""
    known: set[str] = set()
    for i in range(0, len(keys), KEY_CHUNK):
        chunk = keys[i : i + KEY_CHUNK]
        known.update(
            db.session.execute(
                select(SeenMessage.key).where(
                    SeenMessage.mail_account_id == state.account_id,
                    SeenMessage.host == state.host,
                    SeenMessage.folder == state.folder,
                    SeenMessage.key.in_(chunk),
                )
            ).scalars()
        )
    return known


def known_content(state: FolderScope, sha256: str) -> bool:
    """After a UIDVALIDITY change: was this exact message stored from this account before?"""
    return (
        db.session.execute(
            select(SeenMessage.id)
            .where(SeenMessage.mail_account_id == state.account_id, SeenMessage.sha256 == sha256)
            .limit(1)
        ).first()
        is not None
    )


def mark_finished(state: FolderScope, finished_keys: list[str]) -> None:
    """Note when keys were finished on the server, so old ones can be pruned."""
    now = utcnow()
    for i in range(0, len(finished_keys), KEY_CHUNK):
        chunk = finished_keys[i : i + KEY_CHUNK]
        db.session.execute(
            update(SeenMessage)
            .where(
                SeenMessage.mail_account_id == state.account_id,
                SeenMessage.host == state.host,
                SeenMessage.folder == state.folder,
                SeenMessage.key.in_(chunk),
            )
            .values(finished_at=now)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()


def folder_state(state: FolderScope, mailbox: Mailbox) -> FolderState:
    """The folder's UIDVALIDITY and highest UID taken; notes a UIDVALIDITY change."""
    state.uidvalidity = mailbox.uidvalidity
    row = db.session.get(FolderState, (state.account_id, state.host, state.folder))
    if row is None:
        row = FolderState(
            mail_account_id=state.account_id,
            host=state.host,
            folder=state.folder,
            uidvalidity=state.uidvalidity,
            highest_uid=0,
        )
        db.session.add(row)
    elif row.uidvalidity != state.uidvalidity:
        state.log(
            f"UIDVALIDITY of {state.folder} changed from {row.uidvalidity} to "
            f"{state.uidvalidity}: recognising earlier mail by its content hash"
        )
        state.uidvalidity_changed = True
        row.uidvalidity = state.uidvalidity
        row.highest_uid = 0
    return row
