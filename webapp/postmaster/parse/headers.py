"""Header values: folding, 8-bit bytes, RFC 2047 words, addresses, Message-IDs, dates,
X-OTOBO-* names."""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import getaddresses, parsedate_to_datetime

from .charset import decode_8bit, decode_bytes

_FOLD_RE = re.compile(r"\r?\n(?=[ \t])")
# CR/LF would let a value inject lines into anything that re-emits it; NUL and other C0
# controls break PostgreSQL text columns and terminals.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")
# An encoded-word is "=?charset?Q?text?=". Lenient on purpose: real encoded-words contain
# spaces and '?' in their text in violation of RFC 2047, so the text runs to the next "?=".
# Only the "=?charset?Q?" start is a regex (with a bounded charset, so each try costs at most
# _MAX_CHARSET characters); the end is found with str.find, which keeps decoding linear: the
# old single regex with "(.*?)\?=" rescanned to the end of the value from every "=?" that
# had no "?=" after it, and a 74 KB Subject took 15 s.
_MAX_CHARSET = 75  # RFC 2047: a whole encoded-word is at most 75 characters
_ENCODED_WORD_START_RE = re.compile(rf"=\?([^?\s]{{1,{_MAX_CHARSET}}})\?([qQbB])\?")
_B64_JUNK_RE = re.compile(r"[^A-Za-z0-9+/]")


