"""PostMaster filter operations shared by the screen and the CLI: one validation for both."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from ..account_types import VALIDITIES
from ..extensions import db
from ..models import Article, PostmasterFilter, Queue, RawMail, TicketPriority, TicketState
from ..postmaster.filters import (
    MAX_ACTIONS,
    MAX_CONDITIONS,
    CompiledFilter,
    Condition,
    FilterReport,
    actions_from_json,
    canonical_match_header,
    canonical_set_header,
    conditions_from_json,
    explain,
    pattern_error,
)
from ..postmaster.parse import MailParseError, parse_mail
from ..postmaster.tickets import SENDER_TYPES
from ..validation import ValidationError

EXPORT_FORMAT = "postmaster-filters"
EXPORT_VERSION = 1
_FLAGS = {"yes", "no", "true", "false", "1", "0", "on", "off"}
_FLAG_HEADERS = {
    "X-OTOBO-Ignore",
    "X-OTOBO-IsVisibleForCustomer",
    "X-OTOBO-FollowUp-IsVisibleForCustomer",
}
_SENDER_HEADERS = {"X-OTOBO-SenderType", "X-OTOBO-FollowUp-SenderType"}


@dataclass
class FilterInput:
    """A filter as typed on the screen, given on the command line or read from an export."""

    name: str
    conditions: list[Condition] = field(default_factory=list)
    actions: list[tuple[str, str]] = field(default_factory=list)
    stop_after_match: bool = False
    comment: str | None = None
    validity: str = "valid"


def _name_error(name: str, existing: PostmasterFilter | None) -> str | None:
    name = (name or "").strip()
    if not name:
        return "Enter the filter name."
    if len(name) > 200 or any(ord(c) < 32 for c in name):
        return "The name is too long or contains control characters."
    other = select(PostmasterFilter.id).where(func.lower(PostmasterFilter.name) == name.lower())
    if existing is not None:
        other = other.where(PostmasterFilter.id != existing.id)
    if db.session.scalar(other) is not None:
        return "A filter with this name already exists."
    return None


def _condition_errors(conditions: list[Condition]) -> list[str]:
    if not conditions:
        return ["Add at least one match condition."]
    if len(conditions) > MAX_CONDITIONS:
        return [f"At most {MAX_CONDITIONS} match conditions."]
    errors = []
    for i, c in enumerate(conditions, 1):
        if canonical_match_header(c.header) is None:
            errors.append(
                f"Match {i}: {c.header!r} is not a header a filter can match "
                "(From, To, Cc, Reply-To, Subject, Message-ID, X-Loop, Auto-Submitted, "
                "Precedence, Body or any X-... header)."
            )
        elif error := pattern_error(c.pattern):
            errors.append(f"Match {i} ({c.header}): {error}")
    return errors


def _names(model: Any) -> set[str]:
    return set(db.session.scalars(select(model.name)))


def _value_error(header: str, value: str) -> str | None:
    if not value:
        return "enter a value."
    if len(value) > 200 or any(ord(c) < 32 for c in value):
        return "the value is too long or contains control characters."
    if header in _FLAG_HEADERS and value.lower() not in _FLAGS:
        return "use yes or no."
    if header in _SENDER_HEADERS and value.lower() not in SENDER_TYPES:
        return "use one of: " + ", ".join(SENDER_TYPES) + "."
    known = {
        "X-OTOBO-Queue": (Queue, "queue"),
        "X-OTOBO-State": (TicketState, "ticket state"),
        "X-OTOBO-FollowUp-State": (TicketState, "ticket state"),
        "X-OTOBO-Priority": (TicketPriority, "priority"),
        "X-OTOBO-FollowUp-Priority": (TicketPriority, "priority"),
    }.get(header)
    if known is not None and value not in _names(known[0]):
        return f"there is no {known[1]} named {value!r}."
    return None


def _action_errors(actions: list[tuple[str, str]]) -> list[str]:
    if not actions:
        return ["Add at least one X-OTOBO header to set."]
    if len(actions) > MAX_ACTIONS:
        return [f"At most {MAX_ACTIONS} set actions."]
    errors, seen = [], set()
    for i, (header, value) in enumerate(actions, 1):
        canonical = canonical_set_header(header)
        if canonical is None:
            errors.append(f"Set {i}: {header!r} is not an X-OTOBO header a filter can set.")
        elif canonical in seen:
            errors.append(f"Set {i}: {canonical} is set twice.")
        elif error := _value_error(canonical, value):
            errors.append(f"Set {i} ({canonical}): {error}")
        seen.add(canonical)
    return errors


def normalized(data: FilterInput) -> FilterInput:
    """Trimmed input with canonical header spellings (call after validate_filter)."""
    return FilterInput(
        name=data.name.strip(),
        conditions=[
            Condition(canonical_match_header(c.header) or c.header.strip(), c.pattern, c.negate)
            for c in data.conditions
        ],
        actions=[(canonical_set_header(h) or h.strip(), v.strip()) for h, v in data.actions],
        stop_after_match=data.stop_after_match,
        comment=(data.comment or "").strip() or None,
        validity=data.validity,
    )


def validate_filter(data: FilterInput, existing: PostmasterFilter | None = None) -> None:
    """Raise ValidationError (field -> message) for bad filter input."""
    errors: dict[str, str] = {}
    if name_error := _name_error(data.name, existing):
        errors["name"] = name_error
    if condition_errors := _condition_errors(data.conditions):
        errors["conditions"] = " ".join(condition_errors)
    stripped = [(h, v.strip()) for h, v in data.actions]
    if action_errors := _action_errors(stripped):
        errors["actions"] = " ".join(action_errors)
    if data.validity not in VALIDITIES:
        errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."
    if data.comment and len(data.comment) > 2000:
        errors["comment"] = "The comment is too long (at most 2000 characters)."
    if errors:
        raise ValidationError(errors)


def _store(row: PostmasterFilter, data: FilterInput, actor: str | None) -> None:
    data = normalized(data)
    row.name = data.name
    row.stop_after_match = data.stop_after_match
    row.conditions = json.dumps(
        [{"header": c.header, "pattern": c.pattern, "negate": c.negate} for c in data.conditions]
    )
    row.actions = json.dumps([{"header": h, "value": v} for h, v in data.actions])
    row.comment = data.comment
    row.validity = data.validity
    row.mark_changed(actor)


def create_filter(data: FilterInput, actor: str | None) -> PostmasterFilter:
    """Add a filter; raises ValidationError."""
    validate_filter(data)
    row = PostmasterFilter(created_by=actor)
    _store(row, data, actor)
    db.session.add(row)
    db.session.commit()
    return row


def update_filter(row: PostmasterFilter, data: FilterInput, actor: str | None) -> None:
    """Change a filter; raises ValidationError."""
    validate_filter(data, row)
    _store(row, data, actor)
    db.session.commit()


def delete_filter(row: PostmasterFilter) -> None:
    db.session.delete(row)
    db.session.commit()


def list_filters() -> list[PostmasterFilter]:
    """Every filter in the order they run (by name)."""
    return list(db.session.scalars(select(PostmasterFilter).order_by(PostmasterFilter.name)))


def filter_by_name(name: str) -> PostmasterFilter | None:
    return db.session.scalar(select(PostmasterFilter).where(PostmasterFilter.name == name))


def input_from_filter(row: PostmasterFilter) -> FilterInput:
    """The stored filter as input (to edit, test or export it)."""
    return FilterInput(
        name=row.name,
        conditions=conditions_from_json(row.conditions),
        actions=actions_from_json(row.actions),
        stop_after_match=row.stop_after_match,
        comment=row.comment,
        validity=row.validity,
    )


def filter_dict(data: FilterInput) -> dict[str, Any]:
    """One filter in the export / `list --json` shape."""
    return {
        "name": data.name,
        "stop_after_match": data.stop_after_match,
        "match": [
            {"header": c.header, "pattern": c.pattern, "negate": c.negate} for c in data.conditions
        ],
        "set": [{"header": h, "value": v} for h, v in data.actions],
        "comment": data.comment,
        "validity": data.validity,
    }


def export_filters() -> dict[str, Any]:
    """All filters as one JSON document (keep it in version control; import restores it)."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "filters": [filter_dict(input_from_filter(row)) for row in list_filters()],
    }


