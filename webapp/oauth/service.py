"""OAuth2 profile operations shared by the OAuth2 Profiles screen and the CLI.

A profile is one app registration (client id and secret, or certificate) in one tenant at one
provider, with a grant: delegated (each account's consent) or app-only (client credentials).
The client secret and the certificate's private key are stored encrypted and never shown
back: an empty field keeps them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..account_types import VALIDITIES
from ..extensions import db
from ..models import MailAccount, OAuth2Profile
from ..timefmt import iso_date
from ..validation import ValidationError, is_guid
from .app_tokens import forget_app_token
from .certificates import CertificateError, certificate_info, check_pair, split_pem
from .providers import PROVIDERS, SECRET_WARNING_DAYS, Provider, tenant_error, url_error

GRANTS = {"delegated": "Delegated (browser consent)", "app_only": "App-only (client credentials)"}
CREDENTIALS = {"secret": "Client secret", "certificate": "Certificate (private key JWT)"}


@dataclass
class ProfileInput:
    """A profile as typed in the form or given to the CLI."""

    name: str = ""
    provider: str = "MicrosoftAzure"
    client_id: str = ""
    client_secret: str | None = None  # empty on edit: keep the stored secret
    tenant_id: str = ""
    authorize_url: str | None = None
    token_url: str | None = None
    jwks_url: str | None = None  # Custom, optional: the id_token's signature is then checked
    issuer: str | None = None  # Custom, optional: the id_token's iss must then be exactly this
    validity: str = "valid"
    secret_expires_on: str | date | None = None
    comment: str | None = None
    grant: str = "delegated"
    credential: str = "secret"
    private_key: str | None = None  # PEM; empty on edit: keep the stored key
    certificate: str | None = None  # PEM; empty on edit: keep the stored certificate


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _clean(data: ProfileInput, profile: OAuth2Profile | None) -> tuple[dict, dict[str, str]]:
    """Validated column values and {field: message} errors, one check per field in form order."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    _check_name(data, profile, values, errors)
    provider = PROVIDERS.get(_check_provider(data, values, errors))
    _check_grant(data, values, errors)
    _check_client(data, profile, values, errors)
    if provider is not None and provider.name == "MicrosoftAzure":
        _check_microsoft_client_id(values, errors)
    _check_tenant(data, provider, values, errors)
    for name in CUSTOM_URL_FIELDS:
        values[name] = None
    if provider is not None and provider.is_custom:
        _check_custom_urls(data, values, errors)
    if profile is not None and _destination_changed(profile, values):
        if values.get("credential") == "certificate" and "private_key" not in values:
            errors.setdefault("private_key", KEY_AGAIN)
        elif values.get("credential") == "secret" and "client_secret" not in values:
            errors.setdefault("client_secret", SECRET_AGAIN)
    values["validity"] = validity = _text(data.validity) or "valid"
    if validity not in VALIDITIES:
        errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."
    if values.get("credential") != "certificate":
        _check_secret_expiry(data, values, errors)
    values["comment"] = _text(data.comment) or None
    return values, errors


def _check_name(
    data: ProfileInput, profile: OAuth2Profile | None, values: dict, errors: dict[str, str]
) -> None:
    values["name"] = name = _text(data.name)
    if not name:
        errors["name"] = "Enter a name."
    elif len(name) > 200:
        errors["name"] = "The name is too long."
    else:
        same = db.session.query(OAuth2Profile).filter(OAuth2Profile.name == name)
        if profile is not None:
            same = same.filter(OAuth2Profile.id != profile.id)
        if same.first() is not None:
            errors["name"] = "A profile with this name already exists."


def _check_provider(data: ProfileInput, values: dict, errors: dict[str, str]) -> str:
    values["provider"] = provider_name = _text(data.provider)
    if PROVIDERS.get(provider_name) is None:
        errors["provider"] = "Choose one of: " + ", ".join(PROVIDERS) + "."
    return provider_name


