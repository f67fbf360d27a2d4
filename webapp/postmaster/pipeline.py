"""What happens to one fetched message: parse, follow-up or new ticket, or FailedMail.

The fetch loop calls process_batch inside its batch transaction and commits the batch with
its dedupe keys before deleting on the server, so nothing here commits or rolls back the
session: rows are inserted and an outcome per message is returned. The writes run in a
SAVEPOINT, so one broken message never poisons the rest of the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import Connection, select
from sqlalchemy import exc as sa_exc

from ..extensions import db
from ..models import Article, FailedMail, RawMail, table_of
from ..states import OutcomeKind
from .context import PipelineContext, build_context
from .dispatch import is_ignored, new_ticket_params, trusted_headers
from .filters import obeyed_headers
from .followup import (
    MAX_REFERENCES,
    FollowUp,
    TicketRef,
    find_follow_up,
    plan_follow_up,
    tickets_of_message_ids,
)
from .parse import MailParseError, ParsedMail, ParseLimits, parse_many_with_limit
from .tickets import (
    NewArticle,
    TicketParams,
    article_row,
    clean_message_id,
    create_tickets,
    insert_articles,
    insert_rows,
    store_raw_mails,
    update_followed_up_tickets,
)

# Database trouble (lost connection, lock timeout, deadlock) is not the message's fault:
# it propagates so the fetch loop rolls back the batch and the mail stays on the server.
TRANSIENT_DB_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError)
_MAX_ERROR = 4000
_FAILED = table_of(FailedMail)


@dataclass
class MessageOutcome:
    """What became of one message, for the fetch loop's counters and log."""

    kind: OutcomeKind | None = None  # new_ticket | follow_up | ignored | failed; None: undecided
    ticket_id: int | None = None
    article_id: int | None = None
    failed_mail_id: int | None = None
    log: list[str] = field(default_factory=list)
    message_id: str | None = None
    raw_mail_id: int | None = None
    error: str | None = None
    sha256: str = ""  # of the raw message, hex


@contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    """A SAVEPOINT inside the caller's transaction; rolled back alone on an exception."""
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None  # a Connection in use always has its driver connection
    if conn.dialect.name == "sqlite" and not dbapi_conn.in_transaction:
        # pysqlite only sends BEGIN before DML. A SAVEPOINT as the first statement would open
        # the transaction itself, and releasing it would COMMIT the caller's whole batch.
        conn.exec_driver_sql("BEGIN")
    # Plain SQL on the driver's cursor, not Connection/Session.begin_nested: those cost
    # ~110 us per message against ~2 us, and the work inside is Core only (no ORM state
    # to roll back). Same syntax on SQLite and PostgreSQL.
    cursor = dbapi_conn.cursor()
    cursor.execute("SAVEPOINT postmaster_message")
    try:
        yield
    except BaseException:
        cursor.execute("ROLLBACK TO SAVEPOINT postmaster_message")
        cursor.execute("RELEASE SAVEPOINT postmaster_message")
        raise
    cursor.execute("RELEASE SAVEPOINT postmaster_message")


def _error_text(exc: BaseException) -> str:
    """One readable line for the FailedMail screen."""
    if isinstance(exc, MailParseError):
        text = f"cannot parse: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text.replace("\x00", "")[:_MAX_ERROR]


@dataclass
class _Message:
    """One message on its way through the pipeline."""

    raw: bytes
    raw_mail: RawMail | None
    outcome: MessageOutcome
    mail: ParsedMail | None = None  # None once it failed or was ignored
    headers: dict[str, str] = field(default_factory=dict)
    new_ticket: TicketParams | None = None
    follow_up: FollowUp | None = None
    article: NewArticle | None = None

    # The steps after parsing and planning use these: they raise if a step ran out of order.
    @property
    def parsed(self) -> ParsedMail:
        """The parsed mail of a message still being delivered."""
        assert self.mail is not None, "the message failed or was ignored"
        return self.mail

    @property
    def planned(self) -> NewArticle:
        """The article _plan made for the message."""
        assert self.article is not None, "the message was not planned"
        return self.article

    @property
    def ticket_params(self) -> TicketParams:
        """The new ticket _plan made for the message."""
        assert self.new_ticket is not None, "the message is not a new ticket"
        return self.new_ticket


