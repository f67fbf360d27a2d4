"""The TLS context for IMAP and POP3 (the system store, an extra CA file, or no checks), and
the TLS sessions kept for resumption.

Contexts are made once per kind and reused: loading the system store costs more CPU than the
rest of a fetch that finds no mail (issue 15). A changed CA file (its mtime or size) makes a
new context. Sessions are kept per context, host and port (implicit TLS only; STARTTLS and STLS
always do a full handshake): the next connection offers the last session, and a server that
accepts it skips the certificate exchange.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading

from .errors import MailTLSError
from .settings import MailboxSettings

_lock = threading.Lock()
_contexts: dict[tuple[bool, str | None, int, int], ssl.SSLContext] = {}
_sessions: dict[tuple[int, str, int], ssl.SSLSession] = {}
MAX_SESSIONS = 10_000  # one per host and port; a bound against an unbounded dict
# Handshakes done and sessions resumed by this process (the idle-accounts benchmark reads it).
SESSION_STATS = {"handshakes": 0, "reused": 0}


def tls_context(settings: MailboxSettings) -> ssl.SSLContext:
    """The context for implicit TLS and STARTTLS/STLS, as the account's settings ask."""
    ca_file = settings.ca_file if settings.verify_tls else None
    stamp = (0, 0)
    if ca_file:
        try:
            info = os.stat(ca_file)
            stamp = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = (-1, -1)  # _new_context reports it
    key = (settings.verify_tls, ca_file, *stamp)
    with _lock:
        context = _contexts.get(key)
    if context is None:
        context = _new_context(settings.verify_tls, ca_file)
        with _lock:
            if len(_contexts) > 16:  # CA files that changed: the old contexts go
                _contexts.clear()
            context = _contexts.setdefault(key, context)
    return context


def _new_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as e:
            raise MailTLSError(
                f"Cannot use the CA file {ca_file} (POSTMASTER_MAIL_CA_FILE): {e}"
            ) from None
    return context


def _session_key(context: ssl.SSLContext, host: str, port: int) -> tuple[int, str, int]:
    return (id(context), host.lower(), port)


def wrap_with_session(
    context: ssl.SSLContext, sock: socket.socket, host: str, port: int
) -> ssl.SSLSocket:
    """TLS over sock, offering the session of the last connection to host:port."""
    with _lock:
        session = _sessions.get(_session_key(context, host, port))
    try:
        tls = context.wrap_socket(sock, server_hostname=host, session=session)
    except BaseException:
        sock.close()
        raise
    with _lock:
        SESSION_STATS["handshakes"] += 1
        SESSION_STATS["reused"] += 1 if tls.session_reused else 0
    return tls


def remember_session(context: ssl.SSLContext | None, sock: object, host: str, port: int) -> None:
    """Keep the session of a connection about to close (TLS 1.3 tickets arrive after the
    handshake, so the end of a conversation is when one is surely there)."""
    if context is None or not isinstance(sock, ssl.SSLSocket):
        return
    try:
        session = sock.session
    except (OSError, ValueError):
        return
    if session is None:
        return
    with _lock:
        if len(_sessions) >= MAX_SESSIONS:
            _sessions.clear()
        _sessions[_session_key(context, host, port)] = session


def forget_sessions() -> None:
    """Drop every kept session (the next connection to each host does a full handshake)."""
    with _lock:
        _sessions.clear()
