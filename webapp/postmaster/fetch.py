"""fetch_account(): THE fetch path, called by the CLI, by the scheduler and (through the
scheduler) by "Fetch now".

The parts: batches.py (the download / commit / delete-on-server loop), ledger.py (dedupe
keys and the folder's UIDVALIDITY), runs.py (the run's state, counts, fetch log and next run).
"""

from __future__ import annotations

from flask import current_app

from ..extensions import db
from ..models import FetchRun, MailAccount
from ..oauth.app_tokens import login_refused_hint
from ..oauth.tokens import access_token_for
from ..states import FetchStatus
from .batches import FetchStopped, fetch_folder
from .hosts import SlotWaitStopped, connection_slot
from .lease import Lease, LeaseLost, claim_account, lease_holder, renew_lease
from .ledger import mark_finished
from .mailbox import MailboxSettings, MailError, MailLoginError, open_mailbox
from .runs import FetchOptions, FetchResult, RunState, fail_run, finish_run, internal_error_text

__all__ = [
    "FetchOptions",
    "FetchResult",
    "FetchStopped",
    "fetch_account",
    "fetch_with_lease",
    "mailbox_settings_for",
]


def fetch_account(account_id: int, options: FetchOptions | None = None) -> FetchResult:
    """Fetch one account under its lease; never raises for mail or server problems."""
    options = options or FetchOptions()
    lease_seconds = current_app.config["LEASE_SECONDS"]
    account = db.session.get(MailAccount, account_id)
    if account is None:
        return FetchResult(
            account_id, FetchStatus.ERROR, f"Mail account {account_id} does not exist"
        )
    lease = claim_account(account_id, options.owner, lease_seconds)
    if lease is None:
        return FetchResult(account_id, FetchStatus.BUSY, busy_message(account_id))
    return fetch_with_lease(lease, options)


def busy_message(account_id: int) -> str:
    """Who holds the account's lease and until when (it may have just been released)."""
    holder = lease_holder(account_id)
    if holder is None:
        return "already being fetched by another fetcher, which has just finished: try again"
    until = holder.expires_at.strftime("%H:%M:%S")
    return f"already being fetched by {holder.owner} (lease until {until} UTC)"


def fetch_with_lease(lease: Lease, options: FetchOptions) -> FetchResult:
    """Fetch an account whose lease the caller already holds; always releases it."""
    # populate_existing: fresh values even when the session holds an unexpired copy.
    account = db.session.get(MailAccount, lease.account_id, populate_existing=True)
    if account is None:
        raise LookupError(f"mail account {lease.account_id} does not exist")
    result = FetchResult(account.id, FetchStatus.OK)
    run = FetchRun(
        mail_account_id=account.id,
        trigger=options.trigger,
        owner=lease.owner,
        lease_generation=lease.generation,
    )
    db.session.add(run)
    try:
        # The run starts in a transaction that proves the lease is still ours: a claim that
        # took it over earlier sees this run (and closes it) or this run is never written.
        renew_lease(lease, current_app.config["LEASE_SECONDS"])
        db.session.flush()  # the run's id, read before the commit expires it
    except LeaseLost as e:
        db.session.rollback()
        return FetchResult(lease.account_id, FetchStatus.ERROR, f"{e} before the fetch started")
    result.run_id = run.id
    db.session.commit()
    state = RunState(account, account.id, lease, run, result, options)
    if account.needs_reauth:
        # No token request for a dead grant: one clear line until an admin re-authorizes.
        fail_run(
            state, FetchStatus.REAUTH, "Re-authorization needed: press Re-authorize on the account"
        )
        finish_run(state)
        return result
    try:
        _fetch(state)
    except LeaseLost as e:
        fail_run(state, FetchStatus.ERROR, str(e))
    except (FetchStopped, SlotWaitStopped):
        fail_run(
            state,
            FetchStatus.WARNING,
            "stopped before the end; the rest is fetched by the next run",
        )
    except MailError as e:
        fail_run(state, FetchStatus.ERROR, _with_app_only_hint(account, e))
    except Exception as e:  # the one broad except: one broken account never stops the rest
        current_app.logger.exception("fetch of mail account %s failed", account.id)
        status = FetchStatus(getattr(e, "fetch_status", FetchStatus.ERROR))
        fail_run(state, status, getattr(e, "admin_message", None) or internal_error_text(e))
    finish_run(state)
    return result


def _with_app_only_hint(account: MailAccount, error: MailError) -> str:
    """A refused app-only login says what to check in Azure or Exchange."""
    profile = account.oauth2_profile
    if not isinstance(error, MailLoginError) or profile is None or profile.grant != "app_only":
        return str(error)
    token = profile.app_access_token or ""
    return f"{error} {login_refused_hint(token, account.account_type.protocol, account.username)}"


def _fetch(state: RunState) -> None:
    account = state.account
    settings = mailbox_settings_for(account)
    state.host = account.host.lower()
    state.folder = account.effective_folder
    limit = int(current_app.config["MAX_CONNECTIONS_PER_HOST"])
    with connection_slot(state.host, limit, state.lease, state.options.should_stop) as waited:
        if waited is not None:
            state.log(
                f"waited {waited:.1f} s for a free connection to {state.host} "
                f"(MAX_CONNECTIONS_PER_HOST {limit})"
            )
        state.log(f"connecting to {account.type} {account.host}:{account.effective_port}")
        with open_mailbox(settings, debug=state.log) as mailbox:  # the conversation, masked
            if mailbox.tls_session_reused:
                state.log("TLS session resumed")
            fetch_folder(state, mailbox)
    if state.finished_keys:
        mark_finished(state, state.finished_keys)


def mailbox_settings_for(account: MailAccount) -> MailboxSettings:
    """The connection settings of an account, with its password or a fresh access token."""
    account_type = account.account_type
    config = current_app.config
    access_token = None
    oauth_user = None
    if account_type.oauth2:
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