Parsed = ParsedMail | Exception  # what parse_or_error returns


@dataclass(frozen=True)
class ParseOptions:
    """How to parse, read from the app config (the download thread has no app context)."""

    limits: ParseLimits
    stall_for_tests: bool = False  # TESTING_FAULTS: honour parse/worker.py's STALL_MARKER


def parse_options() -> ParseOptions:
    """The app's parse options: PARSE_TIME_LIMIT, and the test fault when enabled."""
    config = current_app.config
    return ParseOptions(
        ParseLimits(max_seconds=float(config["PARSE_TIME_LIMIT"])),
        bool(config.get("TESTING_FAULTS")),
    )


def parse_many_or_error(
    raws: Sequence[bytes], options: ParseOptions
) -> Generator[Parsed, None, None]:
    """parse_mail of each message, in a worker process killed at the time limit, with its
    failure as the value: the fetch loop parses in its download thread, and a failed message
    then becomes a FailedMail here. Every parse of fetched or reprocessed mail goes through
    here. Stop iterating early and the worker is killed."""
    try:
        yield from parse_many_with_limit(raws, options.limits, options.stall_for_tests)
    except Exception as exc:  # a bug here must not lose the mail: the rest fail with it
        yield exc


def parse_or_error(raw: bytes, options: ParseOptions) -> Parsed:
    """parse_many_or_error of one message."""
    return next(parse_many_or_error([raw], options))


def process_batch(
    ctx: PipelineContext,
    raws: Sequence[bytes],
    raw_mails: Sequence[RawMail | None] | None = None,
    parsed: Sequence[Parsed] | None = None,
) -> list[MessageOutcome]:
    """Turn fetched messages into tickets, follow-ups, ignores or FailedMails, in order.

    Each table gets one INSERT for the whole batch (not one per message); a message that
    breaks a batch statement is found by writing that part one message at a time, so it
    alone becomes a FailedMail. parsed: parse_or_error of each raw, when done already.
    Never commits. Raises only on database trouble, which the fetch loop must treat as
    "roll back the batch and keep the mail on the server".
    """
    messages = _run(ctx, raws, raw_mails, parsed)
    _record_failures(ctx, [m for m in messages if m.outcome.kind == OutcomeKind.FAILED])
    return [m.outcome for m in messages]


def process_message(
    ctx: PipelineContext, raw: bytes, raw_mail: RawMail | None = None
) -> MessageOutcome:
    """process_batch for one message (raw_mail: its stored source, when reprocessing)."""
    return process_batch(ctx, [raw], [raw_mail])[0]


def _run(
    ctx: PipelineContext,
    raws: Sequence[bytes],
    raw_mails: Sequence[RawMail | None] | None,
    parsed: Sequence[Parsed] | None = None,
) -> list[_Message]:
    none = [None] * len(raws)
    messages = [
        _parse(ctx, *args) for args in zip(raws, raw_mails or none, parsed or none, strict=True)
    ]
    conn = db.session.connection()
    # Outside any savepoint: a failed message keeps its raw source for the FailedMail.
    _store_raw_mails(conn, [m for m in messages if m.outcome.kind != OutcomeKind.IGNORED])
    _deliver(conn, ctx, [m for m in messages if m.mail is not None])
    return messages


def _parse(
    ctx: PipelineContext, raw: bytes, raw_mail: RawMail | None, parsed: Parsed | None
) -> _Message:
    message = _Message(raw, raw_mail, MessageOutcome(sha256=hashlib.sha256(raw).hexdigest()))
    log = message.outcome.log
    mail = parsed if parsed is not None else parse_or_error(raw, parse_options())
    if isinstance(mail, Exception):
        _failed(message, mail)
        return message
    message.outcome.message_id = mail.message_id
    message.headers = obeyed_headers(trusted_headers(ctx, mail, log), ctx.filters, mail, log)
    if is_ignored(message.headers):
        log.append("X-OTOBO-Ignore: the mail is ignored")
        message.outcome.kind = OutcomeKind.IGNORED
        return message
    message.mail = mail
    return message


