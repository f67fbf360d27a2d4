"""`flask --app wsgi admin create NAME` and `flask --app wsgi admin set-password NAME`."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..cli_common import fail, read_secret_stdin
from .service import AdminError, create_admin, set_admin_password

admin_cli = AppGroup("admin", help="Admin users.")


def _password(from_stdin: bool, prompt: str) -> str:
    """A password from standard input, or typed twice at a hidden prompt."""
    if from_stdin:
        return read_secret_stdin()
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


@admin_cli.command("create")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def admin_create(name: str, password_stdin: bool) -> None:
    """Add an admin user (password prompted)."""
    try:
        create_admin(name, _password(password_stdin, "Password"))
    except AdminError as e:
        fail(str(e))
    click.echo(f"Admin {name!r} created.")


@admin_cli.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def admin_set_password(name: str, password_stdin: bool) -> None:
    """Give an admin a new password (prompted); it signs the admin out everywhere."""
    try:
        set_admin_password(name, _password(password_stdin, "New password"))
    except AdminError as e:
        fail(str(e))
    click.echo(f"Password of {name!r} changed; every session of {name!r} has ended.")
