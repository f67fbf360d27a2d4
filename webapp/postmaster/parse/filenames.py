"""Attachment filenames that are safe to store and to offer for download."""

from __future__ import annotations

import unicodedata

from .headers import decode_header_value

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
