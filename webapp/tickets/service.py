"""Ticket queries shared by the ticket screens and `flask ticket list`."""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import selectinload, undefer

from ..extensions import db
from ..models import Article, Attachment, Queue, RawMail, Ticket, TicketState
from ..timefmt import iso_utc

PAGE_SIZE = 100
# State types that no longer need work; the overview counts the others as open.
DONE_STATE_TYPES = ("closed", "merged", "removed")


def queue_overview() -> list[dict]:
    """Every queue with its number of tickets and of tickets still open."""
    is_open = case(
        (Ticket.id.is_(None), 0), (TicketState.type_name.in_(DONE_STATE_TYPES), 0), else_=1
    )
    rows = db.session.execute(
        select(Queue.id, Queue.name, Queue.validity, func.count(Ticket.id), func.sum(is_open))
        .outerjoin(Ticket, Ticket.queue_id == Queue.id)
        .outerjoin(TicketState, TicketState.id == Ticket.state_id)
        .group_by(Queue.id, Queue.name, Queue.validity)
        .order_by(Queue.name)
    )
    return [
        {"id": i, "name": n, "validity": v, "total": total, "open": open_ or 0}
        for i, n, v, total, open_ in rows
    ]


def queue_tickets(queue_id: int, page: int) -> tuple[list[Ticket], bool]:
    """One page of a queue's tickets, newest first; and whether more follow."""
    tickets = db.session.scalars(
        select(Ticket)
        .where(Ticket.queue_id == queue_id)
        .options(selectinload(Ticket.state), selectinload(Ticket.priority))
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    return list(tickets[:PAGE_SIZE]), len(tickets) > PAGE_SIZE


def ticket_articles(ticket_id: int) -> list[Article]:
    """A ticket's articles, oldest first, with bodies and attachments loaded."""
    articles = db.session.scalars(
        select(Article)
        .where(Article.ticket_id == ticket_id)
        .options(
            undefer(Article.body_text),
            undefer(Article.body_html),
            selectinload(Article.attachments),
        )
        .order_by(Article.id)
    ).all()
    return list(articles)


def attachment_with_content(attachment_id: int) -> Attachment | None:
    """An attachment with its (deferred) content loaded, or None."""
    return db.session.scalar(
        select(Attachment)
        .where(Attachment.id == attachment_id)
        .options(undefer(Attachment.content))
    )


def raw_mail_content(raw_mail_id: int) -> bytes | None:
    """The stored source of a mail, or None when it is gone."""
    return db.session.scalar(select(RawMail.content).where(RawMail.id == raw_mail_id))


def queue_exists(name: str) -> bool:
    """True when a queue has exactly this name."""
    return db.session.scalar(select(Queue.id).where(Queue.name == name)) is not None


def ticket_rows(queue_name: str | None, limit: int) -> list[dict]:
    """Tickets (newest first) with the Message-IDs of their articles."""
    stmt = (
        select(Ticket)
        .options(
            selectinload(Ticket.queue), selectinload(Ticket.state), selectinload(Ticket.priority)
        )
        .order_by(Ticket.id.desc())
        .limit(limit)
    )
    if queue_name is not None:
        stmt = stmt.join(Queue, Queue.id == Ticket.queue_id).where(Queue.name == queue_name)
    tickets = db.session.scalars(stmt).all()
    message_ids: dict[int, list[str]] = {t.id: [] for t in tickets}
    if tickets:
        rows = db.session.execute(
            select(Article.ticket_id, Article.message_id)
            .where(Article.ticket_id.in_(message_ids))
            .order_by(Article.id)
        )
        for ticket_id, message_id in rows:
            if message_id:
                message_ids[ticket_id].append(message_id)
    return [
        {
            "number": t.number,
            "queue": t.queue.name,
            "state": t.state.name,
            "priority": t.priority.name,
            "title": t.title,
            "customer_user": t.customer_user,
            "customer_no": t.customer_no,
            "created_at": iso_utc(t.created_at),
            "message_ids": message_ids[t.id],
        }
        for t in tickets
    ]
