"""Safe download responses for mail content (attachments, raw sources)."""

from __future__ import annotations

import re
from urllib.parse import quote

from flask import Response

# Served with their own type; everything else (HTML, SVG, XML, JS, unknown) becomes
# application/octet-stream so no browser ever renders mail content on our origin.
SAFE_CONTENT_TYPES = {
    "application/pdf",
    "application/zip",
    "application/gzip",
    "application/x-7z-compressed",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/rtf",
    "audio/mpeg",
    "image/bmp",
    "image/gif",
    "image/jpeg",
    "image/png",
    "image/tiff",
    "image/webp",
    "text/calendar",
    "text/csv",
    "text/plain",
    "video/mp4",
}
SAFE_CONTENT_TYPE_PREFIXES = (
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
)
_ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9._() -]+")
# Stricter than the app's policy: a download never runs or embeds anything.
DOWNLOAD_CSP = "default-src 'none'; sandbox"


def safe_content_type(content_type: str | None) -> str:
    """The content type to send for stored mail content."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype in SAFE_CONTENT_TYPES or ctype.startswith(SAFE_CONTENT_TYPE_PREFIXES):
        return ctype
    return "application/octet-stream"


def content_disposition(filename: str, fallback: str = "download") -> str:
    """attachment with an ASCII filename and the real one as RFC 5987 filename*."""
    ascii_name = _ASCII_UNSAFE.sub("_", filename).strip(" ._") or fallback
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def download_response(data: bytes, filename: str, content_type: str | None = None) -> Response:
    """Always a download, never rendered: attachment, nosniff, no risky content type."""
    response = Response(data, content_type=safe_content_type(content_type))
    response.headers["Content-Disposition"] = content_disposition(filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = DOWNLOAD_CSP
    response.headers["Cache-Control"] = "private, no-store"
    return response
