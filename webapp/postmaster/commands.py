"""`flask --app wsgi mail-account fetch|test`: OTOBO's Maint::PostMaster::MailAccountFetch."""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from ..extensions import db
from ..mail_accounts.cli import mail_account_cli
from ..models import MailAccount
from .connection_test import test_connection
from .fetch import FetchOptions, fetch_account
from .lease import make_owner
from .mailbox import MailError


@mail_account_cli.command("fetch")
@click.option("--mail-account-id", type=int, help="Fetch only this account.")
@click.option("--debug", is_flag=True, help="Show the protocol conversation (secrets masked).")
def fetch_command(mail_account_id: int | None, debug: bool) -> None:
    """Fetch all valid mail accounts (or one). Exit 1 when any failed."""
    if mail_account_id is not None:
        account = db.session.get(MailAccount, mail_account_id)
        if account is None:
            click.echo(f"Error: no mail account with id {mail_account_id}", err=True)
            sys.exit(2)
        ids = [account.id]
    else:
        ids = list(
            db.session.execute(
                select(MailAccount.id)
                .where(MailAccount.validity == "valid")
                .order_by(MailAccount.host, MailAccount.username)
            ).scalars()
        )
    options = FetchOptions(
        trigger="cli",
        owner=make_owner("cli"),
        debug=(lambda line: click.echo(f"  {line}", err=True)) if debug else None,
    )
    any_failed = False
    for account_id in ids:
        account = db.session.get(MailAccount, account_id)
        label = f"{account.id} {account.type} {account.username}@{account.host}"
        result = fetch_account(account_id, options)
        click.echo(f"{label}: {result.summary()}")
        any_failed |= result.status in ("error", "busy", "reauth")
    sys.exit(1 if any_failed else 0)


@mail_account_cli.command("test")
@click.argument("account_id", type=int)
def test_command(account_id: int) -> None:
    """Log in, list folders and count messages; changes nothing."""
    account = db.session.get(MailAccount, account_id)
    if account is None:
        click.echo(f"Error: no mail account with id {account_id}", err=True)
        sys.exit(2)
    try:
        report = test_connection(account)
    except MailError as e:
        click.echo(f"Connection failed: {e}", err=True)
        sys.exit(1)
    click.echo(f"OK: {report.message_count} messages; folders: {', '.join(report.folders)}")
