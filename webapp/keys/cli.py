"""`flask --app wsgi keys rotate`."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .service import rotate_all_secrets

keys_cli = AppGroup("keys", help="Encryption keys of secrets at rest.")


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Add a new key and re-encrypt every stored secret with it."""
    count = rotate_all_secrets(current_app.instance_path, current_app.config["ENCRYPTION_KEYS"])
    click.echo(f"Re-encrypted {count} secrets with the new key.")
