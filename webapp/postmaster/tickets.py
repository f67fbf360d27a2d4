"""Ticket numbers, new tickets and articles built from a parsed mail.

Nothing in here commits: rows are inserted in db.session's transaction, the caller's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Connection, bindparam, insert
from sqlalchemy.dialects import postgresql, sqlite

from ..models import Article, Attachment, RawMail, Ticket, TicketCounter, utcnow
from .parse import ParsedAttachment, ParsedMail

# OTOBO's SystemID; part of every ticket number so numbers of two systems never collide.
SYSTEM_ID = "10"
NO_SUBJECT = "(no subject)"
SENDER_TYPES = ("customer", "agent", "system")

# Column sizes from models.py; PostgreSQL refuses longer values, SQLite would keep them.
_MAX_TITLE = 500
_MAX_MSGID = 500
_MAX_CUSTOMER_USER = 320
_MAX_CUSTOMER_NO = 200
_MAX_FILENAME = 500
_MAX_CONTENT_TYPE = 200


def clean_text(value: str | None, limit: int | None = None) -> str | None:
    """Drop NUL characters (PostgreSQL text refuses them) and cut to the column size."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value[:limit] if limit else value


def clean_message_id(value: str | None) -> str | None:
    """A Message-ID as stored in and looked up from Article.message_id."""
    return clean_text(value, _MAX_MSGID) or None


def number_day(now: datetime | None = None) -> str:
    """The YYYYMMDD part of a new ticket number (UTC, like every stored timestamp)."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d")


def next_ticket_number(conn: Connection, day: str | None = None) -> str:
    """A new unique ticket number in OTOBO's date-based format: YYYYMMDD + SystemID + counter."""
    day = day or number_day()
    return f"{day}{SYSTEM_ID}{_increment_counter(conn, day):06d}"


@lru_cache(maxsize=4)
def _counter_upsert(dialect: str):
    """INSERT .. ON CONFLICT DO UPDATE .. RETURNING: one atomic statement, no insert race."""
    module = postgresql if dialect == "postgresql" else sqlite
    table = TicketCounter.__table__
    stmt = module.insert(table).values(day=bindparam("day"), last=1)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.day], set_={"last": table.c.last + 1}
    ).returning(table.c.last)


def _increment_counter(conn: Connection, day: str) -> int:
    """Increment the per-day counter atomically and return the new value."""
    stmt = _counter_upsert(conn.dialect.name)
    if conn.dialect.name == "postgresql":
        # Own short autocommit transaction: inside the fetch batch the row lock would be
        # held until the batch commits and serialize (or deadlock) parallel fetch workers.
        # A rolled back batch leaves a gap in the numbers, which is harmless.
        with conn.engine.begin() as own:
            # No WAL flush wait (~10 ms per ticket otherwise). Still safe: WAL is flushed in
            # order, so any durably committed ticket implies its counter update is durable.
            own.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return own.execute(stmt, {"day": day}).scalar_one()
    # SQLite has one writer: a second connection would wait for our own batch lock.
    return conn.execute(stmt, {"day": day}).scalar_one()


@dataclass
class TicketParams:
    """Everything decided about a new ticket before it is created."""

    queue_id: int
    state_id: int
    priority_id: int
    title: str
    customer_user: str | None
    customer_no: str | None
    sender_type: str = "customer"
    is_visible_for_customer: bool = True


# Core statements, not ORM objects: the unit of work costs ~1 ms per message, several times
# the inserts themselves, and the fetch loop has to keep up with ~1000 messages/s.
_RAW_MAIL = RawMail.__table__
_TICKET = Ticket.__table__
_ARTICLE = Article.__table__
_ATTACHMENT = Attachment.__table__
_INSERT_RAW_MAIL = insert(_RAW_MAIL)
_INSERT_TICKET = insert(_TICKET)
_INSERT_ARTICLE = insert(_ARTICLE)
_INSERT_ATTACHMENT = insert(_ATTACHMENT)


def article_row(
    mail: ParsedMail,
    raw_mail_id: int | None,
    account_id: int | None,
    sender_type: str = "customer",
    is_visible_for_customer: bool = True,
) -> dict:
    """The column values of the article for this mail (without its ticket)."""
    return {
        "mail_account_id": account_id,
        "raw_mail_id": raw_mail_id,
        "sender_type": sender_type,
        "is_visible_for_customer": is_visible_for_customer,
        "from_addr": clean_text(mail.from_display or mail.from_addr),
        "to_addr": clean_text(mail.to_display) or None,
        "cc_addr": clean_text(mail.cc_display) or None,
        "subject": clean_text(mail.subject),
        "message_id": clean_message_id(mail.message_id),
        "in_reply_to": clean_message_id(mail.in_reply_to),
        "references": clean_text(" ".join(mail.references)) or None,
        "sent_at": mail.date.replace(tzinfo=None) if mail.date else None,
        "body_text": clean_text(mail.body_text),
        "body_html": clean_text(mail.body_html),
        "created_at": utcnow(),
    }


def insert_article(
    conn: Connection, ticket_id: int, row: dict, attachments: list[ParsedAttachment]
) -> int:
    """Insert the article and its attachments; returns the article id."""
    article_id = conn.execute(
        _INSERT_ARTICLE, {**row, "ticket_id": ticket_id}
    ).inserted_primary_key[0]
    if attachments:
        conn.execute(
            _INSERT_ATTACHMENT,
            [
                {
                    "article_id": article_id,
                    "filename": clean_text(a.filename, _MAX_FILENAME) or "attachment",
                    "content_type": clean_text(a.content_type, _MAX_CONTENT_TYPE)
                    or "application/octet-stream",
                    "size": a.size,
                    "content_id": clean_text(a.content_id, _MAX_MSGID),
                    "content": a.content,
                }
                for a in attachments
            ],
        )
    return article_id


def ticket_title(subject: str | None) -> str:
    """The title of a new ticket: the subject, or a placeholder when there is none."""
    return clean_text((subject or "").strip(), _MAX_TITLE) or NO_SUBJECT


def create_ticket(conn: Connection, params: TicketParams) -> tuple[int, str]:
    """Insert a new ticket; returns its id and number."""
    number = next_ticket_number(conn)
    now = utcnow()
    values = {
        "number": number,
        "title": clean_text(params.title, _MAX_TITLE) or NO_SUBJECT,
        "queue_id": params.queue_id,
        "state_id": params.state_id,
        "priority_id": params.priority_id,
        "customer_user": clean_text(params.customer_user, _MAX_CUSTOMER_USER) or None,
        "customer_no": clean_text(params.customer_no, _MAX_CUSTOMER_NO) or None,
        "created_at": now,
        "changed_at": now,
    }
    result = conn.execute(_INSERT_TICKET, values)
    return result.inserted_primary_key[0], number


def store_raw_mail(conn: Connection, raw: bytes) -> int:
    """Insert the message exactly as received; returns the RawMail id."""
    values = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw), "content": raw}
    return conn.execute(_INSERT_RAW_MAIL, values).inserted_primary_key[0]
