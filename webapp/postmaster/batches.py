"""The batch loop of one folder: download, commit with the dedupe keys, then finish on the
server (delete, move or mark) exactly what was committed.

Exactly once, nothing lost: each batch of messages is stored together with its dedupe keys
in one transaction, and only after that commit is the server told to delete (or move, or mark)
exactly those messages. A crash anywhere leaves either uncommitted work (the messages are
fetched again) or committed keys (the messages are recognised and only finished).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import insert

from ..extensions import db
from ..models import FolderState, SeenMessage, table_of, utcnow
from ..settings.store import get_int_setting
from ..states import OutcomeKind
from .context import PipelineContext, build_context
from .faults import fault_point
from .lease import renew_lease
from .ledger import dedupe_key, folder_state, known_content, known_keys
from .mailbox import Mailbox, RemoteMessage
from .oversized import fetch_once_keys, forget_stored, report_oversized, uids_below
from .parse import ParseTimeout, prestart
from .pipeline import Parsed, ParseOptions, parse_many_or_error, parse_options, process_batch
from .runs import RunState, count_outcome, save_counts

_INSERT_SEEN = insert(table_of(SeenMessage))  # Core executemany: one statement per batch


class Downloaded(list[tuple[RemoteMessage, bytes, Parsed]]):
    """What one batch's download yields: each message, its bytes and its parse."""

    deferred = 0  # messages of the batch left for the next run (the parse budget ran out)


DedupeKeys = dict[str, str]  # RemoteMessage.key -> its dedupe key (SeenMessage.key)


class FetchStopped(Exception):
    """The caller asked the fetch to stop (shutdown or deadline) between batches."""


@dataclass
class FolderFetch:
    """What every batch of one folder's fetch shares."""

    state: RunState
    mailbox: Mailbox
    ctx: PipelineContext
    keys: DedupeKeys
    folder_state: FolderState | None  # IMAP only: the highest UID taken so far
    parse: ParseOptions
    # Seconds of parsing per batch once a message hit the time limit: a batch of mail that
    # each take the whole limit must not outlive the lease (renewed at each commit), or the
    # account would fetch that batch again and again.
    parse_budget: float


def fetch_folder(state: RunState, mailbox: Mailbox) -> None:
    """Fetch the account's folder: new mail in batches, and finish what was stored before."""
    account = state.account
    is_imap = account.account_type.is_imap
    keep = account.after_fetch == "keep"
    folder = folder_state(state, mailbox) if is_imap else None
    min_uid = folder.highest_uid + 1 if (folder is not None and keep) else None
    anyway = fetch_once_keys(state)  # oversized mail an admin asked to fetch once
    below = uids_below(state, min_uid) if min_uid is not None else []
    messages = mailbox.list_messages(min_uid=min_uid, also_uids=below)
    state.log(f"{len(messages)} messages on the server in {state.folder}")
    if not messages:
        # Nothing listed: no settings to read, nothing to store or finish; only mail over
        # the limit listed before may be gone now (or belong to the old folder).
        state.result.oversized = report_oversized(state, mailbox, [], 0, anyway)
        return
    max_size = get_int_setting("MaxMessageSizeMB") * 1024 * 1024
    small = [m for m in messages if m.size <= max_size or dedupe_key(state, m) in anyway]
    over = [m for m in messages if m.size > max_size and dedupe_key(state, m) not in anyway]
    state.result.oversized = report_oversized(state, mailbox, over, max_size, anyway)
    for m in messages:
        if m.size > max_size and dedupe_key(state, m) in anyway:
            state.log(f"{m.key}: {m.size} bytes is over the limit; fetched once, as asked")

    keys = {m.key: dedupe_key(state, m) for m in small}
    known = known_keys(state, list(keys.values()))
    seen_before = [m for m in small if keys[m.key] in known]
    todo = [m for m in small if keys[m.key] not in known]
    if seen_before and not keep:
        # Stored by an earlier run that stopped before the server-side delete: finish only.
        state.result.duplicates += len(seen_before)
        state.log(f"{len(seen_before)} messages were stored before; finishing them on the server")
        finish_on_server(state, mailbox, seen_before, keys)

    cap = get_int_setting("MaxMessagesPerRun")
    if len(todo) > cap:
        state.log(f"{len(todo)} new messages; taking {cap} (MaxMessagesPerRun), rest next run")
        todo = todo[:cap]
    if not todo:
        return  # nothing new: no parser process, no pipeline context (eight queries)
    prestart()  # the parser's worker process starts while the context loads and mail downloads
    ctx = build_context(account)
    for warning in ctx.warnings:  # e.g. the default queue is gone: said once per run
        state.log(f"warning: {warning}")
    budget = current_app.config["LEASE_SECONDS"] / 4
    job = FolderFetch(state, mailbox, ctx, keys, folder, parse_options(), budget)
    _run_batches(job, list(batches(todo)))
    if anyway:
        forget_stored(state, anyway)


