"""`flask --app wsgi ticket ...`: list tickets and handle failed mail from the shell."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import AppGroup

from ..cli_common import fail
from ..extensions import db
from ..failed_mail.service import all_failed_ids, failed_mail_rows, reprocess
from ..models import FailedMail
from .service import queue_exists, ticket_rows

ticket_cli = AppGroup("ticket", help="Tickets created from mail, and failed mail.")


def _one_line(text: str | None) -> str:
    """A value for tab-separated output: no tabs or line breaks inside."""
    return " ".join((text or "").split())


@ticket_cli.command("list")
@click.option("--queue", "queue_name", help="Only tickets of this queue.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of tab-separated lines.")
@click.option("--limit", default=1000, show_default=True, help="At most this many tickets.")
def list_tickets(queue_name: str | None, as_json: bool, limit: int) -> None:
    """List tickets: number, queue, state, priority, title and the articles' Message-IDs."""
    if queue_name is not None and not queue_exists(queue_name):
        fail(f"no queue named {queue_name!r}")
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
    rows = failed_mail_rows()
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
        fail("give failed mail ids or --all")
    if all_:
        ids = all_failed_ids()
    failures = 0
    for failed_id in ids:
        failed = db.session.get(FailedMail, failed_id)
        if failed is None:
            click.echo(f"{failed_id}: no such failed mail", err=True)
            failures += 1
            continue
        outcome = reprocess(failed)
        if outcome.kind == "failed":
            failures += 1
            click.echo(f"{failed_id}: failed again: {outcome.error}")
        else:
            click.echo(f"{failed_id}: {outcome.kind} (ticket id {outcome.ticket_id})")
    if failures:
        sys.exit(1)
