"""`flask --app wsgi postmaster-filter ...`: the same validation and saving as the screen."""

from __future__ import annotations

import json
import sys
from typing import IO

import click
from flask.cli import AppGroup

from ..cli_common import fail
from ..postmaster.filters import Condition, FilterReport
from ..validation import ValidationError
from .service import (
    FilterInput,
    create_filter,
    delete_filter,
    export_filters,
    filter_by_name,
    filter_dict,
    import_filters,
    input_from_filter,
    list_filters,
    report_dict,
    try_filter,
    update_filter,
)

filter_cli = AppGroup("postmaster-filter", help="PostMaster filters.")

# The CLI actor in the Created/Changed by columns.
CLI_ACTOR = "cli"


def parse_match(text: str) -> Condition:
    """'HEADER=REGEX', or '!HEADER=REGEX' for a negated condition."""
    negate = text.startswith("!")
    header, sep, pattern = text.removeprefix("!").partition("=")
    if not sep or not header.strip():
        fail(f"--match {text!r}: use HEADER=REGEX (or !HEADER=REGEX to negate)")
    return Condition(header.strip(), pattern, negate)


def parse_set(text: str) -> tuple[str, str]:
    """'X-OTOBO-Header=VALUE'."""
    header, sep, value = text.partition("=")
    if not sep or not header.strip():
        fail(f"--set {text!r}: use X-OTOBO-HEADER=VALUE")
    return header.strip(), value


def _failed(error: ValidationError) -> None:
    fail("; ".join(error.errors.values()))


def _print_report(report: FilterReport) -> None:
    click.echo(f"filter {report.name}: {'matches' if report.matched else 'does not match'}")
    for r in report.conditions:
        c = r.condition
        sign = "!" if c.negate else ""
        click.echo(f"  {'yes' if r.holds else 'no '}  {sign}{c.header}={c.pattern}")
    for header, value in report.would_set.items():
        click.echo(f"  would set {header}={value}")


@filter_cli.command("add")
@click.option("--name", required=True)
@click.option("--stop", is_flag=True, help="Stop after match: later filters do not run.")
@click.option("--match", "matches", multiple=True, help="HEADER=REGEX, !HEADER=REGEX negates.")
@click.option("--set", "sets", multiple=True, help="X-OTOBO-HEADER=VALUE.")
@click.option("--comment")
@click.option("--validity", default="valid", show_default=True)
def filter_add(
    name: str,
    stop: bool,
    matches: tuple[str, ...],
    sets: tuple[str, ...],
    comment: str | None,
    validity: str,
) -> None:
    """Add a filter; prints its id."""
    data = FilterInput(
        name=name,
        conditions=[parse_match(m) for m in matches],
        actions=[parse_set(s) for s in sets],
        stop_after_match=stop,
        comment=comment,
        validity=validity,
    )
    try:
        row = create_filter(data, CLI_ACTOR)
    except ValidationError as e:
        _failed(e)
        return
    click.echo(row.id)


@filter_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def filter_list(as_json: bool) -> None:
    """List filters in the order they run."""
    rows = list_filters()
    if as_json:
        click.echo(json.dumps([filter_dict(input_from_filter(r)) for r in rows], indent=2))
        return
    for row in rows:
        data = input_from_filter(row)
        matches = " ".join(
            f"{'!' if c.negate else ''}{c.header}={c.pattern}" for c in data.conditions
        )
        sets = " ".join(f"{h}={v}" for h, v in data.actions)
        stop = "stop" if row.stop_after_match else "-"
        click.echo(f"{row.name}\t{row.validity}\t{stop}\t{matches}\t{sets}")


@filter_cli.command("update")
@click.argument("name")
@click.option("--name", "new_name", help="Rename the filter.")
@click.option("--stop/--no-stop", default=None)
@click.option("--match", "matches", multiple=True, help="Replaces every condition.")
@click.option("--set", "sets", multiple=True, help="Replaces every set action.")
@click.option("--comment")
@click.option("--validity")
def filter_update(
    name: str,
    new_name: str | None,
    stop: bool | None,
    matches: tuple[str, ...],
    sets: tuple[str, ...],
    comment: str | None,
    validity: str | None,
) -> None:
    """Change a filter: only the options given change."""
    row = filter_by_name(name)
    if row is None:
        fail(f"no filter named {name!r}")
    data = input_from_filter(row)
    if new_name is not None:
        data.name = new_name
    if stop is not None:
        data.stop_after_match = stop
    if matches:
        data.conditions = [parse_match(m) for m in matches]
    if sets:
        data.actions = [parse_set(s) for s in sets]
    if comment is not None:
        data.comment = comment
    if validity is not None:
        data.validity = validity
    try:
        update_filter(row, data, CLI_ACTOR)
    except ValidationError as e:
        _failed(e)
    click.echo(f"Filter {data.name} saved.")


@filter_cli.command("delete")
@click.argument("name")
def filter_delete(name: str) -> None:
    """Delete a filter."""
    row = filter_by_name(name)
    if row is None:
        fail(f"no filter named {name!r}")
    delete_filter(row)
    click.echo(f"Filter {name} deleted.")


@filter_cli.command("test")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def filter_test(name: str, as_json: bool) -> None:
    """Run a filter on a raw message from standard input; stores nothing."""
    row = filter_by_name(name)
    if row is None:
        fail(f"no filter named {name!r}")
    try:
        report = try_filter(input_from_filter(row), sys.stdin.buffer.read())
    except ValidationError as e:
        _failed(e)
        return
    if as_json:
        click.echo(json.dumps(report_dict(report), indent=2))
    else:
        _print_report(report)


@filter_cli.command("export")
def filter_export() -> None:
    """Print every filter as one JSON document."""
    click.echo(json.dumps(export_filters(), indent=2))


@filter_cli.command("import")
@click.argument("file", type=click.File("rb"))
def filter_import(file: IO[bytes]) -> None:
    """Create or update (by name) the filters of an export (FILE, or - for stdin)."""
    try:
        created, updated = import_filters(file.read(), CLI_ACTOR)
    except ValidationError as e:
        _failed(e)
        return
    click.echo(f"{created} filters created, {updated} updated.")
