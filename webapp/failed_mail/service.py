"""Failed mail: messages the pipeline could not process, kept and shown until reprocessed
or deleted by an admin. Shared by the Failed mail screen and `flask ticket failed|
reprocess-failed`."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import FailedMail, RawMail
from ..postmaster.parse import decode_header_value
from ..postmaster.pipeline import MessageOutcome, delete_failed_mail, reprocess_failed_mail
from ..timefmt import iso_utc

PAGE_SIZE = 50
# Enough for From and Subject; never load a whole (maybe 30 MB) message for a list row.
HEADER_PEEK_BYTES = 16 * 1024


def peek_headers(head: bytes | None) -> dict[str, str]:
    """From and Subject of a raw message start, decoded; empty when unreadable."""
    if not head:
        return {}
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(bytes(head))
        return {
            "from": decode_header_value(msg.get("from")),
            "subject": decode_header_value(msg.get("subject")),
        }
    except Exception:  # the reason it failed may well be these headers
        return {}


def failed_mail_page(page: int) -> tuple[list[dict], bool]:
    """One page of failed mail, newest first, with From/Subject; and whether more follow."""
    head = func.substr(RawMail.content, 1, HEADER_PEEK_BYTES)
    rows = db.session.execute(
        select(FailedMail, head)
        .join(RawMail, RawMail.id == FailedMail.raw_mail_id)
        .options(selectinload(FailedMail.mail_account))
        .order_by(FailedMail.created_at.desc(), FailedMail.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    items = [{"failed": failed, **peek_headers(raw_head)} for failed, raw_head in rows]
    return items[:PAGE_SIZE], len(items) > PAGE_SIZE


def failed_mail_item(failed: FailedMail) -> dict:
    """One failed mail with its From/Subject, as failed_mail_page gives each row."""
    head = db.session.scalar(
        select(func.substr(RawMail.content, 1, HEADER_PEEK_BYTES)).where(
            RawMail.id == failed.raw_mail_id
        )
    )
    return {"failed": failed, **peek_headers(head)}


def failed_mail_rows() -> list[dict]:
    """Every failed mail, oldest first: id, account, time and error (for the CLI)."""
    failed = db.session.scalars(
        select(FailedMail).options(selectinload(FailedMail.mail_account)).order_by(FailedMail.id)
    ).all()
    return [
        {
            "id": f.id,
            "account": f"{f.mail_account.username}@{f.mail_account.host}"
            if f.mail_account
            else None,
            "created_at": iso_utc(f.created_at),
            "error": f.error,
        }
        for f in failed
    ]


def all_failed_ids() -> tuple[int, ...]:
    """The ids of every failed mail, oldest first."""
    return tuple(db.session.scalars(select(FailedMail.id).order_by(FailedMail.id)))


def reprocess(failed: FailedMail) -> MessageOutcome:
    """Run one failed mail through the pipeline again and commit the outcome."""
    outcome = reprocess_failed_mail(failed)
    db.session.commit()
    return outcome


def delete(failed: FailedMail) -> None:
    """Remove a failed mail (its raw source too unless an article uses it) and commit."""
    delete_failed_mail(failed)
    db.session.commit()
