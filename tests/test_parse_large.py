"""Large mail: base64 bodies over 1 MB are decoded from the raw bytes by offset
(webapp/postmaster/parse/spans.py), and the result is what the stdlib parser gives."""

from __future__ import annotations

import base64
import email
import hashlib
import random
import tracemalloc
from email.message import Message

import pytest

from tests.fetching import add_account
from tests.mailgen import make_mail
from webapp.extensions import db
from webapp.models import Article, Attachment, RawMail
from webapp.postmaster.fetch import fetch_account
from webapp.postmaster.parse import parse_mail
from webapp.postmaster.parse.spans import LARGE_RUN, cut
from webapp.settings.store import set_setting

MB = 1024 * 1024


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


def _stdlib_leaves(raw: bytes) -> dict[str, bytes]:
    """filename -> decoded content of every named leaf, by the stdlib's compat32 parser."""
    leaves: dict[str, bytes] = {}
    for part in email.message_from_bytes(raw).walk():
        name = part.get_filename()
        if name and not part.is_multipart():
            content = part.get_payload(decode=True)
            assert isinstance(content, bytes)
            leaves[name] = content
    return leaves


def _text_part(body: bytes, filename: str) -> bytes:
    return (
        f'Content-Type: text/plain; charset="us-ascii"\r\n'
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        f"Content-Transfer-Encoding: 7bit\r\n\r\n"
    ).encode() + body


def _multipart(*parts: bytes, boundary: str = "b0undary") -> bytes:
    head = (
        "From: Alice <alice@example.test>\r\nTo: support@example.test\r\nSubject: big\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    ).encode()
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return head + body + b"--" + boundary.encode() + b"--\r\n"


def test_large_attachments_are_the_same_as_the_stdlib_parser_gives():
    rng = random.Random(7)
    pdf, png = rng.randbytes(3 * MB), rng.randbytes(2 * MB)
    raw = make_mail(
        subject="Scans",
        body="Two scans attached.",
        html="<p>Two scans attached.</p>",
        attachments=[("scan.pdf", "application/pdf", pdf), ("photo.png", "image/png", png)],
    )
    assert len(cut(raw).data) < 64 * 1024  # the parser only saw the skeleton
    mail = parse_mail(raw)
    assert {a.filename: a.content for a in mail.attachments} == _stdlib_leaves(raw)
    assert [a.size for a in mail.attachments] == [len(pdf), len(png)]
    assert mail.body_text.strip() == "Two scans attached."
    assert mail.body_html and "Two scans attached." in mail.body_html
    assert not mail.defects


def test_large_text_part_that_looks_like_base64_keeps_its_text():
    """Lines of letters only, 7bit: cut out like base64, but put back as the text it was."""
    lines = b"".join(b"Line%07dofplainletters\r\n" % i for i in range(LARGE_RUN // 20))
    raw = _multipart(_text_part(lines, "letters.txt"))
    (attachment,) = parse_mail(raw).attachments
    assert attachment.content == _stdlib_leaves(raw)["letters.txt"] == lines


def test_large_base64_inside_an_attached_message_is_kept_in_the_eml():
    inner_data = random.Random(3).randbytes(2 * MB)
    inner = make_mail(
        subject="Forwarded scan", attachments=[("inner.pdf", "application/pdf", inner_data)]
    )
    part = b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n" + inner
    raw = _multipart(part)
    (attachment,) = parse_mail(raw).attachments
    assert attachment.filename == "Forwarded scan.eml"
    expected = email.message_from_bytes(raw).get_payload()[0].get_payload()[0]
    assert isinstance(expected, Message)
    assert attachment.content == expected.as_bytes()
    (inner_part,) = [
        p for p in email.message_from_bytes(attachment.content).walk() if p.get_filename()
    ]
    assert inner_part.get_payload(decode=True) == inner_data


def test_broken_large_base64_is_decoded_as_the_stdlib_does():
    encoded = base64.encodebytes(random.Random(4).randbytes(2 * MB)).replace(b"\n", b"\r\n")
    broken = encoded[:-3] + b"\r\n"  # a truncated last group: invalid length
    part = (
        b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="cut.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + broken
    )
    raw = _multipart(part)
    (attachment,) = parse_mail(raw).attachments
    assert attachment.content == _stdlib_leaves(raw)["cut.bin"]


def test_a_token_written_into_the_mail_is_only_text():
    """The skeleton's tokens carry a nonce per parse: mail cannot name a span."""
    forged = b"PMSPAN0000000000000000N0"
    data = random.Random(5).randbytes(2 * MB)
    raw = make_mail(
        body=f"see {forged.decode()}", attachments=[("a.bin", "application/octet-stream", data)]
    )
    mail = parse_mail(raw)
    assert forged.decode() in mail.body_text
    assert mail.attachments[0].content == data


def test_a_large_attachment_is_parsed_without_copies_of_its_text():
    """compat32 alone keeps one str per line and then a joined str: ~4x the attachment."""
    data = random.Random(6).randbytes(6 * MB)
    raw = make_mail(attachments=[("scan.pdf", "application/pdf", data)])
    tracemalloc.start()
    try:
        mail = parse_mail(raw)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert mail.attachments[0].content == data
    assert peak < 2 * len(data)  # the decoded content and little else


def test_a_25_mb_message_is_stored_byte_identical(app_ctx, dovecot, mail_user):
    set_setting("MaxMessageSizeMB", "64")
    db.session.commit()
    data = random.Random(25).randbytes(25 * MB * 3 // 4)  # base64 makes it ~25 MB
    big = make_mail(
        subject="Big scan",
        body="See the attached scan.",
        attachments=[("scan.pdf", "application/pdf", data)],
        message_id="<big-scan@example.test>",
    )
    mail_user.deliver(big)
    mail_user.deliver(make_mail(subject="small one"))
    account_id = add_account(dovecot, mail_user, "IMAPS")
    result = fetch_account(account_id)
    assert result.new_tickets == 2, result.log
    article = db.session.query(Article).filter_by(message_id="<big-scan@example.test>").one()
    raw_mail = db.session.get(RawMail, article.raw_mail_id)
    assert raw_mail is not None
    assert hashlib.sha256(raw_mail.content).hexdigest() == hashlib.sha256(big).hexdigest()
    (attachment,) = db.session.query(Attachment).filter_by(article_id=article.id).all()
    assert (attachment.filename, attachment.size) == ("scan.pdf", len(data))
    assert attachment.content == data
    assert dovecot.message_count(mail_user.username) == 0
