"""Turn raw mail bytes into a ParsedMail: decoded headers, body text, safe HTML, attachments.

No Flask and no database in here, so the fetcher, the tests and the benchmark can all use it.

Parser choice, measured on CPython 3.11.7 with tests/mailgen.realistic_corpus (median 10.5 KB):
  * BytesParser(policy=email.policy.default), only reading subject/from/to/date/message-id
    and the body: ~2.4 ms per mail, most of it in the RFC 5322 header value parser.
  * BytesFeedParser(policy=compat32) alone: ~0.29 ms per mail.
  * parse_mail() below (compat32 + our own header decoding, addresses, nh3 sanitizing):
    ~0.56 ms per mail, ~1,750 mails/s; a 14.5 KB multipart/alternative takes ~0.74 ms.
So we parse with compat32 (headers stay raw strings, 8-bit bytes kept as surrogate escapes)
and decode encoded-words, charsets and 8-bit headers ourselves, which also lets us be more
forgiving than the stdlib with broken encoded-words and mislabelled charsets.
"""

from __future__ import annotations

import binascii
import codecs
import html as html_lib
import mimetypes
import re
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors as email_errors
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import Compat32
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache

import nh3

__all__ = [
    "DEFAULT_LIMITS",
    "MailParseError",
    "ParseLimits",
    "ParsedAttachment",
    "ParsedMail",
    "decode_header_value",
    "html_to_text",
    "parse_mail",
    "safe_filename",
    "sanitize_html",
]


class MailParseError(Exception):
    """Mail rejected: a parse limit was exceeded or the input is not mail at all."""


@dataclass(frozen=True)
class ParseLimits:
    """Caps that keep one hostile mail from eating the fetcher's memory or time."""

    max_mime_depth: int = 20
    max_parts: int = 500
    max_header_bytes: int = 256 * 1024  # total header block per part
    max_headers: int = 2000  # header fields per part
    max_seconds: float = 10.0  # checked between parts
    # The stdlib parameter parser is quadratic in the number of ';' in a header, so a
    # Content-Type with 100,000 semicolons would take minutes; real mail has a handful.
    max_header_params: int = 200


DEFAULT_LIMITS = ParseLimits()


@dataclass
class ParsedAttachment:
    """One attachment (or inline image) with decoded content."""

    filename: str  # already passed through safe_filename
    content_type: str
    size: int
    content: bytes
    content_id: str | None = None


@dataclass
class ParsedMail:
    """Everything PostMaster needs from one mail, already decoded to str."""

    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    from_addr: str
    from_display: str
    to: list[str]
    cc: list[str]
    resent_to: list[str]
    envelope_to: list[str]
    delivered_to: list[str]
    x_original_to: list[str]
    to_display: str
    cc_display: str
    date: datetime | None
    otobo_headers: dict[str, str]
    body_text: str
    body_html: str | None
    attachments: list[ParsedAttachment]
    defects: list[str]
    # All top-level headers, decoded, in order; PostMaster filters match on arbitrary headers.
    headers: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- charsets

# Labels seen in real mail that Python either does not know or maps to a too-narrow codec.
# Supersets win: mail labelled gb2312 routinely contains GBK characters, shift_jis contains
# cp932 extensions, iso-8859-1 contains cp1252 quotes (same choice as the WHATWG spec).
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "chinese": "gb18030",
    "csgb2312": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601-1989": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "euc-kr": "cp949",
    "windows-949": "cp949",
    "korean": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ms_kanji": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_2",
    "csiso2022jp": "iso2022_jp_2",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "iso-8859-8-i": "iso8859_8",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "us-ascii": "ascii",
    "ansi_x3.4-1968": "ascii",
    "x-mac-roman": "mac_roman",
}
# Labels that carry no information; treat like a missing label.
_NO_CHARSET = {"", "unknown", "unknown-8bit", "x-unknown", "x-user-defined", "default", "none"}
# Codecs Python accepts as text encodings but which are not charsets of mail text.
_BLOCKED_CODECS = {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "mbcs"}


