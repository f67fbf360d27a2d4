"""First-setup data: the OTOBO queues, ticket states and priorities."""

from .extensions import db
from .models import Queue, TicketPriority, TicketState

QUEUES = ["Raw", "Junk", "Misc", "Postmaster"]
STATES = [
    ("new", "new"),
    ("open", "open"),
    ("pending reminder", "pending reminder"),
    ("pending auto close+", "pending auto"),
    ("pending auto close-", "pending auto"),
    ("closed successful", "closed"),
    ("closed unsuccessful", "closed"),
    ("merged", "merged"),
    ("removed", "removed"),
]
PRIORITIES = ["1 very low", "2 low", "3 normal", "4 high", "5 very high"]
DEFAULT_STATE = "new"
FOLLOW_UP_STATE = "open"
DEFAULT_PRIORITY = "3 normal"


def seed_database() -> None:
    """Create the default rows that are missing; never changes existing ones."""
    existing = {q.name for q in db.session.query(Queue)}
    for name in QUEUES:
        if name not in existing:
            db.session.add(Queue(name=name, created_by="setup", changed_by="setup"))
    states = {s.name for s in db.session.query(TicketState)}
    for name, type_name in STATES:
        if name not in states:
            db.session.add(TicketState(name=name, type_name=type_name))
    priorities = {p.name for p in db.session.query(TicketPriority)}
    for name in PRIORITIES:
        if name not in priorities:
            db.session.add(TicketPriority(name=name))
    db.session.commit()
