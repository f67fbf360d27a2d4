"""The status, trigger and outcome values stored in the database and shown in the CLI.

A leaf module (imports nothing of the app), so models, the fetch engine, the scheduler and
the screens can all use it. StrEnum members compare equal to their plain strings, and the
database stores the strings.
"""

from __future__ import annotations

from enum import StrEnum


class FetchStatus(StrEnum):
    """FetchResult.status, FetchRun.status and MailAccount.last_status."""

    RUNNING = "running"  # FetchRun only: the run has not finished (or its process died)
    OK = "ok"
    WARNING = "warning"  # partly done: stopped early, or a transient token problem
    ERROR = "error"
    BUSY = "busy"  # FetchResult only: another fetcher holds the account's lease
    REAUTH = "reauth"  # the OAuth2 grant is dead: an admin must re-authorize


class FetchTrigger(StrEnum):
    """Who started a fetch run (FetchOptions.trigger, FetchRun.trigger)."""

    CLI = "cli"  # `flask mail-account fetch`
    SCHEDULER = "scheduler"  # the account was due
    BUTTON = "button"  # "Fetch now" in the web UI, run by the scheduler
    PUSH = "push"  # the server reported new mail on the account's IDLE connection


class PushState(StrEnum):
    """MailAccount.push_state: what became of the account's IDLE connection."""

    CONNECTED = "connected"  # idling since push_since
    RECONNECTING = "reconnecting"  # the connection failed (push_detail); retried with backoff
    UNSUPPORTED = "unsupported"  # the server does not announce IDLE: polled
    LIMIT = "limit"  # PUSH_MAX_CONNECTIONS reached in every scheduler process: polled


class OutcomeKind(StrEnum):
    """What became of one fetched message (MessageOutcome.kind, SeenMessage.outcome)."""

    NEW_TICKET = "new_ticket"
    FOLLOW_UP = "follow_up"
    IGNORED = "ignored"  # X-OTOBO-Ignore
    FAILED = "failed"  # kept as a FailedMail
    DUPLICATE = "duplicate"  # SeenMessage only: stored before a UIDVALIDITY change
