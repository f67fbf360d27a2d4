"""The consent round trip: Save (or Re-authorize) sends the browser to the provider, the
callback exchanges the code and only then creates or updates the mail account. This module is
the consent logic; the screens are in `views.py`, and saving the account with its tokens is
`webapp.mail_accounts.service.link_signed_in_account`.

The pending form waits on the server (OAuth2PendingAuthorization, encrypted, keyed by a
random state, 10 minutes, used once), bound to the admin's session by a random value kept in
the signed session cookie. `mail-account authorize ID` binds it to the CLI instead: then the
callback works from any browser, because the admin opens the link on another machine. The
trade-off: whoever holds that link within 10 minutes can finish it, so it must not be shared;
the right-account check still refuses every identity but the mailbox's own (or, for a shared
mailbox, a delegate's), and the state still works only once.

The pending row also keeps what the flow started with: a nonce (checked in the id_token), the
client id, redirect URI, authorize/token/JWKS URLs and the tenant's issuer. The callback sends
the code only there, and refuses when the profile was changed meanwhile. It checks the
browser binding before it consumes the state, so a wrong browser cannot burn a sign-in.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError
from flask import current_app, g, session, url_for

from ..account_types import ACCOUNT_TYPES
from ..extensions import db
from ..models import AdminUser, OAuth2PendingAuthorization, OAuth2Profile, utcnow
from .errors import explain
from .identity import IdentityError, IdTokenExpectations, signed_in_identity, tenant_issuer
from .providers import (
    Endpoints,
    authorization_params,
    endpoint_error,
    endpoints_for,
    scopes_for,
)
from .tokens import TOKEN_REQUEST_TIMEOUT, oauth_client

PENDING_LIFETIME = timedelta(minutes=10)
CLI_BINDING = "cli"
SESSION_BINDING_KEY = "oauth2_binding"
CALLBACK_PATH = "/oauth2/callback"


class ConsentError(Exception):
    """The consent cannot start (e.g. no valid profile); str() is for the admin."""


class LinkError(Exception):
    """The sign-in did not give a usable link; str() is for the admin."""


@dataclass(frozen=True)
class ConsentStart:
    """Who starts a sign-in, what it is bound to, and where the provider sends the answer."""

    admin_user_id: int
    binding: str  # a browser session's random value, or CLI_BINDING
    callback_url: str


def redirect_uri() -> str:
    """The callback URL to register in Azure: PUBLIC_URL when set (Host is then ignored)."""
    public_url = current_app.config.get("PUBLIC_URL")
    if public_url:
        return public_url.rstrip("/") + CALLBACK_PATH
    return url_for("oauth2.callback", _external=True)


# ----- starting -----


def browser_start() -> ConsentStart:
    """A sign-in started by the signed-in admin, bound to this browser session."""
    return ConsentStart(g.admin.id, _session_binding(), redirect_uri())


def cli_start(admin_user_id: int, public_url: str) -> ConsentStart:
    """A sign-in started by `mail-account authorize`: the link works from any browser."""
    return ConsentStart(admin_user_id, CLI_BINDING, public_url.rstrip("/") + CALLBACK_PATH)


def _session_binding() -> str:
    binding = session.get(SESSION_BINDING_KEY)
    if not binding:
        binding = secrets.token_urlsafe(32)
        session[SESSION_BINDING_KEY] = binding
    return binding


def begin_consent(
    form_data: dict[str, Any], account_id: int | None, finish: bool, start: ConsentStart
) -> str:
    """Park the form under a fresh state and return the provider's consent URL.

    `form_data` is the mail account input as a dict (MailAccountInput.to_dict()); the consent
    reads its type, username, oauth2_profile_id and shared_mailbox."""
    profile = _valid_profile(form_data.get("oauth2_profile_id"))
    account_type = ACCOUNT_TYPES.get(str(form_data.get("type", "")))
    if account_type is None or not account_type.oauth2:
        raise ConsentError("The account type is not an OAuth2 type.")
    endpoints = endpoints_for(profile)
    problem = endpoint_error(endpoints)
    if problem:
        raise ConsentError(problem)
    try:
        issuer = tenant_issuer(profile, endpoints)
    except IdentityError as e:
        raise ConsentError(str(e)) from None
    state, verifier, nonce = (secrets.token_urlsafe(n) for n in (32, 64, 32))
    scope = scopes_for(account_type.protocol, profile.provider)
    client = oauth_client(profile, start.callback_url, scope)
    extra = {**authorization_params(profile.provider), "nonce": nonce}
    if not form_data.get("shared_mailbox"):
        # A shared mailbox cannot sign in itself: a delegate does, so no hint then.
        extra["login_hint"] = str(form_data.get("username", "")).strip()
    url, _ = client.create_authorization_url(
        endpoints.authorize_url, state=state, code_verifier=verifier, **extra
    )
    _purge_expired_pending()
    db.session.add(
        OAuth2PendingAuthorization(
            state=state,
            admin_user_id=start.admin_user_id,
            session_binding=start.binding,
            code_verifier=verifier,
            mail_account_id=account_id,
            form_data=json.dumps(form_data),
            finish=finish,
            expires_at=utcnow() + PENDING_LIFETIME,
            nonce=nonce,
            client_id=profile.client_id,
            redirect_uri=start.callback_url,
            authorize_url=endpoints.authorize_url,
            token_url=endpoints.token_url,
            jwks_url=endpoints.jwks_url,
            issuer=issuer,
        )
    )
    db.session.commit()
    return url


def _valid_profile(profile_id: Any) -> OAuth2Profile:
    try:
        profile = db.session.get(OAuth2Profile, int(str(profile_id)))
    except (TypeError, ValueError):
        profile = None
    if profile is None:
        raise ConsentError("Choose the OAuth2 profile.")
    if profile.validity != "valid":
        raise ConsentError("This OAuth2 profile is not valid.")
    if profile.grant == "app_only":
        raise ConsentError(
            "This OAuth2 profile uses app-only access: nobody signs in. Save the mail account; "
            "its mailbox login is checked with the app's token."
        )
    return profile


def _purge_expired_pending() -> None:
    db.session.query(OAuth2PendingAuthorization).filter(
        OAuth2PendingAuthorization.expires_at < utcnow()
    ).delete()


# ----- the callback -----


@dataclass(frozen=True)
class Pending:
    """A pending authorization as it was started (find it, check it, then consume it)."""

    state: str
    admin_user_id: int
    session_binding: str
    code_verifier: str
    mail_account_id: int | None
    form_data: dict[str, Any]  # the mail account input, as given to begin_consent
    finish: bool
    nonce: str | None
    client_id: str | None
    redirect_uri: str | None
    endpoints: Endpoints | None  # None: parked before the start was kept (start again)
    issuer: str | None


def find_pending(state: str) -> Pending | None:
    """The pending authorization for state, NOT yet consumed; None if unknown or expired.

    The caller checks the browser binding first and then calls `consume_pending`, so a
    callback from a wrong browser does not burn the state of the right one."""
    if not state or len(state) > 200:
        return None
    row = db.session.get(OAuth2PendingAuthorization, state)
    if row is None or row.expires_at < utcnow():
        return None
    endpoints = None
    if row.authorize_url and row.token_url:
        endpoints = Endpoints(row.authorize_url, row.token_url, row.jwks_url)
    return Pending(
        row.state,
        row.admin_user_id,
        row.session_binding,
        row.code_verifier,
        row.mail_account_id,
        json.loads(row.form_data),
        row.finish,
        row.nonce,
        row.client_id,
        row.redirect_uri,
        endpoints,
        row.issuer,
    )


def consume_pending(pending: Pending) -> bool:
    """Delete the pending row so the state works once; False when a replay won the race."""
    deleted = (
        db.session.query(OAuth2PendingAuthorization)
        .filter(OAuth2PendingAuthorization.state == pending.state)
        .delete(synchronize_session=False)
    )
    db.session.commit()
    return deleted == 1


def bound_to_this_browser(pending: Pending) -> bool:
    """The callback comes from the browser session (and admin) that started the sign-in."""
    if pending.session_binding == CLI_BINDING:
        return True
    admin = g.get("admin")
    binding = session.get(SESSION_BINDING_KEY) or ""
    return (
        admin is not None
        and admin.id == pending.admin_user_id
        and secrets.compare_digest(binding, pending.session_binding)
    )


def sign_in(pending: Pending, code: str) -> tuple[dict, str]:
    """Exchange the code and check who signed in: the token and the signed-in name.

    Everything is sent where the flow started (the pending row), and only if the profile
    still says so. Raises LinkError unless it is the mailbox's own account (or, for a shared
    mailbox, any account: a delegate's)."""
    data = pending.form_data
    profile = _valid_profile_or_link_error(data.get("oauth2_profile_id"))
    _check_unchanged(profile, pending)
    assert pending.endpoints and pending.redirect_uri and pending.client_id and pending.nonce
    token = _exchange_code(profile, code, pending)
    expected = IdTokenExpectations(
        pending.client_id,
        pending.issuer,
        pending.endpoints.jwks_url,
        pending.nonce,
        profile.tenant_id,
        profile.provider,
    )
    try:
        signed_in = signed_in_identity(token, expected)
    except IdentityError as e:
        raise LinkError(str(e)) from None
    if not token.get("refresh_token"):
        # Without one the mailbox would stop after an hour, when the access token expires.
        raise LinkError(
            "The provider sent no refresh token, so the mailbox would stop when the access "
            "token expires (about an hour). Postmaster asks for offline access (Microsoft: "
            "offline_access; Google: access_type=offline, prompt=consent): check that the app "
            "may have it, then sign in again."
        )
    expected_name = str(data.get("username", "")).strip()
    if not data.get("shared_mailbox") and signed_in != expected_name.lower():
        raise LinkError(
            f"You signed in at the provider as {signed_in}, but this mail account is "
            f"{expected_name}. Sign in as {expected_name} (use a private window, so the "
            "browser does not reuse the account that is already signed in), or mark the "
            f"account as Shared mailbox if {signed_in} is a delegate with access to it."
        )
    return token, signed_in


