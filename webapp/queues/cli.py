"""`flask --app wsgi queue add|list`."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from ..cli_common import fail
from ..validation import ValidationError
from .service import all_queues, save_queue

queue_cli = AppGroup("queue", help="Queues.")


@queue_cli.command("add")
@click.argument("name")
@click.option("--comment")
@click.option("--validity", default="valid", show_default=True)
def queue_add(name: str, comment: str | None, validity: str) -> None:
    """Add a queue; prints its id."""
    try:
        queue = save_queue(None, name, validity, comment, "cli")
    except ValidationError as e:
        fail("; ".join(e.errors.values()))
    click.echo(queue.id)


@queue_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def queue_list(as_json: bool) -> None:
    """List queues."""
    queues = all_queues()
    if as_json:
        rows = [
            {"id": q.id, "name": q.name, "validity": q.validity, "comment": q.comment}
            for q in queues
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for q in queues:
        click.echo(f"{q.id}\t{q.name}\t{q.validity}\t{q.comment or ''}")
