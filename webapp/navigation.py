"""The top navigation: (endpoint, label). A new screen area adds one entry."""

NAV_ITEMS: list[tuple[str, str]] = [
    ("mail_accounts.index", "Mail Accounts"),
    ("queues.index", "Queues"),
    ("addresses.index", "Email Addresses"),
    ("settings.edit", "Settings"),
    ("status.index", "Status"),
]
