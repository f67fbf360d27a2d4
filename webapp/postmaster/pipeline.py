"""What happens to one fetched message: parse, follow-up or new ticket, or FailedMail.

The fetch loop calls process_message inside its batch transaction and commits the batch with
its dedupe keys before deleting on the server, so nothing here commits or rolls back the
session: rows are added (and flushed) and an outcome is returned. Each message runs in a
SAVEPOINT, so one broken message never poisons the rest of the batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, select
from sqlalchemy import exc as sa_exc

from ..extensions import db
from ..models import Article, FailedMail, MailAccount, Queue, RawMail, TicketPriority, TicketState
from ..seed import DEFAULT_PRIORITY, DEFAULT_STATE, FOLLOW_UP_STATE
from ..settings import get_setting
from .dispatch import (
    is_ignored,
    load_address_queues,
    load_valid_queues,
    new_ticket_params,
    trusted_headers,
)
from .followup import append_follow_up, find_follow_up, ticket_number_pattern
from .parse import MailParseError, ParsedMail, parse_mail
from .tickets import article_row, create_ticket, insert_article, store_raw_mail

# Database trouble (lost connection, lock timeout, deadlock) is not the message's fault:
# it propagates so the fetch loop rolls back the batch and the mail stays on the server.
TRANSIENT_DB_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError)
_MAX_ERROR = 4000


class PipelineError(Exception):
    """The pipeline cannot run at all (e.g. no queue exists)."""


@dataclass
class MessageOutcome:
    """What became of one message, for the fetch loop's counters and log."""

    kind: str  # "new_ticket" | "follow_up" | "ignored" | "failed"
    ticket_id: int | None = None
    article_id: int | None = None
    failed_mail_id: int | None = None
    log: list[str] = field(default_factory=list)
    message_id: str | None = None
    raw_mail_id: int | None = None
    error: str | None = None


@dataclass
class PipelineContext:
    """Everything the pipeline looks up, loaded once per fetch run (not per message)."""

    account: MailAccount | None
    account_id: int | None
    # Copied from the account: after a batch commit the ORM object is expired, and reading
    # it again would cost one query per message.
    trusted: bool
    dispatch: str
    account_queue_id: int | None
    default_queue_id: int
    default_queue_label: str
    address_queues: dict[str, int]
    queues_by_name: dict[str, int]
    queue_names: dict[int, str]
    states_by_name: dict[str, int]
    state_names: dict[int, str]
    state_types: dict[int, str]
    priorities_by_name: dict[str, int]
    new_state_id: int
    new_state_name: str
    follow_up_state_id: int
    default_priority_id: int
    default_priority_name: str
    ticket_hook: str
    ticket_number_re: re.Pattern[str]
    warnings: list[str] = field(default_factory=list)


def _default_queue(valid: dict[str, int], warnings: list[str]) -> tuple[int, str]:
    """The queue of the PostmasterDefaultQueue setting; Raw (or any queue) if it is gone."""
    name = get_setting("PostmasterDefaultQueue")
    if name in valid:
        return valid[name], name
    fallback = "Raw" if "Raw" in valid else next(iter(sorted(valid)), None)
    if fallback is None:
        row = db.session.execute(select(Queue.id, Queue.name).order_by(Queue.id)).first()
        if row is None:
            raise PipelineError("there is no queue to put mail into")
        queue_id, fallback = row
        warnings.append(f"no valid queue at all, using invalid queue {fallback}")
        return queue_id, fallback
    warnings.append(f"default queue {name!r} is missing or invalid, using {fallback}")
    return valid[fallback], fallback


def build_context(account: MailAccount | None) -> PipelineContext:
    """Load the caches for one fetch run of the account (None: untrusted, by To: field)."""
    warnings: list[str] = []
    valid_queues = load_valid_queues()
    queue_names = {qid: name for name, qid in valid_queues.items()}
    default_id, default_name = _default_queue(valid_queues, warnings)
    queue_names.setdefault(default_id, default_name)
    states = {s.name: (s.id, s.type_name) for s in db.session.scalars(select(TicketState))}
    priorities = {p.name: p.id for p in db.session.scalars(select(TicketPriority))}
    for needed in (DEFAULT_STATE, FOLLOW_UP_STATE):
        if needed not in states:
            raise PipelineError(f"ticket state {needed!r} is missing (run setup)")
    if DEFAULT_PRIORITY not in priorities:
        raise PipelineError(f"ticket priority {DEFAULT_PRIORITY!r} is missing (run setup)")
    account_queue_id = account.queue_id if account is not None else None
    if account_queue_id not in queue_names:
        account_queue_id = None  # deleted or invalid: dispatch_queue falls back and logs
    hook = get_setting("TicketHook")
    return PipelineContext(
        account=account,
        account_id=account.id if account is not None else None,
        trusted=bool(account is not None and account.trusted),
        dispatch=account.dispatch if account is not None else "to",
        account_queue_id=account_queue_id,
        default_queue_id=default_id,
        default_queue_label=f"default queue {default_name}",
        address_queues=load_address_queues(),
        queues_by_name=valid_queues,
        queue_names=queue_names,
        states_by_name={name: sid for name, (sid, _t) in states.items()},
        state_names={sid: name for name, (sid, _t) in states.items()},
        state_types={sid: type_name for sid, type_name in states.values()},
        priorities_by_name=priorities,
        new_state_id=states[DEFAULT_STATE][0],
        new_state_name=DEFAULT_STATE,
        follow_up_state_id=states[FOLLOW_UP_STATE][0],
        default_priority_id=priorities[DEFAULT_PRIORITY],
        default_priority_name=DEFAULT_PRIORITY,
        ticket_hook=hook,
        ticket_number_re=ticket_number_pattern(hook),
        warnings=warnings,
    )


@contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    """A SAVEPOINT inside the caller's transaction; rolled back alone on an exception."""
    dbapi_conn = conn.connection.dbapi_connection
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


def _deliver(
    conn: Connection,
    ctx: PipelineContext,
    mail: ParsedMail,
    headers: dict[str, str],
    raw_mail_id: int,
    log: list[str],
) -> MessageOutcome:
    """Append to the ticket the mail follows up, or create a new ticket."""
    follow = find_follow_up(conn, ctx, mail)
    if follow is not None:
        ticket, reason = follow
        log.append(f"follow-up to ticket {ticket.number} ({reason})")
        article_id = append_follow_up(conn, ctx, ticket, mail, headers, raw_mail_id, log)
        return MessageOutcome("follow_up", ticket.id, article_id, log=log)
    params = new_ticket_params(ctx, mail, headers, log)
    ticket_id, number = create_ticket(conn, params)
    row = article_row(
        mail, raw_mail_id, ctx.account_id, params.sender_type, params.is_visible_for_customer
    )
    article_id = insert_article(conn, ticket_id, row, mail.attachments)
    log.append(f"new ticket {number} in queue {ctx.queue_names[params.queue_id]}")
    return MessageOutcome("new_ticket", ticket_id, article_id, log=log)


def _raw_mail_id(conn: Connection, raw: bytes, raw_mail: RawMail | None) -> int:
    """The id of the given RawMail (flushed if new), or of a newly stored one."""
    if raw_mail is None:
        return store_raw_mail(conn, raw)
    if raw_mail.id is None:
        db.session.flush()
    return raw_mail.id


def _attempt(ctx: PipelineContext, raw: bytes, raw_mail: RawMail | None) -> MessageOutcome:
    """Run the pipeline for one message; a failure comes back as kind "failed" with .error."""
    log: list[str] = []
    try:
        mail = parse_mail(raw)
    except Exception as exc:  # a parser bug must not lose the mail either
        return MessageOutcome("failed", log=log, error=_error_text(exc))
    headers = trusted_headers(ctx, mail, log)
    if is_ignored(headers):
        log.append("X-OTOBO-Ignore: the mail is ignored")
        return MessageOutcome("ignored", log=log, message_id=mail.message_id)
    # Outside the savepoint: a failed message keeps its raw source for the FailedMail.
    conn = db.session.connection()
    raw_mail_id = _raw_mail_id(conn, raw, raw_mail)
    try:
        with _savepoint(conn):
            outcome = _deliver(conn, ctx, mail, headers, raw_mail_id, log)
    except TRANSIENT_DB_ERRORS:
        raise
    except Exception as exc:
        outcome = MessageOutcome("failed", log=log, error=_error_text(exc))
    outcome.message_id = mail.message_id
    outcome.raw_mail_id = raw_mail_id
    return outcome


def process_message(
    ctx: PipelineContext, raw: bytes, raw_mail: RawMail | None = None
) -> MessageOutcome:
    """Turn one fetched message into a ticket, a follow-up, an ignore or a FailedMail.

    Never commits. Raises only on database trouble, which the fetch loop must treat as
    "roll back the batch and keep the mail on the server".
    """
    outcome = _attempt(ctx, raw, raw_mail)
    if outcome.kind != "failed":
        return outcome
    if outcome.raw_mail_id is None:
        outcome.raw_mail_id = _raw_mail_id(db.session.connection(), raw, raw_mail)
    # Outside the savepoint: the failure is recorded even though its work was rolled back.
    failed = FailedMail(
        mail_account_id=ctx.account_id, raw_mail_id=outcome.raw_mail_id, error=outcome.error
    )
    db.session.add(failed)
    db.session.flush()
    outcome.failed_mail_id = failed.id
    outcome.log.append(f"failed: {outcome.error}")
    return outcome


def reprocess_failed_mail(failed: FailedMail) -> MessageOutcome:
    """Run a failed mail through the pipeline again with its account's settings.

    On success the FailedMail row goes away (the article keeps the raw mail); on another
    failure it stays with the new error. Never commits: the view or CLI does.
    """
    ctx = build_context(failed.mail_account)
    raw_mail = failed.raw_mail
    outcome = _attempt(ctx, raw_mail.content, raw_mail)
    if outcome.kind == "failed":
        failed.error = outcome.error or "unknown error"
        outcome.failed_mail_id = failed.id
        outcome.log.append(f"failed again: {outcome.error}")
        db.session.flush()
        return outcome
    delete_failed_mail(failed, keep_raw=outcome.kind != "ignored")
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
