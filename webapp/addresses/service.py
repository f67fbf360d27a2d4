"""Email address operations shared by the screen and the CLI: an address linked to a queue,
what dispatching by To: field looks up. Set invalid instead of deleting."""

from __future__ import annotations

import re

from ..account_types import VALIDITIES
from ..extensions import db
from ..models import Queue, SystemAddress
from ..validation import ValidationError

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS_RE = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})+$")


def all_addresses() -> list[SystemAddress]:
    """Every email address, alphabetically."""
    return db.session.query(SystemAddress).order_by(SystemAddress.address).all()


def queue_named(name: str) -> Queue | None:
    """The queue of this name (surrounding blanks ignored), or None."""
    return db.session.query(Queue).filter_by(name=name.strip()).first()


def normalize_address(address: str) -> str:
    """The stored form of an address: trimmed, lower case."""
    return (address or "").strip().lower()


def validate_address(
    address: str,
    queue_id: int | str | None,
    validity: str,
    display_name: str | None = None,
    existing: SystemAddress | None = None,
) -> dict[str, str]:
    """{field: message} for bad email address input."""
    errors: dict[str, str] = {}
    address = normalize_address(address)
    if not address:
        errors["address"] = "Enter the email address."
    elif len(address) > 320 or not ADDRESS_RE.match(address):
        errors["address"] = "Enter a valid email address like support@example.com."
    else:
        other = db.session.query(SystemAddress).filter_by(address=address)
        if existing is not None:
            other = other.filter(SystemAddress.id != existing.id)
        if other.first() is not None:
            errors["address"] = "This email address already exists."
    queue = _queue(queue_id)
    if queue is None:
        errors["queue_id"] = "Choose the queue for this address."
    elif queue.validity != "valid" and (existing is None or existing.queue_id != queue.id):
        errors["queue_id"] = "This queue is not valid."
    if validity not in VALIDITIES:
        errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."
    if display_name and (len(display_name) > 200 or any(ord(c) < 32 for c in display_name)):
        errors["display_name"] = "The name is too long or contains control characters."
    return errors


def _queue(queue_id: int | str | None) -> Queue | None:
    try:
        return db.session.get(Queue, int(queue_id)) if queue_id not in (None, "") else None
    except (TypeError, ValueError):
        return None


def save_address(
    existing: SystemAddress | None,
    address: str,
    queue_id: int | str | None,
    validity: str,
    display_name: str | None,
    comment: str | None,
    actor: str | None,
) -> SystemAddress:
    """Add (existing None) or change an address; raises ValidationError."""
    errors = validate_address(address, queue_id, validity, display_name, existing)
    if errors:
        raise ValidationError(errors)
    assert queue_id is not None  # validate_address reports a missing queue
    row = existing
    if row is None:
        row = SystemAddress(created_by=actor)
        db.session.add(row)
    row.address = normalize_address(address)
    row.queue_id = int(queue_id)
    row.validity = validity
    row.display_name = (display_name or "").strip() or None
    row.comment = (comment or "").strip() or None
    row.mark_changed(actor)
    db.session.commit()
    return row
