"""Encryption keys of secrets at rest: rotating them (service) and `flask keys rotate` (cli).
The column type and the key file are crypto.py."""

from __future__ import annotations

from flask import Flask

from . import cli


def init_app(app: Flask) -> None:
    """Register the `keys` command group."""
    app.cli.add_command(cli.keys_cli)
