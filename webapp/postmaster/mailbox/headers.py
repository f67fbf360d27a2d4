"""Readable From and Subject values from raw (maybe RFC 2047 encoded) header values."""

from __future__ import annotations

from email.header import decode_header, make_header


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
