"""The one place that uses private parts of poplib.

poplib has no public way to send a SASL continuation line, pipeline commands or read a
response with our size bounds, so pop3.py goes through the methods of BoundedPOP3 below and
touches no private attribute itself. Checked against the poplib of Python 3.11: on an
upgrade, check every line marked "private:" again (typeshed leaves these methods out, hence
the type: ignore comments that name them).
"""

from __future__ import annotations

import poplib
import socket
import ssl

from .base import DebugCallback
from .limits import MAX_LINE, MAX_RESPONSE, check_line, check_remaining
from .tls import wrap_with_session


class BoundedPOP3(poplib.POP3):
    """poplib mixin: longer but capped lines, bytes per command, masked debug.

    private: overrides poplib's _putline, _getline and _getresp, through which every line of
    the conversation passes, and reads self.file (the socket's buffered binary reader).
    """

    max_line = MAX_LINE
    max_response = MAX_RESPONSE
    _remaining = MAX_RESPONSE
    debug_line: DebugCallback | None = None

    def _putline(self, line: bytes) -> None:
        self._remaining = self.max_response
        if self.debug_line is not None:
            self.debug_line("> " + line.decode("utf-8", "replace"))
        super()._putline(line)  # type: ignore[misc]  # private, not in typeshed

    def _getline(self) -> tuple[bytes, int]:
        # poplib's own limit (2048) rejects real mail with long lines; ours is larger.
        line = self.file.readline(self.max_line + 1)
        check_line(line, self.max_line)
        if not line:
            raise poplib.error_proto("-ERR connection closed by the server")
        self._remaining -= len(line)
        check_remaining(self._remaining, self.max_response)
        octets = len(line)
        if line[-2:] == b"\r\n":
            return line[:-2], octets
        if line[:1] == b"\r":
            return line[1:-1], octets
        return line[:-1], octets

    def _getresp(self) -> bytes:
        resp, _ = self._getline()
        if self.debug_line is not None:
            self.debug_line("< " + resp.decode("utf-8", "replace"))
        if not resp.startswith(b"+"):
            raise poplib.error_proto(resp)
        return resp

    def short_command(self, line: str) -> bytes:
        """Send a command and read its one-line answer; error_proto unless +OK or +."""
        return self._shortcmd(line)  # type: ignore[attr-defined]  # private, not in typeshed

    def send_line(self, line: bytes) -> None:
        """Send one line, e.g. a SASL response (bounds reset: a new command)."""
        self._putline(line)

    def read_line(self) -> bytes:
        """Read one line without its line end, whatever it says."""
        return self._getline()[0]

    def send_command(self, line: str) -> None:
        """Send a command without reading its answer (pipelining)."""
        self._putcmd(line)  # type: ignore[attr-defined]  # private, not in typeshed

    def read_status(self) -> bytes:
        """Read a one-line answer; error_proto unless it starts with +."""
        return self._getresp()

    def read_multiline(self, max_bytes: int) -> list[bytes]:
        """Read a multi-line answer (status line, lines, "."), at most max_bytes of it."""
        self.max_response = self._remaining = max_bytes
        try:
            # private: poplib's reader of a multi-line answer; returns (status, lines, octets).
            _, lines, _ = self._getlongresp()  # type: ignore[attr-defined]  # not in typeshed
        finally:
            self.max_response = MAX_RESPONSE
        return lines


class PlainPOP3(BoundedPOP3):
    """A bounded POP3 connection without TLS (STLS may follow)."""

    def __init__(
        self, host: str, port: int, timeout: float, debug_line: DebugCallback | None
    ) -> None:
        self.debug_line = debug_line
        super().__init__(host, port, timeout=timeout)


class SSLPOP3(BoundedPOP3, poplib.POP3_SSL):
    """A bounded POP3 connection with implicit TLS."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        debug_line: DebugCallback | None,
        context: ssl.SSLContext,
    ) -> None:
        self.debug_line = debug_line
        super().__init__(host, port, timeout=timeout, context=context)

    def _create_socket(self, timeout: float) -> socket.socket:
        # private: POP3_SSL._create_socket and its context attribute (Python 3.11); the same
        # body, with the last TLS session to this host offered for resumption.
        sock = poplib.POP3._create_socket(self, timeout)  # type: ignore[attr-defined]
        return wrap_with_session(self.context, sock, self.host, self.port)  # type: ignore[attr-defined]
