"""`flask --app wsgi system-address add|list`."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from ..cli_common import fail
from ..validation import ValidationError
from .service import all_addresses, queue_named, save_address

system_address_cli = AppGroup("system-address", help="Email addresses linked to queues.")


@system_address_cli.command("add")
@click.argument("address")
@click.option("--queue", "queue_name", required=True, help="Queue name.")
@click.option("--name", "display_name", help="Display name.")
@click.option("--comment")
@click.option("--validity", default="valid", show_default=True)
def address_add(
    address: str, queue_name: str, display_name: str | None, comment: str | None, validity: str
) -> None:
    """Link an email address to a queue; prints its id."""
    queue = queue_named(queue_name)
    if queue is None:
        fail("--queue: there is no such queue.")
    try:
        row = save_address(None, address, queue.id, validity, display_name, comment, "cli")
    except ValidationError as e:
        fail("; ".join(e.errors.values()))
    click.echo(row.id)


@system_address_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def address_list(as_json: bool) -> None:
    """List email addresses with their queues."""
    rows = all_addresses()
    if as_json:
        data = [
            {
                "id": r.id,
                "address": r.address,
                "display_name": r.display_name,
                "queue": r.queue.name,
                "validity": r.validity,
                "comment": r.comment,
            }
            for r in rows
        ]
        click.echo(json.dumps(data, indent=2))
        return
    for r in rows:
        click.echo(f"{r.id}\t{r.address}\t{r.queue.name}\t{r.validity}\t{r.display_name or ''}")
