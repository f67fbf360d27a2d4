"""Queue operations shared by the screen and the CLI. Queues are never hard-deleted: mail
accounts, email addresses and tickets refer to them, so they are set invalid instead."""

from __future__ import annotations

from ..account_types import VALIDITIES
from ..extensions import db
from ..models import Queue
from ..settings.store import SETTINGS, get_setting, set_setting
from ..validation import ValidationError


def all_queues() -> list[Queue]:
    """Every queue by name."""
    return db.session.query(Queue).order_by(Queue.name).all()


def validate_queue(
    name: str, validity: str, comment: str | None, queue: Queue | None = None
) -> dict[str, str]:
    """{field: message} for bad queue input."""
    errors: dict[str, str] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "Enter the queue name."
    elif len(name) > 200 or any(ord(c) < 32 for c in name):
        errors["name"] = "The name is too long or contains control characters."
    else:
        other = db.session.query(Queue).filter(db.func.lower(Queue.name) == name.lower())
        if queue is not None:
            other = other.filter(Queue.id != queue.id)
        if other.first() is not None:
            errors["name"] = "A queue with this name already exists."
    if validity not in VALIDITIES:
        errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."
    elif (
        queue is not None
        and validity != "valid"
        and queue.name == get_setting("PostmasterDefaultQueue")
    ):
        errors["validity"] = "This is the default queue (Settings); it must stay valid."
    if comment and len(comment) > 2000:
        errors["comment"] = "The comment is too long (at most 2000 characters)."
    return errors


def save_queue(
    queue: Queue | None, name: str, validity: str, comment: str | None, actor: str | None
) -> Queue:
    """Add (queue None) or change a queue; raises ValidationError."""
    errors = validate_queue(name, validity, comment, queue)
    if errors:
        raise ValidationError(errors)
    if queue is None:
        queue = Queue(created_by=actor)
        db.session.add(queue)
    elif queue.name != name.strip():
        if get_setting("PostmasterDefaultQueue") == queue.name:
            set_setting(SETTINGS["PostmasterDefaultQueue"].key, name.strip())
    queue.name = name.strip()
    queue.validity = validity
    queue.comment = (comment or "").strip() or None
    queue.mark_changed(actor)
    db.session.commit()
    return queue
