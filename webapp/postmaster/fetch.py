"""fetch_account(): THE fetch path, called by the CLI, by the scheduler and (through the
scheduler) by "Fetch now".

Exactly once, nothing lost: each batch of messages is stored together with its dedupe keys
in one transaction, and only after that commit is the server told to delete (or move, or mark)
exactly those messages. A crash anywhere leaves either uncommitted work (the messages are
fetched again) or committed keys (the messages are recognised and only finished).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import FetchRun, FolderState, MailAccount, OversizedMessage, SeenMessage, utcnow
from ..settings.store import get_int_setting
from .faults import fault_point
from .lease import Lease, LeaseLost, claim_account, lease_holder, release_lease, renew_lease
from .mailbox import Mailbox, MailboxSettings, MailError, RemoteMessage, open_mailbox
from .pipeline import Parsed, build_context, parse_or_error, process_batch

MAX_LOG_LINES = 500
KEY_CHUNK = 500  # keys per IN (...) query
_INSERT_SEEN = insert(SeenMessage.__table__)  # Core executemany: one statement per batch


class FetchStopped(Exception):
    """The caller asked the fetch to stop (shutdown or deadline) between batches."""


@dataclass
class FetchResult:
    account_id: int
    status: str  # ok | warning | error | busy | skipped
    message: str = ""
    run_id: int | None = None
    fetched: int = 0
    new_tickets: int = 0
    follow_ups: int = 0
    ignored: int = 0
    failed: int = 0
    oversized: int = 0
    duplicates: int = 0
    log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line with the counts, for the CLI and the overview."""
        counts = (
            f"fetched {self.fetched}, new tickets {self.new_tickets}, "
            f"follow-ups {self.follow_ups}, ignored {self.ignored}, failed {self.failed}, "
            f"oversized {self.oversized}, duplicates {self.duplicates}"
        )
        return f"{self.status}: {counts}" + (f" ({self.message})" if self.message else "")


@dataclass
class FetchOptions:
    trigger: str = "cli"  # cli | scheduler
    owner: str = "cli"
    debug: Callable[[str], None] | None = None
    should_stop: Callable[[], bool] | None = None  # checked between batches


@dataclass
class _Run:
    """State of one fetch while it runs."""

    account: MailAccount
    account_id: int  # read once: the ORM object expires at every batch commit
    lease: Lease
    run: FetchRun
    result: FetchResult
    options: FetchOptions
    host: str = ""
    folder: str = ""
    uidvalidity: int | None = None
    uidvalidity_changed: bool = False
    finished_keys: list[str] = field(default_factory=list)
    unfinished: list[RemoteMessage] = field(default_factory=list)  # committed, not yet deleted

    def log(self, line: str) -> None:
        if len(self.result.log) < MAX_LOG_LINES:
            self.result.log.append(line)
        if self.options.debug:
            self.options.debug(line)


def fetch_account(account_id: int, options: FetchOptions | None = None) -> FetchResult:
    """Fetch one account under its lease; never raises for mail or server problems."""
    options = options or FetchOptions()
    lease_seconds = current_app.config["LEASE_SECONDS"]
    account = db.session.get(MailAccount, account_id)
    if account is None:
        return FetchResult(account_id, "error", f"Mail account {account_id} does not exist")
    lease = claim_account(account_id, options.owner, lease_seconds)
    if lease is None:
        holder = lease_holder(account_id) or "another fetcher"
        return FetchResult(account_id, "busy", f"already being fetched by {holder}")
    return fetch_with_lease(lease, options)


