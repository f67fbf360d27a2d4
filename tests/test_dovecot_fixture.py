"""The test Dovecot itself: ports, TLS, delivery, parallel logins."""

from __future__ import annotations

import imaplib
import os
import poplib
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.servers.dovecot import Dovecot, live_processes_in_group
from tests.servers.fixtures import *  # noqa: F403
from tests.servers.fixtures import MailUser

pytestmark = pytest.mark.dovecot


def test_imaps_certificate_is_signed_by_test_ca(dovecot: Dovecot, mail_user: MailUser) -> None:
    context = ssl.create_default_context(cafile=dovecot.ca_file)
    with imaplib.IMAP4_SSL("localhost", dovecot.imaps_port, ssl_context=context) as client:
        client.login(mail_user.username, mail_user.password)
    with imaplib.IMAP4_SSL(dovecot.host, dovecot.imaps_port, ssl_context=context) as client:
        client.login(mail_user.username, mail_user.password)


def test_delivered_messages_are_visible_over_imap(dovecot: Dovecot, mail_user: MailUser) -> None:
    dovecot.deliver_many(mail_user.username, [b"Subject: %d\r\n\r\nx\r\n" % i for i in range(50)])
    dovecot.deliver(mail_user.username, b"Subject: archived\r\n\r\nx\r\n", folder="Archive")
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port) as client:
        client.login(mail_user.username, mail_user.password)
        assert client.select("INBOX")[1] == [b"50"]
        assert client.select("Archive")[1] == [b"1"]
    assert dovecot.message_count(mail_user.username) == 50
    assert dovecot.messages(mail_user.username, "Archive") == [b"Subject: archived\r\n\r\nx\r\n"]


def test_pop3_offers_stls_and_stable_uidls(dovecot: Dovecot, mail_user: MailUser) -> None:
    mail_user.deliver(b"Subject: one\r\n\r\nx\r\n")
    client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=5)
    assert "STLS" in client.capa()
    client.stls(context=ssl.create_default_context(cafile=dovecot.ca_file))
    client.user(mail_user.username)
    client.pass_(mail_user.password)
    uidl = client.uidl()[1][0].split()[1]
    client.quit()
    assert len(uidl) == 16


def test_twenty_parallel_logins(dovecot: Dovecot, mail_user: MailUser) -> None:
    def login(_: int) -> bytes:
        with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=10) as client:
            client.login(mail_user.username, mail_user.password)
            client.select("INBOX")
            pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
            pop.user(mail_user.username)
            reply = pop.pass_(mail_user.password)
            pop.quit()
            return reply

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(login, range(20)))
    assert all(reply.startswith(b"+OK") for reply in replies)


def test_start_is_fast_and_stop_ends_every_process() -> None:
    server = Dovecot()
    started = time.monotonic()
    server.start()
    assert time.monotonic() - started < 15  # ready when its ports answer, not after a fixed wait
    assert server._process is not None
    pgid = os.getpgid(server._process.pid)
    server.stop()
    assert live_processes_in_group(pgid) == []
