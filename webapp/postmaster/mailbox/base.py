"""The common interface of IMAP and POP3 sessions: Mailbox and RemoteMessage."""

from __future__ import annotations

import base64
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .errors import MailConnectError, MailProtocolError, MailTLSError, Masker, translate
from .headers import Envelope
from .settings import MailboxSettings
from .xoauth2 import xoauth2_string

DebugCallback = Callable[[str], None]


@dataclass(frozen=True)
class RemoteMessage:
    """One message on the server: key is str(UID) for IMAP, the UIDL for POP3."""

    key: str
    size: int
    uid: int | None = None


class Mailbox(ABC):
    """An open, logged-in mailbox (IMAP folder or POP3 maildrop)."""

    uidvalidity: int | None = None
    supports_move: bool = False
    tls_session_reused: bool = False  # implicit TLS resumed the last session to this host

    def __init__(self, settings: MailboxSettings, debug: DebugCallback | None) -> None:
        self.settings = settings
        self._debug_callback = debug
        self.masker = Masker(
            [
                settings.password,
                settings.access_token,
                base64.b64encode(
                    xoauth2_string(
                        settings.oauth_user or settings.username, settings.access_token
                    ).encode()
                ).decode()
                if settings.access_token
                else None,
            ]
        )
        self._closed = False
        self._broken = False

    def _debug(self, line: str) -> None:
        if self._debug_callback is not None:
            self._debug_callback(self.masker(line.rstrip("\r\n")))

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            with translate(self.settings, self.masker, doing):
                yield
        except (MailConnectError, MailTLSError, MailProtocolError):
            # The conversation is out of step now: close() must not talk to the server.
            self._broken = True
            raise

    @abstractmethod
    def list_folders(self) -> list[str]:
        """Names of the folders on the server."""

    @abstractmethod
    def list_messages(
        self, min_uid: int | None = None, also_uids: Sequence[int] = ()
    ) -> list[RemoteMessage]:
        """All messages (IMAP: with UID >= min_uid when given, and those of also_uids that
        are still there) with their sizes."""

    @abstractmethod
    def fetch(self, messages: Sequence[RemoteMessage]) -> Iterator[tuple[RemoteMessage, bytes]]:
        """Download these messages; ones that vanished meanwhile are skipped."""

    @abstractmethod
    def envelope(self, messages: Sequence[RemoteMessage]) -> dict[str, Envelope]:
        """From, Subject and Date of each message, from its headers only (never the body)."""

    @abstractmethod
    def delete(self, keys: Sequence[str], on_flagged: Callable[[], None] | None = None) -> None:
        """Delete these messages on the server.

        on_flagged runs after the messages are flagged and before they are expunged (IMAP) or
        before QUIT commits the DELEs (POP3): the fetch path's crash point "during_delete".
        """

    @abstractmethod
    def mark_seen(self, keys: Sequence[str]) -> None:
        """Flag these messages \\Seen (POP3: nothing to do)."""

    @abstractmethod
    def move(self, keys: Sequence[str], folder: str) -> None:
        """Move these messages to another existing folder."""

    @abstractmethod
    def message_count(self) -> int:
        """Number of messages in the folder."""

    @abstractmethod
    def _logout(self) -> None: ...

    def close(self) -> None:
        """Log out (POP3: QUIT, which commits deletions); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._logout()

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
