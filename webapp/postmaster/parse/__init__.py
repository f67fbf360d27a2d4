"""Turn raw mail bytes into a ParsedMail: decoded headers, body text, safe HTML, attachments.

No Flask and no database in here, so the fetcher, the tests and the benchmark can all use it.

Parser choice, measured on CPython 3.11.7 with tests/mailgen.realistic_corpus (median 10.5 KB):
  * BytesParser(policy=email.policy.default), only reading subject/from/to/date/message-id
    and the body: ~2.4 ms per mail, most of it in the RFC 5322 header value parser.
  * BytesFeedParser(policy=compat32) alone: ~0.29 ms per mail.
  * parse_mail() (compat32 + our own header decoding, addresses, nh3 sanitizing):
    ~0.56 ms per mail, ~1,750 mails/s; a 14.5 KB multipart/alternative takes ~0.74 ms.
So we parse with compat32 (headers stay raw strings, 8-bit bytes kept as surrogate escapes)
and decode encoded-words, charsets and 8-bit headers ourselves, which also lets us be more
forgiving than the stdlib with broken encoded-words and mislabelled charsets.

Modules: model (ParsedMail, limits, the error), charset, headers, html_body, filenames,
parts (MIME parts into body and attachments), parser (parse_mail), worker (parse_with_limit:
parse_mail in a child process that is killed at the time limit; what the fetcher uses).
"""

from __future__ import annotations

from .filenames import safe_filename
from .headers import decode_header_value
from .html_body import html_to_text, sanitize_html
from .model import DEFAULT_LIMITS, MailParseError, ParsedAttachment, ParsedMail, ParseLimits
from .parser import parse_mail
from .worker import ParserDied, ParseTimeout, parse_many_with_limit, parse_with_limit, prestart

__all__ = [
    "DEFAULT_LIMITS",
    "MailParseError",
    "ParseLimits",
    "ParsedAttachment",
    "ParsedMail",
    "ParserDied",
    "ParseTimeout",
    "decode_header_value",
    "html_to_text",
    "parse_mail",
    "parse_many_with_limit",
    "parse_with_limit",
    "prestart",
    "safe_filename",
    "sanitize_html",
]
