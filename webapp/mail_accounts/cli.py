"""`flask --app wsgi mail-account ...`: the same validation and saving as the screens."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn

import click
from flask.cli import AppGroup

from ..account_types import ACCOUNT_TYPES, AFTER_FETCH_CHOICES, DISPATCH_CHOICES, VALIDITIES
from ..cli_common import fail, read_secret_stdin
from ..extensions import db
from ..models import MailAccount, OAuth2Profile, Queue
from ..validation import ValidationError
from .service import (
    account_summary,
    create_mail_account,
    delete_mail_account,
    list_mail_accounts,
    update_mail_account,
)
from .validators import MailAccountInput, input_from_account

mail_account_cli = AppGroup("mail-account", help="Mail accounts.")

# The CLI actor in the Created/Changed by columns.
CLI_ACTOR = "cli"

# CLI option name -> MailAccountInput field, for the error messages.
OPTION_NAMES = {
    "type": "--type",
    "username": "--username",
    "password": "--password-stdin",
    "host": "--host",
    "port": "--port",
    "folder": "--folder",
    "trusted": "--trusted",
    "dispatch": "--dispatch",
    "queue_id": "--queue",
    "validity": "--validity",
    "comment": "--comment",
    "verify_tls": "--verify-tls",
    "after_fetch": "--after-fetch",
    "move_folder": "--move-folder",
    "fetch_interval_minutes": "--fetch-interval",
    "oauth2_profile_id": "--oauth2-profile",
    "shared_mailbox": "--shared-mailbox",
}


def account_options(func: Callable) -> Callable:
    """The options shared by `add` and `update` (None: not given)."""
    options = [
        click.option("--type", "type_", help="One of: " + ", ".join(ACCOUNT_TYPES)),
        click.option("--host", help="Host name or IP address (host:port works too)."),
        click.option("--port", help="Port (default: the type's port)."),
        click.option("--username"),
        click.option(
            "--password-stdin", is_flag=True, help="Read the password from standard input."
        ),
        click.option("--folder", help="IMAP folder (empty: INBOX)."),
        click.option("--trusted/--untrusted", default=None, help="Evaluate X-OTOBO headers."),
        click.option("--dispatch", help="to (by To: field) or queue (by selected Queue)."),
        click.option("--queue", "queue_name", help="Queue name for --dispatch queue."),
        click.option("--validity", help="One of: " + ", ".join(VALIDITIES)),
        click.option("--comment"),
        click.option("--verify-tls/--no-verify-tls", default=None),
        click.option("--after-fetch", help="One of: " + ", ".join(AFTER_FETCH_CHOICES)),
        click.option("--move-folder", help="Folder for --after-fetch move."),
        click.option("--fetch-interval", help="Minutes; empty string: the setting."),
        click.option("--oauth2-profile", "oauth2_profile_name", help="OAuth2 profile name."),
        click.option("--shared-mailbox/--own-mailbox", default=None),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _apply_options(data: MailAccountInput, opts: dict[str, Any]) -> MailAccountInput:
    """Override `data` with the options given; names are resolved to ids."""
    simple = {
        "type_": "type",
        "host": "host",
        "port": "port",
        "username": "username",
        "folder": "folder",
        "trusted": "trusted",
        "dispatch": "dispatch",
        "validity": "validity",
        "comment": "comment",
        "verify_tls": "verify_tls",
        "after_fetch": "after_fetch",
        "move_folder": "move_folder",
        "fetch_interval": "fetch_interval_minutes",
        "shared_mailbox": "shared_mailbox",
    }
    for option, attr in simple.items():
        if opts.get(option) is not None:
            setattr(data, attr, opts[option])
    if opts.get("queue_name") is not None:
        queue = db.session.query(Queue).filter_by(name=opts["queue_name"].strip()).first()
        if queue is None:
            fail("--queue: there is no such queue.")
        data.queue_id = queue.id
    if opts.get("oauth2_profile_name") is not None:
        name = opts["oauth2_profile_name"].strip()
        profile = db.session.query(OAuth2Profile).filter_by(name=name).first()
        if profile is None:
            fail("--oauth2-profile: there is no such OAuth2 profile.")
        data.oauth2_profile_id = profile.id
    if opts.get("password_stdin"):
        data.password = read_secret_stdin()
    return data


def _fail_validation(e: ValidationError) -> NoReturn:
    """All problems on one line, named by option."""
    fail("; ".join(f"{OPTION_NAMES.get(k, k)}: {v}" for k, v in e.errors.items()))


def _oauth2_hint(account: MailAccount) -> None:
    if account.account_type.oauth2 and account.oauth2_token is None:
        click.echo(
            f"Hint: sign in at the provider with `flask --app wsgi mail-account authorize "
            f"{account.id}` before it can fetch.",
            err=True,
        )


@mail_account_cli.command("add")
@account_options
def add_command(**opts: Any) -> None:
    """Add a mail account; prints its id."""
    data = _apply_options(MailAccountInput(), opts)
    try:
        account = create_mail_account(data, CLI_ACTOR)
    except ValidationError as e:
        _fail_validation(e)
    click.echo(account.id)
    _oauth2_hint(account)


@mail_account_cli.command("update")
@click.argument("account_id", type=int)
@account_options
def update_command(account_id: int, **opts: Any) -> None:
    """Change the given options of a mail account; the others stay."""
    account = db.session.get(MailAccount, account_id)
    if account is None:
        fail(f"There is no mail account with id {account_id}.")
    data = _apply_options(input_from_account(account), opts)
    try:
        update_mail_account(account, data, CLI_ACTOR)
    except ValidationError as e:
        _fail_validation(e)
    click.echo(f"Mail account {account.id} updated.")
    _oauth2_hint(account)


@mail_account_cli.command("delete")
@click.argument("account_id", type=int)
def delete_command(account_id: int) -> None:
    """Delete a mail account with its OAuth2 token and fetch history."""
    account = db.session.get(MailAccount, account_id)
    if account is None:
        fail(f"There is no mail account with id {account_id}.")
    delete_mail_account(account)
    click.echo(f"Mail account {account_id} deleted.")


@mail_account_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON (never includes secrets).")
@click.option("--include-invalid/--valid-only", default=True, show_default=True)
def list_command(as_json: bool, include_invalid: bool) -> None:
    """List mail accounts sorted by host and username."""
    accounts = list_mail_accounts(include_invalid=include_invalid)
    if as_json:
        click.echo(json.dumps([account_summary(a) for a in accounts], indent=2))
        return
    if not accounts:
        click.echo("No mail accounts.")
        return
    for a in accounts:
        queue = f" -> {a.queue.name}" if a.queue else ""
        dispatch = DISPATCH_CHOICES.get(a.dispatch, a.dispatch)
        click.echo(
            f"{a.id}\t{a.type}\t{a.host}:{a.effective_port}\t{a.username}\t"
            f"{a.effective_folder}\t{a.validity}\t{dispatch}{queue}"
        )
