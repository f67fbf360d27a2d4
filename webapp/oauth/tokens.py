"""The token store: tokens are kept encrypted per account, the access token is reused until
shortly before it expires, and refreshes of one account are serialized so a rotated refresh
token is never lost. No function here logs or returns a token in a message."""

from __future__ import annotations

import logging
from typing import NoReturn

import requests
from authlib.integrations.base_client.errors import OAuthError

from ..extensions import db
from ..models import MailAccount, OAuth2Token, utcnow
from .app_tokens import app_access_token
from .client import (
    REFRESH_MARGIN,
    TOKEN_REQUEST_TIMEOUT,
    OAuth2TokenError,
    expires_at,
    locked_row,
    oauth_client,
)
from .errors import REAUTH_ERRORS, TRANSIENT_ERRORS, explain
from .providers import endpoint_error, endpoints_for, scopes_for

logger = logging.getLogger(__name__)

__all__ = [
    "REFRESH_MARGIN",
    "TOKEN_REQUEST_TIMEOUT",
    "OAuth2TokenError",
    "access_token_for",
    "oauth_client",
    "store_tokens",
]

REAUTH_HINT = "press Re-authorize on the mail account"


def store_tokens(account: MailAccount, token: dict, linked_by: str) -> OAuth2Token:
    """Keep the tokens of a fresh sign-in on the account (the caller commits)."""
    row = account.oauth2_token
    if row is None:
        row = OAuth2Token()
        account.oauth2_token = row
    now = utcnow()
    row.refresh_token = token.get("refresh_token")
    row.access_token = token["access_token"]
    row.access_token_expires_at = expires_at(token)
    row.last_refresh_at = now
    row.last_error = None
    row.linked_by = linked_by
    row.linked_at = now
    account.needs_reauth = False
    return row


def _usable(row: OAuth2Token) -> bool:
    return bool(
        row.access_token
        and row.access_token_expires_at
        and row.access_token_expires_at - REFRESH_MARGIN > utcnow()
    )


def access_token_for(account: MailAccount) -> str:
    """A valid access token for the account, refreshed when it is about to expire.

    Raises OAuth2TokenError after committing the bookkeeping (needs_reauth, last_error),
    because the fetch rolls back its own transaction on errors. An app-only profile's token
    is the profile's, shared by all its accounts (see app_tokens).
    """
    profile = account.oauth2_profile
    if profile is not None and profile.grant == "app_only":
        return app_access_token(profile)
    row = account.oauth2_token
    if row is not None and _usable(row) and row.access_token:
        return row.access_token
    return _refresh_serialized(account.id)


def _lock_token_row(account_id: int) -> OAuth2Token | None:
    """Start a transaction holding the token row's lock, and re-read the row inside it."""
    return locked_row(OAuth2Token, OAuth2Token.mail_account_id == account_id, "last_refresh_at")


def _refresh_serialized(account_id: int) -> str:
    db.session.commit()  # the refresh runs in its own transaction
    row = _lock_token_row(account_id)
    account = db.session.get(MailAccount, account_id)
    if account is None or row is None or not row.refresh_token:
        _give_up(account, row, "This mail account is not linked yet: " + REAUTH_HINT, "reauth")
    if _usable(row) and row.access_token:  # another fetcher refreshed while we waited
        access_token = row.access_token
        db.session.commit()
        return access_token
    token = _request_refresh(account, row)
    access_token = token["access_token"]
    row.access_token = access_token
    row.access_token_expires_at = expires_at(token)
    if token.get("refresh_token"):
        row.refresh_token = token["refresh_token"]  # rotation: persisted in this transaction
    row.last_refresh_at = utcnow()
    row.last_error = None
    db.session.commit()
    logger.info("OAuth2 access token of mail account %s refreshed", account_id)
    return access_token


def _request_refresh(account: MailAccount, row: OAuth2Token) -> dict:
    """Ask the token endpoint; on failure record why and raise OAuth2TokenError."""
    profile = account.oauth2_profile
    if profile is None:
        _give_up(account, row, "The mail account has no OAuth2 profile.", "error")
    endpoints = endpoints_for(profile)
    problem = endpoint_error(endpoints)
    if problem:
        _give_up(account, row, problem, "error")  # never post the secret to such a URL
    scope = scopes_for(account.account_type.protocol, profile.provider)
    client = oauth_client(profile, scope=scope)
    try:
        return client.refresh_token(
            endpoints.token_url,
            refresh_token=row.refresh_token,
            scope=scope,
            timeout=TOKEN_REQUEST_TIMEOUT,
        )
    except OAuthError as e:
        status = _status_of(e.error)
        message = explain(e.error, e.description)
        if status == "reauth":
            hint = "" if "Re-authorize" in message else f" ({REAUTH_HINT})"
            message = f"Re-authorization needed: {message}{hint}"
        _give_up(account, row, message, status)
    except requests.HTTPError as e:
        code = e.response.status_code if e.response is not None else 0
        status = "warning" if code >= 500 or code == 429 else "error"
        _give_up(account, row, f"The token endpoint answered HTTP {code}; retrying later.", status)
    except requests.RequestException as e:
        _give_up(
            account,
            row,
            f"The token endpoint could not be reached ({type(e).__name__}); retrying later.",
            "warning",
        )
    except ValueError:
        _give_up(account, row, "The token endpoint did not answer with JSON.", "error")
    finally:
        client.close()
    raise AssertionError("unreachable")


def _status_of(error: str | None) -> str:
    if error in REAUTH_ERRORS:
        return "reauth"
    if error in TRANSIENT_ERRORS:
        return "warning"
    return "error"


def _give_up(
    account: MailAccount | None, row: OAuth2Token | None, message: str, status: str
) -> NoReturn:
    """Commit why the account has no token (in its own transaction), then raise."""
    if row is not None:
        row.last_error = message
    if account is not None and status == "reauth":
        account.needs_reauth = True
        account.last_status = "reauth"
        account.last_message = message
    db.session.commit()
    account_id = account.id if account is not None else "?"
    logger.warning("OAuth2 token of mail account %s: %s", account_id, message)
    raise OAuth2TokenError(message, status)
