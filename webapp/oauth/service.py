"""OAuth2 Profiles: the screen, its form, and the profile service shared with the CLI.

A profile is one app registration (client id and secret) in one tenant at one provider. The
client secret is stored encrypted and never shown back: an empty field keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import PasswordField, SelectField, StringField, SubmitField, TextAreaField

from ..account_types import VALIDITIES
from ..auth import current_admin_name
from ..extensions import db
from ..models import MailAccount, OAuth2Profile
from .providers import PROVIDERS, SECRET_WARNING_DAYS, tenant_error, url_error

bp = Blueprint("oauth2_profiles", __name__, url_prefix="/oauth2-profiles")


# ----- service -----


class ProfileValidationError(ValueError):
    """Bad input: `errors` maps a field name to a message for the admin."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


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
    validity: str = "valid"
    secret_expires_on: str | date | None = None
    comment: str | None = None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _clean(data: ProfileInput, profile: OAuth2Profile | None) -> tuple[dict, dict[str, str]]:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
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

    values["provider"] = provider_name = _text(data.provider)
    provider = PROVIDERS.get(provider_name)
    if provider is None:
        errors["provider"] = "Choose one of: " + ", ".join(PROVIDERS) + "."

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

    values["tenant_id"] = tenant_id = _text(data.tenant_id)
    problem = tenant_error(tenant_id)
    if problem:
        errors["tenant_id"] = problem

    values["authorize_url"] = values["token_url"] = None
    if provider is not None and provider.is_custom:
        for field in ("authorize_url", "token_url"):
            url = _text(getattr(data, field))
            problem = url_error(url) if url else "Enter the URL (Custom provider)."
            if problem:
                errors[field] = problem
            values[field] = url

    values["validity"] = validity = _text(data.validity) or "valid"
    if validity not in VALIDITIES:
        errors["validity"] = "Choose one of: " + ", ".join(VALIDITIES) + "."

    values["secret_expires_on"] = None
    expires = data.secret_expires_on
    if isinstance(expires, date):
        values["secret_expires_on"] = expires
    elif _text(expires):
        try:
            values["secret_expires_on"] = date.fromisoformat(_text(expires))
        except ValueError:
            errors["secret_expires_on"] = "Enter the date as YYYY-MM-DD."

    values["comment"] = _text(data.comment) or None
    return values, errors


def create_profile(data: ProfileInput, actor: str | None) -> OAuth2Profile:
    values, errors = _clean(data, None)
    if errors:
        raise ProfileValidationError(errors)
    profile = OAuth2Profile(**values, created_by=actor, changed_by=actor)
    db.session.add(profile)
    db.session.commit()
    return profile


def update_profile(profile: OAuth2Profile, data: ProfileInput, actor: str | None) -> None:
    values, errors = _clean(data, profile)
    if errors:
        db.session.rollback()
        raise ProfileValidationError(errors)
    for key, value in values.items():
        setattr(profile, key, value)
    profile.changed_by = actor
    db.session.commit()


def accounts_using(profile: OAuth2Profile) -> int:
    return db.session.query(MailAccount).filter_by(oauth2_profile_id=profile.id).count()


def secret_warning(profile: OAuth2Profile, today: date | None = None) -> str | None:
    """A warning when the client secret has expired or expires within 30 days."""
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
        "validity": profile.validity,
        "secret_expires_on": (
            profile.secret_expires_on.isoformat() if profile.secret_expires_on else None
        ),
        "has_client_secret": bool(profile.client_secret),
        "comment": profile.comment,
        "mail_accounts": accounts_using(profile),
    }


# ----- form -----


