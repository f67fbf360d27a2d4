"""Readable From, Subject and Date values from raw (maybe RFC 2047 encoded) header values."""

from __future__ import annotations

from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from typing import NamedTuple


class Envelope(NamedTuple):
    """What the admin is told of a message left on the server, read from its headers only."""

    sender: str
    subject: str
    sent_at: datetime | None  # the Date header, naive UTC; None when missing or unreadable


def naive_utc(value: datetime | str | bytes | None) -> datetime | None:
    """A Date header (parsed or raw) as naive UTC, as the database stores times; None if bad."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        try:
            value = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def decode_header_value(value: bytes | str | None) -> str:
    """The header value as text; encoded words decoded where they can be."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        return str(make_header(decode_header(value))).strip()
    except Exception:  # undecodable encoded-words: show them as they are
        return value.strip()