def _failed(message: _Message, exc: BaseException) -> None:
    outcome = message.outcome
    outcome.kind, outcome.error = OutcomeKind.FAILED, _error_text(exc)
    outcome.ticket_id = outcome.article_id = None
    message.mail = None


def _store_raw_mails(conn: Connection, messages: list[_Message]) -> None:
    new = [m for m in messages if m.raw_mail is None]
    for message, raw_mail_id in zip(
        new, store_raw_mails(conn, [(m.raw, m.outcome.sha256) for m in new]), strict=True
    ):
        message.outcome.raw_mail_id = raw_mail_id
    stored = [(m, m.raw_mail) for m in messages if m.raw_mail is not None]
    if any(raw_mail.id is None for _m, raw_mail in stored):
        db.session.flush()
    for message, raw_mail in stored:
        message.outcome.raw_mail_id = raw_mail.id


def _deliver(conn: Connection, ctx: PipelineContext, messages: list[_Message]) -> None:
    """Plan each message (reads only), then write them in chunks.

    A chunk is written before a message that depends on it: a reply to a mail of the same
    batch must find that mail's article, and a second follow-up to a ticket must see the
    state the first one gave it.
    """
    chunk: list[_Message] = []
    message_ids: set[str] = set()  # of the chunk's articles
    tickets: set[int] = set()  # followed up in the chunk
    # Message-ID -> ticket of what the batch replies to: stored before, or written by an
    # earlier chunk (added below).
    known = tickets_of_message_ids(conn, [m.parsed for m in messages])

    def write_chunk() -> None:
        _write_chunk(conn, ctx, chunk)
        for m in chunk:
            ticket_id, message_id = m.outcome.ticket_id, m.planned.row["message_id"]
            # ticket_id is set with article_id; checked for mypy.
            if m.outcome.article_id is not None and ticket_id is not None and message_id:
                known.setdefault(message_id, ticket_id)
        chunk.clear()
        message_ids.clear()
        tickets.clear()

    for message in messages:
        if chunk and _replies_to(message.parsed, message_ids):
            write_chunk()
        try:
            follow = find_follow_up(conn, ctx, message.parsed, known)
            if follow is not None and follow[0].id in tickets:
                write_chunk()
                follow = find_follow_up(conn, ctx, message.parsed, known)
            _plan(ctx, message, follow)
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as exc:
            _failed(message, exc)
            continue
        chunk.append(message)
        if message.planned.row["message_id"]:
            message_ids.add(message.planned.row["message_id"])
        if message.follow_up is not None:
            tickets.add(message.follow_up.ticket.id)
    write_chunk()


def _replies_to(mail: ParsedMail, message_ids: set[str]) -> bool:
    if not message_ids:
        return False
    wanted = [mail.in_reply_to, *mail.references[-MAX_REFERENCES:]]
    return any(clean_message_id(m) in message_ids for m in wanted if m)


def _plan(ctx: PipelineContext, message: _Message, follow: tuple[TicketRef, str] | None) -> None:
    """Decide what the message becomes: the follow-up of a ticket or a new ticket."""
    mail, outcome = message.parsed, message.outcome
    if follow is not None:
        ticket, reason = follow
        outcome.log.append(f"follow-up to ticket {ticket.number} ({reason})")
        plan = plan_follow_up(ctx, ticket, mail, message.headers, outcome.raw_mail_id, outcome.log)
        message.follow_up = plan
        message.article = NewArticle(plan.article, mail.attachments, ticket.id)
        outcome.kind, outcome.ticket_id = OutcomeKind.FOLLOW_UP, ticket.id
        return
    params = new_ticket_params(ctx, mail, message.headers, outcome.log)
    row = article_row(
        mail,
        outcome.raw_mail_id,
        ctx.account_id,
        params.sender_type,
        params.is_visible_for_customer,
    )
    message.new_ticket = params
    message.article = NewArticle(row, mail.attachments)
    outcome.kind = OutcomeKind.NEW_TICKET


