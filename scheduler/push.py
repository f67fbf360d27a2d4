"""Push: one IMAP IDLE connection per account with "Fetch on arrival", in a thread each.

PushManager.sync() runs at every poll of the scheduler: it drops the connections of accounts
switched off, made invalid, deleted or edited, renews the push leases of the rest (a lost
lease drops its connection too), and claims free accounts up to PUSH_MAX_CONNECTIONS.
A connection that sees new mail (EXISTS above the count, RECENT) waits for the burst to end
(PUSH_DEBOUNCE_SECONDS after the last event, at most PUSH_DEBOUNCE_MAX_SECONDS after the
first) and then asks the scheduler for the account's normal fetch. Threads block in poll()
on their socket and cost nothing while the mailbox is quiet; stopping one shuts its socket.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from flask import Flask

from webapp.extensions import db
from webapp.models import MailAccount, utcnow
from webapp.oauth.tokens import OAuth2TokenError
from webapp.postmaster.fetch import mailbox_settings_for
from webapp.postmaster.mailbox import MailboxSettings, MailError
from webapp.postmaster.mailbox.idle import IdleMailbox
from webapp.postmaster.push import (
    PushTarget,
    claim_push,
    mark_limit_reached,
    push_targets,
    release_push,
    renew_push,
    set_push_state,
)
from webapp.postmaster.runs import internal_error_text
from webapp.states import PushState

log = logging.getLogger("scheduler.push")


class _Unsupported(Exception):
    """The server does not announce IDLE."""


class _Gone(Exception):
    """The account was deleted or no longer wants push."""


class PushConnection:
    """The IDLE connection of one account, kept in its own thread until stopped."""

    def __init__(self, manager: PushManager, account_id: int, generation: int, fingerprint: str):
        self.manager = manager
        self.account_id = account_id
        self.generation = generation
        self.fingerprint = fingerprint
        self.stopping = threading.Event()
        self.mailbox: IdleMailbox | None = None
        self.thread = threading.Thread(target=self._run, name=f"push-{account_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the thread to end; a blocked wait is woken by closing the socket."""
        self.stopping.set()
        mailbox = self.mailbox
        if mailbox is not None:
            mailbox.interrupt()

    def _run(self) -> None:
        failures = 0
        final: tuple[PushState | None, str | None] = (None, None)
        try:
            while not self.stopping.is_set():
                try:
                    self._session(fetch_first=True)
                    failures = 0
                except _Unsupported:
                    final = (PushState.UNSUPPORTED, "IDLE is not in CAPABILITY")
                    return
                except _Gone:
                    return
                except Exception as e:
                    if self.stopping.is_set():
                        return
                    failures += 1
                    self._failed(e, failures)
        finally:
            self.manager.finished(self, *final)

    def _failed(self, error: Exception, failures: int) -> None:
        if isinstance(error, MailError):
            detail = str(error)
        elif isinstance(error, OAuth2TokenError):
            detail = error.admin_message
        else:
            log.exception("push connection of mail account %s failed", self.account_id)
            detail = internal_error_text(error)
        delay = self.manager.backoff(failures)
        log.warning(
            "push connection of mail account %s: %s; reconnecting in %.1fs",
            self.account_id,
            detail,
            delay,
        )
        self.manager.report(self, PushState.RECONNECTING, detail)
        self.stopping.wait(delay)

    def _settings(self) -> tuple[MailboxSettings, float]:
        """Connection settings with a fresh token, and the monotonic time to reconnect by."""
        manager = self.manager
        with manager.app.app_context():
            account = db.session.get(MailAccount, self.account_id)
            if account is None or not account.push or account.validity != "valid":
                raise _Gone()
            settings = mailbox_settings_for(account)
            reconnect_at = float("inf")
            token = account.oauth2_token
            if account.account_type.oauth2 and token and token.access_token_expires_at:
                left = (token.access_token_expires_at - utcnow()).total_seconds()
                margin = min(manager.token_margin, max(left, 0.0) / 2)
                reconnect_at = time.monotonic() + max(1.0, left - margin)
            db.session.rollback()
        return settings, reconnect_at

    def _session(self, fetch_first: bool) -> None:
        """Connect, idle until the token needs renewing (then return) or an error (raise)."""
        settings, reconnect_at = self._settings()
        mailbox = IdleMailbox(settings)
        self.mailbox = mailbox
        try:
            if self.stopping.is_set():
                return
            if not mailbox.supports_idle():
                raise _Unsupported()
            self.manager.report(self, PushState.CONNECTED, None)
            if fetch_first and mailbox.exists:
                # Mail may have come while no connection was watching.
                self.manager.new_mail(self.account_id)
            while not self.stopping.is_set() and time.monotonic() < reconnect_at:
                self._idle(mailbox, min(self.manager.idle_seconds, reconnect_at - time.monotonic()))
        finally:
            self.mailbox = None
            mailbox.close()

    def _idle(self, mailbox: IdleMailbox, seconds: float) -> None:
        """One IDLE command of at most `seconds`, with the debounce of new mail."""
        manager = self.manager
        mailbox.start_idle()
        end = time.monotonic() + seconds
        first = last = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if first:
                due = min(last + manager.debounce, first + manager.debounce_max)
                if now >= due:
                    manager.new_mail(self.account_id)
                    first = 0.0
                    continue
                timeout = due - now
            elif now >= end:
                break
            else:
                timeout = end - now
            if mailbox.wait(timeout):
                last = time.monotonic()
                first = first or last
        if self.stopping.is_set():
            return
        if mailbox.end_idle() or first:
            manager.new_mail(self.account_id)


