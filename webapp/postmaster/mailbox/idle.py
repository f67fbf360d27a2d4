"""IdleMailbox: an IMAP folder watched with IDLE (RFC 2177) for new mail.

The connection, TLS, login and SELECT are ImapMailbox's; this adds IDLE and the count of
messages that tells new mail (EXISTS above the count) from the server's other news (EXPUNGE,
flag changes, "still here").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .imap import ImapMailbox

_UNTAGGED = re.compile(rb"^\* (\d+) (EXISTS|RECENT|EXPUNGE)\b", re.IGNORECASE)


class IdleMailbox(ImapMailbox):
    """One selected folder that can idle; `count` follows EXISTS and EXPUNGE."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count = self.exists

    def supports_idle(self) -> bool:
        """The server announces IDLE in CAPABILITY (after login)."""
        with self._errors("asking for capabilities"):
            return b"IDLE" in self._capabilities()

    def start_idle(self) -> None:
        assert self.client is not None
        with self._errors("starting IDLE"):
            self.client.idle()

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds in IDLE; True when the server reported new mail."""
        assert self.client is not None
        with self._errors("waiting in IDLE"):
            lines = self.client.idle_lines(timeout)
        return self._news(_UNTAGGED.match(line) for line in lines)

    def end_idle(self) -> bool:
        """DONE; True when the responses that came with it reported new mail."""
        assert self.client is not None
        with self._errors("ending IDLE"):
            _text, responses = self.client.idle_done()
        return self._news(_parsed(r) for r in responses)

    def interrupt(self) -> None:
        """From another thread: make a blocked wait() raise (the connection is closed)."""
        self._broken = True
        if self.client is not None:
            self.client.interrupt()

    def _news(self, events: Iterable[Any]) -> bool:
        new = False
        for event in events:
            if event is None:
                continue
            number, kind = int(event[1]), event[2].upper()
            if kind == b"EXPUNGE":
                self.count = max(0, self.count - 1)
            elif kind == b"EXISTS":
                new = new or number > self.count
                self.count = number
            elif kind == b"RECENT" and number > 0:
                new = True
        return new


def _parsed(response: Any) -> tuple[bytes, bytes, bytes] | None:
    """IMAPClient's parsed (1, b'EXISTS') in the shape of a match of _UNTAGGED."""
    if isinstance(response, tuple) and len(response) >= 2 and isinstance(response[0], int):
        kind = response[1]
        if isinstance(kind, bytes) and kind.upper() in (b"EXISTS", b"RECENT", b"EXPUNGE"):
            return (b"", str(response[0]).encode(), kind)
    return None
