"""IMAP sessions: ImapMailbox, one selected folder, through imap_adapter.BoundedIMAPClient."""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Callable, Iterator, Sequence

from .base import DebugCallback, Mailbox, RemoteMessage
from .errors import (
    MailConnectError,
    MailError,
    MailFolderError,
    MailLoginError,
    MailProtocolError,
    MailTLSError,
    server_label,
)
from .headers import Envelope, decode_header_value, naive_utc
from .imap_adapter import BoundedIMAPClient
from .limits import batch_limits
from .settings import MailboxSettings
from .tls import remember_session, tls_context
from .xoauth2 import decode_oauth_challenge, xoauth2_string

# UIDs per FETCH command: keeps command lines short (imapclient needs plain UID lists).
SIZE_FETCH_BATCH = 1000
_UID_RE = re.compile(rb"\bUID (\d+)")
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")


def uid_set(uids: Sequence[int]) -> str:
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


class ImapMailbox(Mailbox):
    """One selected IMAP folder."""

    def __init__(self, settings: MailboxSettings, debug: DebugCallback | None = None) -> None:
        super().__init__(settings, debug)
        self.folder = settings.folder or "INBOX"
        self.client: BoundedIMAPClient | None = None
        self.exists = 0  # messages in the folder when it was selected
        context = tls_context(settings) if settings.security != "plain" else None
        with self._errors("connecting"):
            client = BoundedIMAPClient(
                settings.host,
                settings.effective_port,
                ssl=settings.security == "ssl",
                ssl_context=context,
                timeout=settings.timeout,
            )
        self.client = client
        try:
            client.set_debug(self._debug if self._debug_callback is not None else None)
            self._debug(f"< {client.welcome!r}")
            if settings.security == "starttls":
                assert context is not None
                self._starttls(context)
            self._login()
            self._select()
        except BaseException:
            self._shutdown()
            raise
        if settings.security == "ssl":
            sock = client.socket()
            self.tls_session_reused = bool(getattr(sock, "session_reused", False))
            remember_session(context, sock, settings.host, settings.effective_port)

    def _capabilities(self) -> tuple[bytes, ...]:
        assert self.client is not None
        return tuple(c.upper() for c in self.client.capabilities())

    def _starttls(self, context: ssl.SSLContext) -> None:
        assert self.client is not None
        where = server_label(self.settings)
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
        where = server_label(settings)
        if settings.access_token:
            user = settings.oauth_user or settings.username
            payload = xoauth2_string(user, settings.access_token).encode()
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
                    self.client.authenticate_raw("XOAUTH2", respond)
            except MailProtocolError as e:
                details = [decode_oauth_challenge(c) for c in challenges if c]
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
        self.client.forget_capabilities()
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
        self.exists = int(info.get(b"EXISTS") or 0)

    def _missing_folder(self, folder: str, folders: list[str]) -> MailFolderError:
        return MailFolderError(
            f"{server_label(self.settings)}: the folder {folder!r} does not exist. "
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

    def list_messages(
        self, min_uid: int | None = None, also_uids: Sequence[int] = ()
    ) -> list[RemoteMessage]:
        """UID SEARCH (never by \\Seen), then sizes via batched UID FETCH RFC822.SIZE.

        also_uids (below min_uid) are not searched for: their UID FETCH answers only for
        those still there."""
        assert self.client is not None
        criteria = ["ALL"] if min_uid is None else ["UID", f"{max(min_uid, 1)}:*"]
        with self._errors("searching messages"):
            uids = [int(u) for u in self.client.search(criteria)]
        if min_uid is not None:
            # "N:*" always matches the highest UID, even when it is below N.
            uids = [u for u in uids if u >= min_uid]
            uids.extend(u for u in set(also_uids) if 0 < u < min_uid)
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
        assert self.client is not None
        with self._errors("reading message sizes"):
            typ, data = self.client.uid_fetch_raw(uid_set(uids), "(UID RFC822.SIZE)")
        if typ != "OK":
            raise MailProtocolError(
                f"{server_label(self.settings)}: FETCH RFC822.SIZE failed: {data}"
            )
        sizes = {}
        for line in data:
            if isinstance(line, tuple):  # a literal: not part of a RFC822.SIZE answer
                line = line[0]
            uid, size = _UID_RE.search(line or b""), _SIZE_RE.search(line or b"")
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
            elif uid and int(uid.group(1)) in uids:
                raise MailProtocolError(
                    f"{server_label(self.settings)}: "
                    f"no RFC822.SIZE for UID {uid.group(1)!r} in FETCH"
                )
        return sizes

    def fetch(self, messages: Sequence[RemoteMessage]) -> Iterator[tuple[RemoteMessage, bytes]]:
        """One UID FETCH BODY.PEEK[] for the whole batch (does not set \\Seen)."""
        assert self.client is not None
        if not messages:
            return
        max_literal, max_response = batch_limits(
            [m.size for m in messages], self.settings.max_message_size
        )
        with (
            self.client.bounds(max_literal, max_response),
            self._errors("downloading messages"),
        ):
            data = self.client.fetch([m.uid for m in messages], ["BODY.PEEK[]"])
        for message in messages:
            item = data.get(message.uid)
            if item is None:
                continue
            body = item.get(b"BODY[]")
            if not isinstance(body, bytes):
                raise MailProtocolError(
                    f"{server_label(self.settings)}: no message body for UID {message.uid}"
                )
            yield message, body

    def envelope(self, messages: Sequence[RemoteMessage]) -> dict[str, Envelope]:
        """From, Subject and Date via FETCH ENVELOPE (the server reads the headers only)."""
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
                name = decode_header_value(address.name)
                mailbox = (address.mailbox or b"").decode("utf-8", "replace")
                host = (address.host or b"").decode("utf-8", "replace")
                email = f"{mailbox}@{host}" if host else mailbox
                sender = f"{name} <{email}>" if name else email
            subject = decode_header_value(env.subject)
            result[message.key] = Envelope(sender, subject, naive_utc(env.date))
        return result

    def _uids(self, keys: Sequence[str]) -> list[int]:
        return [int(k) for k in keys]

    def delete(self, keys: Sequence[str], on_flagged: Callable[[], None] | None = None) -> None:
        """STORE +FLAGS \\Deleted, then UID EXPUNGE of exactly those (or EXPUNGE)."""
        assert self.client is not None
        if not keys:
            return
        uids = uid_set(self._uids(keys))
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
            self.client.add_flags(uid_set(self._uids(keys)), [b"\\Seen"], silent=True)

    def move(self, keys: Sequence[str], folder: str) -> None:
        """MOVE when the server can, else COPY and delete."""
        assert self.client is not None
        if folder == self.folder or (folder.upper() == "INBOX" and self.folder.upper() == "INBOX"):
            raise MailFolderError(
                f"{server_label(self.settings)}: cannot move messages to {folder!r}: "
                "it is the folder they are fetched from"
            )
        folders = self.list_folders()
        if folder not in folders:
            raise self._missing_folder(folder, folders)
        if not keys:
            return
        uids = uid_set(self._uids(keys))
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
