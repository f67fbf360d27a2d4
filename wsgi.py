"""WSGI entry point: `gunicorn -w 4 wsgi:app`, and `flask --app wsgi ...` for the CLI."""

from webapp import create_app

app = create_app()