def fetch_with_lease(lease: Lease, options: FetchOptions) -> FetchResult:
    """Fetch an account whose lease the caller already holds; always releases it."""
    account = db.session.get(MailAccount, lease.account_id)
    db.session.refresh(account)
    result = FetchResult(account.id, "ok")
    run = FetchRun(
        mail_account_id=account.id,
        trigger=options.trigger,
        owner=lease.owner,
        lease_generation=lease.generation,
    )
    db.session.add(run)
    db.session.commit()
    result.run_id = run.id
    state = _Run(account, account.id, lease, run, result, options)
    if account.needs_reauth:
        # No token request for a dead grant: one clear line until an admin re-authorizes.
        _fail(state, "reauth", "Re-authorization needed: press Re-authorize on the account")
        _finish_run(state)
        return result
    try:
        _fetch(state)
    except LeaseLost as e:
        _fail(state, "error", str(e))
    except FetchStopped:
        _fail(state, "warning", "stopped before the end; the rest is fetched by the next run")
    except MailError as e:
        _fail(state, "error", str(e))
    except Exception as e:  # the one broad except: one broken account never stops the rest
        current_app.logger.exception("fetch of mail account %s failed", account.id)
        status = getattr(e, "fetch_status", "error")
        _fail(state, status, getattr(e, "admin_message", None) or _internal_error_text(e))
    _finish_run(state)
    return result


def _internal_error_text(error: Exception) -> str:
    """An unexpected error, in words safe to show: database errors carry their SQL
    parameters (mail content, ciphertext) in str(), so only the driver's error class is shown."""
    if isinstance(error, SQLAlchemyError):
        cause = type(getattr(error, "orig", None) or error).__name__
        return f"database error ({cause}); the batch was rolled back and stays on the server"
    return f"internal error ({type(error).__name__}): {error}"


def _fail(state: _Run, status: str, message: str) -> None:
    db.session.rollback()
    state.result.status = status
    state.result.message = message
    state.log(f"{status}: {message}")


def _fetch(state: _Run) -> None:
    account = state.account
    settings = mailbox_settings_for(account)
    state.host = account.host.lower()
    state.folder = account.effective_folder
    state.log(f"connecting to {account.type} {account.host}:{account.effective_port}")
    with open_mailbox(settings, debug=state.options.debug) as mailbox:
        _fetch_folder(state, mailbox)
    if state.finished_keys:
        _mark_finished(state)


def mailbox_settings_for(account: MailAccount) -> MailboxSettings:
    """The connection settings of an account, with its password or a fresh access token."""
    account_type = account.account_type
    config = current_app.config
    access_token = None
    oauth_user = None
    if account_type.oauth2:
        from ..oauth.tokens import access_token_for

        access_token = access_token_for(account)
        oauth_user = account.username
    return MailboxSettings(
        protocol=account_type.protocol,
        security=account_type.security,
        host=account.host,
        port=account.effective_port,
        username=account.username,
        password=None if account_type.oauth2 else account.password,
        access_token=access_token,
        oauth_user=oauth_user,
        folder=account.effective_folder,
        verify_tls=account.verify_tls,
        ca_file=config["MAIL_CA_FILE"],
        timeout=float(config["MAIL_TIMEOUT"]),
    )


