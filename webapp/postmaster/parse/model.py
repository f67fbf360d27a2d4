"""What parsing produces (ParsedMail, ParsedAttachment), its limits and its one error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


class MailParseError(Exception):
    """Mail rejected: a parse limit was exceeded or the input is not mail at all."""


def timeout_message(seconds: float) -> str:
    """The reason given for mail whose parsing hit the time limit."""
    return f"parsing took longer than {seconds:g} s; kept as failed mail"


@dataclass(frozen=True)
class ParseLimits:
    """Caps that keep one hostile mail from eating the fetcher's memory or time."""

    max_mime_depth: int = 20
    max_parts: int = 500
    max_header_bytes: int = 256 * 1024  # total header block per part
    max_headers: int = 2000  # header fields per part
    # Checked between parts, and enforced by killing the parse (parse/worker.py).
    max_seconds: float = 10.0
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
