"""The OAuth2 Profiles screen: list, add, edit, delete."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..auth import current_admin_name
from ..models import OAuth2Profile
from ..validation import ValidationError
from .flow import redirect_uri
from .forms import ProfileForm
from .service import (
    accounts_using,
    create_profile,
    delete_profile,
    get_profile,
    list_profiles,
    secret_warning,
    update_profile,
)

profiles_bp = Blueprint("oauth2_profiles", __name__, url_prefix="/oauth2-profiles")


def _get_profile(profile_id: int) -> OAuth2Profile:
    profile = get_profile(profile_id)
    if profile is None:
        abort(404)
    return profile


@profiles_bp.route("/")
def index() -> str:
    rows = [(p, secret_warning(p), accounts_using(p)) for p in list_profiles()]
    return render_template("oauth/profiles.html", rows=rows, redirect_uri=redirect_uri())


@profiles_bp.route("/add", methods=["GET", "POST"])
def add() -> Response | str:
    form = ProfileForm()
    if form.validate_on_submit():
        try:
            profile = create_profile(form.to_input(), current_admin_name())
        except ValidationError as e:
            form.add_errors(e.errors)
        else:
            flash(f"OAuth2 profile {profile.name} added.", "success")
            return redirect(url_for("oauth2_profiles.index"))
    return _render_form(form, None)


@profiles_bp.route("/<int:profile_id>", methods=["GET", "POST"])
def edit(profile_id: int) -> Response | str:
    profile = _get_profile(profile_id)
    if request.method == "GET":
        return _render_form(ProfileForm.for_profile(profile), profile)
    form = ProfileForm(profile=profile)
    if form.validate_on_submit():
        try:
            update_profile(profile, form.to_input(), current_admin_name())
        except ValidationError as e:
            form.add_errors(e.errors)
        else:
            flash(f"OAuth2 profile {profile.name} saved.", "success")
            return redirect(url_for("oauth2_profiles.index"))
    return _render_form(form, profile)


@profiles_bp.route("/<int:profile_id>/delete", methods=["POST"])
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
        delete_profile(profile)
        flash(f"OAuth2 profile {profile.name} deleted.", "success")
    return redirect(url_for("oauth2_profiles.index"))


def _render_form(form: ProfileForm, profile: OAuth2Profile | None) -> str:
    return render_template(
        "oauth/profile_form.html",
        form=form,
        profile=profile,
        redirect_uri=redirect_uri(),
        warning=secret_warning(profile) if profile is not None else None,
    )
