"""What needs attention, shared by the status page, `flask --app wsgi status [--json]` and the
"Fetch now" state shown in the Mail Accounts list.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..account_state.service import (
    account_badges,
    account_labels,
    describe_oversized,
    latest_runs,
    lease_live,
    oversized_messages,
)
from ..extensions import db
from ..models import FetchRun, MailAccount, OAuth2Profile, SchedulerNode, utcnow
from ..oauth.providers import SECRET_WARNING_DAYS
from ..timefmt import iso_utc, screen_time

# What the page says when no scheduler is alive: web workers never fetch.
START_COMMAND = "python -m scheduler"
PENDING_STATES = ("queued", "running")


# --- scheduler heartbeats ------------------------------------------------------------------


def _stale_cutoff() -> datetime:
    return utcnow() - timedelta(seconds=current_app.config["HEARTBEAT_STALE_SECONDS"])


def scheduler_nodes() -> list[SchedulerNode]:
    """Every scheduler process that ever beat, oldest first."""
    return list(db.session.scalars(select(SchedulerNode).order_by(SchedulerNode.started_at)))


def node_alive(node: SchedulerNode) -> bool:
    """True when this scheduler process beat recently."""
    return node.last_seen_at >= _stale_cutoff()


def scheduler_alive() -> bool:
    """True when at least one scheduler process beat recently."""
    return (
        db.session.execute(
            select(SchedulerNode.owner).where(SchedulerNode.last_seen_at >= _stale_cutoff())
        ).first()
        is not None
    )


# --- the "Fetch now" state of an account -----------------------------------------------------


def _state_text(account: MailAccount, run: FetchRun | None, now: datetime) -> str:
    if lease_live(account, now):
        return "running"
    if account.fetch_requested_at is not None:
        return "queued"
    if run is None:
        return "never fetched"
    if run.status == "running":  # its process died; the lease ran out
        return "interrupted"
    if run.status in ("ok", "warning"):
        noun = "ticket" if run.new_tickets == 1 else "tickets"
        text = f"done: {run.new_tickets} new {noun}"
        if run.follow_ups:
            text += f", {run.follow_ups} follow-ups"
        return text if run.status == "ok" else f"{text} (warning: {run.error})"
    if run.status == "reauth":
        return "re-authorization needed"
    return f"{run.status}: {run.error or 'see the fetch log'}"


def account_fetch_state(account: MailAccount) -> str:
    """ "queued", "running", "done: N new tickets", "error: ...", "never fetched", ..."""
    return fetch_states([account])[account.id]


def fetch_states(accounts: list[MailAccount]) -> dict[int, str]:
    """account_fetch_state for a whole list without one query per account."""
    now = utcnow()
    runs = latest_runs([a.id for a in accounts])
    return {a.id: _state_text(a, runs.get(a.id), now) for a in accounts}


def is_pending(state: str) -> bool:
    """Still waiting for the scheduler: the list page refreshes itself."""
    return state in PENDING_STATES


# --- what needs attention ------------------------------------------------------------------


@dataclass
class Attention:
    kind: str  # account_error | reauth | oversized | scheduler | secret_expiry
    subject: str
    message: str
    account_id: int | None = None
    oversized_id: int | None = None  # kind oversized: the message to dismiss or fetch once


def attention_items() -> list[Attention]:
    """Everything an admin should look at: failing accounts, mail left on the server over the
    size limit, schedulers, expiring secrets."""
    return [*_account_items(), *_scheduler_items(), *_secret_items()]


def _account_items() -> list[Attention]:
    items = []
    labels = account_labels()
    valid = select(MailAccount).where(MailAccount.validity == "valid").order_by(MailAccount.id)
    accounts = list(db.session.scalars(valid))
    runs = latest_runs([a.id for a in accounts])
    for account in accounts:
        label = labels[account.id]
        if account.needs_reauth or account.last_status == "reauth":
            items.append(
                Attention("reauth", label, "needs re-authorization (Re-authorize)", account.id)
            )
        elif account.last_status == "error":
            run = runs.get(account.id)
            error = (run.error if run is not None else None) or account.last_message or ""
            if account.fetch_requested_at is not None:
                error += " (a new fetch is queued)"
            items.append(
                Attention("account_error", label, f"last fetch failed: {error}", account.id)
            )
    valid_ids = {a.id for a in accounts}
    for row in oversized_messages():
        if row.mail_account_id in valid_ids:
            items.append(
                Attention(
                    "oversized",
                    labels[row.mail_account_id],
                    describe_oversized(row),
                    row.mail_account_id,
                    row.id,
                )
            )
    return items


def _scheduler_items() -> list[Attention]:
    nodes = scheduler_nodes()
    alive_hosts = {n.hostname for n in nodes if node_alive(n)}
    items = []
    for node in nodes:
        # A dead process replaced by a live one on the same host needs no one's attention.
        if not node_alive(node) and node.hostname not in alive_hosts:
            items.append(
                Attention(
                    "scheduler",
                    node.owner,
                    f"stale heartbeat: last seen {screen_time(node.last_seen_at, seconds=True)}",
                )
            )
    has_accounts = db.session.execute(
        select(MailAccount.id).where(MailAccount.validity == "valid").limit(1)
    ).first()
    if not alive_hosts and has_accounts:
        items.append(
            Attention("scheduler", "scheduler", f"no scheduler is alive: start `{START_COMMAND}`")
        )
    return items


def _secret_items(today: date | None = None) -> list[Attention]:
    today = today or utcnow().date()
    horizon = today + timedelta(days=SECRET_WARNING_DAYS)
    profiles = select(OAuth2Profile).where(
        OAuth2Profile.validity == "valid",
        OAuth2Profile.secret_expires_on.is_not(None),
        OAuth2Profile.secret_expires_on <= horizon,
    )
    items = []
    for profile in db.session.scalars(profiles.order_by(OAuth2Profile.secret_expires_on)):
        expires_on = profile.secret_expires_on
        assert expires_on is not None  # the query selects profiles with an expiry date
        days = (expires_on - today).days
        when = "expired" if days < 0 else f"expires in {days} days"
        items.append(
            Attention(
                "secret_expiry",
                f"OAuth2 profile {profile.name}",
                f"{_credential_name(profile)} {when} ({expires_on.isoformat()})",
            )
        )
    return items


def _credential_name(profile: OAuth2Profile) -> str:
    return "certificate" if profile.credential == "certificate" else "client secret"


def status_report() -> dict:
    """Everything the status page and `status --json` show."""
    nodes = scheduler_nodes()
    accounts = list(
        db.session.scalars(
            select(MailAccount).where(MailAccount.validity == "valid").order_by(MailAccount.id)
        )
    )
    states = fetch_states(accounts)
    badges = account_badges(accounts)
    labels = account_labels()
    items = attention_items()
    return {
        "ok": not items,
        "attention": [asdict(i) for i in items],
        "schedulers": [
            {
                "owner": n.owner,
                "hostname": n.hostname,
                "pid": n.pid,
                "started_at": iso_utc(n.started_at),
                "last_seen_at": iso_utc(n.last_seen_at),
                "alive": node_alive(n),
            }
            for n in nodes
        ],
        "accounts": [
            {
                "id": a.id,
                "label": labels[a.id],
                "type": a.type,
                "state": states[a.id],
                "badge": badges[a.id].kind,
                "badge_text": badges[a.id].text,
                "last_run_at": iso_utc(a.last_run_at),
                "last_status": a.last_status,
                "next_run_at": iso_utc(a.next_run_at),
            }
            for a in accounts
        ],
    }


def status_page() -> dict:
    """What the Status page shows: the report's attention items, and the schedulers and valid
    accounts as objects (the page writes times as every screen does)."""
    accounts = list(
        db.session.scalars(
            select(MailAccount).where(MailAccount.validity == "valid").order_by(MailAccount.id)
        )
    )
    items = attention_items()
    nodes = scheduler_nodes()
    return {
        "ok": not items,
        "attention": items,
        "nodes": [(n, node_alive(n)) for n in nodes],
        "any_alive": any(node_alive(n) for n in nodes),
        "accounts": accounts,
        "labels": account_labels(),
        "badges": account_badges(accounts),
        "oversized": {row.id: row for row in oversized_messages()},
    }