class PushManager:
    """The IDLE connections of one scheduler process."""

    def __init__(self, app: Flask, owner: str, new_mail: Callable[[int], None]) -> None:
        config = app.config
        self.app = app
        self.owner = owner
        self.new_mail = new_mail
        self.max_connections = int(config["PUSH_MAX_CONNECTIONS"])
        self.lease_seconds = float(config["PUSH_LEASE_SECONDS"])
        self.idle_seconds = max(1.0, float(config["PUSH_IDLE_SECONDS"]))
        self.debounce = float(config["PUSH_DEBOUNCE_SECONDS"])
        self.debounce_max = max(self.debounce, float(config["PUSH_DEBOUNCE_MAX_SECONDS"]))
        self.backoff_max = float(config["PUSH_BACKOFF_MAX_SECONDS"])
        self.token_margin = float(config["PUSH_TOKEN_MARGIN_SECONDS"])
        self.recheck = float(config["PUSH_RECHECK_SECONDS"])
        self.lock = threading.Lock()
        self.connections: dict[int, PushConnection] = {}
        self.stopped = False

    def backoff(self, failures: int) -> float:
        """2, 4, 8 ... seconds up to PUSH_BACKOFF_MAX_SECONDS, each with up to 50 % jitter."""
        base = min(self.backoff_max, 2.0 ** min(failures, 20))
        return base * random.uniform(0.5, 1.0)

    def sync(self) -> None:
        """Drop, renew and claim (inside an app context the caller pushed)."""
        if self.max_connections <= 0 or self.stopped:
            return
        targets = push_targets(self.recheck)
        with self.lock:
            mine = dict(self.connections)
        for account_id, connection in mine.items():
            target = targets.get(account_id)
            if target is None or target.fingerprint != connection.fingerprint:
                self._drop(connection, release=True)
        with self.lock:
            held = {i: c.generation for i, c in self.connections.items()}
        for account_id in renew_push(self.owner, held, self.lease_seconds):
            log.warning("lost the push lease of mail account %s", account_id)
            lost = self.connections.get(account_id)
            if lost is not None:
                self._drop(lost, release=False)
        self._claim(targets)

    def _claim(self, targets: dict[int, PushTarget]) -> None:
        with self.lock:
            free = self.max_connections - len(self.connections)
            mine = set(self.connections)
        waiting = [t for t in targets.values() if t.account_id not in mine and t.claimable]
        full: list[int] = []
        for target in sorted(waiting, key=lambda t: t.account_id):
            if free <= 0:
                full.append(target.account_id)
                continue
            generation = claim_push(target.account_id, self.owner, self.lease_seconds)
            if generation is None:
                continue
            connection = PushConnection(self, target.account_id, generation, target.fingerprint)
            with self.lock:
                self.connections[target.account_id] = connection
            free -= 1
            connection.start()
        mark_limit_reached(full, self.max_connections)

    def _drop(self, connection: PushConnection, release: bool) -> None:
        with self.lock:
            if self.connections.get(connection.account_id) is connection:
                del self.connections[connection.account_id]
        connection.stop()
        if release:
            release_push(connection.account_id, self.owner, connection.generation)
        log.info("push connection of mail account %s dropped", connection.account_id)

    def report(self, connection: PushConnection, state: PushState, detail: str | None) -> None:
        """Record a connection's state for the account page (from its thread)."""
        try:
            with self.app.app_context():
                since = utcnow()
                set_push_state(
                    connection.account_id, self.owner, connection.generation, state, detail, since
                )
        except Exception:
            log.exception("could not record the push state of account %s", connection.account_id)

    def finished(
        self, connection: PushConnection, state: PushState | None, detail: str | None
    ) -> None:
        """A connection's thread ended by itself (IDLE not announced, account gone)."""
        with self.lock:
            ours = self.connections.get(connection.account_id) is connection
            if ours:
                del self.connections[connection.account_id]
        if not ours or self.stopped:
            return
        try:
            with self.app.app_context():
                release_push(
                    connection.account_id, self.owner, connection.generation, state, detail
                )
        except Exception:
            log.exception("could not release the push lease of account %s", connection.account_id)

    def stop_all(self, timeout: float = 5.0) -> None:
        """Close every connection and give the leases back (at shutdown)."""
        self.stopped = True
        with self.lock:
            connections = list(self.connections.values())
            self.connections.clear()
        for connection in connections:
            connection.stop()
        deadline = time.monotonic() + timeout
        for connection in connections:
            connection.thread.join(max(0.0, deadline - time.monotonic()))
        with self.app.app_context():
            for connection in connections:
                try:
                    release_push(connection.account_id, self.owner, connection.generation)
                except Exception:
                    log.exception("could not release a push lease")

    def count(self) -> int:
        with self.lock:
            return len(self.connections)
