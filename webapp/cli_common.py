"""What every command group shares: one way to fail and one way to read a secret.

A leaf module (it imports nothing of the app), so any feature's `cli.py` can use it without
an import cycle.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def fail(message: str) -> NoReturn:
    """One line on stderr and exit code 2: bad input, nothing written."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def read_secret_stdin() -> str:
    """A secret from standard input (one line), never from the command line."""
    return sys.stdin.readline().rstrip("\r\n")
