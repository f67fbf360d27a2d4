"""Pytest fixtures for the local identity provider; import with `from tests.idp.fixtures import *`.

Override `idp_redirect_uris` in a conftest to register the app's real callback URL.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .server import LocalIdentityProvider

__all__ = ["IdpTenant", "idp", "idp_redirect_uris", "ms_tenant"]

TENANT_ID = "5f1c3a2e-8d4b-4e6f-9a7c-0b1d2e3f4a5b"
TENANT_DOMAIN = "contoso.test"
CLIENT_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
# Real secret values contain "~" and "." like this one; the secret ID is a GUID.
CLIENT_SECRET = "Xq8~Tz.4Kb_rN2vLw-9pQeYh7sDf3GjMa1cVbU0"
CLIENT_SECRET_ID = "f0e1d2c3-b4a5-4968-8776-655443322110"
USERNAME = "admin@contoso.test"
PASSWORD = "Correct-Horse-9"
SHARED_MAILBOX = "support@contoso.test"
IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
POP_SCOPE = "https://outlook.office.com/POP.AccessAsUser.All"
MAIL_SCOPES = f"{IMAP_SCOPE} {POP_SCOPE} offline_access openid profile email"


@dataclass(frozen=True)
class IdpTenant:
    """A registered tenant, app and user, with the URLs to reach them."""

    tenant_id: str
    domain: str
    client_id: str
    client_secret: str
    client_secret_id: str
    redirect_uri: str
    username: str
    password: str
    shared_mailbox: str
    scope: str
    authorize_url: str
    token_url: str


@pytest.fixture
def idp() -> Iterator[LocalIdentityProvider]:
    """A running, empty identity provider, stopped after the test."""
    provider = LocalIdentityProvider()
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def idp_redirect_uris() -> list[str]:
    """Redirect URIs registered for the default app; override to add the app's callback."""
    return ["http://localhost:5000/oauth/microsoft/callback"]


@pytest.fixture
def ms_tenant(idp: LocalIdentityProvider, idp_redirect_uris: list[str]) -> IdpTenant:
    """The idp with one tenant (GUID and domain), one web app and one user registered."""
    idp.add_tenant(TENANT_ID, TENANT_DOMAIN)
    idp.add_app(TENANT_ID, CLIENT_ID, CLIENT_SECRET, idp_redirect_uris)
    idp.add_user(TENANT_ID, USERNAME, PASSWORD, display_name="Contoso Admin")
    return IdpTenant(
        tenant_id=TENANT_ID,
        domain=TENANT_DOMAIN,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_secret_id=CLIENT_SECRET_ID,
        redirect_uri=idp_redirect_uris[0],
        username=USERNAME,
        password=PASSWORD,
        shared_mailbox=SHARED_MAILBOX,
        scope=MAIL_SCOPES,
        authorize_url=idp.authorize_url(TENANT_ID),
        token_url=idp.token_url(TENANT_ID),
    )
