"""Which queue a new ticket goes to, and what a trusted account's X-OTOBO-* headers change.

Lookups use the caches of the PipelineContext; nothing here queries per message.
"""

from __future__ import annotations

from collections.abc import Mapping

from .context import PipelineContext
from .parse import ParsedMail
from .tickets import SENDER_TYPES, TicketParams, ticket_title

# OTOBO's order for "dispatching by email To: field": the first match wins.
RECIPIENT_FIELDS = ("resent_to", "envelope_to", "to", "cc", "delivered_to", "x_original_to")
_TRUE = {"yes", "true", "1", "on"}
_FALSE = {"no", "false", "0", "off"}


def queue_by_recipients(
    mail: ParsedMail, address_queues: Mapping[str, int]
) -> tuple[int, str] | None:
    """(queue id, address) of the first recipient, in OTOBO's header order, that is ours."""
    for field in RECIPIENT_FIELDS:
        for address in getattr(mail, field):
            queue_id = address_queues.get(address)
            if queue_id is not None:
                return queue_id, address
    return None


def trusted_headers(ctx: PipelineContext, mail: ParsedMail, log: list[str]) -> dict[str, str]:
    """The X-OTOBO-* headers to obey: all of them for trusted accounts, none otherwise."""
    if ctx.trusted:
        return mail.otobo_headers
    if mail.otobo_headers:
        names = ", ".join(sorted(mail.otobo_headers))
        log.append(f"untrusted account: ignored {names}")
    return {}


def dispatch_queue(ctx: PipelineContext, mail: ParsedMail, log: list[str]) -> int:
    """The queue of a new ticket by the account's dispatching rule (before X-OTOBO-Queue)."""
    if ctx.dispatch == "queue":
        if ctx.account_queue_id is not None:
            return ctx.account_queue_id
        log.append(f"the account's queue is missing or invalid, using {ctx.default_queue_label}")
        return ctx.default_queue_id
    match = queue_by_recipients(mail, ctx.address_queues)
    if match is None:
        log.append(f"no recipient is a valid email address, using {ctx.default_queue_label}")
        return ctx.default_queue_id
    queue_id, address = match
    log.append(f"recipient {address} dispatches to queue {ctx.queue_names[queue_id]}")
    return queue_id


def lookup_named(
    value: str | None,
    by_name: Mapping[str, int],
    default: int,
    header: str,
    default_name: str,
    log: list[str],
) -> int:
    """The id of a state/priority/queue named in a header, or the default (logged)."""
    if not value:
        return default
    found = by_name.get(value.strip())
    if found is None:
        log.append(f"unknown {header} {value!r}, using {default_name}")
        return default
    log.append(f"{header}: {value.strip()}")
    return found


def header_flag(value: str | None, default: bool, header: str, log: list[str]) -> bool:
    """A yes/no header value; anything unrecognised keeps the default (logged)."""
    if value is None or not value.strip():
        return default
    low = value.strip().lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    log.append(f"unknown {header} {value!r}, using {'1' if default else '0'}")
    return default


def sender_type(value: str | None, header: str, log: list[str]) -> str:
    """The article sender type from a header, "customer" when missing or unknown."""
    if not value or not value.strip():
        return "customer"
    low = value.strip().lower()
    if low in SENDER_TYPES:
        return low
    log.append(f"unknown {header} {value!r}, using customer")
    return "customer"


def is_ignored(headers: Mapping[str, str]) -> bool:
    """X-OTOBO-Ignore: yes (or true) drops the mail, like OTOBO."""
    return (headers.get("X-OTOBO-Ignore") or "").strip().lower() in _TRUE


def new_ticket_params(
    ctx: PipelineContext, mail: ParsedMail, headers: Mapping[str, str], log: list[str]
) -> TicketParams:
    """Queue, state, priority, title and customer of a new ticket for this mail."""
    queue_id = dispatch_queue(ctx, mail, log)
    queue_id = lookup_named(
        headers.get("X-OTOBO-Queue"),
        ctx.queues_by_name,
        queue_id,
        "X-OTOBO-Queue",
        f"queue {ctx.queue_names[queue_id]}",
        log,
    )
    state_id = lookup_named(
        headers.get("X-OTOBO-State"),
        ctx.states_by_name,
        ctx.new_state_id,
        "X-OTOBO-State",
        f"state {ctx.new_state_name}",
        log,
    )
    priority_id = lookup_named(
        headers.get("X-OTOBO-Priority"),
        ctx.priorities_by_name,
        ctx.default_priority_id,
        "X-OTOBO-Priority",
        f"priority {ctx.default_priority_name}",
        log,
    )
    title = (headers.get("X-OTOBO-Title") or "").strip() or ticket_title(mail.subject)
    return TicketParams(
        queue_id=queue_id,
        state_id=state_id,
        priority_id=priority_id,
        title=title,
        customer_user=(headers.get("X-OTOBO-CustomerUser") or "").strip() or mail.from_addr,
        customer_no=(headers.get("X-OTOBO-CustomerNo") or "").strip() or None,
        sender_type=sender_type(headers.get("X-OTOBO-SenderType"), "X-OTOBO-SenderType", log),
        is_visible_for_customer=header_flag(
            headers.get("X-OTOBO-IsVisibleForCustomer"), True, "X-OTOBO-IsVisibleForCustomer", log
        ),
    )
