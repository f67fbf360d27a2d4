"""The mailbox package against the real test Dovecot and against tiny hostile servers."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.servers.dovecot import Dovecot, free_port
from tests.servers.fixtures import *  # noqa: F403
from tests.servers.fixtures import MailUser
from webapp.postmaster.mailbox import (
    MailboxSettings,
    MailConnectError,
    MailFolderError,
    MailLoginError,
    MailProtocolError,
    MailTLSError,
    Pop3Mailbox,
    open_mailbox,
)

PORTS = {
    ("imap", "plain"): "imap_port",
    ("imap", "starttls"): "imap_port",
    ("imap", "ssl"): "imaps_port",
    ("pop3", "plain"): "pop3_port",
    ("pop3", "starttls"): "pop3_port",
    ("pop3", "ssl"): "pop3s_port",
}
COMBINATIONS = list(PORTS)


def settings_for(
    dovecot: Dovecot, user: MailUser, protocol: str = "imap", security: str = "ssl", **extra
) -> MailboxSettings:
    values = dict(
        protocol=protocol,
        security=security,
        host="localhost",
        port=getattr(dovecot, PORTS[(protocol, security)]),
        username=user.username,
        password=user.password,
        ca_file=dovecot.ca_file,
        timeout=5.0,
    )
    values.update(extra)
    return MailboxSettings(**values)


def message(number: int, subject: str = "Hello") -> bytes:
    return (
        f"From: Sender {number} <sender{number}@example.com>\r\n"
        f"To: help@example.com\r\nSubject: {subject} {number}\r\n"
        f"Message-ID: <m{number}@example.com>\r\n\r\nBody {number}\r\n"
    ).encode()


# -- the six combinations ----------------------------------------------------------


@pytest.mark.parametrize(("protocol", "security"), COMBINATIONS)
def test_list_fetch_delete_on_every_protocol_and_security(
    dovecot: Dovecot, mail_user: MailUser, protocol: str, security: str
) -> None:
    for number in range(3):
        mail_user.deliver(message(number))
    settings = settings_for(dovecot, mail_user, protocol, security)
    with open_mailbox(settings) as mailbox:
        messages = mailbox.list_messages()
        assert len(messages) == 3
        assert mailbox.message_count() == 3
        fetched = dict((m.key, raw) for m, raw in mailbox.fetch(messages))
        assert sorted(fetched.values()) == sorted(message(n) for n in range(3))
        if protocol == "imap":
            assert mailbox.uidvalidity and [m.uid for m in messages] == [1, 2, 3]
        else:
            assert mailbox.uidvalidity is None
        mailbox.delete([messages[0].key])
    assert dovecot.message_count(mail_user.username) == 2
    with open_mailbox(settings) as mailbox:
        assert [m.key for m in mailbox.list_messages()] == [m.key for m in messages[1:]]


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_envelope_gives_decoded_from_and_subject(
    dovecot: Dovecot, mail_user: MailUser, protocol: str
) -> None:
    mail_user.deliver(
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"Date: Wed, 02 Dec 2026 11:15:00 +0100\r\n\r\nbig body\r\n"
    )
    with open_mailbox(settings_for(dovecot, mail_user, protocol)) as mailbox:
        messages = mailbox.list_messages()
        envelopes = mailbox.envelope(messages)
    sent_at = datetime(2026, 12, 2, 10, 15)  # naive UTC, as the database stores times
    assert envelopes[messages[0].key] == ("Jürgen <j@example.com>", "Grüße", sent_at)


def test_imap_min_uid_lists_only_newer_messages(dovecot: Dovecot, mail_user: MailUser) -> None:
    for number in range(5):
        mail_user.deliver(message(number))
    with open_mailbox(settings_for(dovecot, mail_user)) as mailbox:
        assert [m.uid for m in mailbox.list_messages(min_uid=4)] == [4, 5]
        # "6:*" still matches UID 5 on the server: it must not be reported.
        assert mailbox.list_messages(min_uid=6) == []


def test_imap_listing_and_fetching_do_not_set_seen(dovecot: Dovecot, mail_user: MailUser) -> None:
    mail_user.deliver(message(1))
    with open_mailbox(settings_for(dovecot, mail_user)) as mailbox:
        list(mailbox.fetch(mailbox.list_messages()))
    assert "S" not in "".join(dovecot.flags(mail_user.username))


def test_pop3_lists_all_of_more_than_twenty_messages(dovecot: Dovecot, mail_user: MailUser) -> None:
    dovecot.deliver_many(mail_user.username, (message(n) for n in range(45)))
    with open_mailbox(settings_for(dovecot, mail_user, "pop3")) as mailbox:
        messages = mailbox.list_messages()
        assert len(messages) == 45
        assert len({m.key for m in messages}) == 45
        assert len(list(mailbox.fetch(messages))) == 45


def test_pop3_delete_takes_effect_at_quit(dovecot: Dovecot, mail_user: MailUser) -> None:
    mail_user.deliver(message(1))
    mailbox = open_mailbox(settings_for(dovecot, mail_user, "pop3"))
    mailbox.delete([m.key for m in mailbox.list_messages()])
    assert dovecot.message_count(mail_user.username) == 1
    mailbox.close()
    mailbox.close()  # twice is fine
    assert dovecot.message_count(mail_user.username) == 0


# -- folders, move, keep mode ----------------------------------------------------------


def test_missing_folder_error_lists_existing_folders(dovecot: Dovecot, mail_user: MailUser) -> None:
    dovecot.create_folder(mail_user.username, "Archive")
    with pytest.raises(MailFolderError) as error:
        open_mailbox(settings_for(dovecot, mail_user, folder="Tickets"))
    assert "'Tickets' does not exist" in str(error.value)
    assert "Archive" in str(error.value) and "INBOX" in str(error.value)


def test_imap_reads_another_folder(dovecot: Dovecot, mail_user: MailUser) -> None:
    dovecot.deliver(mail_user.username, message(7), folder="Support")
    with open_mailbox(settings_for(dovecot, mail_user, folder="Support")) as mailbox:
        assert sorted(mailbox.list_folders()) == ["INBOX", "Support"]
        assert [raw for _, raw in mailbox.fetch(mailbox.list_messages())] == [message(7)]


@pytest.mark.parametrize("use_move", [True, False], ids=["MOVE", "COPY+EXPUNGE"])
def test_imap_move_to_existing_folder(
    dovecot: Dovecot, mail_user: MailUser, use_move: bool
) -> None:
    dovecot.create_folder(mail_user.username, "Done")
    mail_user.deliver(message(1))
    mail_user.deliver(message(2))
    with open_mailbox(settings_for(dovecot, mail_user)) as mailbox:
        assert mailbox.supports_move
        mailbox.supports_move = use_move
        first = mailbox.list_messages()[0]
        mailbox.move([first.key], "Done")
        assert mailbox.message_count() == 1
    assert dovecot.messages(mail_user.username, "Done") == [message(1)]
    assert dovecot.messages(mail_user.username) == [message(2)]


def test_imap_move_refuses_missing_or_same_folder(dovecot: Dovecot, mail_user: MailUser) -> None:
    mail_user.deliver(message(1))
    with open_mailbox(settings_for(dovecot, mail_user)) as mailbox:
        key = mailbox.list_messages()[0].key
        with pytest.raises(MailFolderError, match="Existing folders: INBOX"):
            mailbox.move([key], "Nowhere")
        with pytest.raises(MailFolderError, match="fetched from"):
            mailbox.move([key], "INBOX")
    assert dovecot.message_count(mail_user.username) == 1


def test_imap_mark_seen_in_keep_mode(dovecot: Dovecot, mail_user: MailUser) -> None:
    mail_user.deliver(message(1))
    mail_user.deliver(message(2))
    with open_mailbox(settings_for(dovecot, mail_user)) as mailbox:
        mailbox.mark_seen([mailbox.list_messages()[0].key])
    assert sorted(dovecot.flags(mail_user.username)) == ["", "S"]


def test_pop3_mark_seen_is_a_no_op_and_move_is_refused(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    mail_user.deliver(message(1))
    with open_mailbox(settings_for(dovecot, mail_user, "pop3")) as mailbox:
        keys = [m.key for m in mailbox.list_messages()]
        mailbox.mark_seen(keys)
        assert mailbox.list_folders() == ["INBOX"]
        with pytest.raises(MailFolderError):
            mailbox.move(keys, "Archive")
    assert dovecot.message_count(mail_user.username) == 1


# -- TLS ---------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "security"), [c for c in COMBINATIONS if c[1] != "plain"])
def test_certificate_from_unknown_ca_is_refused(
    dovecot: Dovecot, mail_user: MailUser, protocol: str, security: str
) -> None:
    settings = settings_for(dovecot, mail_user, protocol, security, ca_file=None)
    with pytest.raises(MailTLSError) as error:
        open_mailbox(settings)
    assert "MAIL_CA_FILE" in str(error.value)
    assert "Verify TLS certificate" in str(error.value)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_verify_tls_off_accepts_unknown_ca(
    dovecot: Dovecot, mail_user: MailUser, protocol: str
) -> None:
    settings = settings_for(dovecot, mail_user, protocol, ca_file=None, verify_tls=False)
    with open_mailbox(settings) as mailbox:
        assert mailbox.message_count() == 0


def test_certificate_name_must_match_host(dovecot: Dovecot, mail_user: MailUser) -> None:
    # The certificate is for localhost and 127.0.0.1, not for 127.0.0.2.
    settings = settings_for(dovecot, mail_user, host="127.0.0.2")
    with pytest.raises((MailTLSError, MailConnectError)):
        open_mailbox(settings)


# -- logins ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_wrong_password_gives_login_error_with_server_text(
    dovecot: Dovecot, mail_user: MailUser, protocol: str
) -> None:
    settings = settings_for(dovecot, mail_user, protocol, password="not-the-password")
    with pytest.raises(MailLoginError) as error:
        open_mailbox(settings)
    assert "the server said: " in str(error.value)
    assert "[AUTH" in str(error.value) and "Authentication failed." in str(error.value)
    assert mail_user.username in str(error.value)
    # No bytes repr (b'...'): checked without the random username, which may end in "b".
    without_user = str(error.value).replace(mail_user.username, "<user>")
    assert "b'" not in without_user and 'b"' not in without_user
    assert "not-the-password" not in str(error.value)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_debug_output_masks_the_password(
    dovecot: Dovecot, mail_user: MailUser, protocol: str
) -> None:
    lines: list[str] = []
    settings = settings_for(dovecot, mail_user, protocol, "starttls")
    with open_mailbox(settings, debug=lines.append) as mailbox:
        mailbox.list_messages()
    text = "\n".join(lines)
    assert mail_user.password not in text
    assert "***" in text
    assert "STARTTLS" in text or "STLS" in text


def test_closed_port_gives_connect_error_quickly(mail_user: MailUser) -> None:
    port = free_port()  # nothing listens there any more
    settings = MailboxSettings(
        protocol="imap", security="ssl", host="127.0.0.1", port=port, username="x", password="y"
    )
    started = time.monotonic()
    with pytest.raises(MailConnectError, match="connection refused"):
        open_mailbox(settings)
    # Refused at once, not retried until the read timeout; generous, so load cannot break it.
    assert time.monotonic() - started < settings.timeout / 2


def test_access_token_over_plain_connection_is_refused() -> None:
    settings = MailboxSettings(
        protocol="imap", security="plain", host="127.0.0.1", username="x", access_token="tok"
    )
    with pytest.raises(MailTLSError, match="only sent over TLS"):
        open_mailbox(settings)


# -- XOAUTH2 ------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(key: rsa.RSAPrivateKey, kid: str, claims: dict) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    signing_input = (
        _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


@pytest.fixture(scope="module")
def jwt_key(dovecot: Dovecot) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    dovecot.trust_jwt_key("test-mailbox-key", public_pem.decode())
    return key


def token_for(username: str, key: rsa.RSAPrivateKey, expires_in: int = 300) -> str:
    now = int(time.time())
    claims = {
        # Dovecot 2.3 requires "sub"; the login name is taken from "upn".
        "sub": username,
        "upn": username,
        "iat": now - 10,
        "exp": now + expires_in,
        "iss": "https://login.example.test/tenant/v2.0",
        "aud": "https://outlook.office.com",
    }
    return sign_jwt(key, "test-mailbox-key", claims)


@pytest.fixture
def oauth_user(dovecot: Dovecot, mail_user: MailUser) -> str:
    name = "oauth-" + mail_user.username + "@example.com"
    dovecot.add_user(name)  # impossible password: OAuth2 only
    dovecot.deliver(name, message(1))
    return name


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_xoauth2_login_works(
    dovecot: Dovecot, oauth_user: str, jwt_key: rsa.RSAPrivateKey, protocol: str
) -> None:
    token = token_for(oauth_user, jwt_key)
    lines: list[str] = []
    settings = MailboxSettings(
        protocol=protocol,
        security="ssl",
        host="localhost",
        port=dovecot.imaps_port if protocol == "imap" else dovecot.pop3s_port,
        username=oauth_user,
        access_token=token,
        ca_file=dovecot.ca_file,
        timeout=5,
    )
    with open_mailbox(settings, debug=lines.append) as mailbox:
        assert [raw for _, raw in mailbox.fetch(mailbox.list_messages())] == [message(1)]
    assert token not in "\n".join(lines)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
@pytest.mark.parametrize("problem", ["expired", "forged"])
def test_xoauth2_refuses_expired_or_forged_token(
    dovecot: Dovecot, oauth_user: str, jwt_key: rsa.RSAPrivateKey, protocol: str, problem: str
) -> None:
    if problem == "expired":
        token = token_for(oauth_user, jwt_key, expires_in=-60)
    else:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = token_for(oauth_user, other)
    settings = MailboxSettings(
        protocol=protocol,
        security="starttls",
        host="localhost",
        port=dovecot.imap_port if protocol == "imap" else dovecot.pop3_port,
        username=oauth_user,
        access_token=token,
        ca_file=dovecot.ca_file,
        timeout=5,
    )
    with pytest.raises(MailLoginError) as error:
        open_mailbox(settings)
    text = str(error.value)
    assert "XOAUTH2" in text and oauth_user in text
    assert "status=401" in text or "invalid_token" in text or "failed" in text
    assert token not in text


def test_oauth_only_user_cannot_log_in_with_a_password(dovecot: Dovecot, oauth_user: str) -> None:
    settings = MailboxSettings(
        protocol="imap",
        security="ssl",
        host="localhost",
        port=dovecot.imaps_port,
        username=oauth_user,
        password="{CRYPT}!",
        ca_file=dovecot.ca_file,
    )
    with pytest.raises(MailLoginError):
        open_mailbox(settings)


# -- hostile servers ------------------------------------------------------------------


class HostileServer:
    """A one-connection loopback TCP server that runs a script against the client."""

    def __init__(self, script: Callable[[socket.socket, list[bytes]], None]) -> None:
        self.received: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                self.script(conn, self.received)
            except OSError:
                pass  # the client hung up on us: that is the point

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def read_line(conn: socket.socket, received: list[bytes]) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise OSError("closed")
        data += chunk
    received.append(data)
    return data


def endless(conn: socket.socket, chunk: bytes, limit: int = 300 * 1024 * 1024) -> None:
    # Bounded so a broken client cannot keep the test thread busy forever.
    sent = 0
    while sent < limit:
        conn.sendall(chunk)
        sent += len(chunk)


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileServer]]:
    servers: list[HostileServer] = []

    def start(script: Callable[[socket.socket, list[bytes]], None]) -> HostileServer:
        server = HostileServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def hostile_settings(server: HostileServer, protocol: str, security: str = "plain", **extra):
    values = dict(
        protocol=protocol,
        security=security,
        host="127.0.0.1",
        port=server.port,
        username="victim",
        password="top-secret-pw",
        timeout=1.0,
    )
    values.update(extra)
    return MailboxSettings(**values)


def test_imap_starttls_refuses_plaintext_fallback(hostile) -> None:
    def script(conn, received):
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] no TLS here\r\n")
        while True:
            tag = read_line(conn, received).split()[0]
            conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")

    server = hostile(script)
    with pytest.raises(MailTLSError, match="does not offer STARTTLS"):
        open_mailbox(hostile_settings(server, "imap", "starttls"))
    server.close()
    assert not any(b"LOGIN" in line or b"top-secret" in line for line in server.received)


def test_pop3_stls_refuses_plaintext_fallback(hostile) -> None:
    def script(conn, received):
        conn.sendall(b"+OK hello\r\n")
        while True:
            line = read_line(conn, received)
            if line.startswith(b"CAPA"):
                conn.sendall(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
            else:
                conn.sendall(b"+OK\r\n")

    server = hostile(script)
    with pytest.raises(MailTLSError, match="does not offer STLS"):
        open_mailbox(hostile_settings(server, "pop3", "starttls"))
    server.close()
    assert not any(line.startswith((b"USER", b"PASS")) for line in server.received)


def test_pop3_stls_refused_by_server_fails_without_login(hostile) -> None:
    def script(conn, received):
        conn.sendall(b"+OK hello\r\n")
        while True:
            line = read_line(conn, received)
            if line.startswith(b"CAPA"):
                conn.sendall(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
            elif line.startswith(b"STLS"):
                conn.sendall(b"-ERR not today\r\n")
            else:
                conn.sendall(b"+OK\r\n")

    server = hostile(script)
    with pytest.raises(MailTLSError, match="STLS failed"):
        open_mailbox(hostile_settings(server, "pop3", "starttls"))
    server.close()
    assert not any(line.startswith((b"USER", b"PASS")) for line in server.received)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_garbage_greeting_is_a_protocol_error(hostile, protocol: str) -> None:
    server = hostile(lambda conn, received: conn.sendall(b"\x00\xff\xfeHELLO garbage\r\n"))
    with pytest.raises(MailProtocolError):
        open_mailbox(hostile_settings(server, protocol))


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_endless_line_is_a_protocol_error(hostile, protocol: str) -> None:
    greeting = b"* OK " if protocol == "imap" else b"+OK "
    server = hostile(lambda conn, received: (conn.sendall(greeting), endless(conn, b"A" * 65536)))
    with pytest.raises(MailProtocolError, match="line longer"):
        open_mailbox(hostile_settings(server, protocol))


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_greeting_then_silence_times_out(hostile, protocol: str) -> None:
    greeting = b"* OK hi\r\n" if protocol == "imap" else b"+OK hi\r\n"

    def script(conn, received):
        conn.sendall(greeting)
        time.sleep(2)

    server = hostile(script)
    started = time.monotonic()
    with pytest.raises(MailConnectError, match="no answer within 1 seconds"):
        open_mailbox(hostile_settings(server, protocol))
    # The message proves the 1 s timeout fired; the bound only says it did not hang.
    assert time.monotonic() - started < 10


def imap_script(on_command: Callable[[socket.socket, bytes, bytes], bool]):
    """A fake IMAP server: greeting, LOGIN/SELECT ok, then on_command for the rest."""

    def script(conn, received):
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hostile\r\n")
        while True:
            line = read_line(conn, received)
            tag, command = line.split()[0], line.split()[1].upper()
            if command == b"UID":
                command = line.split()[2].upper()
            if command in (b"LOGIN", b"CAPABILITY"):
                conn.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
            elif command == b"SELECT":
                conn.sendall(
                    b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n" + tag + b" OK [READ-WRITE] done\r\n"
                )
            elif not on_command(conn, tag, command):
                conn.sendall(tag + b" OK done\r\n")

    return script


def test_imap_literal_larger_than_announced_size_is_refused(hostile) -> None:
    def on_command(conn, tag, command):
        if command == b"SEARCH":
            conn.sendall(b"* SEARCH 1\r\n" + tag + b" OK done\r\n")
            return True
        if command == b"FETCH":
            # The message claims 100 bytes, then its body is announced as 5 GB.
            conn.sendall(b"* 1 FETCH (UID 1 RFC822.SIZE 100)\r\n" + tag + b" OK done\r\n")
            read_line(conn, [])
            conn.sendall(b"* 1 FETCH (UID 1 BODY[] {5000000000}\r\n")
            endless(conn, b"x" * 65536, limit=64 * 1024 * 1024)
            return True
        return False

    server = hostile(imap_script(on_command))
    with open_mailbox(hostile_settings(server, "imap")) as mailbox:
        messages = mailbox.list_messages()
        assert messages[0].size == 100
        with pytest.raises(MailProtocolError, match="announced 5000000000 bytes"):
            list(mailbox.fetch(messages))


def test_imap_endless_response_is_a_protocol_error(hostile) -> None:
    def on_command(conn, tag, command):
        if command == b"SEARCH":
            # Never-ending untagged lines, each below the line limit.
            conn.sendall(b"* SEARCH 1\r\n")
            endless(conn, b"* OK " + b"z" * 500_000 + b"\r\n", limit=200 * 1024 * 1024)
            return True
        return False

    server = hostile(imap_script(on_command))
    with open_mailbox(hostile_settings(server, "imap")) as mailbox:
        with pytest.raises(MailProtocolError, match="more than"):
            mailbox.list_messages()


def test_pop3_endless_multiline_response_is_a_protocol_error(hostile) -> None:
    def script(conn, received):
        conn.sendall(b"+OK hi\r\n")
        while True:
            line = read_line(conn, received)
            if line.startswith(b"UIDL"):
                conn.sendall(b"+OK\r\n")
                endless(conn, b"1 " + b"u" * 500_000 + b"\r\n", limit=200 * 1024 * 1024)
            else:
                conn.sendall(b"+OK\r\n")

    server = hostile(script)
    with open_mailbox(hostile_settings(server, "pop3")) as mailbox:
        with pytest.raises(MailProtocolError, match="more than"):
            mailbox.list_messages()


def test_pop3_xoauth2_error_without_challenge(hostile) -> None:
    # Exchange answers -ERR directly, without Dovecot's JSON challenge.
    def script(conn, received):
        conn.sendall(b"+OK hi\r\n")
        while True:
            line = read_line(conn, received)
            if line.startswith(b"AUTH"):
                conn.sendall(b"+ \r\n")
                read_line(conn, received)
                conn.sendall(b"-ERR Authentication failure: unknown user name or bad password.\r\n")
            else:
                conn.sendall(b"+OK\r\n")

    server = hostile(script)
    # open_mailbox() refuses tokens without TLS, and this server has none: use the class.
    settings = hostile_settings(server, "pop3", password=None, access_token="secret-token-xyz")
    with pytest.raises(MailLoginError) as error:
        Pop3Mailbox(settings)
    assert "bad password" in str(error.value)
    assert "secret-token-xyz" not in str(error.value)
