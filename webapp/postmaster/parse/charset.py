"""Charset labels from real mail to Python codecs, and decoding bytes that never raises."""

from __future__ import annotations

import codecs
from functools import lru_cache

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
NO_CHARSET = {"", "unknown", "unknown-8bit", "x-unknown", "x-user-defined", "default", "none"}
# Codecs Python accepts as text encodings but which are not charsets of mail text.
_BLOCKED_CODECS = {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "mbcs"}


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """Map a charset label from the mail to a Python codec name, None if unknown/unusable."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    if name in NO_CHARSET:
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


def decode_8bit(data: bytes) -> str:
    """Decode unlabelled bytes: UTF-8 if valid, else cp1252 (the usual Western default)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode bytes in the labelled charset, never raising."""
    codec = codec_for(charset)
    if codec is None:
        return decode_8bit(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        pass
    except (LookupError, ValueError):  # broken codec state; treat as unlabelled
        return decode_8bit(data)
    if codec in ("utf-8", "ascii"):
        # Labelled UTF-8/ASCII but isn't: usually a Windows client writing cp1252.
        return decode_8bit(data)
    return data.decode(codec, "replace")
