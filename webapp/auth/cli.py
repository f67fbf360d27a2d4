"""`flask --app wsgi admin create|set-password|list|delete`: the Admins screen's operations."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..cli_common import fail, read_secret_stdin
from .service import (
    AdminError,
    create_admin,
    delete_admin,
    find_admin,
    list_admins,
    set_admin_password,
)

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


@admin_cli.command("list")
def admin_list() -> None:
    """The admin users, one per line."""
    for user in list_admins():
        click.echo(user.username)


@admin_cli.command("delete")
@click.argument("name")
def admin_delete(name: str) -> None:
    """Remove an admin (never the last one); every session of NAME ends."""
    try:
        delete_admin(find_admin(name), None)
    except AdminError as e:
        fail(str(e))
    click.echo(f"Admin {name!r} removed.")