def _check_unchanged(profile: OAuth2Profile, pending: Pending) -> None:
    """The profile still sends to where the flow started (its secret goes along)."""
    if not (pending.endpoints and pending.redirect_uri and pending.client_id and pending.nonce):
        raise LinkError("This sign-in was started by an older version. Start it again.")
    if endpoints_for(profile) != pending.endpoints or profile.client_id != pending.client_id:
        raise LinkError(
            f"The OAuth2 profile {profile.name} was changed during the sign-in. Start the "
            "sign-in again."
        )


def _valid_profile_or_link_error(profile_id: Any) -> OAuth2Profile:
    try:
        return _valid_profile(profile_id)
    except ConsentError as e:
        raise LinkError(str(e)) from None


def _exchange_code(profile: OAuth2Profile, code: str, pending: Pending) -> dict:
    if not code:
        raise LinkError("The provider sent neither a code nor an error.")
    assert pending.endpoints is not None
    callback_url = pending.redirect_uri or ""
    client = oauth_client(profile, callback_url)
    try:
        return client.fetch_token(
            pending.endpoints.token_url,
            grant_type="authorization_code",
            code=code,
            code_verifier=pending.code_verifier,
            timeout=TOKEN_REQUEST_TIMEOUT,
        )
    except OAuthError as e:
        raise LinkError(explain(e.error, e.description, callback_url)) from None
    except requests.RequestException as e:
        raise LinkError(
            f"The provider's token endpoint could not be reached ({type(e).__name__}). Try again."
        ) from None
    except ValueError:
        raise LinkError("The provider's token endpoint did not answer with JSON.") from None
    finally:
        client.close()


def pending_actor(pending: Pending) -> str | None:
    """The admin who started the sign-in, for Created/Changed by ("name (cli)" from the CLI)."""
    admin = db.session.get(AdminUser, pending.admin_user_id)
    name = admin.username if admin is not None else None
    return f"{name} (cli)" if pending.session_binding == CLI_BINDING and name else name
