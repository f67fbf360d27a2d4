"""`flask --app wsgi mail-account ...` (filled in by the mail account screens work)."""

from flask.cli import AppGroup

mail_account_cli = AppGroup("mail-account", help="Mail accounts.")