def _check_client(
    data: ProfileInput, profile: OAuth2Profile | None, values: dict, errors: dict[str, str]
) -> None:
    """The client id, and the secret (required unless one is stored)."""
    values["client_id"] = client_id = _text(data.client_id)
    if not client_id:
        errors["client_id"] = "Enter the Application (client) ID of the app registration."
    elif len(client_id) > 200:
        errors["client_id"] = "The client ID is too long."

    if values.get("credential") == "certificate":
        _check_certificate(data, profile, values, errors)
        values["client_secret"] = None  # a certificate profile keeps no secret
        return
    values["private_key"] = values["certificate"] = None
    secret = (data.client_secret or "").strip()
    if secret:
        values["client_secret"] = secret
    elif profile is None or not profile.client_secret:
        errors["client_secret"] = "Enter the client secret's Value (not its Secret ID)."


CLIENT_ID_NOT_GUID = (
    "A Microsoft client ID is a GUID like 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d: copy the "
    "Application (client) ID from the app registration's Overview (not its name or a secret)."
)


def _check_microsoft_client_id(values: dict, errors: dict[str, str]) -> None:
    """Microsoft's Application (client) ID is always a GUID (AADSTS700016 otherwise)."""
    client_id = values.get("client_id") or ""
    if client_id and "client_id" not in errors and not is_guid(client_id):
        errors["client_id"] = CLIENT_ID_NOT_GUID


def _check_grant(data: ProfileInput, values: dict, errors: dict[str, str]) -> None:
    """The grant and the kind of client credential ("app-only" is read as "app_only")."""
    values["grant"] = grant = _text(data.grant).replace("-", "_") or "delegated"
    if grant not in GRANTS:
        errors["grant"] = "Choose delegated or app-only."
    values["credential"] = credential = _text(data.credential) or "secret"
    if credential not in CREDENTIALS:
        errors["credential"] = "Choose secret or certificate."


def _check_certificate(
    data: ProfileInput, profile: OAuth2Profile | None, values: dict, errors: dict[str, str]
) -> None:
    """The private key and certificate (pasted apart or together, or kept from before): the
    key must belong to the certificate, which must not have expired."""
    key_text, cert_text = (data.private_key or "").strip(), (data.certificate or "").strip()
    key_in_key, cert_in_key = split_pem(key_text)
    key_in_cert, cert_in_cert = split_pem(cert_text)
    key = key_in_key or key_in_cert
    cert = cert_in_cert or cert_in_key
    stored = profile is not None and profile.credential == "certificate"
    if key_text and not key:
        errors["private_key"] = "Paste the private key in PEM form (-----BEGIN PRIVATE KEY-----)."
        return
    if cert_text and not cert:
        errors["certificate"] = "Paste the certificate in PEM form (-----BEGIN CERTIFICATE-----)."
        return
    new = bool(cert)  # a stored certificate that expired meanwhile is flagged, not refused
    key = key or (profile.private_key if stored and profile is not None else "") or ""
    cert = cert or (profile.certificate if stored and profile is not None else "") or ""
    if not key:
        errors["private_key"] = "Upload or paste the certificate's private key (PEM)."
    if not cert:
        errors["certificate"] = "Upload or paste the certificate (PEM)."
    if not key or not cert:
        return
    try:
        info = check_pair(key, cert, new=new)
    except CertificateError as e:
        errors["private_key" if "private key" in str(e) else "certificate"] = str(e)
        return
    if key_in_key or key_in_cert:
        values["private_key"] = key
    values["certificate"] = cert
    values["secret_expires_on"] = info.not_after.date()


SECRET_AGAIN = "Enter the client secret again: where it is sent changed"
KEY_AGAIN = "Upload or paste the private key again: where the signed assertion is sent changed"
# Where the client secret (and the refresh token) are sent: changing any of these without
# typing the secret again would post the stored secret to the new place.
DESTINATION_FIELDS = ("provider", "tenant_id", "authorize_url", "token_url")


