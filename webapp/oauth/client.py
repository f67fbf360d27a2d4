"""The token endpoint client of a profile: how the client authenticates (its secret in the
POST body, or a signed client assertion made with its certificate's key), and the error every
token function raises. Nothing here logs a secret, key, assertion or token."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from authlib.common.urls import add_params_to_qs
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import ColumnElement, select, update

from ..extensions import db
from ..models import OAuth2Profile, utcnow
from .certificates import JWT_BEARER, CertificateError, client_assertion

# Refresh this long before the access token expires, so a fetch never starts with a token
# that dies halfway.
REFRESH_MARGIN = timedelta(minutes=5)
# Short: on SQLite the refresh holds the database write lock while it waits for the provider.
TOKEN_REQUEST_TIMEOUT = 15.0


Row = TypeVar("Row")


class OAuth2TokenError(Exception):
    """No access token: `fetch_status` is reauth, warning (transient) or error."""

    def __init__(self, admin_message: str, fetch_status: str) -> None:
        super().__init__(admin_message)
        self.admin_message = admin_message
        self.fetch_status = fetch_status


def uses_certificate(profile: OAuth2Profile) -> bool:
    return profile.credential == "certificate"


def _assertion_auth(profile: OAuth2Profile) -> Any:
    """An Authlib client auth method posting client_id and a fresh client assertion whose
    audience is the URL the request goes to (the token endpoint)."""
    key_pem, cert_pem, client_id = (
        profile.private_key or "",
        profile.certificate or "",
        profile.client_id,
    )

    def sign(client: Any, method: str, uri: str, headers: dict, body: str) -> tuple:
        try:
            assertion = client_assertion(client_id, uri, key_pem, cert_pem)
        except CertificateError as e:
            raise OAuth2TokenError(
                f"The profile's certificate cannot be used: {e}", "error"
            ) from None
        body = add_params_to_qs(
            body or "",
            [
                ("client_id", client_id),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion),
            ],
        )
        if "Content-Length" in headers:
            headers["Content-Length"] = str(len(body))
        return uri, headers, body

    return sign


def oauth_client(
    profile: OAuth2Profile, redirect_uri: str | None = None, scope: str | None = None
) -> OAuth2Session:
    """An Authlib client for one profile: PKCE S256, and the secret in the POST body or a
    client assertion signed with the certificate's key (private_key_jwt)."""
    certificate = uses_certificate(profile)
    return OAuth2Session(
        client_id=profile.client_id,
        client_secret=None if certificate else profile.client_secret,
        scope=scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=(
            _assertion_auth(profile) if certificate else "client_secret_post"
        ),
    )


def expires_at(token: dict) -> datetime:
    """When a token endpoint's answer expires (an hour when it does not say)."""
    try:
        seconds = int(token.get("expires_in") or 3600)
    except (TypeError, ValueError):
        seconds = 3600
    return utcnow() + timedelta(seconds=seconds)


def locked_row(model: type[Row], where: ColumnElement[bool], touch: str) -> Row | None:
    """Start a transaction holding one row's lock, and re-read the row inside it.

    SQLite has no row locks: a no-op UPDATE of the column `touch` takes the database write lock
    first, so a second fetcher waits here instead of reading what the first is replacing."""
    if db.session.get_bind().dialect.name == "sqlite":
        column = getattr(model, touch)
        db.session.execute(
            update(model)
            .where(where)
            .values({column: column})
            .execution_options(synchronize_session=False)
        )
    return db.session.execute(
        select(model).where(where).with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()
