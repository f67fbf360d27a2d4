"""Mail Accounts: the screens (views, forms), the `mail-account` command group and the service.

- validators.py: MailAccountInput (what an admin typed) and the checks of every field
- service.py: the operations shared by the screens and the CLI (save, delete, list, test,
  fetch, and saving OAuth2 accounts through the provider sign-in)
- forms.py: the add/edit form
- views.py: the Mail Account Management screens
- cli.py: `mail-account add|list|update|delete|test|fetch|authorize`
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the Mail Account screens and the `mail-account` command group."""
    # Imported here, not at the top, so that importing the service (as the OAuth2 screens do)
    # does not load every screen and command with it.
    from . import cli, views

    app.register_blueprint(views.bp)
    app.cli.add_command(cli.mail_account_cli)
