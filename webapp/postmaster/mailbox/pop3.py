"""POP3 sessions: Pop3Mailbox, the maildrop, through pop3_adapter.BoundedPOP3."""

from __future__ import annotations

import base64
import contextlib
import poplib
import ssl
from collections.abc import Callable, Iterator, Sequence
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import TypeVar

from .base import DebugCallback, Mailbox, RemoteMessage
from .errors import (
    MailError,
    MailFolderError,
    MailLoginError,
    MailProtocolError,
    MailTLSError,
    server_label,
    server_text,
)
from .headers import Envelope, decode_header_value, naive_utc
from .limits import message_limit
from .pop3_adapter import SSLPOP3, BoundedPOP3, PlainPOP3
from .settings import MailboxSettings
from .tls import remember_session, tls_context
from .xoauth2 import decode_oauth_challenge, xoauth2_string

_T = TypeVar("_T")
RETR_PIPELINE = 20  # POP3 RETR (and DELE) commands sent before reading their answers


class Pop3Mailbox(Mailbox):
    """A POP3 maildrop (always "INBOX")."""

    supports_move = False

    def __init__(self, settings: MailboxSettings, debug: DebugCallback | None = None) -> None:
        super().__init__(settings, debug)
        self.pop: BoundedPOP3 | None = None
        self._numbers: dict[str, int] | None = None
        self._can_pipeline: bool | None = None
        debug_line = self._debug if debug is not None else None
        context = tls_context(settings) if settings.security != "plain" else None
        with self._errors("connecting"):
            if settings.security == "ssl":
                assert context is not None
                self.pop = SSLPOP3(
                    settings.host, settings.effective_port, settings.timeout, debug_line, context
                )
            else:
                self.pop = PlainPOP3(
                    settings.host, settings.effective_port, settings.timeout, debug_line
                )
        try:
            if settings.security == "starttls":
                assert context is not None
                self._stls(context)
            self._login()
        except BaseException:
            self._shutdown()
            raise
        if settings.security == "ssl":
            sock = self.pop.sock
            self.tls_session_reused = bool(getattr(sock, "session_reused", False))
            remember_session(context, sock, settings.host, settings.effective_port)

    def _capa(self) -> dict[str, list[str]]:
        assert self.pop is not None
        try:
            with self._errors("asking for capabilities"):
                return self.pop.capa()
        except MailProtocolError:
            return {}  # CAPA is optional (RFC 2449)

    def _stls(self, context: ssl.SSLContext) -> None:
        assert self.pop is not None
        where = server_label(self.settings)
        if "STLS" not in self._capa():
            raise MailTLSError(
                f"{where}: the server does not offer STLS; refusing to log in without TLS. "
                "Use SSL/TLS (port 995) or ask the provider."
            )
        try:
            with self._errors("starting TLS"):
                self.pop.stls(context)
        except MailTLSError:
            raise
        except MailProtocolError as e:
            raise MailTLSError(f"STLS failed: {e}") from None

    def _login(self) -> None:
        settings = self.settings
        assert self.pop is not None
        where = server_label(settings)
        if settings.access_token:
            self._xoauth2()
            return
        if settings.password is None:
            raise MailLoginError(f"{where}: no password or access token is configured")
        try:
            with self._errors("logging in"):
                self.pop.user(settings.username)
                self.pop.pass_(settings.password)
        except MailProtocolError as e:
            server = str(e).split(": ", 2)[-1]
            raise MailLoginError(
                f"{where}: login as {settings.username!r} failed; the server said: {server}"
            ) from None

    def _xoauth2(self) -> None:
        settings = self.settings
        pop = self.pop
        assert pop is not None and settings.access_token
        where = server_label(settings)
        user = settings.oauth_user or settings.username
        payload = base64.b64encode(xoauth2_string(user, settings.access_token).encode())
        failed = f"{where}: XOAUTH2 login as {user!r} failed; the server said: "
        with self._errors("logging in"):
            try:
                pop.short_command("AUTH XOAUTH2")
            except poplib.error_proto as e:
                raise MailLoginError(failed + self.masker(server_text(e))) from None
            pop.send_line(payload)
            reply = pop.read_line()
            self._debug("< " + reply.decode("utf-8", "replace"))
            if reply.startswith(b"+OK"):
                return
            detail = ""
            if reply.startswith(b"+"):
                # Dovecot: a "+ <base64 JSON>" challenge first; answer empty to get -ERR.
                detail = decode_oauth_challenge(reply[1:])
                pop.send_line(b"")
                reply = pop.read_line()
                self._debug("< " + reply.decode("utf-8", "replace"))
            text = self.masker(reply.decode("utf-8", "replace"))
            raise MailLoginError(failed + text + (f" ({detail})" if detail else ""))

    def _shutdown(self) -> None:
        if self.pop is not None:
            with contextlib.suppress(Exception):
                self.pop.close()
            self.pop = None

    def _require(self) -> BoundedPOP3:
        if self.pop is None:
            raise MailError("the POP3 session is closed")
        return self.pop

    def list_folders(self) -> list[str]:
        """POP3 has one folder."""
        return ["INBOX"]

    def list_messages(
        self, min_uid: int | None = None, also_uids: Sequence[int] = ()
    ) -> list[RemoteMessage]:
        """UIDL + LIST of all messages; min_uid is ignored (POP3 has no UIDs)."""
        pop = self._require()
        with self._errors("listing messages"):
            _, uidl_lines, _ = pop.uidl()
            _, list_lines, _ = pop.list()
            sizes = {}
            for line in list_lines:
                number_bytes, size_bytes = line.split()[:2]
                sizes[int(number_bytes)] = int(size_bytes)
            numbers: dict[str, int] = {}
            messages = []
            for line in uidl_lines:
                number_text, key_bytes = line.split()[:2]
                number, key = int(number_text), key_bytes.decode("ascii")
                if key in numbers or number not in sizes:
                    continue  # a broken server repeating a UIDL: keep the first
                numbers[key] = number
                messages.append(RemoteMessage(key=key, size=sizes[number], uid=None))
        self._numbers = numbers
        return messages

    def _number(self, key: str) -> int | None:
        if self._numbers is None:
            self.list_messages()
        assert self._numbers is not None
        return self._numbers.get(key)

    def fetch(self, messages: Sequence[RemoteMessage]) -> Iterator[tuple[RemoteMessage, bytes]]:
        """RETR each message; several RETRs in flight where the server offers PIPELINING
        (RFC 2449), which saves a round trip per message."""
        pop = self._require()
        numbered = [(m, n) for m in messages if (n := self._number(m.key)) is not None]
        for group in self._send_pipelined("RETR", numbered, "downloading messages"):
            for message, _number in group:
                yield message, self._read_message(pop, message)

    def _read_message(self, pop: BoundedPOP3, message: RemoteMessage) -> bytes:
        """The answer to one RETR, with a size cap of its own."""
        limit = message_limit(message.size, self.settings.max_message_size)
        with self._errors(f"downloading message {message.key}"):
            lines = pop.read_multiline(limit)
        return b"\r\n".join(lines) + b"\r\n"

    def _send_pipelined(
        self, verb: str, numbered: list[tuple[_T, int]], doing: str
    ) -> Iterator[list[tuple[_T, int]]]:
        """Send "<verb> <number>" for a window of messages at a time (RETR_PIPELINE where the
        server offers PIPELINING, else one) and hand over each window to read its answers."""
        pop = self._require()
        if self._can_pipeline is None:
            self._can_pipeline = "PIPELINING" in self._capa()
        window = RETR_PIPELINE if self._can_pipeline else 1
        for start in range(0, len(numbered), window):
            group = numbered[start : start + window]
            with self._errors(doing):
                for _item, number in group:
                    pop.send_command(f"{verb} {number}")
            yield group

    def envelope(self, messages: Sequence[RemoteMessage]) -> dict[str, Envelope]:
        """From, Subject and Date via TOP n 0 (the headers only)."""
        pop = self._require()
        result = {}
        parser = BytesHeaderParser(policy=compat32)
        for message in messages:
            number = self._number(message.key)
            if number is None:
                continue
            with self._errors("reading message headers"):
                _, lines, _ = pop.top(number, 0)
            headers = parser.parsebytes(b"\r\n".join(lines) + b"\r\n")
            result[message.key] = Envelope(
                decode_header_value(headers.get("From")),
                decode_header_value(headers.get("Subject")),
                naive_utc(headers.get("Date")),
            )
        return result

    def delete(self, keys: Sequence[str], on_flagged: Callable[[], None] | None = None) -> None:
        """DELE (pipelined like RETR); the server removes them at QUIT (close())."""
        pop = self._require()
        numbered = [(k, n) for k in keys if (n := self._number(k)) is not None]
        for group in self._send_pipelined("DELE", numbered, "deleting messages"):
            with self._errors("deleting messages"):
                for key, _number in group:
                    pop.read_status()
                    assert self._numbers is not None
                    del self._numbers[key]
        if on_flagged is not None:
            on_flagged()

    def mark_seen(self, keys: Sequence[str]) -> None:
        """POP3 has no flags."""

    def move(self, keys: Sequence[str], folder: str) -> None:
        """POP3 has no folders to move to."""
        raise MailFolderError(
            f"{server_label(self.settings)}: POP3 has only INBOX; "
            f"cannot move messages to {folder!r}"
        )

    def message_count(self) -> int:
        """Messages in the maildrop (not counting ones deleted in this session)."""
        pop = self._require()
        with self._errors("counting messages"):
            return pop.stat()[0]

    def _logout(self) -> None:
        if self.pop is None:
            return
        if self._broken:
            # No QUIT on a broken session: the server discards this session's DELEs.
            self._shutdown()
            return
        try:
            with self._errors("committing and logging out (QUIT)"):
                self.pop.quit()
            self.pop = None
        finally:
            self._shutdown()
