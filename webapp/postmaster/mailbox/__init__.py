"""IMAP and POP3 sessions for fetching mail; knows nothing of Flask or the database.

Callers use open_mailbox() and the names below; the modules are internal:

- settings.py: MailboxSettings (how to reach one mailbox) and the default ports.
- base.py: Mailbox, the common interface of both protocols, and RemoteMessage.
- connect.py: open_mailbox(), which checks the settings and opens the right session.
- errors.py: the MailError family, the translation of library and socket errors into it,
  and Masker, which keeps secrets out of debug lines and error messages.
- limits.py: the hostile-server bounds on lines, literals and responses.
- tls.py: the TLS context (system store, extra CA file, or no verification).
- xoauth2.py: the SASL XOAUTH2 string and the servers' error challenges.
- headers.py: readable From/Subject values.
- imap.py: ImapMailbox; pop3.py: Pop3Mailbox; idle.py: IdleMailbox (IMAP IDLE, for push).
- imap_adapter.py, pop3_adapter.py: the only code that uses private parts of imaplib,
  IMAPClient and poplib (the bounded readers and the hooks the sessions need).
"""

from .base import DebugCallback, Mailbox, RemoteMessage
from .connect import open_mailbox
from .errors import (
    MailConnectError,
    MailError,
    MailFolderError,
    MailLoginError,
    MailProtocolError,
    MailTLSError,
)
from .imap import ImapMailbox
from .pop3 import Pop3Mailbox
from .settings import MailboxSettings

__all__ = [
    "DebugCallback",
    "ImapMailbox",
    "MailConnectError",
    "MailError",
    "MailFolderError",
    "MailLoginError",
    "MailProtocolError",
    "MailTLSError",
    "Mailbox",
    "MailboxSettings",
    "Pop3Mailbox",
    "RemoteMessage",
    "open_mailbox",
]
