"""Hostile-server bounds: no single line, literal or response may grow without limit.

The protocol adapters (imap_adapter, pop3_adapter) enforce these while reading; a breach
raises LimitExceeded, which errors.translate turns into a MailProtocolError.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_LINE = 1024 * 1024
MAX_RESPONSE = 64 * 1024 * 1024
# Slack on top of a message's announced size: servers' sizes can be a little off.
_SLACK = 1024 * 1024


class LimitExceeded(Exception):
    """Raised inside the protocol readers when a server exceeds a size bound."""


def check_line(line: bytes, max_line: int) -> None:
    """Refuse a line read with readline(max_line + 1) that hit the limit."""
    if len(line) > max_line:
        raise LimitExceeded(f"the server sent a line longer than {max_line} bytes")


def check_literal(size: int, max_literal: int) -> None:
    """Refuse a literal announced larger than allowed, before reading it."""
    if size > max_literal:
        raise LimitExceeded(
            f"the server announced {size} bytes, more than the allowed {max_literal}"
        )


def check_remaining(remaining: int, max_response: int) -> None:
    """Refuse a response once the bytes left for the current command are used up."""
    if remaining < 0:
        raise LimitExceeded(f"the server sent more than {max_response} bytes to one command")


def batch_limits(sizes: Sequence[int], max_message_size: int) -> tuple[int, int]:
    """(max literal, max response) for one IMAP FETCH of messages of these sizes."""
    # Servers' RFC822.SIZE can be a little off; a literal far beyond it is hostile.
    largest, total = max(sizes), sum(sizes)
    max_literal = min(max_message_size, 2 * largest + _SLACK)
    max_response = MAX_RESPONSE + min(max_message_size * len(sizes), 2 * total + _SLACK)
    return max_literal, max_response


def message_limit(size: int, max_message_size: int) -> int:
    """Max bytes of the answer to one POP3 RETR of a message of this size."""
    return min(max_message_size, 2 * size + _SLACK)