def _unescape_8bit(value: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes; decode them properly."""
    if value.isascii():
        return value
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value  # already real text (e.g. decoded by the stdlib)
    return decode_8bit(raw)


def _decode_word(encoding: str, text: str) -> bytes:
    """Decode the payload of one encoded-word to bytes (charset applied later)."""
    if encoding in "bB":
        data = _B64_JUNK_RE.sub("", text)
        if len(data) % 4 == 1:
            data = data[:-1]  # a lone trailing char can't carry a byte
        data += "=" * (-len(data) % 4)
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            return text.encode("utf-8", "surrogateescape")
    return binascii.a2b_qp(text.encode("utf-8", "surrogateescape"), header=True)


def _encoded_words(value: str) -> Iterator[tuple[re.Match[str], int]]:
    """Each encoded-word: the match of its start, and where its "?=" begins. Linear."""
    start = value.find("=?")
    while start >= 0:
        m = _ENCODED_WORD_START_RE.match(value, start)
        if m is None:
            start = value.find("=?", start + 1)
            continue
        text_end = value.find("?=", m.end())
        if text_end < 0:
            return  # no later start can find an end either
        yield m, text_end
        start = value.find("=?", text_end + 2)


def _decode_encoded_words(value: str) -> str:
    """Decode RFC 2047 encoded-words, joining adjacent words of one charset before decoding."""
    # Adjacent words are joined as bytes because encoders split multi-byte characters
    # (UTF-8, ISO-2022-JP escape sequences) across words.
    pieces: list[tuple[bytes | str, str | None]] = []
    pos = 0
    for m, text_end in _encoded_words(value):
        gap = value[pos : m.start()]
        pos = text_end + 2
        # Whitespace between two encoded-words is not part of the text (RFC 2047 6.2).
        if gap and not (gap.isspace() and pieces and pieces[-1][1] is not None):
            pieces.append((gap, None))
        charset = m.group(1).split("*", 1)[0].lower()  # drop RFC 2231 language suffix
        data = _decode_word(m.group(2), value[m.end() : text_end])
        if pieces and pieces[-1][1] == charset:
            # A piece with a charset holds bytes; mypy only knows bytes | str.
            pieces[-1] = (pieces[-1][0] + data, charset)  # type: ignore[operator]
        else:
            pieces.append((data, charset))
    if pos < len(value):
        pieces.append((value[pos:], None))
    out = []
    for piece, piece_charset in pieces:
        out.append(piece if isinstance(piece, str) else decode_bytes(piece, piece_charset))
    return "".join(out)


def decode_header_value(value: str | None) -> str:
    """Decode a raw header value (folding, 8-bit bytes, RFC 2047 words) to one clean line."""
    if not value:
        return ""
    value = _FOLD_RE.sub("", str(value))
    value = _unescape_8bit(value)
    if "=?" in value:
        value = _decode_encoded_words(value)
    return _CONTROL_RE.sub(" ", value).strip()


# "Name <a@b>" or "a@b" with no quotes, comments or groups: the common case, which a regex
# handles in a fraction of getaddresses()' time (that was ~12% of total parse time).
# An address is a run of non-space characters with an "@" that is neither its first nor its
# last character. Written so that no two parts can match the same characters (no "\s*"
# before a display name that may hold spaces, no "[^<>\s]+@" that may hold "@" itself),
# so it never backtracks: the old form took 15 s for a 20 KB "From: <a@a@a@...".
_ADDRESS = r"[^<>\s][^<>\s@]*@[^<>\s]+"
_SIMPLE_ADDRESS_RE = re.compile(rf"(?:[^<>@]*<\s*({_ADDRESS})\s*>|\s*({_ADDRESS}))\s*")
_ADDRESS_SPECIALS = frozenset('"()\\:;[]')


def address_list(values: list[str] | None) -> list[str]:
    """Bare lowercased addresses from all values of one header, in order, without repeats."""
    if not values:
        return []
    found: dict[str, None] = {}  # dict keeps order and makes repeats O(1) for huge To lists
    for value in values:
        value = _unescape_8bit(_FOLD_RE.sub("", str(value)))
        if _ADDRESS_SPECIALS.isdisjoint(value):
            matches = [_SIMPLE_ADDRESS_RE.fullmatch(item) for item in value.split(",")]
            if all(matches):
                for m in filter(None, matches):  # all of them (mypy: none is None)
                    found[(m.group(1) or m.group(2)).lower()] = None
                continue
        for _display_name, addr in getaddresses([value]):
            addr = addr.strip().lower()
            if "@" in addr:
                found[addr] = None
    return list(found)


def display_text(values: list[str] | None) -> str:
    """Decoded text of all values of one header, joined for display."""
    return ", ".join(filter(None, (decode_header_value(v) for v in values or [])))


_MSGID_RE = re.compile(r"<[^<>\s]+>")


def message_id_list(value: str | None) -> list[str]:
    """All <message-ids> in a header; bare tokens when nobody used angle brackets."""
    text = decode_header_value(value)
    ids = _MSGID_RE.findall(text) or text.split()
    return list(dict.fromkeys(ids))


def parse_date(value: str | None) -> datetime | None:
    """Date header as an aware UTC datetime, None when missing or invalid."""
    if not value:
        return None
    try:
        dt = parsedate_to_datetime(decode_header_value(value))
        if dt.tzinfo is None:  # "-0000" means UTC with unknown local zone
            dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# OTOBO header names are matched case-insensitively but shown/configured in this spelling.
_OTOBO_TOKENS = {
    t.lower(): t
    for t in (
        "FollowUp State PendingTime Priority Queue Lock Ignore Type Service SLA CustomerNo "
        "CustomerUser SenderType IsVisibleForCustomer Owner OwnerID Responsible ResponsibleID "
        "Title Loop DynamicField TicketKey TicketValue TicketTime ArticleKey ArticleValue "
        "Body Subject From To Cc Spam Flag Score Level Status AttachmentExists AttachmentCount"
    ).split()
}
_OTOBO_NUMBERED_RE = re.compile(r"(ticketkey|ticketvalue|tickettime|articlekey|articlevalue)(\d+)$")


def otobo_key(name: str) -> str:
    """Canonical spelling of an X-OTOBO-* header name, e.g. X-OTOBO-FollowUp-State."""
    tokens = name.strip().split("-")[2:]
    out = ["X", "OTOBO"]
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if low == "dynamicfield":
            # Dynamic field names are case-sensitive: keep the rest exactly as sent.
            out.append("DynamicField")
            out.extend(tokens[i + 1 :])
            break
        numbered = _OTOBO_NUMBERED_RE.match(low)
        if numbered:
            out.append(_OTOBO_TOKENS[numbered.group(1)] + numbered.group(2))
        else:
            out.append(_OTOBO_TOKENS.get(low) or tok[:1].upper() + tok[1:])
    return "-".join(out)
