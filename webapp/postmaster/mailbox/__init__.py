"""IMAP and POP3 sessions for fetching mail; knows nothing of Flask or the database."""

from __future__ import annotations

import base64
import binascii
import contextlib
import imaplib
import json
import poplib
import re
import socket
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import TypeVar

from imapclient import IMAPClient, imap4
from imapclient import tls as imapclient_tls
from imapclient.exceptions import IMAPClientError

DebugCallback = Callable[[str], None]

DEFAULT_PORTS = {
    ("imap", False): 143,
    ("imap", True): 993,
    ("pop3", False): 110,
    ("pop3", True): 995,
}
# Hostile-server bounds: no single line, literal or response may grow without limit.
MAX_LINE = 1024 * 1024
MAX_RESPONSE = 64 * 1024 * 1024
# UIDs per FETCH command: keeps command lines short (imapclient needs plain UID lists).
SIZE_FETCH_BATCH = 1000
_T = TypeVar("_T")
RETR_PIPELINE = 20  # POP3 RETR (and DELE) commands sent before reading their answers
_UID_RE = re.compile(rb"\bUID (\d+)")
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")
TLS_HINT = (
    "If the server uses a private CA, set MAIL_CA_FILE to its certificate; "
    'otherwise untick "Verify TLS certificate" for this account (less safe).'
)


@dataclass(frozen=True)
class MailboxSettings:
    """How to reach and log in to one mailbox."""

    protocol: str  # "imap" | "pop3"
    security: str  # "plain" | "ssl" (implicit TLS) | "starttls"
    host: str
    port: int | None = None
    username: str = ""
    password: str | None = None
    access_token: str | None = None
    oauth_user: str | None = None
    folder: str = "INBOX"
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = 60.0
    # Upper bound for one message in memory; protects against hostile servers.
    max_message_size: int = 256 * 1024 * 1024

    @property
    def effective_port(self) -> int:
        """The configured port, or the protocol's default for the security mode."""
        if self.port:
            return self.port
        return DEFAULT_PORTS[(self.protocol, self.security == "ssl")]


class MailError(Exception):
    """A mail server problem; str() is an admin-readable message without secrets."""


class MailConnectError(MailError):
    """The server cannot be reached (DNS, refused, timeout)."""


class MailTLSError(MailError):
    """TLS failed: certificate, STARTTLS/STLS missing or failed."""


class MailLoginError(MailError):
    """The server refused the login."""


class MailFolderError(MailError):
    """The folder does not exist (or cannot be used)."""


class MailProtocolError(MailError):
    """The server sent something broken, hostile or unexpected."""


class _LimitExceeded(Exception):
    """Raised inside the protocol readers when a server exceeds a size bound."""


@dataclass(frozen=True)
class RemoteMessage:
    """One message on the server: key is str(UID) for IMAP, the UIDL for POP3."""

    key: str
    size: int
    uid: int | None = None


class _Masker:
    """Replaces secrets in debug lines and error messages with ***."""

    _patterns = [
        # Only the commands themselves: capability words like AUTH=LOGIN stay readable.
        re.compile(r"(\b[A-Za-z0-9]+ LOGIN) .*"),
        re.compile(r"(^(?:> )?PASS) .*"),
        re.compile(r"(\b(?:AUTHENTICATE|AUTH) [A-Za-z0-9_-]+) .*"),
    ]

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        for pattern in self._patterns:
            text = pattern.sub(r"\1 ***", text)
        return text


def _xoauth2_string(user: str, token: str) -> str:
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def _decode_oauth_challenge(data: bytes) -> str:
    """Turn a SASL XOAUTH2 error challenge (JSON, maybe base64) into readable text."""
    raw = data.strip()
    with contextlib.suppress(binascii.Error, ValueError):
        raw = base64.b64decode(raw, validate=True)
    try:
        status = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:200]
    if isinstance(status, dict):
        return ", ".join(f"{k}={v}" for k, v in status.items())[:200]
    return str(status)[:200]


