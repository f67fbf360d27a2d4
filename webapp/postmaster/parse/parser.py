"""parse_mail: raw bytes through a capped compat32 feed parser into a ParsedMail.

See the package docstring for why compat32 and our own header decoding."""

from __future__ import annotations

import re
import time
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import Compat32

from .headers import (
    address_list,
    decode_header_value,
    display_text,
    message_id_list,
    otobo_key,
    parse_date,
)
from .html_body import html_to_text, sanitize_html
from .model import DEFAULT_LIMITS, MailParseError, ParsedMail, ParseLimits, timeout_message
from .parts import Collector
from .spans import LARGE_RUN, Skeleton, cut, restore

_HEADER_LINE_RE = re.compile(rb"[\x21-\x39\x3b-\x7e]*:|[ \t]|From ")


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

    # FeedParser's own attributes, which typeshed does not declare.
    _msgstack: list[Message]  # the parts being parsed, outermost first
    _cur: Message  # the part being parsed

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
            raise MailParseError(timeout_message(limits.max_seconds))
        super()._new_message()  # type: ignore[misc]  # FeedParser private hook, see above

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
        super()._parse_headers(lines)  # type: ignore[misc]  # FeedParser private hook
        for name in ("content-type", "content-disposition"):
            value = self._cur.get(name)
            if value and str(value).count(";") > limits.max_header_params:
                raise MailParseError(
                    f"{name} header of part {self._part_count} has more than "
                    f"{limits.max_header_params} parameters"
                )


_FEED_CHUNK = 1024 * 1024


def parse_mail(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMail:
    """Parse raw RFC 5322 bytes; raises MailParseError only for cap violations or non-mail."""
    raw = bytes(raw)
    if not raw or raw.isspace():  # not raw.strip(): that copies a 25 MB message
        raise MailParseError("empty message")
    deadline = time.monotonic() + limits.max_seconds
    _check_top_header_block(raw, limits)
    # Large base64 bodies bypass the feed parser (spans.py); small mail is parsed as it is.
    skeleton = cut(raw) if len(raw) > LARGE_RUN else Skeleton(raw, raw)
    msg = _feed(skeleton.data, _CappedParser(limits, deadline))
    restore(msg, skeleton)

    collector = Collector(deadline, limits, skeleton)
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
    return _parsed_mail(msg, body_text, body_html, collector)


def _feed(raw: bytes, parser: _CappedParser) -> Message:
    """The parsed message tree."""
    try:
        # In slices: the feed parser decodes what it is given to one str and splits it into
        # lines at once, so a 25 MB message fed whole costs that much more memory.
        for start in range(0, len(raw), _FEED_CHUNK):
            parser.feed(raw[start : start + _FEED_CHUNK])
        return parser.close()
    except RecursionError:
        # Safety net only: _CappedParser stops deep nesting long before this.
        raise MailParseError("MIME structure nested too deeply") from None


def _parsed_mail(
    msg: Message, body_text: str, body_html: str | None, collector: Collector
) -> ParsedMail:
    """The ParsedMail of a parsed message tree: its headers decoded, with the body given."""
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
            otobo.setdefault(otobo_key(name), value)  # first one wins, like OTOBO

    message_ids = message_id_list(first("message-id"))
    reply_ids = message_id_list(first("in-reply-to"))
    from_list = address_list(raw_headers.get("from"))
    return ParsedMail(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=reply_ids[0] if reply_ids else None,
        references=message_id_list(first("references")),
        subject=decode_header_value(first("subject")),
        from_addr=from_list[0] if from_list else "",
        from_display=display_text(raw_headers.get("from")),
        to=address_list(raw_headers.get("to")),
        cc=address_list(raw_headers.get("cc")),
        resent_to=address_list(raw_headers.get("resent-to")),
        envelope_to=address_list(raw_headers.get("envelope-to")),
        delivered_to=address_list(raw_headers.get("delivered-to")),
        x_original_to=address_list(raw_headers.get("x-original-to")),
        to_display=display_text(raw_headers.get("to")),
        cc_display=display_text(raw_headers.get("cc")),
        date=parse_date(first("date")),
        otobo_headers=otobo,
        body_text=body_text.replace("\x00", ""),  # NUL breaks PostgreSQL text columns
        body_html=body_html,
        attachments=collector.attachments,
        defects=collector.defects,
        headers=headers,
    )
