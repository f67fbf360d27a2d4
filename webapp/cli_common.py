"""What every command group shares: one way to fail, one way to read a secret, and the guard
every command passes through (a missing encryption key is one line, not a traceback).

Imports only crypto (a leaf itself), so any feature's `cli.py` can use it without an import
cycle.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
from flask.cli import AppGroup
from sqlalchemy.exc import StatementError

from . import crypto

# Top-level commands that work without an encryption key: `setup` creates it, and these
# neither store nor read a secret (`db`: the migrations). Flask's own `run`, `shell` and
# `routes` do not pass through the guard; `flask run` answers 503 without a key.
KEYLESS_COMMANDS = frozenset({"setup", "db", "admin", "status"})


def fail(message: str) -> NoReturn:
    """One line on stderr and exit code 2: bad input, nothing written."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def read_secret_stdin() -> str:
    """A secret from standard input (one line), never from the command line."""
    return sys.stdin.readline().rstrip("\r\n")


def _guarded(callback: Callable[..., Any], needs_key: bool) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        # Before anything is read or written: no half-done command for want of a key.
        if needs_key and not crypto.has_key():
            fail(crypto.NO_KEY_MESSAGE)
        try:
            return callback(*args, **kwargs)
        except crypto.MissingEncryptionKey:
            fail(crypto.NO_KEY_MESSAGE)
        except StatementError as e:  # raised by EncryptedText while binding a statement
            if isinstance(e.orig, crypto.MissingEncryptionKey):
                fail(crypto.NO_KEY_MESSAGE)
            raise

    run.postmaster_guarded = True  # type: ignore[attr-defined]
    return run


def guard(command: click.Command, needs_key: bool) -> click.Command:
    """Put every callback of `command` (and of its subcommands) behind the guard, once."""
    if command.callback is not None and not getattr(command.callback, "postmaster_guarded", 0):
        command.callback = _guarded(command.callback, needs_key)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            guard(sub, needs_key)
    return command


class GuardedGroup(AppGroup):
    """The app's command group (app.cli): every command it hands out is guarded, including
    groups added after create_app (the scheduler's, in wsgi.py)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            return None
        return guard(command, needs_key=cmd_name not in KEYLESS_COMMANDS)
