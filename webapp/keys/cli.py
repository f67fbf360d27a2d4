"""`flask --app wsgi keys rotate|retire`."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from ..cli_common import fail
from .service import KeyChangeRefused, retire_old_keys, rotate_all_secrets

keys_cli = AppGroup("keys", help="Encryption keys of secrets at rest.")


def _key_settings() -> tuple[Path, str]:
    return Path(current_app.config["ENCRYPTION_KEY_FILE"]), current_app.config["ENCRYPTION_KEYS"]


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Add a new key and re-encrypt every stored secret with it (running processes follow)."""
    try:
        count = rotate_all_secrets(*_key_settings())
    except KeyChangeRefused as e:
        fail(str(e))
    click.echo(f"Re-encrypted {count} secrets with the new key.")


@keys_cli.command("retire")
def keys_retire() -> None:
    """Remove the old keys once every stored secret uses the newest one."""
    try:
        removed = retire_old_keys(*_key_settings())
    except KeyChangeRefused as e:
        fail(str(e))
    if removed:
        click.echo(f"Retired {removed} old keys; every stored secret uses the newest key.")
    else:
        click.echo("Only one key: nothing to retire.")
