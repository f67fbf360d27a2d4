"""open_mailbox: check the settings, then open the IMAP or POP3 session they describe."""

from __future__ import annotations

from .base import DebugCallback, Mailbox
from .errors import MailError, MailTLSError, server_label
from .imap import ImapMailbox
from .pop3 import Pop3Mailbox
from .settings import MailboxSettings


def open_mailbox(settings: MailboxSettings, debug: DebugCallback | None = None) -> Mailbox:
    """Connect, start TLS, log in and (IMAP) select the folder."""
    if settings.protocol not in ("imap", "pop3"):
        raise MailError(f"unknown mail protocol {settings.protocol!r}")
    if settings.security not in ("plain", "ssl", "starttls"):
        raise MailError(f"unknown mail security {settings.security!r}")
    if settings.access_token and settings.security == "plain":
        raise MailTLSError(
            f"{server_label(settings)}: OAuth2 access tokens are only sent over TLS; "
            "choose SSL/TLS or STARTTLS for this account"
        )
    if settings.protocol == "imap":
        return ImapMailbox(settings, debug)
    return Pop3Mailbox(settings, debug)