def _run_batches(job: FolderFetch, batches: list[list[RemoteMessage]]) -> None:
    """Download, store and finish the batches in order, stopping between them if asked."""
    state, mailbox = job.state, job.mailbox
    max_bytes = current_app.config["FETCH_BATCH_BYTES"]
    # The next batch downloads in a helper thread while this one is parsed and stored (the
    # server and the network work on the other core meanwhile). Only downloads overlap: the
    # connection is used by one thread at a time, and a batch is deleted on the server only
    # after its commit and after the next download has finished. At most FETCH_BATCH_BYTES of
    # mail is in flight at once: a next batch that would exceed it downloads afterwards.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-download") as pool:
        pending: Future[Downloaded] | None = None
        for i, batch in enumerate(batches):
            if state.options.should_stop and state.options.should_stop():
                if pending is not None:
                    wait([pending])  # the connection is the helper's until its download ends
                finish_unfinished(state, mailbox, job.keys)
                raise FetchStopped()
            fault_point("before_fetch")
            downloaded = pending.result() if pending is not None else download(job, batch)
            pending = None
            following = batches[i + 1] if i + 1 < len(batches) else None
            if downloaded.deferred:
                following = None  # keep UID order: the rest of the folder comes next run
            if following is not None and batch_size(batch) + batch_size(following) <= max_bytes:
                pending = pool.submit(download, job, following)
            fetch_batch(job, downloaded, pending)
            if downloaded.deferred:
                state.log(
                    f"parsing took longer than {job.parse_budget:g} s for this batch; "
                    f"{downloaded.deferred} messages are left for the next run"
                )
                break
    finish_unfinished(state, mailbox, job.keys)


def finish_unfinished(state: RunState, mailbox: Mailbox, keys: DedupeKeys) -> None:
    """Delete (move, mark) on the server what earlier batches committed."""
    messages, state.unfinished = state.unfinished, []
    finish_on_server(state, mailbox, messages, keys)


def batches(messages: Sequence[RemoteMessage]) -> Iterable[list[RemoteMessage]]:
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


def batch_size(batch: Sequence[RemoteMessage]) -> int:
    """The batch's size on the server, in bytes."""
    return sum(m.size for m in batch)


def download(job: FolderFetch, batch: Sequence[RemoteMessage]) -> Downloaded:
    """The helper thread's work: download one batch and parse it (no database, no app
    context). Parsing (in a worker process, killed at the time limit) overlaps the main
    thread's database writes. Once mail of the batch hit the time limit and the batch's parse
    budget is spent, the rest of the batch is left for the next run."""
    fetched = list(job.mailbox.fetch(batch))
    downloaded = Downloaded()
    started = time.monotonic()
    results = parse_many_or_error([raw for _message, raw in fetched], job.parse)
    timed_out = False  # normal mail never waits: only a batch with mail over the limit
    for (message, raw), parsed in zip(fetched, results, strict=False):
        downloaded.append((message, raw, parsed))
        timed_out = timed_out or isinstance(parsed, ParseTimeout)
        if timed_out and time.monotonic() - started > job.parse_budget:
            break
    results.close()  # kills the worker if it was still parsing the rest
    downloaded.deferred = len(fetched) - len(downloaded)
    return downloaded


def fetch_batch(
    job: FolderFetch, downloaded: Downloaded, pending: Future[Downloaded] | None = None
) -> None:
    """Process and commit one downloaded batch; finish it on the server with the batches
    before it once FETCH_DELETE_EVERY messages are committed and not yet finished.

    pending: the next batch's download, running on the same connection; it must be done
    before the delete is sent (its own errors are raised when its batch is taken).
    """
    state, result = job.state, job.state.result
    seen = _store_batch(job, downloaded)
    result.fetched += len(seen)
    if seen:
        db.session.execute(_INSERT_SEEN, seen)
    stored = [message for message, _raw, _parsed in downloaded]
    if job.folder_state is not None and stored:
        highest = max(m.uid or 0 for m in stored)
        job.folder_state.highest_uid = max(job.folder_state.highest_uid, highest)
    save_counts(state.run, result)
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
        finish_on_server(state, job.mailbox, messages, job.keys, lease_renewed=True)


def _store_batch(job: FolderFetch, downloaded: Downloaded) -> list[dict[str, Any]]:
    """Run the batch through the pipeline (not yet committed); its SeenMessage rows."""
    state, result = job.state, job.state.result
    seen: list[dict[str, Any]] = []
    todo: list[tuple[RemoteMessage, bytes, Parsed, dict[str, Any]]] = []
    batch_hashes: set[str] = set()  # not inserted yet, so known_content cannot see them
    for message, raw, parsed in downloaded:
        row: dict[str, Any] = {
            "mail_account_id": state.account_id,
            "host": state.host,
            "folder": state.folder,
            "key": job.keys[message.key],
            "sha256": None,
            "outcome": OutcomeKind.DUPLICATE,
            "article_id": None,
            "created_at": utcnow(),
        }
        seen.append(row)
        if state.uidvalidity_changed:
            row["sha256"] = sha256 = hashlib.sha256(raw).hexdigest()
            if sha256 in batch_hashes or known_content(state, sha256):
                result.duplicates += 1
                state.log(f"UID {message.uid}: already stored before UIDVALIDITY changed; skipped")
                continue
            batch_hashes.add(sha256)
        todo.append((message, raw, parsed, row))
    outcomes = process_batch(job.ctx, [t[1] for t in todo], parsed=[t[2] for t in todo])
    for (message, _raw, _parsed, row), outcome in zip(todo, outcomes, strict=True):
        row["outcome"], row["article_id"] = outcome.kind, outcome.article_id
        row["sha256"] = outcome.sha256
        count_outcome(result, outcome.kind)
        for line in outcome.log:
            state.log(f"{message.key}: {line}")
    return seen


def finish_on_server(
    state: RunState,
    mailbox: Mailbox,
    messages: list[RemoteMessage],
    keys: DedupeKeys,
    lease_renewed: bool = False,
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
        mailbox.move(remote_keys, account.move_folder or "")  # the form requires it
    else:
        mailbox.delete(remote_keys, on_flagged=lambda: fault_point("during_delete"))
    fault_point("after_delete")
    state.finished_keys.extend(keys[m.key] for m in messages)
