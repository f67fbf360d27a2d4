"""Ticket numbers, new tickets and articles built from a parsed mail.

Nothing in here commits: rows are inserted in db.session's transaction, the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Connection, Table, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import ReturningInsert

from ..models import Article, Attachment, RawMail, Ticket, TicketCounter, table_of, utcnow
from .blobs import has_large_values, take_large_values, write_large_values
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
    return reserve_ticket_numbers(conn, 1, day)[0]


def reserve_ticket_numbers(conn: Connection, count: int, day: str | None = None) -> list[str]:
    """count new ticket numbers with one counter update (a fetch batch takes them at once)."""
    day = day or number_day()
    last = _increment_counter(conn, day, count)
    return [f"{day}{SYSTEM_ID}{n:06d}" for n in range(last - count + 1, last + 1)]


@lru_cache(maxsize=4)
def _counter_upsert(dialect: str) -> ReturningInsert[int]:
    """INSERT .. ON CONFLICT DO UPDATE .. RETURNING: one atomic statement, no insert race."""
    module = postgresql if dialect == "postgresql" else sqlite
    table = table_of(TicketCounter)
    stmt = module.insert(table).values(day=bindparam("day"), last=bindparam("count"))
    return stmt.on_conflict_do_update(
        index_elements=[table.c.day], set_={"last": table.c.last + bindparam("count")}
    ).returning(table.c.last)


def _increment_counter(conn: Connection, day: str, count: int = 1) -> int:
    """Add count to the per-day counter atomically and return the new value."""
    stmt = _counter_upsert(conn.dialect.name)
    params = {"day": day, "count": count}
    if conn.dialect.name == "postgresql":
        # Own short autocommit transaction: inside the fetch batch the row lock would be
        # held until the batch commits and serialize (or deadlock) parallel fetch workers.
        # A rolled back batch leaves a gap in the numbers, which is harmless.
        with conn.engine.begin() as own:
            # No WAL flush wait (~10 ms per ticket otherwise). Still safe: WAL is flushed in
            # order, so any durably committed ticket implies its counter update is durable.
            own.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return own.execute(stmt, params).scalar_one()
    # SQLite has one writer: a second connection would wait for our own batch lock.
    return conn.execute(stmt, params).scalar_one()


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


# Core statements, not ORM objects, and one statement per table for a whole batch: the unit
# of work costs ~1 ms per message and each execute ~60 us (a network round trip on
# PostgreSQL), while the fetch loop has to keep up with ~1000 messages/s.
_RAW_MAIL = table_of(RawMail)
_TICKET = table_of(Ticket)
_ARTICLE = table_of(Article)
_ATTACHMENT = table_of(Attachment)
_INSERT_ATTACHMENT = insert(_ATTACHMENT)
_UPDATE_FOLLOWED_UP = (
    update(_TICKET)
    .where(_TICKET.c.id == bindparam("b_id"))
    .values(
        state_id=bindparam("b_state_id"),
        priority_id=bindparam("b_priority_id"),
        changed_at=bindparam("b_changed_at"),
    )
)


@lru_cache(maxsize=8)
def _insert_returning_ids(table: Table) -> ReturningInsert[int]:
    # sort_by_parameter_order: the ids come back in the order of the rows, which a
    # multi-row INSERT .. RETURNING does not promise by itself.
    return insert(table).returning(table.c.id, sort_by_parameter_order=True)


_NEXT_IDS = text(
    "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"
)


def insert_rows(
    conn: Connection, table: Table, rows: list[dict], blob_column: str | None = None
) -> list[int]:
    """Insert rows with one statement (executemany); their new ids, in order.

    blob_column: its large values go in by incremental blob I/O on SQLite (blobs.py)."""
    if not rows:
        return []
    large = take_large_values(conn, rows, blob_column) if blob_column else {}
    ids = _insert_rows(conn, table, rows)
    if blob_column:
        write_large_values(conn, table, blob_column, {ids[i]: v for i, v in large.items()})
    return ids


def _insert_rows(conn: Connection, table: Table, rows: list[dict]) -> list[int]:
    if conn.dialect.name == "postgresql" and len(rows) > 1:
        # The ids from the sequence in one round trip, then a plain executemany (psycopg
        # pipelines it): the multi-row INSERT .. RETURNING that SQLAlchemy sends otherwise is
        # a new query text per batch, which psycopg parses in Python (~140 us a message).
        params = {"table": table.name, "count": len(rows)}
        ids = sorted(conn.execute(_NEXT_IDS, params).scalars())
        conn.execute(insert(table), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
        return ids
    return list(conn.execute(_insert_returning_ids(table), rows).scalars())


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


def attachment_rows(article_id: int, attachments: list[ParsedAttachment]) -> list[dict]:
    return [
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
    ]


@dataclass
class NewArticle:
    """An article to insert: its row (ticket_id filled in once the ticket exists)."""

    row: dict
    attachments: list[ParsedAttachment]
    ticket_id: int | None = None


def insert_articles(conn: Connection, articles: list[NewArticle]) -> list[int]:
    """Insert the articles and all their attachments: two statements; the article ids."""
    ids = insert_rows(conn, _ARTICLE, [{**a.row, "ticket_id": a.ticket_id} for a in articles])
    rows = [
        row for a, i in zip(articles, ids, strict=True) for row in attachment_rows(i, a.attachments)
    ]
    if rows and has_large_values(conn, rows, "content"):
        insert_rows(conn, _ATTACHMENT, rows, blob_column="content")  # ids for the blob writes
    elif rows:
        conn.execute(_INSERT_ATTACHMENT, rows)
    return ids


def ticket_title(subject: str | None) -> str:
    """The title of a new ticket: the subject, or a placeholder when there is none."""
    return clean_text((subject or "").strip(), _MAX_TITLE) or NO_SUBJECT


def create_tickets(conn: Connection, tickets: list[TicketParams]) -> list[tuple[int, str]]:
    """Insert new tickets with one counter update and one INSERT; their ids and numbers."""
    if not tickets:
        return []
    numbers = reserve_ticket_numbers(conn, len(tickets))
    now = utcnow()
    rows = [
        {
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
        for params, number in zip(tickets, numbers, strict=True)
    ]
    return list(zip(insert_rows(conn, _TICKET, rows), numbers, strict=True))


def update_followed_up_tickets(conn: Connection, changes: list[tuple[int, int, int]]) -> None:
    """Set (ticket id, state id, priority id) of tickets that got a follow-up."""
    if changes:
        now = utcnow()
        conn.execute(
            _UPDATE_FOLLOWED_UP,
            [
                {"b_id": t, "b_state_id": s, "b_priority_id": p, "b_changed_at": now}
                for t, s, p in changes
            ],
        )


def store_raw_mails(conn: Connection, raws: list[tuple[bytes, str]]) -> list[int]:
    """Insert the messages exactly as received, given with their SHA-256; their RawMail ids."""
    rows = [{"sha256": sha256, "size": len(raw), "content": raw} for raw, sha256 in raws]
    return insert_rows(conn, _RAW_MAIL, rows, blob_column="content")
