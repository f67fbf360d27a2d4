"""The one place that uses private parts of imaplib and IMAPClient.

imap.py talks to the server through BoundedIMAPClient and its methods below; it touches no
private attribute itself. Checked against IMAPClient 4.1.0 (requirements.txt) and the imaplib
of Python 3.11: on an upgrade of either, check every line marked "private:" again.
"""

from __future__ import annotations

import contextlib
import imaplib
import select
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from imapclient import IMAPClient, imap4
from imapclient import tls as imapclient_tls

from .limits import MAX_LINE, MAX_RESPONSE, check_line, check_literal, check_remaining
from .tls import wrap_with_session

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class BoundedIMAP4(imaplib.IMAP4):
    """imaplib mixin: caps line length, literal size and bytes per command.

    read(), readline() and send() are the documented IMAP4 methods that every byte passes
    through; imaplib itself caps a line at 1,000,000 bytes but never a literal or a response.
    """

    max_line = MAX_LINE
    max_literal = MAX_RESPONSE
    max_response = MAX_RESPONSE
    _remaining = MAX_RESPONSE
    # private: imaplib's debug printer (defined when __debug__); typeshed leaves it out.
    _mesg: Callable[[str], None]

    def _account(self, count: int) -> None:
        self._remaining -= count
        check_remaining(self._remaining, self.max_response)

    def readline(self) -> bytes:
        # private: self.file, imaplib's buffered binary reader of the socket ("rb", so bytes;
        # typeshed types it IO[str] | IO[bytes]). IMAP4.readline reads it the same way.
        line = cast(BinaryIO, self.file).readline(self.max_line + 1)
        check_line(line, self.max_line)
        self._account(len(line))
        return line

    def read(self, size: int) -> bytes:
        check_literal(size, self.max_literal)
        self._account(size)
        return super().read(size)

    def send(self, data: ReadableBuffer) -> None:
        self._remaining = self.max_response
        super().send(data)


# private: imapclient.imap4 and imapclient.tls are the modules of IMAPClient's own imaplib
# subclasses (not its documented API); ours add the bounds on top of them.
class _IMAP4(BoundedIMAP4, imap4.IMAP4WithTimeout):
    pass


class _IMAP4TLS(BoundedIMAP4, imapclient_tls.IMAP4_TLS):
    # private: IMAP4_TLS._create_socket (IMAPClient 4.1.0) and its ssl_context, _timeout, host
    # and port; the same body, with the last TLS session to this host offered for resumption.
    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        if timeout is None:
            timeout = self._timeout
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        if self.ssl_context is None:
            return imapclient_tls.wrap_socket(sock, None, self.host)
        return wrap_with_session(self.ssl_context, sock, self.host, self.port)


class BoundedIMAPClient(IMAPClient):
    """IMAPClient whose imaplib object has bounded reads."""

    def _create_IMAP4(self) -> imaplib.IMAP4:
        # private: the hook IMAPClient.__init__ calls to make its imaplib object; the body is
        # IMAPClient 4.1.0's own with our classes (less its stream= case, which we never use);
        # self._timeout is its timeout setting.
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            # IMAP4_TLS.__init__ takes the context; mypy sees only imaplib's (imapclient is
            # untyped), so it counts one argument too many.
            return _IMAP4TLS(self.host, self.port, self.ssl_context, timeout)  # type: ignore[call-arg]
        return _IMAP4(self.host, self.port, timeout)

    @property
    def _bounded(self) -> BoundedIMAP4:
        # private: self._imap, the imaplib object made by _create_IMAP4 above.
        imap: BoundedIMAP4 = self._imap
        return imap

    def set_debug(self, callback: Callable[[str], None] | None) -> None:
        """Send imaplib's protocol trace to callback (None: no trace)."""
        imap = self._bounded
        if callback is None:
            imap.debug = 0
        else:
            # Level 4 traces every line sent and received, through _mesg.
            imap.debug = 4
            imap._mesg = callback

    def authenticate_raw(
        self, mechanism: str, respond: Callable[[bytes], bytes | None]
    ) -> tuple[str, Any]:
        """imaplib's AUTHENTICATE: respond sees every challenge, the error ones too
        (IMAPClient.oauth2_login hides them)."""
        return self._bounded.authenticate(mechanism, respond)

    def uid_fetch_raw(self, uids: str, items: str) -> tuple[str, list[Any]]:
        """imaplib's UID FETCH without IMAPClient's (slow) response parser."""
        return self._bounded.uid("FETCH", uids, items)

    def forget_capabilities(self) -> None:
        """Make the next capabilities() ask the server again."""
        # private: IMAPClient caches CAPABILITY here; it changes after login (MOVE, UIDPLUS).
        self._cached_capabilities = None

    @contextlib.contextmanager
    def bounds(self, max_literal: int, max_response: int) -> Iterator[None]:
        """Other read bounds for the commands inside the with block."""
        imap = self._bounded
        old = imap.max_literal, imap.max_response
        imap.max_literal, imap.max_response = max_literal, max_response
        try:
            yield
        finally:
            imap.max_literal, imap.max_response = old

    def idle_lines(self, timeout: float) -> list[bytes]:
        """The lines the server sent in IDLE within `timeout` seconds (empty: none).

        IMAPClient's idle_check() swallows the end of the connection (it then returns nothing,
        at once, forever): here EOF raises imaplib's abort like any other read."""
        imap = self._bounded
        lines: list[bytes] = []
        while self._buffered() or (not lines and self._readable(timeout)):
            # private: _get_line, imaplib's line reader (strips CRLF, raises abort on EOF).
            lines.append(imap._get_line())
        return lines

    def _readable(self, timeout: float) -> bool:
        poller = select.poll()
        poller.register(self._bounded.sock.fileno(), select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))

    def _buffered(self) -> bool:
        """Bytes already read from the socket (imaplib's reader, the TLS layer) but not yet
        consumed: poll() cannot see them."""
        imap = self._bounded
        sock = imap.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        old = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            # private: self.file as in readline above; peek() without blocking.
            return bool(cast(Any, imap.file).peek(1))
        except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
            return False
        finally:
            sock.settimeout(old)

    def interrupt(self) -> None:
        """Wake a thread blocked in idle_lines() from another thread: it then raises."""
        with contextlib.suppress(OSError):
            self._bounded.sock.shutdown(socket.SHUT_RDWR)
