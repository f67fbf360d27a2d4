"""Provider presets with URL templates, the scopes per protocol, and tenant id validation."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from flask import current_app, has_app_context
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from ..models import OAuth2Profile
from ..validation import is_domain, is_guid

IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
POP_SCOPE = "https://outlook.office.com/POP.AccessAsUser.All"
# offline_access for a refresh token; openid profile email for an id_token naming the signer.
OIDC_SCOPES = ("offline_access", "openid", "profile", "email")
PROTOCOL_SCOPES = {"imap": IMAP_SCOPE, "pop3": POP_SCOPE}
# Google: one scope for IMAP and POP3 alike, plus an id_token naming the signer (email).
GOOGLE_SCOPES = ("https://mail.google.com/", "openid", "email")
# Google's id_tokens name either issuer; both are accepted, exactly.
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
# The paths of Google's endpoints; tests serve them from OAUTH2_GOOGLE_BASE_URL.
GOOGLE_PATHS = {
    "authorize": "/o/oauth2/v2/auth",
    "token": "/token",
    "jwks": "/oauth2/v3/certs",
}

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
    jwks_url: str | None = None  # None: next to a Microsoft token URL, or typed in (Custom)
    uses_tenant: bool = True

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
        Provider(
            "Google",
            "Google (Google Workspace, Gmail)",
            "https://accounts.google.com" + GOOGLE_PATHS["authorize"],
            "https://oauth2.googleapis.com" + GOOGLE_PATHS["token"],
            "https://www.googleapis.com" + GOOGLE_PATHS["jwks"],
            uses_tenant=False,
        ),
        Provider("Custom", "Custom (authorize and token URLs typed in)", None, None),
    ]
}


# Exchange Online's IMAP/POP3 hosts: a Microsoft 365 token sent anywhere else is a leak.
MICROSOFT_365_HOSTS = frozenset({"outlook.office365.com", "outlook.office.com"})


GOOGLE_HOSTS = {"imap": "imap.gmail.com", "pop3": "pop.gmail.com"}


def default_mail_host(provider: str, protocol: str) -> str:
    """The mail host an OAuth2 account of this provider gets when Host is left empty."""
    if provider == "Google":
        return GOOGLE_HOSTS[protocol]
    return "outlook.office365.com"


def provider_host_warning(provider: str, host: str) -> str | None:
    """A warning when a Microsoft or Google profile's account points at another host."""
    if provider != "Google":
        return microsoft_host_warning(provider, host)
    if host.strip().lower() in GOOGLE_HOSTS.values():
        return None
    return (
        f"{host} is not a Gmail host (imap.gmail.com, pop.gmail.com): the Google access "
        "token is sent to this server. Check the host unless you meant it."
    )


def microsoft_host_warning(provider: str, host: str) -> str | None:
    """A warning when a Microsoft Azure profile's account points at a non-Microsoft 365 host."""
    if provider != "MicrosoftAzure" or host.strip().lower() in MICROSOFT_365_HOSTS:
        return None
    return (
        f"{host} is not a Microsoft 365 host (outlook.office365.com): the Microsoft 365 access "
        "token is sent to this server. Check the host unless you meant it."
    )


@dataclass(frozen=True)
class Endpoints:
    authorize_url: str
    token_url: str
    jwks_url: str | None  # None: the id_token's claims are checked, not its signature


def scopes_for(protocol: str, provider: str = "MicrosoftAzure") -> str:
    """The exact scopes for IMAP or POP3: one Outlook resource scope plus the OIDC ones
    (Google: its mail scope, openid and email)."""
    if provider == "Google":
        return " ".join(GOOGLE_SCOPES)
    return " ".join([PROTOCOL_SCOPES[protocol], *OIDC_SCOPES])


def authorization_params(provider: str) -> dict[str, str]:
    """What the consent URL adds for the provider: Google sends a refresh token only with
    access_type=offline, and every time only with prompt=consent; Microsoft gets
    prompt=select_account, so a browser does not silently reuse the wrong account."""
    if provider == "Google":
        return {"access_type": "offline", "prompt": "consent"}
    return {"prompt": "select_account"}


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


