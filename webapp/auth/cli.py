"""`flask --app wsgi admin create NAME` and `flask --app wsgi admin set-password NAME`."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..cli_common import fail, read_secret_stdin
from .service import AdminError, create_admin, set_admin_password

admin_cli = AppGroup("admin", help="Admin users.")


@admin_cli.command("create")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def admin_create(name: str, password_stdin: bool) -> None:
    """Add an admin user (password prompted)."""
    if password_stdin:
        password = read_secret_stdin()
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        create_admin(name, password)
    except AdminError as e:
        fail(str(e))
    click.echo(f"Admin {name!r} created.")


@admin_cli.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def admin_set_password(name: str, password_stdin: bool) -> None:
    """Give an admin a new password (prompted); it signs the admin out everywhere."""
    if password_stdin:
        password = read_secret_stdin()
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        set_admin_password(name, password)
    except AdminError as e:
        fail(str(e))
    click.echo(f"Password of {name!r} changed; every session of {name!r} has ended.")
