"""The OAuth2 profile form. Fields are plain text and selects: the checks live in the service."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import PasswordField, SelectField, StringField, SubmitField, TextAreaField

from ..account_types import VALIDITIES
from ..formfields import ask_again, retype_message
from ..models import OAuth2Profile
from ..timefmt import iso_date
from .providers import PROVIDERS, SECRET_WARNING_DAYS
from .service import CREDENTIALS, GRANTS, ProfileInput

# A PEM file is a few kilobytes; anything larger is not a key or certificate.
PEM_UPLOAD_LIMIT = 64 * 1024


class ProfileForm(FlaskForm):
    name = StringField("Name")
    provider = SelectField(
        "Provider",
        choices={p.name: p.label for p in PROVIDERS.values()},
        validate_choice=False,
        default="MicrosoftAzure",
    )
    client_id = StringField(
        "Client ID", description="The Application (client) ID of the app registration."
    )
    client_secret = PasswordField(
        "Client secret",
        render_kw={"autocomplete": "new-password"},
        description=(
            "The secret's value (for Microsoft: its Value, shown once in Azure, not its Secret ID)."
        ),
    )
    tenant_id = StringField(
        "Tenant ID",
        description='The Directory (tenant) ID (a GUID) or the tenant\'s domain. Not "common". '
        "Google has none; a Custom provider needs one only when a URL contains {tenant}.",
    )
    authorize_url = StringField(
        "Authorize URL",
        description="Custom provider only; {tenant} is replaced by the tenant ID.",
    )
    token_url = StringField(
        "Token URL", description="Custom provider only; {tenant} is replaced by the tenant ID."
    )
    jwks_url = StringField(
        "JWKS URL",
        description="Custom provider, optional: the provider's signing keys; the id_token's "
        "signature is then checked.",
    )
    issuer = StringField(
        "Issuer",
        description="Custom provider, optional: the id_token's iss must then be exactly this.",
    )
    validity = SelectField(
        "Validity", choices={v: v for v in VALIDITIES}, default="valid", validate_choice=False
    )
    secret_expires_on = StringField(
        "Client secret expires",
        render_kw={"type": "date"},
        description=f"Optional: you are warned {SECRET_WARNING_DAYS} days ahead.",
    )
    comment = TextAreaField("Comment", render_kw={"rows": 2})
    grant = SelectField(
        "Grant",
        choices=dict(GRANTS),
        default="delegated",
        validate_choice=False,
        description="App-only: the app reads the mailboxes it was granted in Exchange Online; "
        "no person signs in.",
    )
    credential = SelectField(
        "Client credential",
        choices=dict(CREDENTIALS),
        default="secret",
        validate_choice=False,
    )
    private_key = TextAreaField(
        "Private key (PEM)",
        render_kw={"rows": 4, "autocomplete": "off", "spellcheck": "false"},
        description="Certificate only: paste the key, or upload it below. Stored encrypted, "
        "never shown again.",
    )
    private_key_file = FileField("Private key file")
    certificate = TextAreaField(
        "Certificate (PEM)",
        render_kw={"rows": 4, "spellcheck": "false"},
        description="The certificate uploaded to the app registration (Certificates & secrets).",
    )
    certificate_file = FileField("Certificate file")
    submit = SubmitField("Save")

    REQUIRED = ("name", "provider", "client_id", "tenant_id")

    def __init__(self, *args: Any, profile: OAuth2Profile | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.REQUIRED:
            self[name].flags.required = True
        if profile is None:
            self.client_secret.flags.required = True
        else:
            self.client_secret.description = (
                "Leave empty to keep the stored secret (enter it again when the provider, "
                "tenant or a URL changes). "
            ) + (self.client_secret.description or "")

    @classmethod
    def for_profile(cls, profile: OAuth2Profile) -> ProfileForm:
        """The edit form filled from the profile; the secret is never filled in."""
        data = {
            "name": profile.name,
            "provider": profile.provider,
            "client_id": profile.client_id,
            "tenant_id": profile.tenant_id,
            "authorize_url": profile.authorize_url or "",
            "token_url": profile.token_url or "",
            "jwks_url": profile.jwks_url or "",
            "issuer": profile.issuer or "",
            "validity": profile.validity,
            "secret_expires_on": iso_date(profile.secret_expires_on) or "",
            "comment": profile.comment or "",
            "grant": profile.grant,
            "credential": profile.credential,
        }
        return cls(data=data, profile=profile)

    def to_input(self) -> ProfileInput:
        """What was typed, for the service."""
        return ProfileInput(
            name=self.name.data or "",
            provider=self.provider.data or "",
            client_id=self.client_id.data or "",
            client_secret=self.client_secret.data or None,
            tenant_id=self.tenant_id.data or "",
            authorize_url=self.authorize_url.data,
            token_url=self.token_url.data,
            jwks_url=self.jwks_url.data,
            issuer=self.issuer.data,
            validity=self.validity.data or "",
            secret_expires_on=self.secret_expires_on.data,
            comment=self.comment.data,
            grant=self.grant.data or "delegated",
            credential=self.credential.data or "secret",
            private_key=self._pem(self.private_key, self.private_key_file),
            certificate=self._pem(self.certificate, self.certificate_file, forget=False),
        )

    def ask_secret_again(self) -> None:
        """The form comes back after a POST: a secret typed is never sent back, so say so."""
        ask_again(self.client_secret, "client secret")
        # The pasted key was cleared when it was read (see _pem), so ask by what was posted.
        if (self.private_key.raw_data or request.form.get(self.private_key.name)) and not (
            self.private_key.errors
        ):
            self.private_key.errors = [retype_message("private key")]

    @staticmethod
    def _pem(text: Any, upload: Any, forget: bool = True) -> str | None:
        """The pasted PEM or the uploaded file's; a pasted key is then cleared, so a form
        shown again never carries the private key back to the browser."""
        value = text.data or ""
        if forget:
            text.data, text.raw_data = "", []
        storage = upload.data
        if storage is not None and getattr(storage, "filename", None):
            value = storage.read(PEM_UPLOAD_LIMIT).decode("ascii", "replace") or value
        return value.strip() or None

    def add_errors(self, errors: dict[str, str]) -> None:
        """Show the service's {field: message} errors at their fields."""
        for name, message in errors.items():
            if name in self._fields:
                self[name].errors = [*self[name].errors, message]
