"""The top navigation: (endpoint, label). A new screen area adds one entry."""

from __future__ import annotations

from flask import Flask

NAV_ITEMS: list[tuple[str, str]] = [
    ("tickets.index", "Tickets"),
    ("failed_mail.index", "Failed mail"),
    ("mail_accounts.index", "Mail Accounts"),
    ("postmaster_filters.index", "PostMaster Filters"),
    ("oauth2_profiles.index", "OAuth2 Profiles"),
    ("queues.index", "Queues"),
    ("addresses.index", "Email Addresses"),
    ("settings.edit", "Settings"),
    ("status.index", "Status"),
    ("auth.admins", "Admins"),
]


def init_app(app: Flask) -> None:
    """Give every template `nav_items`: the entries whose screens this app has."""

    @app.context_processor
    def navigation() -> dict[str, list[tuple[str, str]]]:
        return {"nav_items": [(e, label) for e, label in NAV_ITEMS if e in app.view_functions]}