@lru_cache(maxsize=256)
def _codec_for(label: str | None) -> str | None:
    """Map a charset label from the mail to a Python codec name, None if unknown/unusable."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    if name in _NO_CHARSET:
        return None
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # bytes-to-bytes codecs (zlib, base64, ...) are not text encodings.
    if not getattr(info, "_is_text_encoding", True) or info.name in _BLOCKED_CODECS:
        return None
    return info.name


def _decode_8bit(data: bytes) -> str:
    """Decode unlabelled bytes: UTF-8 if valid, else cp1252 (the usual Western default)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode bytes in the labelled charset, never raising."""
    codec = _codec_for(charset)
    if codec is None:
        return _decode_8bit(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        pass
    except (LookupError, ValueError):  # broken codec state; treat as unlabelled
        return _decode_8bit(data)
    if codec in ("utf-8", "ascii"):
        # Labelled UTF-8/ASCII but isn't: usually a Windows client writing cp1252.
        return _decode_8bit(data)
    return data.decode(codec, "replace")


# --------------------------------------------------------------------------- headers

_FOLD_RE = re.compile(r"\r?\n(?=[ \t])")
# CR/LF would let a value inject lines into anything that re-emits it; NUL and other C0
# controls break PostgreSQL text columns and terminals.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")
# Lenient on purpose: real encoded-words contain spaces and '?' in violation of RFC 2047.
_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]+)\?([qQbB])\?(.*?)\?=", re.DOTALL)
_B64_JUNK_RE = re.compile(r"[^A-Za-z0-9+/]")


def _unescape_8bit(value: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes; decode them properly."""
    if value.isascii():
        return value
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value  # already real text (e.g. decoded by the stdlib)
    return _decode_8bit(raw)


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


def _decode_encoded_words(value: str) -> str:
    """Decode RFC 2047 encoded-words, joining adjacent words of one charset before decoding."""
    # Adjacent words are joined as bytes because encoders split multi-byte characters
    # (UTF-8, ISO-2022-JP escape sequences) across words.
    pieces: list[tuple[bytes | str, str | None]] = []
    pos = 0
    for m in _ENCODED_WORD_RE.finditer(value):
        gap = value[pos : m.start()]
        pos = m.end()
        # Whitespace between two encoded-words is not part of the text (RFC 2047 6.2).
        if gap and not (gap.isspace() and pieces and pieces[-1][1] is not None):
            pieces.append((gap, None))
        charset = m.group(1).split("*", 1)[0].lower()  # drop RFC 2231 language suffix
        data = _decode_word(m.group(2), m.group(3))
        if pieces and pieces[-1][1] == charset:
            pieces[-1] = (pieces[-1][0] + data, charset)  # type: ignore[operator]
        else:
            pieces.append((data, charset))
    if pos < len(value):
        pieces.append((value[pos:], None))
    out = []
    for data, charset in pieces:
        out.append(data if isinstance(data, str) else _decode_bytes(data, charset))
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
_SIMPLE_ADDRESS_RE = re.compile(
    r"\s*(?:[^<>@]*<\s*([^<>\s]+@[^<>\s]+?)\s*>|([^<>\s]+@[^<>\s]+))\s*"
)
_ADDRESS_SPECIALS = frozenset('"()\\:;[]')


def _address_list(values: list[str] | None) -> list[str]:
    """Bare lowercased addresses from all values of one header, in order, without repeats."""
    if not values:
        return []
    found: dict[str, None] = {}  # dict keeps order and makes repeats O(1) for huge To lists
    for value in values:
        value = _unescape_8bit(_FOLD_RE.sub("", str(value)))
        if _ADDRESS_SPECIALS.isdisjoint(value):
            matches = [_SIMPLE_ADDRESS_RE.fullmatch(item) for item in value.split(",")]
            if all(matches):
                for m in matches:
                    found[(m.group(1) or m.group(2)).lower()] = None
                continue
        for _display_name, addr in getaddresses([value]):
            addr = addr.strip().lower()
            if "@" in addr:
                found[addr] = None
    return list(found)


def _display(values: list[str] | None) -> str:
    """Decoded text of all values of one header, joined for display."""
    return ", ".join(filter(None, (decode_header_value(v) for v in values or [])))


