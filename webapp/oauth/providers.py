"""Provider presets with URL templates, the scopes per protocol, and tenant id validation."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..models import OAuth2Profile
from ..validation import is_domain, is_guid

IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
POP_SCOPE = "https://outlook.office.com/POP.AccessAsUser.All"
# offline_access for a refresh token; openid profile email for an id_token naming the signer.
OIDC_SCOPES = ("offline_access", "openid", "profile", "email")
PROTOCOL_SCOPES = {"imap": IMAP_SCOPE, "pop3": POP_SCOPE}

MULTI_TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})
# Client secrets (and certificates) are flagged on the profile screen and on Status this long
# before they expire: Entra ID shows no reminder, and an expired secret stops every fetch.
SECRET_WARNING_DAYS = 30


@dataclass(frozen=True)
class Provider:
    name: str
    label: str
    authorize_url: str | None  # template with {tenant}; None: typed in per profile
    token_url: str | None

    @property
    def is_custom(self) -> bool:
        return self.authorize_url is None


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in [
        Provider(
            "MicrosoftAzure",
            "Microsoft Azure (Microsoft 365, Entra ID)",
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        ),
        Provider("Custom", "Custom (authorize and token URLs typed in)", None, None),
    ]
}


@dataclass(frozen=True)
class Endpoints:
    authorize_url: str
    token_url: str
    jwks_url: str | None  # None: the id_token's claims are checked, not its signature


def scopes_for(protocol: str) -> str:
    """The exact scopes for IMAP or POP3: one Outlook resource scope plus the OIDC ones."""
    return " ".join([PROTOCOL_SCOPES[protocol], *OIDC_SCOPES])


def tenant_error(tenant_id: str) -> str | None:
    """A message when the tenant id is not a GUID or a domain; None when it is fine."""
    value = tenant_id.strip()
    if not value:
        return "Enter the tenant ID (Directory ID, a GUID) or the tenant's domain."
    if value.lower() in MULTI_TENANT_ALIASES:
        return (
            f'"{value}" is not a tenant: a single-tenant app needs its tenant ID or domain '
            "(AADSTS50194 otherwise)."
        )
    if is_guid(value) or is_domain(value):
        return None
    return "The tenant ID must be a GUID (like 5f1c3a2e-...) or a domain (like contoso.com)."


def url_error(url: str) -> str | None:
    """A message when a Custom provider URL is not https (http only on the loopback)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "Enter a valid URL."
    if not parts.hostname:
        return "Enter a full URL like https://login.example.com/{tenant}/oauth2/v2.0/token."
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return None
    return "The URL must start with https:// (http:// only for localhost)."


def _fill(template: str, tenant: str) -> str:
    return template.replace("{tenant}", tenant)


def endpoints_for(profile: OAuth2Profile) -> Endpoints:
    """The profile's authorize, token and JWKS URLs with the tenant filled in."""
    provider = PROVIDERS[profile.provider]
    authorize = provider.authorize_url or profile.authorize_url or ""
    token = provider.token_url or profile.token_url or ""
    token_url = _fill(token, profile.tenant_id)
    return Endpoints(_fill(authorize, profile.tenant_id), token_url, _jwks_url(token_url))


def _jwks_url(token_url: str) -> str | None:
    """Microsoft's key set lives next to the token endpoint: {tenant}/discovery/v2.0/keys."""
    suffix = "/oauth2/v2.0/token"
    if token_url.endswith(suffix):
        return token_url.removesuffix(suffix) + "/discovery/v2.0/keys"
    return None