def _destination_changed(profile: OAuth2Profile, values: dict) -> bool:
    return any(
        (getattr(profile, name) or None) != (values.get(name) or None)
        for name in DESTINATION_FIELDS
    )


def _check_tenant(
    data: ProfileInput, provider: Provider | None, values: dict, errors: dict[str, str]
) -> None:
    """Microsoft needs a tenant GUID or domain; Google has none; a Custom provider's tenant
    is free text, needed only when a URL contains {tenant}."""
    values["tenant_id"] = tenant_id = _text(data.tenant_id)
    if provider is None:
        return
    if not provider.uses_tenant:
        values["tenant_id"] = ""
    elif not provider.is_custom:
        problem = tenant_error(tenant_id)
        if problem:
            errors["tenant_id"] = problem
    elif not tenant_id and any("{tenant}" in _text(getattr(data, f)) for f in CUSTOM_URL_FIELDS):
        errors["tenant_id"] = "Enter the tenant: a URL contains {tenant}."
    elif len(tenant_id) > 200 or re.search(r"[/?#\\\s]", tenant_id):
        errors["tenant_id"] = "The tenant must not contain /, ?, #, backslashes or spaces."


CUSTOM_URL_FIELDS = ("authorize_url", "token_url", "jwks_url", "issuer")
OPTIONAL_URL_FIELDS = frozenset({"jwks_url", "issuer"})


def _check_custom_urls(data: ProfileInput, values: dict, errors: dict[str, str]) -> None:
    """Authorize and token URLs are required, JWKS and issuer optional; each https (plain
    http only for a loopback address)."""
    for field in CUSTOM_URL_FIELDS:
        url = _text(getattr(data, field))
        if not url and field in OPTIONAL_URL_FIELDS:
            continue
        problem = url_error(url) if url else "Enter the URL (Custom provider)."
        if problem:
            errors[field] = problem
        values[field] = url


def _check_secret_expiry(data: ProfileInput, values: dict, errors: dict[str, str]) -> None:
    values["secret_expires_on"] = None
    expires = data.secret_expires_on
    if isinstance(expires, date):
        values["secret_expires_on"] = expires
    elif _text(expires):
        try:
            values["secret_expires_on"] = date.fromisoformat(_text(expires))
        except ValueError:
            errors["secret_expires_on"] = "Enter the date as YYYY-MM-DD."


def create_profile(data: ProfileInput, actor: str | None) -> OAuth2Profile:
    """Validate and add a profile; raises ValidationError."""
    values, errors = _clean(data, None)
    if errors:
        raise ValidationError(errors)
    profile = OAuth2Profile(**values, created_by=actor, changed_by=actor)
    db.session.add(profile)
    db.session.commit()
    return profile


def update_profile(profile: OAuth2Profile, data: ProfileInput, actor: str | None) -> None:
    """Validate and change a profile (an empty secret keeps the stored one); raises
    ValidationError."""
    values, errors = _clean(data, profile)
    if errors:
        db.session.rollback()
        raise ValidationError(errors)
    grant_changed = values["grant"] != profile.grant
    for key, value in values.items():
        setattr(profile, key, value)
    forget_app_token(profile)  # taken with the old settings
    if grant_changed:
        _switch_accounts_grant(profile)
    profile.mark_changed(actor)
    db.session.commit()


def _switch_accounts_grant(profile: OAuth2Profile) -> None:
    """App-only now: the accounts' own sign-ins are no longer used (nor needed). Delegated
    now: each account needs a person's sign-in (Re-authorize)."""
    accounts = db.session.query(MailAccount).filter_by(oauth2_profile_id=profile.id)
    for account in accounts:
        if profile.grant == "app_only":
            account.oauth2_token = None
            account.needs_reauth = False
        else:
            account.needs_reauth = True