_MSGID_RE = re.compile(r"<[^<>\s]+>")


def _message_ids(value: str | None) -> list[str]:
    """All <message-ids> in a header; bare tokens when nobody used angle brackets."""
    text = decode_header_value(value)
    ids = _MSGID_RE.findall(text) or text.split()
    return list(dict.fromkeys(ids))


def _parse_date(value: str | None) -> datetime | None:
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


def _otobo_key(name: str) -> str:
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


# --------------------------------------------------------------------------- HTML

_ALLOWED_TAGS = {
    "a", "abbr", "address", "b", "big", "blockquote", "br", "caption", "center", "cite",
    "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption",
    "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul",
}  # fmt: skip
_CELL_ATTRS = {"colspan", "rowspan", "width", "height", "align", "valign", "bgcolor", "nowrap"}
# No "style", "background", "srcset", "class": each can load remote content or fight our CSS.
_ALLOWED_ATTRS = {
    "*": {"title", "dir", "lang"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "border", "align"},
    "table": {"width", "border", "cellpadding", "cellspacing", "align", "bgcolor", "summary"},
    "td": _CELL_ATTRS,
    "th": _CELL_ATTRS,
    "tr": {"align", "valign", "bgcolor"},
    "col": {"span", "width", "align", "valign"},
    "colgroup": {"span", "width", "align", "valign"},
    "font": {"color", "size", "face"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value", "type"},
    "p": {"align"},
    "div": {"align"},
    "h1": {"align"}, "h2": {"align"}, "h3": {"align"},
    "h4": {"align"}, "h5": {"align"}, "h6": {"align"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
}  # fmt: skip
# These are dropped with their content: their text is code or fallback noise, not mail text.
_DROP_WITH_CONTENT = {
    "script", "style", "title", "head", "iframe", "frame", "frameset", "object", "embed",
    "applet", "noembed", "noframes", "template", "svg", "math", "select", "textarea",
}  # fmt: skip
_LINK_SCHEMES = ("http:", "https:", "mailto:")
_INLINE_IMAGE_PREFIXES = ("data:image/png", "data:image/gif", "data:image/jpeg", "data:image/webp")
_MAX_DATA_IMAGE = 64 * 1024  # bigger inline data images are more likely abuse than a logo


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    """Keep only safe link targets and local images (cid:, small data:image)."""
    if attr == "href" or attr == "cite":
        return value if value.strip().lower().startswith(_LINK_SCHEMES) else None
    if attr == "src":
        low = value.strip().lower()
        if low.startswith("cid:"):
            return value.strip()
        if low.startswith(_INLINE_IMAGE_PREFIXES) and len(value) <= _MAX_DATA_IMAGE:
            return value.strip()
        return None  # remote (or relative, which the browser would make remote): blocked
    return value


_HTML_CLEANER = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ALLOWED_ATTRS,
    attribute_filter=_attribute_filter,
    url_schemes={"http", "https", "mailto", "cid", "data"},
    link_rel="noopener noreferrer",
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)
_TEXT_CLEANER = nh3.Cleaner(tags=set(), clean_content_tags=_DROP_WITH_CONTENT, attributes={})
_BREAK_TAG_RE = re.compile(
    r"<\s*(?:br|/?p|/?div|/?tr|/?li|/?h[1-6]|/?table|/?blockquote|/?pre|hr)\b[^>]*>", re.I
)
_BLANK_LINES_RE = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")
_SPACES_RE = re.compile(r"[ \t\xa0]+")


def sanitize_html(html: str) -> str:
    """Sanitize mail HTML for display: no scripts, no styles, no remote content."""
    return _HTML_CLEANER.clean(html)


def html_to_text(html: str) -> str:
    """Readable plain text from HTML, for mails that have no text/plain part."""
    text = _BREAK_TAG_RE.sub("\n", html)
    text = html_lib.unescape(_TEXT_CLEANER.clean(text))
    text = _SPACES_RE.sub(" ", text)
    text = _BLANK_LINES_RE.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


# --------------------------------------------------------------------------- filenames

_FILENAME_DROP = set("\"'<>:*?|")  # quotes break headers; the rest break Windows downloads
_MAX_FILENAME = 150
_MAX_EXTENSION = 16


def safe_filename(name: str | None, fallback: str = "attachment") -> str:
    """A filename that is safe to store and offer for download, never empty."""
    if not name:
        return fallback
    # Drop CR/LF first: decode_header_value would turn them into spaces inside the name.
    name = decode_header_value(name.replace("\r", "").replace("\n", ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Category C covers control chars, CR/LF, and bidi overrides used to fake extensions.
    name = "".join(
        ch for ch in name if ch not in _FILENAME_DROP and unicodedata.category(ch)[0] != "C"
    )
    name = " ".join(name.split()).lstrip(". ").rstrip(". ")
    if len(name) > _MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and len(ext) <= _MAX_EXTENSION:
            name = stem[: _MAX_FILENAME - len(ext) - 1].rstrip(". ") + "." + ext
        else:
            name = name[:_MAX_FILENAME].rstrip(". ")
    return name or fallback


# --------------------------------------------------------------------------- parser

_HEADER_LINE_RE = re.compile(rb"[\x21-\x39\x3b-\x7e]*:|[ \t]|From ")

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


def _check_top_header_block(raw: bytes, limits: ParseLimits) -> None:
    """Reject a huge top-level header block from the bytes, before the parser sees it."""
    # Bounded loop: stops after max_headers lines or max_header_bytes, whichever first,
    # so a 5 MB header line or 100,000 headers cost well under a millisecond to refuse.
    pos, count, size = 0, 0, len(raw)
    while pos < size:
        if not _HEADER_LINE_RE.match(raw, pos):
            return  # blank line or body text: end of the header block
        if raw[pos] not in b" \t":
            count += 1
            if count > limits.max_headers:
                raise MailParseError(f"too many header fields (more than {limits.max_headers})")
        nl = raw.find(b"\n", pos, limits.max_header_bytes + 1)
        if nl < 0:
            if size > limits.max_header_bytes:
                raise MailParseError(f"header block larger than {limits.max_header_bytes} bytes")
            return
        pos = nl + 1


class _RawHeaderPolicy(Compat32):
    """compat32, but headers come back as the raw str (8-bit bytes as surrogate escapes)."""

    # compat32 would wrap 8-bit headers in a Header object that turns every non-ASCII byte
    # into U+FFFD; we want the bytes so decode_header_value can try UTF-8, then cp1252.
    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_POLICY = _RawHeaderPolicy()


class _CappedParser(BytesFeedParser):
    """compat32 feed parser that enforces ParseLimits while it parses."""

    # Hooks into FeedParser._new_message/_parse_headers (stable since Python 3.3): they run
    # before each part is parsed, which is the only place to stop 10,000-deep nesting
    # before the parser's nested generators hit RecursionError.

    def __init__(self, limits: ParseLimits, deadline: float) -> None:
        super().__init__(policy=_POLICY)
        self._limits = limits
        self._deadline = deadline
        self._part_count = 0

    def _new_message(self) -> None:
        limits = self._limits
        self._part_count += 1
        if self._part_count > limits.max_parts:
            raise MailParseError(f"too many MIME parts (more than {limits.max_parts})")
        if len(self._msgstack) > limits.max_mime_depth:
            raise MailParseError(f"MIME nesting deeper than {limits.max_mime_depth}")
        if time.monotonic() > self._deadline:
            raise MailParseError(f"parsing took longer than {limits.max_seconds} s")
        super()._new_message()

    def _parse_headers(self, lines: list[str]) -> None:
        limits = self._limits
        if sum(map(len, lines)) > limits.max_header_bytes:
            raise MailParseError(
                f"header block of part {self._part_count} larger than "
                f"{limits.max_header_bytes} bytes"
            )
        if sum(1 for line in lines if line[:1] not in " \t") > limits.max_headers:
            raise MailParseError(
                f"part {self._part_count} has more than {limits.max_headers} header fields"
            )
        super()._parse_headers(lines)
        for name in ("content-type", "content-disposition"):
            value = self._cur.get(name)
            if value and str(value).count(";") > limits.max_header_params:
                raise MailParseError(
                    f"{name} header of part {self._part_count} has more than "
                    f"{limits.max_header_params} parameters"
                )


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


class _Collector:
    """Walks the parsed tree and sorts parts into body text, HTML and attachments."""

    def __init__(self, deadline: float, limits: ParseLimits) -> None:
        self.deadline = deadline
        self.limits = limits
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
            raise MailParseError(f"parsing took longer than {self.limits.max_seconds} s")
        ctype = part.get_content_type()
        if part.is_multipart():
            self.note_defects(part)
            if depth > 0 and ctype.startswith("message/"):
                self.add_message_attachment(part, ctype)
                return
            for sub in part.get_payload():
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
        if charset and _codec_for(charset) is None and charset.lower() not in _NO_CHARSET:
            self.defect(f"unknown charset {charset!r}")
        text = _decode_bytes(content, charset)
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
        inner = part.get_payload()
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


_FEED_CHUNK = 1024 * 1024


def parse_mail(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMail:
    """Parse raw RFC 5322 bytes; raises MailParseError only for cap violations or non-mail."""
    raw = bytes(raw)
    if not raw.strip():
        raise MailParseError("empty message")
    deadline = time.monotonic() + limits.max_seconds
    _check_top_header_block(raw, limits)

    parser = _CappedParser(limits, deadline)
    try:
        # In slices: the feed parser decodes what it is given to one str and splits it into
        # lines at once, so a 25 MB message fed whole costs that much more memory.
        for start in range(0, len(raw), _FEED_CHUNK):
            parser.feed(raw[start : start + _FEED_CHUNK])
        msg = parser.close()
    except RecursionError:
        # Safety net only: _CappedParser stops deep nesting long before this.
        raise MailParseError("MIME structure nested too deeply") from None

    collector = _Collector(deadline, limits)
    if not msg.keys():
        collector.defect("message has no headers")
    collector.walk(msg, 0)

    body_html = sanitize_html(collector.html) if collector.html is not None else None
    if collector.plain:
        body_text = "\n".join(collector.plain)
    elif collector.html is not None:
        body_text = html_to_text(collector.html)
    else:
        body_text = ""

    # One pass over the headers instead of a linear msg.get() scan per field.
    raw_headers: dict[str, list[str]] = {}
    for name, value in msg.items():
        raw_headers.setdefault(name.lower(), []).append(value)

    def first(name: str) -> str | None:
        values = raw_headers.get(name)
        return values[0] if values else None

    headers = [(name, decode_header_value(value)) for name, value in msg.items()]
    otobo: dict[str, str] = {}
    for name, value in headers:
        if name.lower().startswith("x-otobo-"):
            otobo.setdefault(_otobo_key(name), value)  # first one wins, like OTOBO

    message_ids = _message_ids(first("message-id"))
    reply_ids = _message_ids(first("in-reply-to"))
    from_list = _address_list(raw_headers.get("from"))
    return ParsedMail(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=reply_ids[0] if reply_ids else None,
        references=_message_ids(first("references")),
        subject=decode_header_value(first("subject")),
        from_addr=from_list[0] if from_list else "",
        from_display=_display(raw_headers.get("from")),
        to=_address_list(raw_headers.get("to")),
        cc=_address_list(raw_headers.get("cc")),
        resent_to=_address_list(raw_headers.get("resent-to")),
        envelope_to=_address_list(raw_headers.get("envelope-to")),
        delivered_to=_address_list(raw_headers.get("delivered-to")),
        x_original_to=_address_list(raw_headers.get("x-original-to")),
        to_display=_display(raw_headers.get("to")),
        cc_display=_display(raw_headers.get("cc")),
        date=_parse_date(first("date")),
        otobo_headers=otobo,
        body_text=body_text.replace("\x00", ""),  # NUL breaks PostgreSQL text columns
        body_html=body_html,
        attachments=collector.attachments,
        defects=collector.defects,
        headers=headers,
    )
