"""The "Test connection" of a mail account: log in, list folders, count messages."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import MailAccount
from .fetch import mailbox_settings_for
from .mailbox import open_mailbox


@dataclass
class ConnectionReport:
    folders: list[str]
    message_count: int


def test_connection(account: MailAccount) -> ConnectionReport:
    """Log in, list folders and count messages; changes nothing. Raises MailError."""
    settings = mailbox_settings_for(account)
    with open_mailbox(settings) as mailbox:
        return ConnectionReport(mailbox.list_folders(), mailbox.message_count())