def _fetch_folder(state: _Run, mailbox: Mailbox) -> None:
    account = state.account
    is_imap = account.account_type.is_imap
    keep = account.after_fetch == "keep"
    folder_state = _folder_state(state, mailbox) if is_imap else None
    min_uid = folder_state.highest_uid + 1 if (folder_state is not None and keep) else None

    messages = mailbox.list_messages(min_uid=min_uid)
    state.log(f"{len(messages)} messages on the server in {state.folder}")
    max_size = get_int_setting("MaxMessageSizeMB") * 1024 * 1024
    small = [m for m in messages if m.size <= max_size]
    _report_oversized(state, mailbox, [m for m in messages if m.size > max_size], max_size)

    keys = {m.key: _dedupe_key(state, m) for m in small}
    known = _known_keys(state, list(keys.values()))
    seen_before = [m for m in small if keys[m.key] in known]
    todo = [m for m in small if keys[m.key] not in known]
    if seen_before and not keep:
        # Stored by an earlier run that stopped before the server-side delete: finish only.
        state.result.duplicates += len(seen_before)
        state.log(f"{len(seen_before)} messages were stored before; finishing them on the server")
        _finish_on_server(state, mailbox, seen_before, keys)

    cap = get_int_setting("MaxMessagesPerRun")
    if len(todo) > cap:
        state.log(f"{len(todo)} new messages; taking {cap} (MaxMessagesPerRun), rest next run")
        todo = todo[:cap]
    ctx = build_context(account)
    batches = list(_batches(todo))
    max_bytes = current_app.config["FETCH_BATCH_BYTES"]
    # The next batch downloads in a helper thread while this one is parsed and stored (the
    # server and the network work on the other core meanwhile). Only downloads overlap: the
    # connection is used by one thread at a time, and a batch is deleted on the server only
    # after its commit and after the next download has finished. At most FETCH_BATCH_BYTES of
    # mail is in flight at once: a next batch that would exceed it downloads afterwards.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-download") as pool:
        pending: Future | None = None
        for i, batch in enumerate(batches):
            if state.options.should_stop and state.options.should_stop():
                if pending is not None:
                    wait([pending])  # the connection is the helper's until its download ends
                _finish_unfinished(state, mailbox, keys)
                raise FetchStopped()
            fault_point("before_fetch")
            downloaded = pending.result() if pending is not None else _download(mailbox, batch)
            pending = None
            following = batches[i + 1] if i + 1 < len(batches) else None
            if following is not None and _size(batch) + _size(following) <= max_bytes:
                pending = pool.submit(_download, mailbox, following)
            _fetch_batch(state, mailbox, ctx, downloaded, keys, folder_state, pending)
    _finish_unfinished(state, mailbox, keys)


def _finish_unfinished(state: _Run, mailbox: Mailbox, keys) -> None:
    """Delete (move, mark) on the server what earlier batches committed."""
    messages, state.unfinished = state.unfinished, []
    _finish_on_server(state, mailbox, messages, keys)


