"""`flask --app wsgi setup`: first setup of a server (migrations, encryption key, default
rows, a first admin). Safe to run again: it only adds what is missing."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click
from flask import Flask, current_app
from flask_migrate import upgrade

from . import crypto
from .auth.service import create_admin
from .extensions import db
from .models import AdminUser
from .seed import seed_database


@click.command("setup")
@click.option("--admin", "admin_name", default="admin", show_default=True)
def setup_command(admin_name: str) -> None:
    """Apply migrations, create the encryption key, seed defaults and a first admin."""
    if not crypto.fixed_keys(current_app.config["ENCRYPTION_KEYS"]):
        path = Path(current_app.config["ENCRYPTION_KEY_FILE"])
        crypto.ensure_key_file(path)
        crypto.configure("", path)
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
            click.echo(
                "(shown once; change it after signing in under Admins > Change my password, "
                "or with `flask --app wsgi admin set-password "
                f"{admin_name} --password-stdin`)"
            )
    click.echo("Database ready.")


def init_app(app: Flask) -> None:
    """Register the `setup` command."""
    app.cli.add_command(setup_command)