_URL_FORBIDDEN = re.compile(r"[\\\s\x00-\x1f\x7f]")
URL_HTTPS_ONLY = (
    "The URL must start with https:// (plain http:// only for a loopback address like "
    "127.0.0.1 or [::1])."
)


def url_error(url: str) -> str | None:
    """A message when a Custom provider URL is not safe to send secrets to; None when fine.

    The URL is read by both urlsplit and urllib3's parse_url (what requests uses to connect),
    and they must agree on scheme, host and port: otherwise a check could pass for one host
    while the token request goes to another. Backslashes, user-info, whitespace and control
    characters are refused. Plain http is allowed only for a literal loopback IP address, not
    the name "localhost" (a name can be resolved elsewhere)."""
    url = url.strip()
    if _URL_FORBIDDEN.search(url):
        return "The URL must not contain backslashes, spaces or control characters."
    checked = url.replace("{tenant}", "tenant")
    try:
        parts = urlsplit(checked)
        parsed = parse_url(checked)
        split_port = parts.port
    except (ValueError, LocationParseError):
        return "Enter a valid URL."
    if not parts.hostname:
        return "Enter a full URL like https://login.example.com/{tenant}/oauth2/v2.0/token."
    if "@" in parts.netloc or parsed.auth:
        return "The URL must not contain a user name or password (user@)."
    if (parts.scheme, parts.hostname, split_port) != (
        parsed.scheme,
        (parsed.host or "").strip("[]").lower(),
        parsed.port,
    ):
        return "Enter a valid URL."
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_ip(parts.hostname)):
        return None
    return URL_HTTPS_ONLY


def is_loopback_ip(host: str) -> bool:
    """A literal loopback address: 127.0.0.0/8 or ::1 (names do not count)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_error(endpoints: Endpoints) -> str | None:
    """A message when a stored profile's URLs (as filled in) fail today's URL checks: a
    profile saved before them must be fixed before a code or secret is sent anywhere."""
    urls = [("authorize", endpoints.authorize_url), ("token", endpoints.token_url)]
    if endpoints.jwks_url:
        urls.append(("JWKS", endpoints.jwks_url))
    for label, url in urls:
        problem = url_error(url)
        if problem:
            return (
                f"The profile's {label} URL is refused ({problem}) Fix it on the OAuth2 "
                "Profiles screen."
            )
    return None


def _fill(template: str, tenant: str) -> str:
    return template.replace("{tenant}", tenant)


def endpoints_for(profile: OAuth2Profile) -> Endpoints:
    """The profile's authorize, token and JWKS URLs with the tenant filled in."""
    provider = PROVIDERS[profile.provider]
    if provider.name == "Google":
        return google_endpoints()
    authorize = provider.authorize_url or profile.authorize_url or ""
    token = provider.token_url or profile.token_url or ""
    token_url = _fill(token, profile.tenant_id)
    jwks = _fill(profile.jwks_url, profile.tenant_id) if profile.jwks_url else None
    return Endpoints(_fill(authorize, profile.tenant_id), token_url, jwks or _jwks_url(token_url))


def google_endpoints() -> Endpoints:
    """Google's endpoints; tests point them at the local identity provider with the setting
    OAUTH2_GOOGLE_BASE_URL (refused in production)."""
    google = PROVIDERS["Google"]
    real = Endpoints(google.authorize_url or "", google.token_url or "", google.jwks_url)
    base = current_app.config.get("OAUTH2_GOOGLE_BASE_URL") if has_app_context() else None
    if not base:
        return real
    base = str(base).rstrip("/")
    return replace(
        real,
        authorize_url=base + GOOGLE_PATHS["authorize"],
        token_url=base + GOOGLE_PATHS["token"],
        jwks_url=base + GOOGLE_PATHS["jwks"],
    )


def _jwks_url(token_url: str) -> str | None:
    """Microsoft's key set lives next to the token endpoint: {tenant}/discovery/v2.0/keys."""
    suffix = "/oauth2/v2.0/token"
    if token_url.endswith(suffix):
        return token_url.removesuffix(suffix) + "/discovery/v2.0/keys"
    return None
