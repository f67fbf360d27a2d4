"""Paged lists (tickets of a queue, failed mail): which page the request asks for."""

from __future__ import annotations

from flask import request


def page_number() -> int:
    """The ?page= argument, 1 when missing or nonsense."""
    return max(request.args.get("page", 1, type=int) or 1, 1)
