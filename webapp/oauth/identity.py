"""Who signed in: the id_token's preferred_username, checked before it is believed.

The signature is verified against the provider's key set (JWKS) when the provider has one;
the audience, expiry, issuer and tenant are always checked.
"""

from __future__ import annotations

import base64
import json
import time

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..models import OAuth2Profile
from ..validation import is_guid
from .providers import Endpoints

LEEWAY_SECONDS = 300


class IdentityError(Exception):
    """The id_token is missing or not trustworthy; str() is for the admin."""


def signed_in_identity(token: dict, profile: OAuth2Profile, endpoints: Endpoints) -> str:
    """The signed-in account's name (preferred_username, else email or upn), lowercased."""
    id_token = token.get("id_token")
    if not id_token:
        raise IdentityError(
            "The provider sent no id_token, so the signed-in account cannot be checked."
        )
    claims = _verified_claims(id_token, endpoints.jwks_url)
    _check_claims(claims, profile)
    name = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
    if not isinstance(name, str) or not name:
        raise IdentityError("The id_token does not say who signed in (no preferred_username).")
    return name.strip().lower()


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


def _check_claims(claims: dict, profile: OAuth2Profile) -> None:
    now = time.time()
    if claims.get("aud") != profile.client_id:
        raise IdentityError("The id_token was issued to another application (aud).")
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < now - LEEWAY_SECONDS:
        raise IdentityError("The id_token has expired.")
    tid = str(claims.get("tid") or "")
    issuer = str(claims.get("iss") or "")
    if not tid or not issuer.endswith(f"/{tid}/v2.0"):
        raise IdentityError("The id_token's issuer does not match its tenant.")
    if is_guid(profile.tenant_id) and tid.lower() != profile.tenant_id.lower():
        raise IdentityError("The id_token is from another tenant than the profile's.")
