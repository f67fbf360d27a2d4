"""WSGI entry point: `gunicorn -w 4 wsgi:app`, and `flask --app wsgi ...` for the CLI.

The composition root: the scheduler's command group is added here, because webapp never
imports scheduler (the scheduler imports webapp).
"""

from scheduler.cli import scheduler_cli
from webapp import create_app

app = create_app()
app.cli.add_command(scheduler_cli)
