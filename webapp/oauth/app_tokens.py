"""App-only access (client credentials): one access token per profile, kept encrypted on the
profile row until 5 minutes before it expires, so every account of the profile and every
scheduler process shares it. Fetching a new one is serialized by the profile row's lock: one
token request per profile, however many accounts want one at the same moment.

Nothing here logs or returns a token, a secret or an assertion in a message."""

from __future__ import annotations

import logging

import requests
from authlib.integrations.base_client.errors import OAuthError
from sqlalchemy import update

from ..extensions import db
from ..models import OAuth2Profile, utcnow
from .certificates import peek_claims
from .client import (
    REFRESH_MARGIN,
    TOKEN_REQUEST_TIMEOUT,
    OAuth2TokenError,
    expires_at,
    locked_row,
    oauth_client,
)
from .errors import TRANSIENT_ERRORS, explain
from .providers import endpoint_error, endpoints_for

logger = logging.getLogger(__name__)

# Exchange Online's resource with every application permission the app was granted.
APP_ONLY_SCOPE = "https://outlook.office365.com/.default"
APP_ROLES = {"imap": "IMAP.AccessAsApp", "pop3": "POP.AccessAsApp"}


def _usable(profile: OAuth2Profile) -> bool:
    return bool(
        profile.app_access_token
        and profile.app_token_expires_at
        and profile.app_token_expires_at - REFRESH_MARGIN > utcnow()
    )


def app_access_token(profile: OAuth2Profile) -> str:
    """The profile's app-only access token, taken anew when about to expire.

    Raises OAuth2TokenError with a message for the admin."""
    if _usable(profile) and profile.app_access_token:
        return profile.app_access_token
    return _fetch_serialized(profile.id)


def forget_app_token(profile: OAuth2Profile) -> None:
    """Drop the cached token (the profile's client, credential or URLs changed)."""
    profile.app_access_token = None
    profile.app_token_expires_at = None


def _fetch_serialized(profile_id: int) -> str:
    db.session.commit()  # the token request runs in its own transaction
    profile = locked_row(OAuth2Profile, OAuth2Profile.id == profile_id, "changed_at")
    if profile is None:
        db.session.rollback()
        raise OAuth2TokenError("The mail account's OAuth2 profile was deleted.", "error")
    if _usable(profile) and profile.app_access_token:  # another fetcher took one meanwhile
        access_token = profile.app_access_token
        db.session.commit()
        return access_token
    try:
        token = _request_app_token(profile)
    except OAuth2TokenError:
        db.session.rollback()
        raise
    access_token = token["access_token"]
    db.session.execute(
        update(OAuth2Profile)
        .where(OAuth2Profile.id == profile_id)
        .values(
            app_access_token=access_token,
            app_token_expires_at=expires_at(token),
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    logger.info("OAuth2 app-only access token of profile %s taken", profile_id)
    return access_token


def _request_app_token(profile: OAuth2Profile) -> dict:
    """Ask the token endpoint with grant_type=client_credentials; raises OAuth2TokenError."""
    endpoints = endpoints_for(profile)
    problem = endpoint_error(endpoints)
    if problem:
        raise OAuth2TokenError(problem, "error")  # never post the credential to such a URL
    client = oauth_client(profile, scope=APP_ONLY_SCOPE)
    try:
        token = client.fetch_token(
            endpoints.token_url, grant_type="client_credentials", timeout=TOKEN_REQUEST_TIMEOUT
        )
    except OAuthError as e:
        status = "warning" if e.error in TRANSIENT_ERRORS else "error"
        message = "App-only token refused. " + explain(e.error, e.description)
        raise OAuth2TokenError(message, status) from None
    except requests.HTTPError as e:
        code = e.response.status_code if e.response is not None else 0
        status = "warning" if code >= 500 or code == 429 else "error"
        raise OAuth2TokenError(
            f"The token endpoint answered HTTP {code}; retrying later.", status
        ) from None
    except requests.RequestException as e:
        raise OAuth2TokenError(
            f"The token endpoint could not be reached ({type(e).__name__}); retrying later.",
            "warning",
        ) from None
    except ValueError:
        raise OAuth2TokenError("The token endpoint did not answer with JSON.", "error") from None
    finally:
        client.close()
    if not token.get("access_token"):
        raise OAuth2TokenError("The token endpoint answered without an access token.", "error")
    return dict(token)


def login_refused_hint(access_token: str, protocol: str, mailbox: str) -> str:
    """Plain words for a mail server refusing an app-only login ("AUTHENTICATE failed"):
    the token's roles tell a missing admin consent from a missing Exchange registration."""
    role = APP_ROLES.get(protocol, "IMAP.AccessAsApp")
    roles = peek_claims(access_token).get("roles") or []
    if isinstance(roles, str):
        roles = roles.split()
    if role not in roles:
        return (
            f"The app's token has no {role} permission: in Azure, App registrations > API "
            f"permissions, add Office 365 Exchange Online > Application permissions > {role} "
            "and press Grant admin consent."
        )
    return (
        f"The token was issued, but the mail server refused the login as {mailbox}: register "
        "the app's service principal in Exchange Online (New-ServicePrincipal -AppId ... "
        f"-ObjectId ...) and give it access to this mailbox (Add-MailboxPermission -Identity "
        f"{mailbox} -User <service principal id> -AccessRights FullAccess). Changes in "
        "Exchange can take up to an hour."
    )
