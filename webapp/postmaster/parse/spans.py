"""Large base64 bodies kept out of the feed parser, decoded from the raw bytes by offset.

compat32's feed parser turns a part into one str object per line and then joins them: a
25 MB attachment becomes ~340,000 line objects (≈ 45 MB) and a 25 MB str on top of the raw
bytes. So before parsing a large message, every run of more than LARGE_RUN bytes of lines
that consist only of base64 characters is cut out of the bytes and replaced by one token
line; the parser sees a skeleton of a few KB. Afterwards (restore):

* a leaf part whose whole body is one token and whose Content-Transfer-Encoding is base64
  is decoded straight from the raw bytes (binascii, one step, no str in between);
* in every other case (a text part that happens to look like base64, a token inside a
  message/rfc822 attachment, broken base64) the original text is put back into the part,
  so the result is exactly what parsing the whole message gives.

A run cannot swallow MIME structure: boundary lines start with "--", header lines have ':'
or start with white space, and none of those is a base64 character. The token carries a
random nonce per parse, so mail cannot forge one.
"""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass, field
from email.message import Message

LARGE_RUN = 1024 * 1024  # smaller runs stay in the skeleton: not worth a token

# Possessive quantifiers: linear on any input (a 5 MB line without a newline included).
_RUN_RE = re.compile(rb"(?m)^(?:[A-Za-z0-9+/=]++\r?\n)++")


@dataclass
class Skeleton:
    """The message with its large base64 runs replaced by tokens, and where they were."""

    data: bytes
    raw: bytes
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # token -> raw[start:end]
    decoded: dict[int, bytes] = field(default_factory=dict)  # id(part) -> its content

    def take(self, part: Message) -> bytes | None:
        """The decoded content of a part decoded by restore() (once), else None."""
        return self.decoded.pop(id(part), None)


def cut(raw: bytes) -> Skeleton:
    """raw with every run of base64 lines longer than LARGE_RUN replaced by a token line."""
    nonce = secrets.token_hex(8)
    pieces: list[bytes] = []
    skeleton = Skeleton(b"", raw)
    pos = 0
    for match in _RUN_RE.finditer(raw):
        start, end = match.span()
        if end - start < LARGE_RUN:
            continue
        # Keep the run's last line break in the skeleton, so the lines around stay as they were.
        end -= 2 if raw[end - 2 : end] == b"\r\n" else 1
        token = f"PMSPAN{nonce}N{len(skeleton.spans)}"
        skeleton.spans[token] = (start, end)
        pieces += (raw[pos:start], token.encode("ascii"))
        pos = end
    if not skeleton.spans:
        skeleton.data = raw
        return skeleton
    pieces.append(raw[pos:])
    skeleton.data = b"".join(pieces)
    return skeleton


def restore(msg: Message, skeleton: Skeleton) -> None:
    """Decode the token-only base64 leaves from the raw bytes; put the text back elsewhere."""
    if skeleton.spans:
        _restore(msg, skeleton, inside_message=False)


def _restore(part: Message, skeleton: Skeleton, inside_message: bool) -> None:
    payload = part.get_payload()
    if isinstance(payload, list):
        inside = inside_message or part.get_content_type().startswith("message/")
        for sub in payload:
            if isinstance(sub, Message):
                _restore(sub, skeleton, inside)
        return
    if not isinstance(payload, str) or "PMSPAN" not in payload:
        return
    span = skeleton.spans.get(payload.strip())
    if span is not None and not inside_message and _is_base64(part):
        try:
            skeleton.decoded[id(part)] = binascii.a2b_base64(memoryview(skeleton.raw)[slice(*span)])
            return
        except (binascii.Error, ValueError):
            pass  # broken base64: compat32 decodes the text, defects and all
    part.set_payload(_original_text(payload, skeleton))


def _is_base64(part: Message) -> bool:
    return str(part.get("content-transfer-encoding", "")).strip().lower() == "base64"


def _original_text(payload: str, skeleton: Skeleton) -> str:
    """The payload with each token replaced by the raw text it stands for."""
    for token, (start, end) in skeleton.spans.items():
        if token in payload:
            text = skeleton.raw[start:end].decode("ascii")  # base64 characters only
            payload = payload.replace(token, text)
    return payload
