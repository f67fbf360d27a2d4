"""Who signed in: the id_token's preferred_username (Google: its verified email), checked
before it is believed.

The signature is verified against the provider's key set (JWKS) when the provider has one
(Microsoft, Google, a Custom provider with a JWKS URL); the audience, expiry, nonce and
issuer are always checked: exactly the tenant's (Microsoft), accounts.google.com (Google),
or the Custom profile's issuer when it names one.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..models import OAuth2Profile
from ..validation import is_guid
from .providers import GOOGLE_ISSUERS, Endpoints, url_error

LEEWAY_SECONDS = 300


class IdentityError(Exception):
    """The id_token is missing or not trustworthy; str() is for the admin."""


@dataclass(frozen=True)
class IdTokenExpectations:
    """What the id_token must say, as the consent started (kept in the pending row)."""

    client_id: str
    issuer: str | None  # None: no discovery document (a Custom URL layout), shape check only
    jwks_url: str | None
    nonce: str
    tenant_id: str  # the profile's tenant as typed: a GUID or a domain
    provider: str = "MicrosoftAzure"


def signed_in_identity(token: dict, expected: IdTokenExpectations) -> str:
    """The signed-in account's name (preferred_username, else email or upn; Google: the
    verified email), lowercased."""
    id_token = token.get("id_token")
    if not id_token:
        raise IdentityError(
            "The provider sent no id_token, so the signed-in account cannot be checked."
        )
    claims = _verified_claims(id_token, expected.jwks_url)
    _check_claims(claims, expected)
    if expected.provider == "Google":
        return _google_email(claims, expected.client_id)
    name = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
    if not isinstance(name, str) or not name:
        raise IdentityError("The id_token does not say who signed in (no preferred_username).")
    return name.strip().lower()


def _google_email(claims: dict, client_id: str) -> str:
    """Google names the account by its email, believed only when Google verified it."""
    if "azp" in claims and claims["azp"] != client_id:
        raise IdentityError("The id_token was issued to another application (azp).")
    email = claims.get("email")
    if not isinstance(email, str) or not email.strip():
        raise IdentityError(
            "The id_token does not say who signed in (no email): the consent must ask for "
            "the email scope."
        )
    if claims.get("email_verified") is not True:
        raise IdentityError(
            f"Google has not verified the email address {email.strip():.100} of the account "
            "that signed in, so it cannot prove which mailbox it is."
        )
    return email.strip().lower()


def tenant_issuer(profile: OAuth2Profile, endpoints: Endpoints) -> str | None:
    """The issuer the tenant's id_tokens must name exactly, fixed when the consent starts.

    Google's is fixed; a Custom profile may name one. A Microsoft tenant GUID gives it
    directly; a domain tenant (or a Custom provider without one) asks the tenant's OpenID
    configuration, whose issuer names the tenant's GUID. None when the token URL has no
    Microsoft v2 layout (no configuration to ask). Raises IdentityError."""
    tenant = profile.tenant_id.strip().lower()
    if profile.provider == "Google":
        return GOOGLE_ISSUERS[0]
    if profile.provider == "Custom" and profile.issuer:
        return profile.issuer.replace("{tenant}", profile.tenant_id)
    if profile.provider == "MicrosoftAzure" and is_guid(tenant):
        return f"https://login.microsoftonline.com/{tenant}/v2.0"
    suffix = "/oauth2/v2.0/token"
    if not endpoints.token_url.endswith(suffix):
        return None
    url = endpoints.token_url.removesuffix(suffix) + "/v2.0/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        issuer = response.json().get("issuer")
    except (requests.RequestException, ValueError, AttributeError) as e:
        raise IdentityError(
            f"The tenant's OpenID configuration could not be loaded ({type(e).__name__})."
        ) from None
    named = issuer_tenant(issuer) if isinstance(issuer, str) else None
    if not isinstance(issuer, str) or named is None or url_error(issuer) is not None:
        raise IdentityError("The tenant's OpenID configuration names no valid issuer.")
    if is_guid(tenant) and named != tenant:
        raise IdentityError("The tenant's OpenID configuration names another tenant.")
    return issuer


def issuer_tenant(issuer: str) -> str | None:
    """The tenant GUID an issuer like https://login.microsoftonline.com/{GUID}/v2.0 names."""
    parts = urlsplit(issuer).path.strip("/").split("/")
    if len(parts) == 2 and parts[1] == "v2.0" and is_guid(parts[0]):
        return parts[0].lower()
    return None


def _verified_claims(id_token: str, jwks_url: str | None) -> dict:
    if jwks_url is None:
        return _unverified_claims(id_token)  # straight from the token endpoint over TLS
    try:
        response = requests.get(jwks_url, timeout=10)
        response.raise_for_status()
        key_set = KeySet.import_key_set(response.json())
        return dict(jwt.decode(id_token, key_set, algorithms=["RS256"]).claims)
    except requests.RequestException as e:
        raise IdentityError(f"The provider's signing keys could not be loaded: {e}") from None
    except (JoseError, ValueError) as e:
        raise IdentityError(f"The id_token's signature is not valid ({e}).") from None


def _unverified_claims(id_token: str) -> dict:
    try:
        payload = id_token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError) as e:
        raise IdentityError("The id_token is malformed.") from e
    if not isinstance(claims, dict):
        raise IdentityError("The id_token is malformed.")
    return claims


def _check_claims(claims: dict, expected: IdTokenExpectations) -> None:
    now = time.time()
    if claims.get("aud") != expected.client_id:
        raise IdentityError("The id_token was issued to another application (aud).")
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < now - LEEWAY_SECONDS:
        raise IdentityError("The id_token has expired.")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not secrets.compare_digest(nonce, expected.nonce):
        raise IdentityError(
            "The id_token does not belong to this sign-in (nonce). Start the sign-in again."
        )
    _check_issuer(claims, expected)


def _check_issuer(claims: dict, expected: IdTokenExpectations) -> None:
    tid = str(claims.get("tid") or "").lower()
    issuer = claims.get("iss")
    if expected.provider == "Google":
        if issuer not in GOOGLE_ISSUERS:
            raise IdentityError(
                f"The id_token was issued by {issuer!s:.100}, not by Google "
                "(https://accounts.google.com)."
            )
        return
    if expected.issuer is not None and issuer_tenant(expected.issuer) is None:
        # A Custom profile's own issuer: exactly it, and no Microsoft tenant claims.
        if issuer != expected.issuer:
            raise IdentityError(
                f"The id_token was issued by {issuer!s:.100}, not by the profile's issuer "
                f"{expected.issuer}."
            )
        return
    if expected.issuer is not None:
        if issuer != expected.issuer:
            raise IdentityError(
                f"The id_token was issued by {issuer!s:.100}, not by the tenant's issuer "
                f"{expected.issuer}."
            )
        if issuer_tenant(expected.issuer) != tid:
            raise IdentityError("The id_token is from another tenant than the profile's.")
    elif not tid or not isinstance(issuer, str) or not issuer.endswith(f"/{tid}/v2.0"):
        raise IdentityError("The id_token's issuer does not match its tenant.")
    if is_guid(expected.tenant_id) and tid != expected.tenant_id.strip().lower():
        raise IdentityError("The id_token is from another tenant than the profile's.")
