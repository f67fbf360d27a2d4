"""Realistic test mail generator for the parser tests and the benchmark.

Mails are assembled as bytes by hand (not with email.message) so that generating
10,000 of them takes about a second, and so that we can produce broken mail on purpose.
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Iterator
from email.utils import formatdate

CRLF = "\r\n"

# Sample text per charset: subjects and body sentences that really need that charset.
_SAMPLES: dict[str, tuple[list[str], str]] = {
    "utf-8": (
        ["Hello", "Rechnung Nr. 4711 – bitte prüfen", "Ошибка входа", "Café ☕ order #12"],
        "Grüße aus Köln, the printer on floor 3 is broken again. Ça ne marche pas. "
        "Пожалуйста, помогите. 日本語も大丈夫です。 ",
    ),
    "iso-8859-1": (
        ["Bestellung für Müller", "Réclamation n° 58", "Año nuevo, señal"],
        "Sehr geehrte Damen und Herren, bitte prüfen Sie die Größe. Très bien, à bientôt. ",
    ),
    "windows-1252": (
        ["“Quoted” subject – with dash", "Invoice € 1.200", "Don’t reply"],
        "We’re sorry – the “premium” plan costs € 30 per month… Thanks for your patience. ",
    ),
    "koi8-r": (
        ["Заявка на ремонт", "Счёт на оплату", "Не работает почта"],
        "Здравствуйте! У нас не работает принтер в бухгалтерии, просим помочь срочно. ",
    ),
    "iso-2022-jp": (
        ["お問い合わせ", "請求書の件", "パスワードを忘れました"],
        "いつもお世話になっております。ログインできません。至急ご確認ください。",
    ),
    "shift_jis": (
        ["見積もり依頼", "納品について", "障害報告"],
        "お世話になっております。サーバーが停止しています。確認をお願いします。",
    ),
    "gb2312": (
        ["发票问题", "无法登录系统", "订单查询"],
        "您好，我们的系统无法登录，请尽快处理。谢谢您的帮助。",
    ),
}
_CHARSET_WEIGHTS = [
    ("utf-8", 55),
    ("iso-8859-1", 12),
    ("windows-1252", 10),
    ("koi8-r", 6),
    ("iso-2022-jp", 6),
    ("shift_jis", 5),
    ("gb2312", 6),
]
_ASCII_FILLER = (
    "Please find the details of the issue below. The error appears after login and "
    "only on the second attempt. We already restarted the service twice. "
)
_PDF_HEAD = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"


def _encoded_word(text: str, charset: str) -> str:
    """RFC 2047 B-encoded word(s); plain ASCII stays as is."""
    if text.isascii():
        return text
    data = text.encode(charset)
    # Split so no word exceeds ~75 chars, like real encoders; multi-byte chars may be split.
    chunk = 45
    words = [
        f"=?{charset}?B?{base64.b64encode(data[i : i + chunk]).decode()}?="
        for i in range(0, len(data), chunk)
    ]
    return f"{CRLF} ".join(words)


def _b64_lines(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii").replace("\n", CRLF)


def _text_part(text: str, subtype: str, charset: str) -> str:
    """A text/* part with a transfer encoding that fits the charset."""
    data = text.encode(charset)
    if data.isascii():
        cte, payload = "7bit", data.decode("ascii").replace("\n", CRLF)
    elif charset in ("iso-2022-jp",):
        cte, payload = "7bit", data.decode("ascii").replace("\n", CRLF)
    elif charset in ("iso-8859-1", "windows-1252", "koi8-r"):
        qp = binascii.b2a_qp(data.replace(b"\n", b"\r\n"))
        cte, payload = "quoted-printable", qp.decode("ascii")
    else:
        cte, payload = "base64", _b64_lines(data)
    return (
        f"Content-Type: text/{subtype}; charset={charset}{CRLF}"
        f"Content-Transfer-Encoding: {cte}{CRLF}{CRLF}{payload}{CRLF}"
    )


def _attachment_part(filename: str, ctype: str, data: bytes) -> str:
    if filename.isascii():
        disp = f'attachment; filename="{filename}"'
    else:
        quoted = "".join(
            chr(b) if chr(b).isalnum() and b < 128 else f"%{b:02X}" for b in filename.encode()
        )
        disp = f"attachment; filename*=utf-8''{quoted}"
    return (
        f"Content-Type: {ctype}{CRLF}Content-Disposition: {disp}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}{_b64_lines(data)}"
    )


def _multipart(subtype: str, boundary: str, parts: list[str]) -> str:
    body = "".join(f"--{boundary}{CRLF}{p}{CRLF}" for p in parts)
    return (
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"{CRLF}{CRLF}'
        f"This is a multi-part message in MIME format.{CRLF}{body}--{boundary}--{CRLF}"
    )


def make_mail(
    *,
    to: str = "support@example.test",
    frm: str = "Alice <alice@example.test>",
    subject: str = "Hello",
    body: str = "Hi",
    cc: str | None = None,
    headers: dict | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | list[str] | None = None,
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
    charset: str = "utf-8",
) -> bytes:
    """Build one well-formed mail as bytes; attachments are (filename, content_type, data)."""
    message_id = message_id or f"<{random.getrandbits(64):x}@mailgen.example.test>"
    lines = [
        f"From: {frm}",
        f"To: {to}",
        f"Subject: {_encoded_word(subject, charset)}",
        f"Date: {formatdate(1_700_000_000, localtime=False)}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
    ]
    if cc:
        lines.append(f"Cc: {cc}")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        refs = references if isinstance(references, str) else " ".join(references)
        lines.append(f"References: {refs}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    head = CRLF.join(lines) + CRLF

    content = _text_part(body, "plain", charset)
    if html is not None:
        content = _multipart(
            "alternative", "alt-b0undary", [content, _text_part(html, "html", charset)]
        )
    if attachments:
        parts = [content] + [_attachment_part(*a) for a in attachments]
        content = _multipart("mixed", "mix-b0undary", parts)
    return (head + content).encode("ascii")


def _body_text(rng: random.Random, charset: str, size: int) -> str:
    """Roughly size bytes of wrapped text in the charset's language plus ASCII filler."""
    sentence = _SAMPLES[charset][1]
    lines = []
    total = 0
    while total < size:
        text = sentence if rng.random() < 0.5 else _ASCII_FILLER
        lines.append(text)
        total += len(text.encode("utf-8")) + 2
    return "\n".join(lines)


def _malformed(rng: random.Random, msgid: str) -> bytes:
    """One broken mail for the corpus; it still carries its unique Message-ID."""
    kind = rng.randrange(5)
    head = f"Message-ID: {msgid}\r\nFrom: x@example.test\r\nSubject: broken\r\n"
    if kind == 0:  # multipart without boundary
        return (head + "Content-Type: multipart/mixed\r\n\r\n--x\r\nhello\r\n--x--\r\n").encode()
    if kind == 1:  # bad base64
        return (
            head + "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29y!!!bGQ=x\r\n"
        ).encode()
    if kind == 2:  # no proper headers: just the id, then binary garbage without separator
        return f"Message-ID: {msgid}\r\n".encode() + rng.randbytes(600)
    if kind == 3:  # 8-bit garbage headers
        return (
            f"Message-ID: {msgid}\r\n".encode()
            + b"Subject: \xff\xfe\x80 caf\xe9\r\nFrom: \xc3\x28 <a@b.test>\r\n\r\nbody\r\n"
        )
    # truncated multipart
    return (
        head + 'Content-Type: multipart/mixed; boundary="cut"\r\n\r\n--cut\r\n'
        "Content-Type: text/plain\r\n\r\nthe rest is mis"
    ).encode()


def realistic_corpus(n: int, seed: int = 1) -> Iterator[bytes]:
    """n deterministic mails, mostly 2-20 KB (median ~10 KB), ~1% malformed, unique IDs."""
    rng = random.Random(seed)
    charsets = [c for c, _ in _CHARSET_WEIGHTS]
    weights = [w for _, w in _CHARSET_WEIGHTS]
    for i in range(n):
        msgid = f"<{seed}.{i}.{rng.getrandbits(32):08x}@corpus.example.test>"
        if rng.random() < 0.01:
            yield _malformed(rng, msgid)
            continue
        charset = rng.choices(charsets, weights)[0]
        size = int(min(max(rng.lognormvariate(8.9, 0.55), 1500), 40_000))  # median ~7.3 KB text
        has_html = rng.random() < 0.5
        text_size = size // 2 if has_html else size
        body = _body_text(rng, charset, text_size)
        html = None
        if has_html:
            html = (
                "<html><body><p>" + body.replace("\n", "</p>\n<p>") + "</p>"
                '<img src="https://tracker.example.test/p.gif"></body></html>'
            )
        attachments = None
        if rng.random() < 0.15:
            blob = _PDF_HEAD + rng.randbytes(rng.randrange(500, 6000))
            attachments = [
                (
                    "Bericht März.pdf" if rng.random() < 0.3 else "report.pdf",
                    "application/pdf",
                    blob,
                )
            ]
        yield make_mail(
            to=f"support{i % 3}@example.test",
            frm=f"User {i} <user{i}@customer{i % 50}.example.test>",
            subject=rng.choice(_SAMPLES[charset][0]),
            body=body,
            html=html,
            attachments=attachments,
            charset=charset,
            message_id=msgid,
            in_reply_to=f"<{i - 1}@corpus.example.test>" if i and rng.random() < 0.3 else None,
        )


def malformed_samples() -> dict[str, bytes]:
    """Named broken messages; the parser must survive every one of them."""
    return {
        "missing_boundary": (
            b"From: a@example.test\r\nSubject: no boundary\r\n"
            b"Content-Type: multipart/mixed\r\n\r\n--x\r\nhello\r\n--x--\r\n"
        ),
        "wrong_boundary": (
            b'Content-Type: multipart/mixed; boundary="aaa"\r\n\r\n--bbb\r\n\r\ntext\r\n--bbb--\r\n'
        ),
        "truncated_multipart": (
            b'From: a@example.test\r\nContent-Type: multipart/mixed; boundary="q"\r\n\r\n'
            b"--q\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--q\r\n"
            b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBER"
        ),
        "bad_base64": (
            b"Subject: bad b64\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29y!!!bGQ=x\r\n"
        ),
        "bad_quoted_printable": (
            b"Subject: bad qp\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nfoo=ZZbar=\r\n=E9=\r\n=4"
        ),
        "no_headers": b"just some text\r\nwithout any headers at all\r\n",
        "binary_garbage": bytes(range(256)) * 8,
        "eight_bit_headers": (
            b"From: J\xf6rg <joerg@example.test>\r\nSubject: caf\xe9 \xff\xfe\r\n"
            b"To: \xe4\xbd\xa0\xe5\xa5\xbd <x@example.test>\r\n\r\nbody\r\n"
        ),
        "unknown_charset": (
            b"Subject: =?x-klingon?Q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=x-klingon\r\n"
            b"\r\ncaf\xc3\xa9\r\n"
        ),
        "wrong_charset_label": (
            b"Subject: mislabelled\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            b"Gr\xfc\xdfe \x93quoted\x94\r\n"
        ),
        "broken_encoded_words": (
            b"Subject: =?utf-8?B?SGVsbG8g!!!?= =?utf-8?Q?w=C3=B6rld with space?= =?utf-8?B?\r\n"
            b"From: =?bogus?Q?x?= <a@example.test>\r\n\r\nbody\r\n"
        ),
        "header_only": b"Subject: only headers\r\nFrom: a@example.test\r\n",
        "bad_date": b"Date: yesterday at noon\r\nSubject: d\r\n\r\nx\r\n",
        "continuation_first": b" folded first line\r\nSubject: s\r\n\r\nbody\r\n",
        "nul_bytes": b"Subject: nul\x00here\r\n\r\nbody\x00with\x00nuls\r\n",
        "lf_only": b"Subject: unix\nContent-Type: text/plain\n\nbody with LF\n",
        "bad_content_type": b"Content-Type: ;;;===\r\nSubject: ct\r\n\r\nbody\r\n",
        "uuencode_broken": (
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n"
            b"\r\nbegin 644 f\r\n!!!!\r\nend\r\n"
        ),
        "rfc2231_bad_charset": (
            b"Content-Type: application/pdf\r\n"
            b"Content-Disposition: attachment; filename*=zlib''%FF%00%41.pdf\r\n\r\nx\r\n"
        ),
    }


def deeply_nested(depth: int) -> bytes:
    """A multipart/mixed nested depth levels deep, each level with its own boundary."""
    head = []
    tail = []
    for i in range(depth):
        head.append(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n')
        tail.append(f"\r\n--b{i}--\r\n")
    inner = "Content-Type: text/plain\r\n\r\ndeep inside"
    return ("Subject: nested\r\n" + "".join(head) + inner + "".join(reversed(tail))).encode()


def huge_header(n_bytes: int) -> bytes:
    """A mail whose Subject header alone is n_bytes long (one physical line)."""
    return b"From: a@example.test\r\nSubject: " + b"A" * n_bytes + b"\r\n\r\nbody\r\n"


def many_headers(n: int) -> bytes:
    """A mail with n small header fields."""
    return b"".join(b"X-H%d: v\r\n" % i for i in range(n)) + b"\r\nbody\r\n"
