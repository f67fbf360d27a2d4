"""The pipeline's context: everything it looks up, loaded once per fetch run.

dispatch.py and followup.py read it; pipeline.py builds it (build_context) and passes it on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select

from ..extensions import db
from ..models import MailAccount, Queue, SystemAddress, TicketPriority, TicketState
from ..seed import DEFAULT_PRIORITY, DEFAULT_STATE, FOLLOW_UP_STATE
from ..settings.store import get_setting
from .filters import FilterSet, load_filters
from .tickets import SYSTEM_ID


class PipelineError(Exception):
    """The pipeline cannot run at all (e.g. no queue exists)."""


@dataclass
class PipelineContext:
    """Everything the pipeline looks up, loaded once per fetch run (not per message)."""

    account: MailAccount | None
    account_id: int | None
    # Copied from the account: after a batch commit the ORM object is expired, and reading
    # it again would cost one query per message.
    trusted: bool
    dispatch: str
    account_queue_id: int | None
    default_queue_id: int
    default_queue_label: str
    address_queues: dict[str, int]
    queues_by_name: dict[str, int]
    queue_names: dict[int, str]
    states_by_name: dict[str, int]
    state_names: dict[int, str]
    state_types: dict[int, str]
    priorities_by_name: dict[str, int]
    new_state_id: int
    new_state_name: str
    follow_up_state_id: int
    default_priority_id: int
    default_priority_name: str
    ticket_hook: str
    ticket_number_re: re.Pattern[str]
    # Said once per run: batches.fetch_folder writes them to the run's fetch log.
    warnings: list[str] = field(default_factory=list)
    filters: FilterSet = field(default_factory=FilterSet)  # PostMaster filters, compiled


def _default_queue(valid: dict[str, int], warnings: list[str]) -> tuple[int, str]:
    """The queue of the PostmasterDefaultQueue setting; Raw (or any queue) if it is gone."""
    name = get_setting("PostmasterDefaultQueue")
    if name in valid:
        return valid[name], name
    fallback = "Raw" if "Raw" in valid else next(iter(sorted(valid)), None)
    if fallback is None:
        row = db.session.execute(select(Queue.id, Queue.name).order_by(Queue.id)).first()
        if row is None:
            raise PipelineError("there is no queue to put mail into")
        queue_id, fallback = row
        warnings.append(f"no valid queue at all, using invalid queue {fallback}")
        return queue_id, fallback
    warnings.append(f"default queue {name!r} is missing or invalid, using {fallback}")
    return valid[fallback], fallback


def build_context(account: MailAccount | None) -> PipelineContext:
    """Load the caches for one fetch run of the account (None: untrusted, by To: field)."""
    warnings: list[str] = []
    valid_queues = load_valid_queues()
    queue_names = {qid: name for name, qid in valid_queues.items()}
    default_id, default_name = _default_queue(valid_queues, warnings)
    queue_names.setdefault(default_id, default_name)
    states = {s.name: (s.id, s.type_name) for s in db.session.scalars(select(TicketState))}
    priorities = {p.name: p.id for p in db.session.scalars(select(TicketPriority))}
    for needed in (DEFAULT_STATE, FOLLOW_UP_STATE):
        if needed not in states:
            raise PipelineError(f"ticket state {needed!r} is missing (run setup)")
    if DEFAULT_PRIORITY not in priorities:
        raise PipelineError(f"ticket priority {DEFAULT_PRIORITY!r} is missing (run setup)")
    account_queue_id = account.queue_id if account is not None else None
    if account_queue_id not in queue_names:
        account_queue_id = None  # deleted or invalid: dispatch_queue falls back and logs
    hook = get_setting("TicketHook")
    return PipelineContext(
        account=account,
        account_id=account.id if account is not None else None,
        trusted=bool(account is not None and account.trusted),
        dispatch=account.dispatch if account is not None else "to",
        account_queue_id=account_queue_id,
        default_queue_id=default_id,
        default_queue_label=f"default queue {default_name}",
        address_queues=load_address_queues(),
        queues_by_name=valid_queues,
        queue_names=queue_names,
        states_by_name={name: sid for name, (sid, _t) in states.items()},
        state_names={sid: name for name, (sid, _t) in states.items()},
        state_types={sid: type_name for sid, type_name in states.values()},
        priorities_by_name=priorities,
        new_state_id=states[DEFAULT_STATE][0],
        new_state_name=DEFAULT_STATE,
        follow_up_state_id=states[FOLLOW_UP_STATE][0],
        default_priority_id=priorities[DEFAULT_PRIORITY],
        default_priority_name=DEFAULT_PRIORITY,
        ticket_hook=hook,
        ticket_number_re=ticket_number_pattern(hook),
        warnings=warnings,
        filters=load_filters(),
    )


def load_address_queues() -> dict[str, int]:
    """Valid email addresses linked to valid queues: lowercased address -> queue id."""
    rows = db.session.execute(
        select(SystemAddress.address, SystemAddress.queue_id)
        .join(Queue, Queue.id == SystemAddress.queue_id)
        .where(SystemAddress.validity == "valid", Queue.validity == "valid")
    )
    return {address.strip().lower(): queue_id for address, queue_id in rows}


def load_valid_queues() -> dict[str, int]:
    """Valid queues: name -> id."""
    rows = db.session.execute(select(Queue.name, Queue.id).where(Queue.validity == "valid"))
    return {name: queue_id for name, queue_id in rows}


def ticket_number_pattern(hook: str) -> re.Pattern[str]:
    """Matches "<hook><number>" (as in "[Ticket#2026112310000012]") in a subject."""
    # The number must have our date-based shape with our SystemID, like OTOBO's GetTNByString,
    # so "Ticket#12" in a customer's own subject never hits a ticket by accident.
    return re.compile(
        re.escape(hook) + r"\s?:?\s?(\d{8}" + re.escape(SYSTEM_ID) + r"\d{6,12})(?!\d)",
        re.IGNORECASE,
    )
