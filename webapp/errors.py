"""Friendly error pages."""

from __future__ import annotations

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Forbidden", "You are not allowed to do that."),
    404: ("Not found", "There is no such page."),
    405: ("Method not allowed", "That action is not available this way."),
    500: ("Something went wrong", "The error was logged. Please try again."),
}


def render_error(code: int, detail: str | None = None) -> tuple[str, int]:
    """The error page for an HTTP status, with the standard text or `detail`."""
    title, text = MESSAGES[code]
    return render_template("error.html", code=code, title=title, text=detail or text), code


def init_app(app: Flask) -> None:
    """Register the friendly pages for the common errors and for an expired form."""
    for code in MESSAGES:
        app.register_error_handler(code, lambda e, code=code: render_error(code))

    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError) -> tuple[str, int]:
        return render_error(
            400,
            f"The form has expired or was not sent by this site ({e.description}). "
            "Reload the page and try again.",
        )