def _input_from_dict(item: Any) -> FilterInput:
    if not isinstance(item, dict):
        raise ValueError("each filter must be an object")
    try:
        return FilterInput(
            name=str(item["name"]),
            conditions=[
                Condition(str(c["header"]), str(c["pattern"]), bool(c.get("negate", False)))
                for c in item.get("match") or []
            ],
            actions=[(str(a["header"]), str(a["value"])) for a in item.get("set") or []],
            stop_after_match=bool(item.get("stop_after_match", False)),
            comment=item.get("comment"),
            validity=str(item.get("validity") or "valid"),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"missing or malformed field {exc}") from None


def import_filters(text: str | bytes, actor: str | None) -> tuple[int, int]:
    """Create or update (by name) every filter of an export; all or nothing.

    Returns (created, updated). Filters not in the file stay as they are.
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValidationError({"file": f"Not a JSON file: {exc}."}) from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValidationError({"file": "Not a PostMaster filters export."})
    items = doc.get("filters")
    if not isinstance(items, list):
        raise ValidationError({"file": "The export has no list of filters."})
    inputs: list[FilterInput] = []
    for i, item in enumerate(items, 1):
        try:
            data = _input_from_dict(item)
        except ValueError as exc:
            raise ValidationError({"file": f"Filter {i}: {exc}."}) from None
        inputs.append(data)
    names = [d.name.strip().lower() for d in inputs]
    if len(set(names)) != len(names):
        raise ValidationError({"file": "A filter name appears twice in the file."})
    created = updated = 0
    for data in inputs:
        row = filter_by_name(data.name.strip())
        try:
            validate_filter(data, row)
        except ValidationError as exc:
            db.session.rollback()
            message = "; ".join(exc.errors.values())
            raise ValidationError({"file": f"Filter {data.name!r}: {message}"}) from None
        if row is None:
            row = PostmasterFilter(created_by=actor)
            db.session.add(row)
            created += 1
        else:
            updated += 1
        _store(row, data, actor)
        db.session.flush()
    db.session.commit()
    return created, updated


def article_source(article_id: int) -> bytes:
    """The raw mail of a stored article (the Test button's "pick a stored article")."""
    raw = db.session.scalar(
        select(RawMail.content)
        .join(Article, Article.raw_mail_id == RawMail.id)
        .where(Article.id == article_id)
    )
    if raw is None:
        raise ValidationError({"article_id": f"There is no stored mail for article {article_id}."})
    return bytes(raw)


def try_filter(data: FilterInput, raw: bytes) -> FilterReport:
    """Which conditions of the (unsaved) filter match the raw message and what it would
    set; stores nothing. Raises ValidationError for bad patterns or an unreadable mail."""
    errors = _condition_errors(data.conditions)
    if errors:
        raise ValidationError({"conditions": " ".join(errors)})
    if not raw.strip():
        raise ValidationError({"message": "Paste a raw message (headers and body)."})
    try:
        mail = parse_mail(raw)
    except MailParseError as exc:
        raise ValidationError({"message": f"Cannot parse the message: {exc}."}) from None
    data = normalized(data)
    compiled = CompiledFilter(
        data.name or "(unsaved)",
        data.stop_after_match,
        tuple(data.conditions),
        tuple(data.actions),
    )
    return explain(compiled, mail)


def report_dict(report: FilterReport) -> dict[str, Any]:
    """A test report as JSON (`postmaster-filter test --json`)."""
    return {
        "filter": report.name,
        "matched": report.matched,
        "conditions": [
            {
                "header": r.condition.header,
                "pattern": r.condition.pattern,
                "negate": r.condition.negate,
                "matches": r.holds,
            }
            for r in report.conditions
        ],
        "would_set": report.would_set,
    }