def _tls_context(settings: MailboxSettings) -> ssl.SSLContext:
    if not settings.verify_tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    if settings.ca_file:
        try:
            context.load_verify_locations(settings.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise MailTLSError(
                f"Cannot use the CA file {settings.ca_file} (MAIL_CA_FILE): {e}"
            ) from None
    return context


def _where(settings: MailboxSettings) -> str:
    mode = {"plain": "without TLS", "ssl": "SSL/TLS", "starttls": "STARTTLS"}[settings.security]
    return f"{settings.protocol.upper()} {settings.host}:{settings.effective_port} ({mode})"


@contextlib.contextmanager
def _translate(settings: MailboxSettings, masker: _Masker, doing: str) -> Iterator[None]:
    """Turn library and socket exceptions into MailError subclasses with clear messages."""
    where = _where(settings)
    try:
        yield
    except MailError:
        raise
    except _LimitExceeded as e:
        raise MailProtocolError(f"{where}: {doing}: {e}; giving up on this server") from None
    except ssl.SSLCertVerificationError as e:
        raise MailTLSError(
            f"{where}: the server's TLS certificate could not be verified "
            f"({e.verify_message}). {TLS_HINT}"
        ) from None
    except ssl.SSLError as e:
        raise MailTLSError(f"{where}: TLS failed while {doing}: {e.reason or e}") from None
    except socket.gaierror as e:
        raise MailConnectError(
            f"Cannot resolve the host name {settings.host!r}: {e.strerror}"
        ) from None
    except TimeoutError:
        raise MailConnectError(
            f"{where}: no answer within {settings.timeout:g} seconds while {doing}"
        ) from None
    except ConnectionRefusedError:
        raise MailConnectError(
            f"{where}: connection refused (is the port right and the server running?)"
        ) from None
    except OSError as e:
        raise MailConnectError(f"{where}: network error while {doing}: {e}") from None
    except (IMAPClientError, poplib.error_proto, EOFError) as e:
        text = masker(_text(e))
        raise MailProtocolError(
            f"{where}: unexpected server response while {doing}: {text}"
        ) from None
    except Exception as e:  # broken responses can break any parser: never crash the caller
        text = masker(f"{type(e).__name__}: {e}")[:300]
        raise MailProtocolError(
            f"{where}: could not understand the server while {doing}: {text}"
        ) from None


def _text(error: BaseException) -> str:
    """The server's own text from a library exception."""
    value = error.args[0] if error.args else str(error)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = str(value)
    for prefix in ("login failed: ", "authenticate failed: "):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
    # imapclient formats the server's bytes with repr(): b'[AUTHENTICATIONFAILED] ...'
    quoted = re.fullmatch(r"b(['\"])(.*)\1", value.strip())
    if quoted:
        value = quoted.group(2)
    return value.strip()[:500]


def _decode_header_value(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        return str(make_header(decode_header(value))).strip()
    except Exception:  # undecodable encoded-words: show them as they are
        return value.strip()


def _uid_set(uids: Sequence[int]) -> str:
    """Compress UIDs into an IMAP sequence set: 1:5,7,9:10."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if start != prev else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


class Mailbox(ABC):
    """An open, logged-in mailbox (IMAP folder or POP3 maildrop)."""

    uidvalidity: int | None = None
    supports_move: bool = False

    def __init__(self, settings: MailboxSettings, debug: DebugCallback | None) -> None:
        self.settings = settings
        self._debug_callback = debug
        self.masker = _Masker(
            [
                settings.password,
                settings.access_token,
                base64.b64encode(
                    _xoauth2_string(
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
            with _translate(self.settings, self.masker, doing):
                yield
        except (MailConnectError, MailTLSError, MailProtocolError):
            # The conversation is out of step now: close() must not talk to the server.
            self._broken = True
            raise

    @abstractmethod
    def list_folders(self) -> list[str]:
        """Names of the folders on the server."""

    @abstractmethod
    def list_messages(self, min_uid: int | None = None) -> list[RemoteMessage]:
        """All messages (IMAP: with UID >= min_uid when given) with their sizes."""

    @abstractmethod
    def fetch(self, messages: Sequence[RemoteMessage]) -> Iterator[tuple[RemoteMessage, bytes]]:
        """Download these messages; ones that vanished meanwhile are skipped."""

    @abstractmethod
    def envelope(self, messages: Sequence[RemoteMessage]) -> dict[str, tuple[str, str]]:
        """From and Subject of each message, without downloading the body."""

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


# -- IMAP ------------------------------------------------------------------------


class _BoundedReads:
    """imaplib mixin: caps line length, literal size and bytes per command."""

    max_line = MAX_LINE
    max_literal = MAX_RESPONSE
    max_response = MAX_RESPONSE
    _remaining = MAX_RESPONSE

    def _account(self, count: int) -> None:
        self._remaining -= count
        if self._remaining < 0:
            raise _LimitExceeded(
                f"the server sent more than {self.max_response} bytes to one command"
            )

    def readline(self) -> bytes:
        line = self.file.readline(self.max_line + 1)  # type: ignore[attr-defined]
        if len(line) > self.max_line:
            raise _LimitExceeded(f"the server sent a line longer than {self.max_line} bytes")
        self._account(len(line))
        return line

    def read(self, size: int) -> bytes:
        if size > self.max_literal:
            raise _LimitExceeded(
                f"the server announced {size} bytes, more than the allowed {self.max_literal}"
            )
        self._account(size)
        return super().read(size)  # type: ignore[misc]

    def send(self, data: bytes) -> None:
        self._remaining = self.max_response
        super().send(data)  # type: ignore[misc]


class _IMAP4(_BoundedReads, imap4.IMAP4WithTimeout):
    pass


class _IMAP4TLS(_BoundedReads, imapclient_tls.IMAP4_TLS):
    pass


class _IMAPClient(IMAPClient):
    """IMAPClient whose imaplib object has bounded reads."""

    def _create_IMAP4(self) -> imaplib.IMAP4:
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _IMAP4TLS(self.host, self.port, self.ssl_context, timeout)
        return _IMAP4(self.host, self.port, timeout)


class ImapMailbox(Mailbox):
    """One selected IMAP folder."""

    def __init__(self, settings: MailboxSettings, debug: DebugCallback | None = None) -> None:
        super().__init__(settings, debug)
        self.folder = settings.folder or "INBOX"
        self.client: _IMAPClient | None = None
        context = _tls_context(settings) if settings.security != "plain" else None
        with self._errors("connecting"):
            client = _IMAPClient(
                settings.host,
                settings.effective_port,
                ssl=settings.security == "ssl",
                ssl_context=context,
                timeout=settings.timeout,
            )
        self.client = client
        try:
            self._setup_debug()
            self._debug(f"< {client.welcome!r}")
            if settings.security == "starttls":
                self._starttls(context)  # type: ignore[arg-type]
            self._login()
            self._select()
        except BaseException:
            self._shutdown()
            raise

    def _setup_debug(self) -> None:
        imap = self._imap
        if self._debug_callback is None:
            imap.debug = 0
        else:
            imap.debug = 4
            imap._mesg = self._debug

    @property
    def _imap(self) -> imaplib.IMAP4:
        assert self.client is not None
        return self.client._imap

    def _capabilities(self) -> tuple[bytes, ...]:
        assert self.client is not None
        return tuple(c.upper() for c in self.client.capabilities())

    def _starttls(self, context: ssl.SSLContext) -> None:
        assert self.client is not None
        where = _where(self.settings)
        with self._errors("asking for capabilities"):
            caps = self._capabilities()
        if b"STARTTLS" not in caps:
            raise MailTLSError(
                f"{where}: the server does not offer STARTTLS; refusing to log in without TLS. "
                "Use SSL/TLS (port 993) or ask the provider."
            )
        try:
            with self._errors("starting TLS"):
                self.client.starttls(context)
        except MailConnectError:
            raise
        except MailError as e:
            if isinstance(e, MailTLSError):
                raise
            raise MailTLSError(f"STARTTLS failed: {e}") from None

    def _login(self) -> None:
        settings = self.settings
        assert self.client is not None
        where = _where(settings)
        if settings.access_token:
            user = settings.oauth_user or settings.username
            payload = _xoauth2_string(user, settings.access_token).encode()
            challenges: list[bytes] = []

            def respond(challenge: bytes) -> bytes:
                # Dovecot and Gmail send a JSON error as a challenge: answer empty, then NO.
                if challenges or challenge:
                    challenges.append(challenge)
                    return b""
                challenges.append(b"")
                return payload

            try:
                with self._errors("logging in"):
                    self._imap.authenticate("XOAUTH2", respond)
            except MailProtocolError as e:
                details = [_decode_oauth_challenge(c) for c in challenges if c]
                reason = f" ({'; '.join(details)})" if details else ""
                server = str(e).split(": ", 2)[-1]
                raise MailLoginError(
                    f"{where}: XOAUTH2 login as {user!r} failed; the server said: "
                    f"{self.masker(server)}{reason}"
                ) from None
        elif settings.password is not None:
            try:
                with self._errors("logging in"):
                    self.client.login(settings.username, settings.password)
            except MailProtocolError as e:
                server = str(e).split(": ", 2)[-1]
                raise MailLoginError(
                    f"{where}: login as {settings.username!r} failed; the server said: {server}"
                ) from None
        else:
            raise MailLoginError(f"{where}: no password or access token is configured")
        # Capabilities often change after login (MOVE, UIDPLUS).
        self.client._cached_capabilities = None
        with self._errors("asking for capabilities"):
            self.supports_move = b"MOVE" in self._capabilities()

    def _select(self) -> None:
        assert self.client is not None
        try:
            with self._errors(f"selecting folder {self.folder!r}"):
                info = self.client.select_folder(self.folder)
        except MailProtocolError:
            folders = self.list_folders()
            if self.folder not in folders:
                raise self._missing_folder(self.folder, folders) from None
            raise
        value = info.get(b"UIDVALIDITY")
        self.uidvalidity = int(value) if value is not None else None

    def _missing_folder(self, folder: str, folders: list[str]) -> MailFolderError:
        return MailFolderError(
            f"{_where(self.settings)}: the folder {folder!r} does not exist. "
            f"Existing folders: {', '.join(folders) or '(none)'}"
        )

    def list_folders(self) -> list[str]:
        """Names of the selectable folders."""
        assert self.client is not None
        with self._errors("listing folders"):
            entries = self.client.list_folders()
        names = []
        for flags, _delimiter, name in entries:
            if b"\\NOSELECT" in {f.upper() for f in flags}:
                continue
            names.append(name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name))
        return names

    def list_messages(self, min_uid: int | None = None) -> list[RemoteMessage]:
        """UID SEARCH (never by \\Seen), then sizes via batched UID FETCH RFC822.SIZE."""
        assert self.client is not None
        criteria = ["ALL"] if min_uid is None else ["UID", f"{max(min_uid, 1)}:*"]
        with self._errors("searching messages"):
            uids = [int(u) for u in self.client.search(criteria)]
        if min_uid is not None:
            # "N:*" always matches the highest UID, even when it is below N.
            uids = [u for u in uids if u >= min_uid]
        uids.sort()
        messages = []
        for start in range(0, len(uids), SIZE_FETCH_BATCH):
            chunk = uids[start : start + SIZE_FETCH_BATCH]
            sizes = self._sizes(chunk)
            for uid in chunk:
                if uid in sizes:  # else expunged between SEARCH and FETCH
                    messages.append(RemoteMessage(key=str(uid), size=sizes[uid], uid=uid))
        return messages

    def _sizes(self, uids: list[int]) -> dict[int, int]:
        """UID -> RFC822.SIZE. imaplib and two regexes, not imapclient's response parser:
        that costs ~30 us a message, 3 s before a 100,000-message mailbox even starts."""
        with self._errors("reading message sizes"):
            typ, data = self._imap.uid("FETCH", _uid_set(uids), "(UID RFC822.SIZE)")
        if typ != "OK":
            raise MailProtocolError(f"{_where(self.settings)}: FETCH RFC822.SIZE failed: {data}")
        sizes = {}
        for line in data:
            if isinstance(line, tuple):  # a literal: not part of a RFC822.SIZE answer
                line = line[0]
            uid, size = _UID_RE.search(line or b""), _SIZE_RE.search(line or b"")
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
            elif uid and int(uid.group(1)) in uids:
                raise MailProtocolError(
                    f"{_where(self.settings)}: no RFC822.SIZE for UID {uid.group(1)} in FETCH"
                )
        return sizes

    def fetch(self, messages: Sequence[RemoteMessage]) -> Iterator[tuple[RemoteMessage, bytes]]:
        """One UID FETCH BODY.PEEK[] for the whole batch (does not set \\Seen)."""
        assert self.client is not None
        if not messages:
            return
        imap = self._imap
        largest = max(m.size for m in messages)
        total = sum(m.size for m in messages)
        limit = self.settings.max_message_size
        # Servers' RFC822.SIZE can be a little off; a literal far beyond it is hostile.
        old = imap.max_literal, imap.max_response
        imap.max_literal = min(limit, 2 * largest + 1024 * 1024)
        imap.max_response = MAX_RESPONSE + min(limit * len(messages), 2 * total + 1024 * 1024)
        try:
            with self._errors("downloading messages"):
                data = self.client.fetch([m.uid for m in messages], ["BODY.PEEK[]"])
        finally:
            imap.max_literal, imap.max_response = old
        for message in messages:
            item = data.get(message.uid)
            if item is None:
                continue
            body = item.get(b"BODY[]")
            if not isinstance(body, bytes):
                raise MailProtocolError(
                    f"{_where(self.settings)}: no message body for UID {message.uid}"
                )
            yield message, body

    def envelope(self, messages: Sequence[RemoteMessage]) -> dict[str, tuple[str, str]]:
        """From and Subject via FETCH ENVELOPE."""
        assert self.client is not None
        if not messages:
            return {}
        with self._errors("reading envelopes"):
            data = self.client.fetch([m.uid for m in messages], ["ENVELOPE"])
        result = {}
        for message in messages:
            env = data.get(message.uid, {}).get(b"ENVELOPE")
            if env is None:
                continue
            sender = ""
            if env.from_:
                address = env.from_[0]
                name = _decode_header_value(address.name)
                mailbox = (address.mailbox or b"").decode("utf-8", "replace")
                host = (address.host or b"").decode("utf-8", "replace")
                email = f"{mailbox}@{host}" if host else mailbox
                sender = f"{name} <{email}>" if name else email
            result[message.key] = (sender, _decode_header_value(env.subject))
        return result

    def _uids(self, keys: Sequence[str]) -> list[int]:
        return [int(k) for k in keys]

    def delete(self, keys: Sequence[str], on_flagged: Callable[[], None] | None = None) -> None:
        """STORE +FLAGS \\Deleted, then UID EXPUNGE of exactly those (or EXPUNGE)."""
        assert self.client is not None
        if not keys:
            return
        uids = _uid_set(self._uids(keys))
        with self._errors("deleting messages"):
            self.client.delete_messages(uids, silent=True)
            if on_flagged is not None:
                on_flagged()
            if b"UIDPLUS" in self._capabilities():
                self.client.uid_expunge(uids)
            else:
                self.client.expunge()

    def mark_seen(self, keys: Sequence[str]) -> None:
        """Add \\Seen to these messages."""
        assert self.client is not None
        if not keys:
            return
        with self._errors("marking messages seen"):
            self.client.add_flags(_uid_set(self._uids(keys)), [b"\\Seen"], silent=True)

    def move(self, keys: Sequence[str], folder: str) -> None:
        """MOVE when the server can, else COPY and delete."""
        assert self.client is not None
        if folder == self.folder or (folder.upper() == "INBOX" and self.folder.upper() == "INBOX"):
            raise MailFolderError(
                f"{_where(self.settings)}: cannot move messages to {folder!r}: "
                "it is the folder they are fetched from"
            )
        folders = self.list_folders()
        if folder not in folders:
            raise self._missing_folder(folder, folders)
        if not keys:
            return
        uids = _uid_set(self._uids(keys))
        if self.supports_move:
            with self._errors(f"moving messages to {folder!r}"):
                self.client.move(uids, folder)
            return
        with self._errors(f"copying messages to {folder!r}"):
            self.client.copy(uids, folder)
        self.delete(keys)

    def message_count(self) -> int:
        """Messages in the selected folder."""
        assert self.client is not None
        with self._errors("counting messages"):
            return len(self.client.search(["ALL"]))

    def _shutdown(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.shutdown()
            self.client = None

    def _logout(self) -> None:
        if self.client is None:
            return
        if self._broken:
            self._shutdown()
            return
        try:
            with self._errors("logging out"):
                self.client.logout()
        except MailError:
            pass  # the messages are already handled; a broken logout changes nothing
        finally:
            self._shutdown()


# -- POP3 ------------------------------------------------------------------------


class _BoundedPOP3Mixin:
    """poplib mixin: longer but capped lines, bytes per command, masked debug."""

    max_line = MAX_LINE
    max_response = MAX_RESPONSE
    _remaining = MAX_RESPONSE
    debug_line: DebugCallback | None = None

    def _putline(self, line: bytes) -> None:
        self._remaining = self.max_response
        if self.debug_line is not None:
            self.debug_line("> " + line.decode("utf-8", "replace"))
        super()._putline(line)  # type: ignore[misc]

    def _getline(self) -> tuple[bytes, int]:
        # poplib's own limit (2048) rejects real mail with long lines; ours is larger.
        line = self.file.readline(self.max_line + 1)  # type: ignore[attr-defined]
        if len(line) > self.max_line:
            raise _LimitExceeded(f"the server sent a line longer than {self.max_line} bytes")
        if not line:
            raise poplib.error_proto("-ERR connection closed by the server")
        self._remaining -= len(line)
        if self._remaining < 0:
            raise _LimitExceeded(
                f"the server sent more than {self.max_response} bytes to one command"
            )
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


class _POP3(_BoundedPOP3Mixin, poplib.POP3):
    def __init__(
        self, host: str, port: int, timeout: float, debug_line: DebugCallback | None
    ) -> None:
        self.debug_line = debug_line
        super().__init__(host, port, timeout=timeout)


class _POP3SSL(_BoundedPOP3Mixin, poplib.POP3_SSL):
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


class Pop3Mailbox(Mailbox):
    """A POP3 maildrop (always "INBOX")."""

    supports_move = False

    def __init__(self, settings: MailboxSettings, debug: DebugCallback | None = None) -> None:
        super().__init__(settings, debug)
        self.pop: poplib.POP3 | None = None
        self._numbers: dict[str, int] | None = None
        self._can_pipeline: bool | None = None
        debug_line = self._debug if debug is not None else None
        context = _tls_context(settings) if settings.security != "plain" else None
        with self._errors("connecting"):
            if settings.security == "ssl":
                assert context is not None
                self.pop = _POP3SSL(
                    settings.host, settings.effective_port, settings.timeout, debug_line, context
                )
            else:
                self.pop = _POP3(
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

    def _capa(self) -> dict[str, list[str]]:
        assert self.pop is not None
        try:
            with self._errors("asking for capabilities"):
                return self.pop.capa()
        except MailProtocolError:
            return {}  # CAPA is optional (RFC 2449)

    def _stls(self, context: ssl.SSLContext) -> None:
        assert self.pop is not None
        where = _where(self.settings)
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
        where = _where(settings)
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
        where = _where(settings)
        user = settings.oauth_user or settings.username
        payload = base64.b64encode(_xoauth2_string(user, settings.access_token).encode())
        failed = f"{where}: XOAUTH2 login as {user!r} failed; the server said: "
        with self._errors("logging in"):
            try:
                pop._shortcmd("AUTH XOAUTH2")
            except poplib.error_proto as e:
                raise MailLoginError(failed + self.masker(_text(e))) from None
            pop._putline(payload)
            reply, _ = pop._getline()
            self._debug("< " + reply.decode("utf-8", "replace"))
            if reply.startswith(b"+OK"):
                return
            detail = ""
            if reply.startswith(b"+"):
                # Dovecot: a "+ <base64 JSON>" challenge first; answer empty to get -ERR.
                detail = _decode_oauth_challenge(reply[1:])
                pop._putline(b"")
                reply, _ = pop._getline()
                self._debug("< " + reply.decode("utf-8", "replace"))
            text = self.masker(reply.decode("utf-8", "replace"))
            raise MailLoginError(failed + text + (f" ({detail})" if detail else ""))

    def _shutdown(self) -> None:
        if self.pop is not None:
            with contextlib.suppress(Exception):
                self.pop.close()
            self.pop = None

    def _require(self) -> poplib.POP3:
        if self.pop is None:
            raise MailError("the POP3 session is closed")
        return self.pop

    def list_folders(self) -> list[str]:
        """POP3 has one folder."""
        return ["INBOX"]

    def list_messages(self, min_uid: int | None = None) -> list[RemoteMessage]:
        """UIDL + LIST of all messages; min_uid is ignored (POP3 has no UIDs)."""
        pop = self._require()
        with self._errors("listing messages"):
            _, uidl_lines, _ = pop.uidl()
            _, list_lines, _ = pop.list()
            sizes = {}
            for line in list_lines:
                number, size = line.split()[:2]
                sizes[int(number)] = int(size)
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

    def _read_message(self, pop: poplib.POP3, message: RemoteMessage) -> bytes:
        """The answer to one RETR, with a size cap of its own."""
        pop.max_response = pop._remaining = min(  # type: ignore[attr-defined]
            self.settings.max_message_size, 2 * message.size + 1024 * 1024
        )
        try:
            with self._errors(f"downloading message {message.key}"):
                _, lines, _ = pop._getlongresp()  # type: ignore[attr-defined]
        finally:
            pop.max_response = MAX_RESPONSE  # type: ignore[attr-defined]
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
                    pop._putcmd(f"{verb} {number}")  # type: ignore[attr-defined]
            yield group

    def envelope(self, messages: Sequence[RemoteMessage]) -> dict[str, tuple[str, str]]:
        """From and Subject via TOP n 0."""
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
            result[message.key] = (
                _decode_header_value(headers.get("From")),
                _decode_header_value(headers.get("Subject")),
            )
        return result

    def delete(self, keys: Sequence[str], on_flagged: Callable[[], None] | None = None) -> None:
        """DELE (pipelined like RETR); the server removes them at QUIT (close())."""
        pop = self._require()
        numbered = [(k, n) for k in keys if (n := self._number(k)) is not None]
        for group in self._send_pipelined("DELE", numbered, "deleting messages"):
            with self._errors("deleting messages"):
                for key, _number in group:
                    pop._getresp()  # type: ignore[attr-defined]
                    assert self._numbers is not None
                    del self._numbers[key]
        if on_flagged is not None:
            on_flagged()

    def mark_seen(self, keys: Sequence[str]) -> None:
        """POP3 has no flags."""

    def move(self, keys: Sequence[str], folder: str) -> None:
        """POP3 has no folders to move to."""
        raise MailFolderError(
            f"{_where(self.settings)}: POP3 has only INBOX; cannot move messages to {folder!r}"
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


def open_mailbox(settings: MailboxSettings, debug: DebugCallback | None = None) -> Mailbox:
    """Connect, start TLS, log in and (IMAP) select the folder."""
    if settings.protocol not in ("imap", "pop3"):
        raise MailError(f"unknown mail protocol {settings.protocol!r}")
    if settings.security not in ("plain", "ssl", "starttls"):
        raise MailError(f"unknown mail security {settings.security!r}")
    if settings.access_token and settings.security == "plain":
        raise MailTLSError(
            f"{_where(settings)}: OAuth2 access tokens are only sent over TLS; "
            "choose SSL/TLS or STARTTLS for this account"
        )
    if settings.protocol == "imap":
        return ImapMailbox(settings, debug)
    return Pop3Mailbox(settings, debug)