def _batches(messages: Sequence[RemoteMessage]) -> Iterable[list[RemoteMessage]]:
    """Batches bounded by count and by the sum of sizes, so large mail never piles up."""
    max_count = current_app.config["FETCH_BATCH_SIZE"]
    max_bytes = current_app.config["FETCH_BATCH_BYTES"]
    batch: list[RemoteMessage] = []
    size = 0
    for message in messages:
        if batch and (len(batch) >= max_count or size + message.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += message.size
    if batch:
        yield batch


def _size(batch: Sequence[RemoteMessage]) -> int:
    return sum(m.size for m in batch)


def _download(
    mailbox: Mailbox, batch: Sequence[RemoteMessage]
) -> list[tuple[RemoteMessage, bytes, Parsed]]:
    """The helper thread's work: download one batch and parse it (no database, no app
    context). Parsing here overlaps the main thread's database writes, during which SQLite
    and the PostgreSQL driver release the GIL."""
    return [(message, raw, parse_or_error(raw)) for message, raw in mailbox.fetch(batch)]


def _fetch_batch(state, mailbox, ctx, downloaded, keys, folder_state, pending=None) -> None:
    """Process and commit one downloaded batch; finish it on the server with the batches
    before it once FETCH_DELETE_EVERY messages are committed and not yet finished.

    pending: the next batch's download, running on the same connection; it must be done
    before the delete is sent (its own errors are raised when its batch is taken).
    """
    result = state.result
    seen: list[dict] = []
    todo: list[tuple[RemoteMessage, bytes, Parsed, dict]] = []
    batch_hashes: set[str] = set()  # not inserted yet, so _known_content cannot see them
    for message, raw, parsed in downloaded:
        row = {
            "mail_account_id": state.account_id,
            "host": state.host,
            "folder": state.folder,
            "key": keys[message.key],
            "sha256": None,
            "outcome": "duplicate",
            "article_id": None,
            "created_at": utcnow(),
        }
        seen.append(row)
        if state.uidvalidity_changed:
            row["sha256"] = sha256 = hashlib.sha256(raw).hexdigest()
            if sha256 in batch_hashes or _known_content(state, sha256):
                result.duplicates += 1
                state.log(f"UID {message.uid}: already stored before UIDVALIDITY changed; skipped")
                continue
            batch_hashes.add(sha256)
        todo.append((message, raw, parsed, row))
    outcomes = process_batch(ctx, [t[1] for t in todo], parsed=[t[2] for t in todo])
    for (message, _raw, _parsed, row), outcome in zip(todo, outcomes, strict=True):
        row["outcome"], row["article_id"] = outcome.kind, outcome.article_id
        row["sha256"] = outcome.sha256
        _count(result, outcome.kind)
        for line in outcome.log:
            state.log(f"{message.key}: {line}")
    result.fetched += len(seen)
    if seen:
        db.session.execute(_INSERT_SEEN, seen)
    stored = [message for message, _raw, _parsed in downloaded]
    if folder_state is not None and stored:
        highest = max(m.uid or 0 for m in stored)
        folder_state.highest_uid = max(folder_state.highest_uid, highest)
    _save_counts(state.run, result)
    fault_point("before_commit")
    renew_lease(state.lease, current_app.config["LEASE_SECONDS"])
    db.session.commit()
    fault_point("after_commit")
    state.unfinished.extend(stored)
    if len(state.unfinished) >= current_app.config["FETCH_DELETE_EVERY"]:
        if pending is not None:
            wait([pending])
        messages, state.unfinished = state.unfinished, []
        # The lease was renewed in the commit just made: no second round trip and fsync for it.
        _finish_on_server(state, mailbox, messages, keys, lease_renewed=True)


def _count(result: FetchResult, kind: str) -> None:
    attr = {
        "new_ticket": "new_tickets",
        "follow_up": "follow_ups",
        "ignored": "ignored",
        "failed": "failed",
    }.get(kind)
    if attr:
        setattr(result, attr, getattr(result, attr) + 1)


def _finish_on_server(
    state: _Run, mailbox: Mailbox, messages: list[RemoteMessage], keys, lease_renewed=False
) -> None:
    """Delete, move or mark the messages whose keys are committed. Checks the lease first."""
    if not messages:
        return
    if not lease_renewed:
        renew_lease(state.lease, current_app.config["LEASE_SECONDS"])
        db.session.commit()
    remote_keys = [m.key for m in messages]
    account = state.account
    if account.after_fetch == "keep":
        mailbox.mark_seen(remote_keys)
        return
    if account.after_fetch == "move" and account.account_type.is_imap:
        mailbox.move(remote_keys, account.move_folder)
    else:
        mailbox.delete(remote_keys, on_flagged=lambda: fault_point("during_delete"))
    fault_point("after_delete")
    state.finished_keys.extend(keys[m.key] for m in messages)


def _mark_finished(state: _Run) -> None:
    """Note when keys were finished on the server, so old ones can be pruned."""
    now = utcnow()
    for i in range(0, len(state.finished_keys), KEY_CHUNK):
        chunk = state.finished_keys[i : i + KEY_CHUNK]
        db.session.execute(
            update(SeenMessage)
            .where(
                SeenMessage.mail_account_id == state.account_id,
                SeenMessage.host == state.host,
                SeenMessage.folder == state.folder,
                SeenMessage.key.in_(chunk),
            )
            .values(finished_at=now)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()


def _dedupe_key(state: _Run, message: RemoteMessage) -> str:
    if message.uid is not None:
        return f"uid:{state.uidvalidity}:{message.uid}"
    return f"uidl:{message.key}"


def _known_keys(state: _Run, keys: list[str]) -> set[str]:
    """Which of these dedupe keys are committed already (chunked IN queries, indexed)."""
    known: set[str] = set()
    for i in range(0, len(keys), KEY_CHUNK):
        chunk = keys[i : i + KEY_CHUNK]
        known.update(
            db.session.execute(
                select(SeenMessage.key).where(
                    SeenMessage.mail_account_id == state.account_id,
                    SeenMessage.host == state.host,
                    SeenMessage.folder == state.folder,
                    SeenMessage.key.in_(chunk),
                )
            ).scalars()
        )
    return known


def _known_content(state: _Run, sha256: str) -> bool:
    """After a UIDVALIDITY change: was this exact message stored from this account before?"""
    return (
        db.session.execute(
            select(SeenMessage.id)
            .where(SeenMessage.mail_account_id == state.account_id, SeenMessage.sha256 == sha256)
            .limit(1)
        ).first()
        is not None
    )


def _folder_state(state: _Run, mailbox: Mailbox) -> FolderState:
    """The folder's UIDVALIDITY and highest UID taken; notes a UIDVALIDITY change."""
    state.uidvalidity = mailbox.uidvalidity
    row = db.session.get(FolderState, (state.account_id, state.host, state.folder))
    if row is None:
        row = FolderState(
            mail_account_id=state.account_id,
            host=state.host,
            folder=state.folder,
            uidvalidity=state.uidvalidity,
            highest_uid=0,
        )
        db.session.add(row)
    elif row.uidvalidity != state.uidvalidity:
        state.log(
            f"UIDVALIDITY of {state.folder} changed from {row.uidvalidity} to "
            f"{state.uidvalidity}: recognising earlier mail by its content hash"
        )
        state.uidvalidity_changed = True
        row.uidvalidity = state.uidvalidity
        row.highest_uid = 0
    return row


def _report_oversized(state: _Run, mailbox: Mailbox, messages, max_size: int) -> None:
    """Leave oversized mail on the server; report each message once."""
    if not messages:
        return
    state.result.oversized = len(messages)
    known = set(
        db.session.execute(
            select(OversizedMessage.key).where(
                OversizedMessage.mail_account_id == state.account_id,
                OversizedMessage.host == state.host,
                OversizedMessage.folder == state.folder,
            )
        ).scalars()
    )
    new = [m for m in messages if _dedupe_key(state, m) not in known]
    if not new:
        return
    envelopes = mailbox.envelope(new)
    for m in new:
        sender, subject = envelopes.get(m.key, ("", ""))
        state.log(
            f"{m.key}: {m.size} bytes is over the limit of {max_size} bytes; left on the server "
            f"(From: {sender}, Subject: {subject})"
        )
        db.session.add(
            OversizedMessage(
                mail_account_id=state.account_id,
                host=state.host,
                folder=state.folder,
                key=_dedupe_key(state, m),
                size=m.size,
                from_addr=sender,
                subject=subject,
            )
        )
    db.session.commit()


def _save_counts(run: FetchRun, result: FetchResult) -> None:
    for name in ("fetched", "new_tickets", "follow_ups", "ignored", "failed", "oversized"):
        setattr(run, name, getattr(result, name))
    run.duplicates = result.duplicates


def _finish_run(state: _Run) -> None:
    """Write the fetch log, the account's last status and next run; release the lease."""
    db.session.rollback()
    run = db.session.get(FetchRun, state.run.id)
    account = db.session.get(MailAccount, state.account_id)
    result = state.result
    _save_counts(run, result)
    now = utcnow()
    run.finished_at = now
    run.status = result.status
    run.error = result.message or None
    run.log = "\n".join(result.log)
    account.last_run_at = now
    account.last_status = result.status if not account.needs_reauth else "reauth"
    account.last_message = result.summary()
    account.fetch_requested_at = None
    db.session.commit()
    release_lease(state.lease, next_run_at(account, now))


def next_run_at(account: MailAccount, now: datetime) -> datetime:
    """When the scheduler should fetch this account again."""
    minutes = account.fetch_interval_minutes or get_int_setting("FetchIntervalMinutes")
    return now + timedelta(minutes=minutes)


@dataclass
class ConnectionReport:
    folders: list[str]
    message_count: int


def test_connection(account: MailAccount) -> ConnectionReport:
    """Log in, list folders and count messages; changes nothing. Raises MailError."""
    settings = mailbox_settings_for(account)
    with open_mailbox(settings) as mailbox:
        return ConnectionReport(mailbox.list_folders(), mailbox.message_count())
