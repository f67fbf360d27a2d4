"""Pytest fixtures for the test mail server: `from tests.servers.fixtures import *`."""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.servers.dovecot import DOVECOT_BINARY, Dovecot

__all__ = ["MailUser", "dovecot", "mail_user"]

_MISSING = (
    "the mail tests need Debian packages dovecot-imapd and dovecot-pop3d "
    "(scripts/install-system-deps.sh)"
)
_numbers = itertools.count(1)


def _dovecot_missing() -> str | None:
    if not (os.path.exists(DOVECOT_BINARY) or shutil.which("dovecot")):
        return _MISSING
    for program in ("imap", "pop3", "imap-login", "pop3-login"):
        if not os.path.exists(f"/usr/lib/dovecot/{program}"):
            return _MISSING
    if os.geteuid() != 0:
        return "the test Dovecot must be started as root (it hands mail to uid 8)"
    return None


@dataclass(frozen=True)
class MailUser:
    """A fresh Dovecot user with an empty INBOX."""

    username: str
    password: str
    server: Dovecot

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """Put one message into this user's folder."""
        self.server.deliver(self.username, raw, folder)


def require_dovecot() -> None:
    """Skip the test when Dovecot is not installed here; fail in CI, which must install it
    (a silent skip there would hide every mail test)."""
    reason = _dovecot_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot (IMAP/IMAPS/POP3/POP3S, XOAUTH2) shared by the whole session."""
    require_dovecot()
    server = Dovecot()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mail_user(dovecot: Dovecot) -> MailUser:
    """A new user with an empty INBOX and a random password."""
    username = f"user{next(_numbers)}-{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    dovecot.add_user(username, password)
    return MailUser(username, password, dovecot)