class ProfileForm(FlaskForm):
    name = StringField("Name")
    provider = SelectField(
        "Provider",
        choices=[(p.name, p.label) for p in PROVIDERS.values()],
        validate_choice=False,
        default="MicrosoftAzure",
    )
    client_id = StringField(
        "Client ID", description="The Application (client) ID of the app registration."
    )
    client_secret = PasswordField(
        "Client secret",
        render_kw={"autocomplete": "new-password"},
        description="The secret's Value (shown once in Azure), not its Secret ID.",
    )
    tenant_id = StringField(
        "Tenant ID",
        description='The Directory (tenant) ID (a GUID) or the tenant\'s domain. Not "common".',
    )
    authorize_url = StringField(
        "Authorize URL",
        description="Custom provider only; {tenant} is replaced by the tenant ID.",
    )
    token_url = StringField(
        "Token URL", description="Custom provider only; {tenant} is replaced by the tenant ID."
    )
    validity = SelectField(
        "Validity", choices=[(v, v) for v in VALIDITIES], default="valid", validate_choice=False
    )
    secret_expires_on = StringField(
        "Client secret expires",
        render_kw={"type": "date"},
        description="Optional: you are warned 30 days ahead.",
    )
    comment = TextAreaField("Comment", render_kw={"rows": 2})
    submit = SubmitField("Save")

    REQUIRED = ("name", "provider", "client_id", "tenant_id")

    def __init__(self, *args: Any, profile: OAuth2Profile | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.REQUIRED:
            self[name].flags.required = True
        if profile is None:
            self.client_secret.flags.required = True
        else:
            self.client_secret.description = "Leave empty to keep the stored secret. " + (
                self.client_secret.description or ""
            )

    @classmethod
    def for_profile(cls, profile: OAuth2Profile) -> ProfileForm:
        data = {
            "name": profile.name,
            "provider": profile.provider,
            "client_id": profile.client_id,
            "tenant_id": profile.tenant_id,
            "authorize_url": profile.authorize_url or "",
            "token_url": profile.token_url or "",
            "validity": profile.validity,
            "secret_expires_on": (
                profile.secret_expires_on.isoformat() if profile.secret_expires_on else ""
            ),
            "comment": profile.comment or "",
        }
        return cls(data=data, profile=profile)

    def to_input(self) -> ProfileInput:
        return ProfileInput(
            name=self.name.data or "",
            provider=self.provider.data or "",
            client_id=self.client_id.data or "",
            client_secret=self.client_secret.data or None,
            tenant_id=self.tenant_id.data or "",
            authorize_url=self.authorize_url.data,
            token_url=self.token_url.data,
            validity=self.validity.data or "",
            secret_expires_on=self.secret_expires_on.data,
            comment=self.comment.data,
        )

    def add_errors(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            if name in self._fields:
                self[name].errors = [*self[name].errors, message]


# ----- views -----


def _get_profile(profile_id: int) -> OAuth2Profile:
    profile = db.session.get(OAuth2Profile, profile_id)
    if profile is None:
        abort(404)
    return profile


def _redirect_uri() -> str:
    from .flow import redirect_uri

    return redirect_uri()


@bp.route("/")
def index() -> str:
    profiles = db.session.query(OAuth2Profile).order_by(OAuth2Profile.name).all()
    rows = [(p, secret_warning(p), accounts_using(p)) for p in profiles]
    return render_template("oauth/profiles.html", rows=rows, redirect_uri=_redirect_uri())


@bp.route("/add", methods=["GET", "POST"])
def add() -> Response | str:
    form = ProfileForm()
    if form.validate_on_submit():
        try:
            profile = create_profile(form.to_input(), current_admin_name())
        except ProfileValidationError as e:
            form.add_errors(e.errors)
        else:
            flash(f"OAuth2 profile {profile.name} added.", "success")
            return redirect(url_for("oauth2_profiles.index"))
    return _render_form(form, None)


@bp.route("/<int:profile_id>", methods=["GET", "POST"])
def edit(profile_id: int) -> Response | str:
    profile = _get_profile(profile_id)
    if request.method == "GET":
        return _render_form(ProfileForm.for_profile(profile), profile)
    form = ProfileForm(profile=profile)
    if form.validate_on_submit():
        try:
            update_profile(profile, form.to_input(), current_admin_name())
        except ProfileValidationError as e:
            form.add_errors(e.errors)
        else:
            flash(f"OAuth2 profile {profile.name} saved.", "success")
            return redirect(url_for("oauth2_profiles.index"))
    return _render_form(form, profile)


@bp.route("/<int:profile_id>/delete", methods=["POST"])
def delete(profile_id: int) -> Response:
    profile = _get_profile(profile_id)
    used = accounts_using(profile)
    if used:
        flash(
            f"OAuth2 profile {profile.name} is used by {used} mail account(s): change or delete "
            "them first, or set the profile to invalid.",
            "error",
        )
    else:
        db.session.delete(profile)
        db.session.commit()
        flash(f"OAuth2 profile {profile.name} deleted.", "success")
    return redirect(url_for("oauth2_profiles.index"))


def _render_form(form: ProfileForm, profile: OAuth2Profile | None) -> str:
    return render_template(
        "oauth/profile_form.html",
        form=form,
        profile=profile,
        redirect_uri=_redirect_uri(),
        warning=secret_warning(profile) if profile is not None else None,
    )
