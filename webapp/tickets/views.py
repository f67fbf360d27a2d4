"""Ticket screens: queues with counts, tickets of a queue, one ticket, downloads."""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template

from ..downloads import download_response
from ..extensions import db
from ..models import Article, Queue, Ticket
from ..paging import page_number
from .service import (
    attachment_with_content,
    queue_overview,
    queue_tickets,
    raw_mail_content,
    ticket_articles,
)

bp = Blueprint("tickets", __name__, url_prefix="/tickets")


@bp.route("/")
def index() -> str:
    return render_template("tickets/queues.html", queues=queue_overview())


@bp.route("/queue/<int:queue_id>")
def queue(queue_id: int) -> str:
    queue = db.get_or_404(Queue, queue_id)
    page = page_number()
    tickets, has_next = queue_tickets(queue_id, page)
    return render_template(
        "tickets/queue.html", queue=queue, tickets=tickets, page=page, has_next=has_next
    )


@bp.route("/<int:ticket_id>")
def show(ticket_id: int) -> str:
    ticket = db.get_or_404(Ticket, ticket_id)
    articles = ticket_articles(ticket_id)
    return render_template("tickets/ticket.html", ticket=ticket, articles=articles)


@bp.route("/attachment/<int:attachment_id>")
def attachment(attachment_id: int) -> Response:
    item = attachment_with_content(attachment_id)
    if item is None:
        abort(404)
    return download_response(item.content, item.filename, item.content_type)


@bp.route("/article/<int:article_id>/raw")
def article_raw(article_id: int) -> Response:
    article = db.get_or_404(Article, article_id)
    if article.raw_mail_id is None:
        abort(404)
    content = raw_mail_content(article.raw_mail_id)
    if content is None:  # the raw mail is referenced by a foreign key: only a type guard
        abort(404)
    return download_response(content, f"{article.ticket.number}-{article.id}.eml")
