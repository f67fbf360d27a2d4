"""Command-line interface: `flask --app wsgi ...`. Each command calls the same services as the
views, so the CLI validates exactly like the forms."""

from __future__ import annotations

import os
import secrets

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from flask_migrate import upgrade

from . import crypto
from .auth import AdminError, create_admin
from .cli_common import fail, read_secret_stdin
from .extensions import db
from .models import AdminUser
from .seed import seed_database

admin_cli = AppGroup("admin", help="Admin users.")
keys_cli = AppGroup("keys", help="Encryption keys of secrets at rest.")


@click.command("setup")
@click.option("--admin", "admin_name", default="admin", show_default=True)
def setup_command(admin_name: str) -> None:
    """Apply migrations, create the encryption key, seed defaults and a first admin."""
    if not current_app.config["ENCRYPTION_KEYS"]:
        path = crypto.ensure_key_file(current_app.instance_path)
        crypto.configure(crypto.load_keys("", current_app.instance_path))
        click.echo(f"Encryption key: {path} (back it up: without it stored secrets are lost)")
    upgrade()
    seed_database()
    if db.session.query(AdminUser).count() == 0:
        password = os.environ.get("POSTMASTER_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        create_admin(admin_name, password)
        if os.environ.get("POSTMASTER_ADMIN_PASSWORD"):
            click.echo(
                f"Created admin {admin_name!r} with the password from POSTMASTER_ADMIN_PASSWORD"
            )
        else:
            click.echo(f"Created admin {admin_name!r} with password: {password}")
            click.echo("(shown once; change it or add admins with `flask --app wsgi admin create`)")
    click.echo("Database ready.")


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


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Add a new key and re-encrypt every stored secret with it."""
    from .secrets_store import rotate_all_secrets

    count = rotate_all_secrets(current_app.instance_path, current_app.config["ENCRYPTION_KEYS"])
    click.echo(f"Re-encrypted {count} secrets with the new key.")


def init_app(app: Flask) -> None:
    app.cli.add_command(setup_command)
    app.cli.add_command(admin_cli)
    app.cli.add_command(keys_cli)
    from .addresses import system_address_cli
    from .queues import queue_cli

    app.cli.add_command(queue_cli)
    app.cli.add_command(system_address_cli)
    from .tickets.cli import ticket_cli

    app.cli.add_command(ticket_cli)
    from .status import scheduler_cli, status_command

    app.cli.add_command(status_command)
    app.cli.add_command(scheduler_cli)
