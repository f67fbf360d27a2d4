"""`flask --app wsgi ticket ...`: list tickets and handle failed mail from the shell."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Article, FailedMail, Queue, Ticket
from ..postmaster.pipeline import reprocess_failed_mail

ticket_cli = AppGroup("ticket", help="Tickets created from mail, and failed mail.")


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
            "created_at": t.created_at.isoformat() if t.created_at else None,
            "message_ids": message_ids[t.id],
        }
        for t in tickets
    ]


def _one_line(text: str | None) -> str:
    """A value for tab-separated output: no tabs or line breaks inside."""
    return " ".join((text or "").split())


@ticket_cli.command("list")
@click.option("--queue", "queue_name", help="Only tickets of this queue.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of tab-separated lines.")
@click.option("--limit", default=1000, show_default=True, help="At most this many tickets.")
def list_tickets(queue_name: str | None, as_json: bool, limit: int) -> None:
    """List tickets: number, queue, state, priority, title and the articles' Message-IDs."""
    if (
        queue_name is not None
        and db.session.scalar(select(Queue.id).where(Queue.name == queue_name)) is None
    ):
        click.echo(f"Error: no queue named {queue_name!r}", err=True)
        sys.exit(2)
    rows = ticket_rows(queue_name, limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        fields = [r["number"], r["queue"], r["state"], r["priority"], r["title"]]
        fields.append(" ".join(r["message_ids"]))
        click.echo("\t".join(_one_line(f) for f in fields))


@ticket_cli.command("failed")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of tab-separated lines.")
def list_failed(as_json: bool) -> None:
    """List failed mail: id, account, time and error."""
    failed = db.session.scalars(
        select(FailedMail).options(selectinload(FailedMail.mail_account)).order_by(FailedMail.id)
    ).all()
    rows = [
        {
            "id": f.id,
            "account": f"{f.mail_account.username}@{f.mail_account.host}"
            if f.mail_account
            else None,
            "created_at": f.created_at.isoformat() if f.created_at else None,
            "error": f.error,
        }
        for f in failed
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        fields = [str(r["id"]), r["account"] or "-", r["created_at"] or "", r["error"]]
        click.echo("\t".join(_one_line(f) for f in fields))


@ticket_cli.command("reprocess-failed")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="Reprocess every failed mail.")
def reprocess_failed(ids: tuple[int, ...], all_: bool) -> None:
    """Run failed mail through the pipeline again (each committed on its own)."""
    if not ids and not all_:
        click.echo("Error: give failed mail ids or --all", err=True)
        sys.exit(2)
    if all_:
        ids = tuple(db.session.scalars(select(FailedMail.id).order_by(FailedMail.id)))
    failures = 0
    for failed_id in ids:
        failed = db.session.get(FailedMail, failed_id)
        if failed is None:
            click.echo(f"{failed_id}: no such failed mail", err=True)
            failures += 1
            continue
        outcome = reprocess_failed_mail(failed)
        db.session.commit()
        if outcome.kind == "failed":
            failures += 1
            click.echo(f"{failed_id}: failed again: {outcome.error}")
        else:
            click.echo(f"{failed_id}: {outcome.kind} (ticket id {outcome.ticket_id})")
    if failures:
        sys.exit(1)
