"""The MIME parts of a parsed message sorted into body text, HTML and attachments."""

from __future__ import annotations

import binascii
import mimetypes
import re
import time
from email import errors as email_errors
from email.message import Message
from functools import lru_cache
from typing import cast

from .charset import NO_CHARSET, codec_for, decode_bytes
from .filenames import safe_filename
from .headers import decode_header_value
from .model import MailParseError, ParsedAttachment, ParseLimits, timeout_message
from .spans import Skeleton

_DEFECT_TEXT = {
    email_errors.NoBoundaryInMultipartDefect: "multipart part without boundary parameter",
    email_errors.StartBoundaryNotFoundDefect: "MIME start boundary not found",
    email_errors.CloseBoundaryNotFoundDefect: "MIME closing boundary missing (truncated?)",
    email_errors.FirstHeaderLineIsContinuationDefect: "first header line is a continuation",
    email_errors.MisplacedEnvelopeHeaderDefect: "misplaced 'From ' envelope line",
    email_errors.MissingHeaderBodySeparatorDefect: "no blank line between headers and body",
    email_errors.MultipartInvariantViolationDefect: "multipart content could not be split",
    email_errors.InvalidMultipartContentTransferEncodingDefect: (
        "multipart part with invalid Content-Transfer-Encoding"
    ),
    email_errors.InvalidBase64PaddingDefect: "invalid base64 padding",
    email_errors.InvalidBase64CharactersDefect: "invalid characters in base64",
    email_errors.InvalidBase64LengthDefect: "invalid base64 length",
    email_errors.InvalidHeaderDefect: "invalid header line",
}


_LARGE_PART = 1024 * 1024


def _large_base64(part: Message) -> bytes | None:
    """A large base64 part decoded in one step. compat32's get_payload(decode=True) splits
    the text into lines first: 4-5 copies of a 25 MB attachment at once. None: not such a
    part, or broken base64 (then compat32 decodes it, defects and all)."""
    payload = part.get_payload()
    if not isinstance(payload, str) or len(payload) < _LARGE_PART:
        return None
    if str(part.get("content-transfer-encoding", "")).strip().lower() != "base64":
        return None
    try:
        return binascii.a2b_base64(payload.encode("ascii", "surrogateescape"))
    except (binascii.Error, ValueError):
        return None


def _parts(part: Message) -> list[Message]:
    """The sub-parts of a multipart (or message/*) part: its payload is their list."""
    return cast(list[Message], part.get_payload())


class Collector:
    """Walks the parsed tree and sorts parts into body text, HTML and attachments."""

    def __init__(self, deadline: float, limits: ParseLimits, skeleton: Skeleton) -> None:
        self.deadline = deadline
        self.limits = limits
        self.skeleton = skeleton  # large base64 contents decoded from the raw bytes
        self.plain: list[str] = []
        self.html: str | None = None
        self.attachments: list[ParsedAttachment] = []
        self.defects: list[str] = []

    def defect(self, text: str) -> None:
        if text not in self.defects:
            self.defects.append(text)

    def note_defects(self, part: Message) -> None:
        for d in part.defects:
            self.defect(_DEFECT_TEXT.get(type(d), type(d).__name__))

    def walk(self, part: Message, depth: int) -> None:
        if time.monotonic() > self.deadline:
            raise MailParseError(timeout_message(self.limits.max_seconds))
        ctype = part.get_content_type()
        if part.is_multipart():
            self.note_defects(part)
            if depth > 0 and ctype.startswith("message/"):
                self.add_message_attachment(part, ctype)
                return
            for sub in _parts(part):
                self.walk(sub, depth + 1)
            return
        content = self.payload(part)
        if ctype.startswith("multipart/"):
            # Broken multipart the parser could not split: show the raw text as body
            # rather than hiding it in an attachment.
            ctype = "text/plain"
        disposition = part.get_content_disposition()
        filename = self.filename(part)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text = self.text(part, content, ctype)
            if ctype == "text/plain":
                self.plain.append(text)
                return
            if self.html is None:
                self.html = text
                return
        self.add_attachment(part, ctype, filename, content)

    def payload(self, part: Message) -> bytes:
        large = self.skeleton.take(part)
        if large is None:
            large = _large_base64(part)
        if large is not None:
            return large
        try:
            data = part.get_payload(decode=True)
        except Exception:  # the stdlib decoders have odd corners (uuencode); keep raw
            self.defect("content could not be decoded; stored raw")
            raw = part.get_payload()
            data = raw.encode("ascii", "surrogateescape") if isinstance(raw, str) else b""
        self.note_defects(part)  # decoding adds base64 defects to the part
        return data if isinstance(data, bytes) else b""

    def filename(self, part: Message) -> str | None:
        try:
            name = part.get_filename()
        except Exception:  # malformed RFC 2231 parameters
            self.defect("unreadable attachment filename")
            return None
        return decode_header_value(name) if name else None

    def text(self, part: Message, content: bytes, ctype: str) -> str:
        charset = part.get_content_charset(None)
        if charset is None and ctype == "text/html":
            m = _META_CHARSET_RE.search(content, 0, 4096)
            if m:
                charset = m.group(1).decode("ascii")
        if charset and codec_for(charset) is None and charset.lower() not in NO_CHARSET:
            self.defect(f"unknown charset {charset!r}")
        text = decode_bytes(content, charset)
        if text.startswith("\ufeff"):
            text = text[1:]
        return text.replace("\r\n", "\n")

    def add_attachment(
        self, part: Message, ctype: str, filename: str | None, content: bytes
    ) -> None:
        fallback = "attachment" + (_extension(ctype) or ".bin")
        cid = part.get("content-id")
        cid = (decode_header_value(cid).strip("<> ") or None) if cid else None
        self.attachments.append(
            ParsedAttachment(
                filename=safe_filename(filename, fallback),
                content_type=ctype,
                size=len(content),
                content=content,
                content_id=cid,
            )
        )

    def add_message_attachment(self, part: Message, ctype: str) -> None:
        inner = _parts(part)
        chunks = []
        for sub in inner:
            try:
                chunks.append(sub.as_bytes())
            except Exception:  # re-serialising a broken message; keep what we can
                chunks.append(sub.as_string().encode("utf-8", "surrogateescape"))
        content = b"\n".join(chunks)
        if ctype in ("message/rfc822", "message/global") and inner:
            subject = decode_header_value(inner[0].get("subject"))
            name = safe_filename(subject[:100] + ".eml" if subject else None, "message.eml")
        else:
            name = safe_filename(self.filename(part), "attachment.txt")
        self.attachments.append(
            ParsedAttachment(filename=name, content_type=ctype, size=len(content), content=content)
        )


_META_CHARSET_RE = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)


@lru_cache(maxsize=128)
def _extension(ctype: str) -> str | None:
    """File extension for a content type, used when an attachment has no name."""
    return {"text/plain": ".txt", "text/html": ".html"}.get(ctype) or mimetypes.guess_extension(
        ctype
    )
