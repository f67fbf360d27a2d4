"""`flask --app wsgi mail-account add|list|update|delete|test|fetch|authorize`.

The same validation and saving as the screens; `fetch` and `test` are OTOBO's
Maint::PostMaster::MailAccountFetch, `authorize` prints the OAuth2 consent URL.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
from flask import current_app
from flask.cli import AppGroup

from ..account_types import ACCOUNT_TYPES, AFTER_FETCH_CHOICES, DISPATCH_CHOICES, VALIDITIES
from ..cli_common import fail, read_secret_stdin
from ..extensions import db
from ..models import AdminUser, MailAccount, OAuth2Profile, Queue
from ..oauth.flow import PENDING_LIFETIME, ConsentError, cli_start
from ..states import FetchStatus
from ..validation import ValidationError
from .service import (
    ConnectionFailed,
    account_summary,
    app_only_profile,
    begin_reauthorization,
    check_connection,
    create_mail_account,
    delete_mail_account,
    fetch_mail_accounts,
    get_mail_account,
    host_warning,
    list_mail_accounts,
    save_app_only_account,
    update_mail_account,
    valid_account_ids,
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
    "push": "--push",
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
        click.option(
            "--push/--no-push",
            default=None,
            help="Fetch on arrival (IMAP IDLE) when the server announces it (default: on).",
        ),
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
        "push": "push",
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
    """An OAuth2 account without tokens cannot fetch yet: say how to link it."""
    profile = account.oauth2_profile
    app_only = profile is not None and profile.grant == "app_only"
    if account.account_type.oauth2 and account.oauth2_token is None and not app_only:
        click.echo(
            f"Hint: sign in at the provider with `flask --app wsgi mail-account authorize "
            f"{account.id}` before it can fetch.",
            err=True,
        )


def _host_warning(account: MailAccount) -> None:
    warning = host_warning(account)
    if warning:
        click.echo(f"Warning: {warning}", err=True)


@mail_account_cli.command("add")
@account_options
def add_command(**opts: Any) -> None:
    """Add a mail account; prints its id."""
    data = _apply_options(MailAccountInput(), opts)
    try:
        if app_only_profile(data) is not None:  # saved after its login is checked
            account = save_app_only_account(data, None, CLI_ACTOR)
        else:
            account = create_mail_account(data, CLI_ACTOR)
    except ValidationError as e:
        _fail_validation(e)
    click.echo(account.id)
    _oauth2_hint(account)
    _host_warning(account)


@mail_account_cli.command("update")
@click.argument("account_id", type=int)
@account_options
def update_command(account_id: int, **opts: Any) -> None:
    """Change the given options of a mail account; the others stay."""
    account = get_mail_account(account_id)
    if account is None:
        fail(f"There is no mail account with id {account_id}.")
    data = _apply_options(input_from_account(account), opts)
    try:
        if app_only_profile(data) is not None:
            save_app_only_account(data, account, CLI_ACTOR)
            dropped = False
        else:
            dropped = update_mail_account(account, data, CLI_ACTOR)
    except ValidationError as e:
        _fail_validation(e)
    click.echo(f"Mail account {account.id} updated.")
    if dropped:
        click.echo(
            "The host, port or TLS verification changed, so the OAuth2 tokens (consented for "
            "the old server) were dropped and the account needs authorization: run "
            f"`flask --app wsgi mail-account authorize {account.id}`.",
            err=True,
        )
    else:
        _oauth2_hint(account)
    _host_warning(account)


@mail_account_cli.command("delete")
@click.argument("account_id", type=int)
def delete_command(account_id: int) -> None:
    """Delete a mail account with its OAuth2 token and fetch history."""
    account = get_mail_account(account_id)
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


@mail_account_cli.command("fetch")
@click.option("--mail-account-id", type=int, help="Fetch only this account.")
@click.option("--debug", is_flag=True, help="Show the protocol conversation (secrets masked).")
def fetch_command(mail_account_id: int | None, debug: bool) -> None:
    """Fetch all valid mail accounts (or one). Exit 1 when any failed."""
    if mail_account_id is not None:
        account = get_mail_account(mail_account_id)
        if account is None:
            fail(f"no mail account with id {mail_account_id}")
        ids = [account.id]
    else:
        ids = valid_account_ids()
    show_debug = (lambda line: click.echo(f"  {line}", err=True)) if debug else None
    any_failed = False
    for label, result in fetch_mail_accounts(ids, show_debug):
        click.echo(f"{label}: {result.summary()}")
        any_failed |= result.status in (FetchStatus.ERROR, FetchStatus.BUSY, FetchStatus.REAUTH)
    sys.exit(1 if any_failed else 0)


@mail_account_cli.command("test")
@click.argument("account_id", type=int)
def test_command(account_id: int) -> None:
    """Log in, list folders and count messages; changes nothing."""
    account = get_mail_account(account_id)
    if account is None:
        fail(f"no mail account with id {account_id}")
    try:
        report = check_connection(account)
    except ConnectionFailed as e:
        # Not bad input (exit 2) but a failed check, like a failed fetch: exit 1.
        click.echo(f"Connection failed: {e}", err=True)
        sys.exit(1)
    click.echo(f"OK: {report.message_count} messages; folders: {', '.join(report.folders)}")


@mail_account_cli.command("authorize")
@click.argument("account_id", type=int)
@click.option("--admin", "admin_name", help="Admin recorded as linking (default: the only one).")
def authorize_command(account_id: int, admin_name: str | None) -> None:
    """Print the consent URL of an OAuth2 mail account, to open in any browser.

    The sign-in is bound to this command, not to a browser session: the link works once,
    for 10 minutes, and only the mailbox's own account (or a delegate of a shared mailbox) is
    accepted. Do not share it.
    """
    account = get_mail_account(account_id)
    if account is None:
        fail(f"There is no mail account with id {account_id}.")
    if not account.account_type.oauth2:
        fail(f"Mail account {account_id} is {account.type}, not an OAuth2 type.")
    public_url = current_app.config.get("PUBLIC_URL")
    if not public_url:
        fail("Set POSTMASTER_PUBLIC_URL (the app's external URL) so the redirect URI is known.")
    admin = _admin(admin_name)
    try:
        url = begin_reauthorization(account, cli_start(admin.id, public_url))
    except ConsentError as e:
        fail(str(e))
    minutes = int(PENDING_LIFETIME.total_seconds() // 60)
    click.echo(f"Open this URL within {minutes} minutes and sign in as {account.username}:")
    click.echo(url)


def _admin(name: str | None) -> AdminUser:
    """The admin named by --admin, else the only admin there is."""
    if name:
        admin = db.session.query(AdminUser).filter_by(username=name.strip()).first()
        if admin is None:
            fail(f"--admin: there is no admin named {name!r}.")
        return admin
    admins = db.session.query(AdminUser).limit(2).all()
    if len(admins) != 1:
        fail("--admin is required (there is not exactly one admin user).")
    return admins[0]
