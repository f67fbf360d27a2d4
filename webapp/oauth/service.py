"""OAuth2 profile operations shared by the OAuth2 Profiles screen and the CLI.

A profile is one app registration (client id and secret) in one tenant at one provider. The
client secret is stored encrypted and never shown back: an empty field keeps it.
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
from .providers import PROVIDERS, SECRET_WARNING_DAYS, Provider, tenant_error, url_error


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


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _clean(data: ProfileInput, profile: OAuth2Profile | None) -> tuple[dict, dict[str, str]]:
    """Validated column values and {field: message} errors, one check per field in form order."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    _check_name(data, profile, values, errors)
    provider = PROVIDERS.get(_check_provider(data, values, errors))
    _check_client(data, profile, values, errors)
    if provider is not None and provider.name == "MicrosoftAzure":
        _check_microsoft_client_id(values, errors)
    _check_tenant(data, provider, values, errors)
    for name in CUSTOM_URL_FIELDS:
        values[name] = None
    if provider is not None and provider.is_custom:
        _check_custom_urls(data, values, errors)
    if (
        profile is not None
        and "client_secret" not in values
        and _destination_changed(profile, values)
    ):
        errors.setdefault("client_secret", SECRET_AGAIN)
    values["validity"] = validity = _text(data.validity) or "valid"
    if validity not in VALIDITIES:
        errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."
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


SECRET_AGAIN = "Enter the client secret again: where it is sent changed"
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
    for key, value in values.items():
        setattr(profile, key, value)
    profile.changed_by = actor
    db.session.commit()


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
    if days < 0:
        return (
            f"The client secret expired on {when}: every mailbox of this profile stops "
            "(AADSTS7000222). Create a new secret in Azure and enter its Value here."
        )
    if days <= SECRET_WARNING_DAYS:
        return (
            f"The client secret expires on {when} (in {days} days). Create a new secret in "
            "Azure and enter its Value here before then."
        )
    return None


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
        "has_client_secret": bool(profile.client_secret),
        "comment": profile.comment,
        "mail_accounts": accounts_using(profile),
    }