def delete_profile(profile: OAuth2Profile) -> None:
    """Delete a profile (the caller checks first that no mail account uses it)."""
    db.session.delete(profile)
    db.session.commit()


def get_profile(profile_id: int) -> OAuth2Profile | None:
    """The profile with this id, or None."""
    return db.session.get(OAuth2Profile, profile_id)


def list_profiles() -> list[OAuth2Profile]:
    """Every profile, sorted by name."""
    return db.session.query(OAuth2Profile).order_by(OAuth2Profile.name).all()


def accounts_using(profile: OAuth2Profile) -> int:
    """How many mail accounts use the profile."""
    return db.session.query(MailAccount).filter_by(oauth2_profile_id=profile.id).count()


def secret_warning(profile: OAuth2Profile, today: date | None = None) -> str | None:
    """A warning when the client secret has expired or expires within SECRET_WARNING_DAYS."""
    if profile.secret_expires_on is None:
        return None
    today = today or date.today()
    days = (profile.secret_expires_on - today).days
    when = profile.secret_expires_on.isoformat()
    if profile.credential == "certificate":
        return _certificate_warning(days, when)
    where, code = _SECRET_HOME.get(profile.provider, _SECRET_HOME["Custom"])
    if days < 0:
        return (
            f"The client secret expired on {when}: every mailbox of this profile stops{code}. "
            f"Create a new secret in {where} and enter it here."
        )
    if days <= SECRET_WARNING_DAYS:
        return (
            f"The client secret expires on {when} (in {days} days). Create a new secret in "
            f"{where} and enter it here before then."
        )
    return None


# Where an admin makes a new client secret, and the error a provider gives for an expired one.
_SECRET_HOME = {
    "MicrosoftAzure": (
        "Azure (App registrations, Certificates & secrets; copy its Value)",
        " (AADSTS7000222)",
    ),
    "Google": ("the Google Cloud console (APIs & Services, Credentials)", ""),
    "Custom": ("the identity provider's client settings", ""),
}


def _certificate_warning(days: int, when: str) -> str | None:
    if days < 0:
        return (
            f"The certificate expired on {when}: every mailbox of this profile stops "
            "(AADSTS700027). Make a new certificate, upload it to the app registration and here."
        )
    if days <= SECRET_WARNING_DAYS:
        return (
            f"The certificate expires on {when} (in {days} days). Make a new one, upload it to "
            "the app registration (Certificates & secrets) and here before then."
        )
    return None


def certificate_details(profile: OAuth2Profile) -> dict[str, Any] | None:
    """The stored certificate's thumbprints, subject and validity (None without one)."""
    if not profile.certificate:
        return None
    try:
        info = certificate_info(profile.certificate)
    except CertificateError:
        return None
    return {
        "thumbprint": info.thumbprint_hex,
        "x5t": info.x5t,
        "subject": info.subject,
        "not_before": iso_date(info.not_before.date()),
        "not_after": info.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def profile_summary(profile: OAuth2Profile) -> dict[str, Any]:
    """What `oauth2-profile list --json` prints: everything but the secret."""
    return {
        "id": profile.id,
        "name": profile.name,
        "provider": profile.provider,
        "client_id": profile.client_id,
        "tenant_id": profile.tenant_id,
        "authorize_url": profile.authorize_url,
        "token_url": profile.token_url,
        "jwks_url": profile.jwks_url,
        "issuer": profile.issuer,
        "validity": profile.validity,
        "secret_expires_on": iso_date(profile.secret_expires_on),
        "grant": profile.grant,
        "credential": profile.credential,
        "credential_expires_on": iso_date(profile.secret_expires_on),
        "certificate": certificate_details(profile),
        "has_client_secret": bool(profile.client_secret),
        "has_private_key": bool(profile.private_key),
        "comment": profile.comment,
        "mail_accounts": accounts_using(profile),
    }
