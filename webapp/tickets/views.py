"""Ticket screens: queues with counts, tickets of a queue, one ticket, downloads."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from sqlalchemy import case, func, select
from sqlalchemy.orm import selectinload, undefer

from ..extensions import db
from ..models import Article, Attachment, Queue, RawMail, Ticket, TicketState
from .downloads import download_response

bp = Blueprint("tickets", __name__, url_prefix="/tickets")

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


def page_number() -> int:
    """The ?page= argument, 1 when missing or nonsense."""
    return max(request.args.get("page", 1, type=int) or 1, 1)


@bp.route("/")
def index():
    return render_template("tickets/queues.html", queues=queue_overview())


@bp.route("/queue/<int:queue_id>")
def queue(queue_id: int):
    queue = db.get_or_404(Queue, queue_id)
    page = page_number()
    tickets = db.session.scalars(
        select(Ticket)
        .where(Ticket.queue_id == queue_id)
        .options(selectinload(Ticket.state), selectinload(Ticket.priority))
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    return render_template(
        "tickets/queue.html",
        queue=queue,
        tickets=tickets[:PAGE_SIZE],
        page=page,
        has_next=len(tickets) > PAGE_SIZE,
    )


@bp.route("/<int:ticket_id>")
def show(ticket_id: int):
    ticket = db.get_or_404(Ticket, ticket_id)
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
    return render_template("tickets/ticket.html", ticket=ticket, articles=articles)


@bp.route("/attachment/<int:attachment_id>")
def attachment(attachment_id: int):
    item = db.session.scalar(
        select(Attachment)
        .where(Attachment.id == attachment_id)
        .options(undefer(Attachment.content))
    )
    if item is None:
        abort(404)
    return download_response(item.content, item.filename, item.content_type)


@bp.route("/article/<int:article_id>/raw")
def article_raw(article_id: int):
    article = db.get_or_404(Article, article_id)
    if article.raw_mail_id is None:
        abort(404)
    content = db.session.scalar(select(RawMail.content).where(RawMail.id == article.raw_mail_id))
    return download_response(content, f"{article.ticket.number}-{article.id}.eml")
