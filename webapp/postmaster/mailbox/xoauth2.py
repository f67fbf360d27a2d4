"""The SASL XOAUTH2 mechanism: the initial response and the servers' error challenges."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json


def xoauth2_string(user: str, token: str) -> str:
    """The XOAUTH2 initial client response (before base64)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def decode_oauth_challenge(data: bytes) -> str:
    """Turn a SASL XOAUTH2 error challenge (JSON, maybe base64) into readable text."""
    raw = data.strip()
    with contextlib.suppress(binascii.Error, ValueError):
        raw = base64.b64decode(raw, validate=True)
    try:
        status = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:200]
    if isinstance(status, dict):
        return ", ".join(f"{k}={v}" for k, v in status.items())[:200]
    return str(status)[:200]
