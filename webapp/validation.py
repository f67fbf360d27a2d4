"""Facts about input that several features check: one definition each.

`ValidationError` is what every service raises for bad input; host names, domains and GUIDs
are checked here so the mail account form, the OAuth2 profile form and the id_token check
cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class ValidationError(ValueError):
    """Bad input: `errors` maps a field name to a message for the admin."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def is_valid_host(host: str) -> bool:
    """A DNS host name or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return len(host) <= 253 and bool(_HOSTNAME.match(host)) and not host.replace(".", "").isdigit()


def is_domain(value: str) -> bool:
    """A DNS name with at least two labels (contoso.com), as a tenant may be named."""
    return len(value) <= 253 and bool(_DOMAIN.match(value))


def is_guid(value: str) -> bool:
    """A GUID in its usual 8-4-4-4-12 hex form (tenant and client ids)."""
    return bool(_GUID.match(value))


def whole_number_message(minimum: int, maximum: int) -> str:
    """The one wording for a number field's range, in its help text and its error."""
    return f"Enter a whole number from {minimum} to {maximum}."


def parse_whole_number(value: object, minimum: int, maximum: int) -> int | None:
    """A whole number typed in a form or given to the CLI; None when empty.

    Raises ValueError(whole_number_message) for anything else or a number out of range."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    if len(text) > 18 or not re.fullmatch(r"[0-9]+", text) or not minimum <= int(text) <= maximum:
        raise ValueError(whole_number_message(minimum, maximum))
    return int(text)
