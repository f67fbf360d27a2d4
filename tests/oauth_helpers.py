"""Shared setup for the OAuth2 tests: a Custom profile pointing at the local identity
provider, fresh users (IdP and, when needed, Dovecot), and the consent round trip driven
with the Flask test client plus plain HTTP to the IdP."""

from __future__ import annotations

import itertools
import uuid
from urllib.parse import parse_qs, urlsplit

import requests

from tests.idp.fixtures import IdpTenant
from tests.idp.server import LocalIdentityProvider
from webapp.extensions import db
from webapp.models import MailAccount, OAuth2Profile
from webapp.oauth.service import ProfileInput, create_profile

_numbers = itertools.count(1)
USER_PASSWORD = "Correct-Horse-9"


def new_username(prefix: str = "box") -> str:
    """A username unique in this test process (Dovecot users live for the whole session)."""
    return f"{prefix}{next(_numbers)}-{uuid.uuid4().hex[:6]}@contoso.test"


def add_idp_user(idp: LocalIdentityProvider, tenant: IdpTenant, prefix: str = "box") -> str:
    username = new_username(prefix)
    idp.add_user(tenant.tenant_id, username, USER_PASSWORD)
    return username


def make_profile(
    idp: LocalIdentityProvider, tenant: IdpTenant, name: str = "Contoso", tenant_id: str = ""
) -> int:
    """A Custom profile whose URL templates point at the local IdP (needs an app context);
    `tenant_id` names the tenant another way (its domain), else its GUID."""
    profile = create_profile(
        ProfileInput(
            name=name,
            provider="Custom",
            client_id=tenant.client_id,
            client_secret=tenant.client_secret,
            tenant_id=tenant_id or tenant.tenant_id,
            authorize_url=idp.base_url + "/{tenant}/oauth2/v2.0/authorize",
            token_url=idp.base_url + "/{tenant}/oauth2/v2.0/token",
        ),
        "test",
    )
    return profile.id


def account_form(profile_id: int, username: str, account_type: str = "IMAPOAuth2", **extra):
    """The mail account form as the browser posts it."""
    data = {
        "type": account_type,
        "oauth2_profile_id": str(profile_id),
        "username": username,
        "host": "",
        "port": "",
        "trusted": "0",
        "dispatch": "to",
        "validity": "valid",
        "verify_tls": "y",
        "after_fetch": "delete",
        "comment": "",
        "submit": "Save",
    }
    data.update({k: v for k, v in extra.items() if v is not None})
    return data


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def sign_in_at_idp(idp: LocalIdentityProvider, consent_url: str, as_user: str) -> str:
    """Follow a consent URL with auto-approve; return the callback path with its query."""
    idp.auto_approve_as(as_user)
    try:
        response = requests.get(consent_url, allow_redirects=False, timeout=10)
    finally:
        idp.auto_approve_as(None)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["Location"])
    return f"{location.path}?{location.query}"


def run_consent(client, idp, start_response, as_user: str):
    """From the form's redirect to the IdP, through sign-in, back to our callback (and on to
    the page it redirects to, as a browser does)."""
    assert start_response.status_code == 302, start_response.get_data(as_text=True)
    consent_url = start_response.headers["Location"]
    assert consent_url.startswith(idp.base_url), consent_url
    return follow_callback(client, sign_in_at_idp(idp, consent_url, as_user))


def follow_callback(client, callback_path: str):
    """GET the callback; it always answers 302 (the code must not stay in the address bar),
    and when it sends the browser to the bare callback URL for the result, follow that."""
    response = client.get(callback_path)
    assert response.status_code == 302, response.get_data(as_text=True)
    if urlsplit(response.headers["Location"]).path == "/oauth2/callback":
        assert not urlsplit(response.headers["Location"]).query
        return client.get("/oauth2/callback")
    return response


def link_account(client, idp, profile_id: int, username: str, as_user: str | None = None, **extra):
    """Add an OAuth2 account through the form and the consent; returns the callback response."""
    start = client.post("/mail-accounts/add", data=account_form(profile_id, username, **extra))
    return run_consent(client, idp, start, as_user or username)


def account_by_username(username: str) -> MailAccount | None:
    return db.session.query(MailAccount).filter_by(username=username).one_or_none()


def profile_by_name(name: str) -> OAuth2Profile | None:
    return db.session.query(OAuth2Profile).filter_by(name=name).one_or_none()
