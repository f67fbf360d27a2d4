"""Shared setup for the app-only and certificate tests: self-signed certificates, profiles
with a grant and credential, and Dovecot users the app may (or may not) open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.idp.fixtures import IdpTenant
from tests.idp.server import LocalIdentityProvider
from tests.oauth_helpers import new_username
from webapp.oauth.service import ProfileInput, create_profile


def make_certificate(days: int = 365, start_days_ago: int = 1) -> tuple[str, str]:
    """(private key PEM, self-signed certificate PEM) valid for `days` from now."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Postmaster app-only test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=start_days_ago))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def make_app_profile(
    idp: LocalIdentityProvider,
    tenant: IdpTenant,
    name: str = "Contoso app",
    grant: str = "app_only",
    key_and_cert: tuple[str, str] | None = None,
    client_secret: str | None = None,
) -> int:
    """A Custom profile at the local IdP with a grant and a secret or certificate."""
    key, cert = key_and_cert or (None, None)
    profile = create_profile(
        ProfileInput(
            name=name,
            provider="Custom",
            client_id=tenant.client_id,
            client_secret=None if key_and_cert else (client_secret or tenant.client_secret),
            tenant_id=tenant.tenant_id,
            authorize_url=idp.base_url + "/{tenant}/oauth2/v2.0/authorize",
            token_url=idp.base_url + "/{tenant}/oauth2/v2.0/token",
            grant=grant,
            credential="certificate" if key_and_cert else "secret",
            private_key=key,
            certificate=cert,
        ),
        "test",
    )
    return profile.id


def app_ready(idp: LocalIdentityProvider, tenant: IdpTenant, dovecot) -> None:
    """Admin consent for IMAP/POP.AccessAsApp and the service principal in Exchange."""
    dovecot.trust_jwt_key(idp.kid, idp.public_key_pem)
    dovecot.trust_app_tokens(idp.app_mailbox_check_url)
    idp.grant_admin_consent(tenant.tenant_id, tenant.client_id)
    idp.register_exchange_service_principal(tenant.client_id)


def granted_mailbox(idp: LocalIdentityProvider, tenant: IdpTenant, dovecot, prefix="shared") -> str:
    """A Dovecot mailbox (OAuth2 only) the app was given FullAccess to."""
    mailbox = new_username(prefix)
    dovecot.add_user(mailbox)
    idp.grant_mailbox(tenant.client_id, mailbox)
    return mailbox
