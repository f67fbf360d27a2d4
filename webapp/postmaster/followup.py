"""Follow-ups: find the existing ticket a mail belongs to and append it there."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select

from ..models import Article, Ticket, table_of
from .context import PipelineContext
from .dispatch import header_flag, lookup_named, sender_type
from .parse import ParsedMail
from .tickets import article_row, clean_message_id

# Only the newest references matter; a huge References header must not become a huge query.
MAX_REFERENCES = 50


@dataclass
class TicketRef:
    """The few columns of an existing ticket a follow-up needs."""

    id: int
    number: str
    state_id: int
    priority_id: int


_TICKET = table_of(Ticket)
_ARTICLE = table_of(Article)
# Built once: an "expanding" IN parameter keeps the compiled statement cached.
_SELECT_BY_MESSAGE_IDS = select(_ARTICLE.c.message_id, _ARTICLE.c.ticket_id).where(
    _ARTICLE.c.message_id.in_(bindparam("ids", expanding=True))
)
_SELECT_TICKETS = select(_TICKET.c.id, _TICKET.c.number, _TICKET.c.state_id, _TICKET.c.priority_id)


def ticket_by_subject(conn: Connection, pattern: re.Pattern[str], subject: str) -> TicketRef | None:
    """The ticket whose number appears (with the ticket hook) in the subject."""
    numbers = list(dict.fromkeys(pattern.findall(subject or "")))
    if not numbers:
        return None
    rows = conn.execute(_SELECT_TICKETS.where(_TICKET.c.number.in_(numbers)))
    found = {row.number: TicketRef(*row) for row in rows}
    return next((found[n] for n in numbers if n in found), None)


def _wanted_ids(mail: ParsedMail) -> list[tuple[str, str]]:
    """(Message-ID, header) this mail replies to: In-Reply-To first, then the References
    from newest to oldest."""
    wanted: list[tuple[str, str]] = []
    if mail.in_reply_to:
        wanted.append((mail.in_reply_to, "In-Reply-To"))
    wanted += [(ref, "References") for ref in reversed(mail.references[-MAX_REFERENCES:])]
    return wanted


def tickets_of_message_ids(conn: Connection, mails: list[ParsedMail]) -> dict[str, int]:
    """Message-ID -> ticket id of the stored articles these mails reply to: one query per
    500 ids for a whole fetch batch, not a round trip per message."""
    ids = sorted({i for mail in mails for m, _ in _wanted_ids(mail) if (i := clean_message_id(m))})
    found: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        rows = conn.execute(_SELECT_BY_MESSAGE_IDS, {"ids": ids[start : start + 500]})
        found.update({message_id: ticket_id for message_id, ticket_id in rows})
    return found


def ticket_by_message_ids(
    conn: Connection, mail: ParsedMail, known: dict[str, int] | None = None
) -> tuple[TicketRef, str] | None:
    """The ticket of a stored article this mail replies to: In-Reply-To first, then the
    References from newest to oldest. known: tickets_of_message_ids, kept up to date by
    the caller, instead of a query."""
    wanted = _wanted_ids(mail)
    if known is None:
        known = tickets_of_message_ids(conn, [mail]) if wanted else {}
    for message_id, header in wanted:
        ticket_id = known.get(clean_message_id(message_id) or "")
        if ticket_id is not None:
            row = conn.execute(_SELECT_TICKETS.where(_TICKET.c.id == ticket_id)).one()
            return TicketRef(*row), header
    return None


def find_follow_up(
    conn: Connection,
    ctx: PipelineContext,
    mail: ParsedMail,
    known: dict[str, int] | None = None,
) -> tuple[TicketRef, str] | None:
    """(ticket, reason) when the mail is a follow-up of an existing ticket."""
    ticket = ticket_by_subject(conn, ctx.ticket_number_re, mail.subject)
    if ticket is not None:
        return ticket, "ticket number in the subject"
    return ticket_by_message_ids(conn, mail, known)


def follow_up_state(
    ctx: PipelineContext, ticket: TicketRef, headers: Mapping[str, str], log: list[str]
) -> int:
    """OTOBO's rule: a new ticket stays new, any other goes to the follow-up state ("open");
    a trusted X-OTOBO-FollowUp-State decides instead."""
    is_new = ctx.state_types.get(ticket.state_id) == "new"
    default = ticket.state_id if is_new else ctx.follow_up_state_id
    return lookup_named(
        headers.get("X-OTOBO-FollowUp-State"),
        ctx.states_by_name,
        default,
        "X-OTOBO-FollowUp-State",
        f"state {ctx.state_names[default]}",
        log,
    )


@dataclass
class FollowUp:
    """What a follow-up changes: the ticket's state and priority, and the new article."""

    ticket: TicketRef
    state_id: int
    priority_id: int
    article: dict


def plan_follow_up(
    ctx: PipelineContext,
    ticket: TicketRef,
    mail: ParsedMail,
    headers: Mapping[str, str],
    raw_mail_id: int | None,
    log: list[str],
) -> FollowUp:
    """The ticket's new state and priority and the article row; writes nothing."""
    state_id = follow_up_state(ctx, ticket, headers, log)
    if state_id != ticket.state_id:
        log.append(
            f"ticket {ticket.number}: state {ctx.state_names.get(ticket.state_id)} -> "
            f"{ctx.state_names[state_id]}"
        )
    priority_id = lookup_named(
        headers.get("X-OTOBO-FollowUp-Priority"),
        ctx.priorities_by_name,
        ticket.priority_id,
        "X-OTOBO-FollowUp-Priority",
        "the ticket's priority",
        log,
    )
    row = article_row(
        mail,
        raw_mail_id,
        ctx.account_id,
        sender_type=sender_type(
            headers.get("X-OTOBO-FollowUp-SenderType"), "X-OTOBO-FollowUp-SenderType", log
        ),
        is_visible_for_customer=header_flag(
            headers.get("X-OTOBO-FollowUp-IsVisibleForCustomer"),
            True,
            "X-OTOBO-FollowUp-IsVisibleForCustomer",
            log,
        ),
    )
    return FollowUp(ticket, state_id, priority_id, row)
