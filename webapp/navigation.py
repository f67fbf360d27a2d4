"""The top navigation: (endpoint, label). A new screen area adds one entry."""

NAV_ITEMS: list[tuple[str, str]] = [
    ("tickets.index", "Tickets"),
    ("failed_mail.index", "Failed mail"),
    ("mail_accounts.index", "Mail Accounts"),
    ("oauth2_profiles.index", "OAuth2 Profiles"),
    ("queues.index", "Queues"),
    ("addresses.index", "Email Addresses"),
    ("settings.edit", "Settings"),
    ("status.index", "Status"),
]
