"""`flask --app wsgi status [--json]`: what needs attention, for monitoring."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext

from .service import status_report


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@with_appcontext
def status_command(as_json: bool) -> None:
    """What needs attention; exit 1 when anything does (for monitoring)."""
    report = status_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        alive = sum(1 for n in report["schedulers"] if n["alive"])
        click.echo(f"schedulers alive: {alive}; valid mail accounts: {len(report['accounts'])}")
        for item in report["attention"]:
            click.echo(f"ATTENTION {item['kind']}: {item['subject']}: {item['message']}")
        if report["ok"]:
            click.echo("OK: nothing needs attention")
    sys.exit(0 if report["ok"] else 1)