def _write_chunk(conn: Connection, ctx: PipelineContext, chunk: list[_Message]) -> None:
    """Write the chunk in a SAVEPOINT; if it fails, each message alone, to find the bad one."""
    if not chunk:
        return
    try:
        with _savepoint(conn):
            numbers = _write(conn, chunk)
    except TRANSIENT_DB_ERRORS:
        raise
    except Exception as exc:
        if len(chunk) == 1:
            _failed(chunk[0], exc)
            return
        for message in chunk:
            _write_chunk(conn, ctx, [message])
        return
    for message, number in zip((m for m in chunk if m.new_ticket), numbers, strict=True):
        queue = ctx.queue_names[message.ticket_params.queue_id]
        message.outcome.log.append(f"new ticket {number} in queue {queue}")


def _write(conn: Connection, chunk: list[_Message]) -> list[str]:
    """The chunk's tickets, ticket updates, articles and attachments; the new numbers."""
    new = [m for m in chunk if m.new_ticket is not None]
    created = create_tickets(conn, [m.ticket_params for m in new])
    for message, (ticket_id, _number) in zip(new, created, strict=True):
        message.planned.ticket_id = message.outcome.ticket_id = ticket_id
    update_followed_up_tickets(
        conn,
        [(f.ticket.id, f.state_id, f.priority_id) for m in chunk if (f := m.follow_up)],
    )
    article_ids = insert_articles(conn, [m.planned for m in chunk])
    for message, article_id in zip(chunk, article_ids, strict=True):
        message.outcome.article_id = article_id
    return [number for _id, number in created]


def _record_failures(ctx: PipelineContext, failed: list[_Message]) -> None:
    """One FailedMail per failed message, outside the savepoints: the failure is recorded
    even though its work was rolled back."""
    rows = [
        {
            "mail_account_id": ctx.account_id,
            "raw_mail_id": m.outcome.raw_mail_id,
            "error": m.outcome.error,
        }
        for m in failed
    ]
    for message, failed_id in zip(
        failed, insert_rows(db.session.connection(), _FAILED, rows), strict=True
    ):
        message.outcome.failed_mail_id = failed_id
        message.outcome.log.append(f"failed: {message.outcome.error}")


def reprocess_failed_mail(failed: FailedMail) -> MessageOutcome:
    """Run a failed mail through the pipeline again with its account's settings.

    On success the FailedMail row goes away (the article keeps the raw mail); on another
    failure it stays with the new error. Never commits: the view or CLI does.
    """
    ctx = build_context(failed.mail_account)
    raw_mail = failed.raw_mail
    outcome = _run(ctx, [raw_mail.content], [raw_mail])[0].outcome
    if outcome.kind == OutcomeKind.FAILED:
        failed.error = outcome.error or "unknown error"
        outcome.failed_mail_id = failed.id
        outcome.log.append(f"failed again: {outcome.error}")
        db.session.flush()
        return outcome
    delete_failed_mail(failed, keep_raw=outcome.kind != OutcomeKind.IGNORED)
    return outcome


def delete_failed_mail(failed: FailedMail, keep_raw: bool = False) -> None:
    """Remove a failed mail; its raw source too unless an article still uses it."""
    raw_mail_id = failed.raw_mail_id
    db.session.delete(failed)
    db.session.flush()
    if keep_raw:
        return
    used = db.session.scalar(
        select(Article.id).where(Article.raw_mail_id == raw_mail_id).limit(1)
    ) or db.session.scalar(
        select(FailedMail.id).where(FailedMail.raw_mail_id == raw_mail_id).limit(1)
    )
    if not used:
        raw = db.session.get(RawMail, raw_mail_id)
        if raw is not None:
            db.session.delete(raw)
            db.session.flush()
