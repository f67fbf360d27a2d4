"""The OAuth2 screens: OAuth2 Profiles, and the consent's Re-authorize button and callback."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from ..auth import current_admin_name
from ..mail_accounts.forms import MailAccountForm
from ..mail_accounts.service import (
    begin_reauthorization,
    get_mail_account,
    link_signed_in_account,
)
from ..mail_accounts.validators import MailAccountInput
from ..models import OAuth2Profile
from ..validation import ValidationError
from .errors import explain
from .flow import (
    ConsentError,
    LinkError,
    Pending,
    bound_to_this_browser,
    browser_start,
    consume_pending,
    find_pending,
    redirect_uri,
    sign_in,
)
from .forms import ProfileForm
from .service import (
    accounts_using,
    certificate_details,
    create_profile,
    delete_profile,
    get_profile,
    list_profiles,
    secret_warning,
    update_profile,
)

profiles_bp = Blueprint("oauth2_profiles", __name__, url_prefix="/oauth2-profiles")
consent_bp = Blueprint("oauth2", __name__, url_prefix="/oauth2")


# ----- OAuth2 Profiles -----


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


@profiles_bp.route("/<int:profile_id>/delete", methods=["GET", "POST"])
def delete(profile_id: int) -> Response | str:
    """GET: the confirmation page; POST: delete (refused while mail accounts use it)."""
    profile = _get_profile(profile_id)
    used = accounts_using(profile)
    if request.method == "GET":
        return render_template("oauth/profile_delete.html", profile=profile, used=used)
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
    if request.method == "POST":
        form.ask_secret_again()
    return render_template(
        "oauth/profile_form.html",
        form=form,
        profile=profile,
        redirect_uri=redirect_uri(),
        warning=secret_warning(profile) if profile is not None else None,
        certificate=certificate_details(profile) if profile is not None else None,
    )


# ----- the consent: Re-authorize and the callback -----


@consent_bp.route("/reauthorize/<int:account_id>", methods=["POST"])
def reauthorize(account_id: int) -> Response:
    """Run the consent again for an account, keeping every setting."""
    account = get_mail_account(account_id)
    if account is None:
        abort(404)
    if not account.account_type.oauth2:
        flash("Only OAuth2 mail accounts can be re-authorized.", "error")
        return redirect(url_for("mail_accounts.index"))
    try:
        url = begin_reauthorization(account, browser_start())
    except ConsentError as e:
        flash(f"Cannot re-authorize {account.username}: {e}", "error")
        return redirect(url_for("mail_accounts.index"))
    return redirect(url)


@consent_bp.route("/callback")
def callback() -> Response | str:
    """The provider sends the browser back here with code and state (or an error).

    The answer is handled and then the browser is sent on (302) to this URL without a query,
    which shows the result: no page is ever rendered at a URL holding the code, so the code
    cannot leak through a Referer or the history."""
    if not request.args:
        return _show_result()
    pending = find_pending(request.args.get("state", ""))
    if pending is None:
        return _refuse(UNKNOWN_ANSWER)
    if not bound_to_this_browser(pending):
        # Not consumed: a wrong browser must not burn the sign-in of the right one.
        return _refuse(
            "This sign-in was started in another browser session. Start again from the mail "
            "account in this browser."
        )
    if not consume_pending(pending):
        return _refuse(UNKNOWN_ANSWER)
    if request.args.get("error"):
        message = explain(
            request.args.get("error"),
            request.args.get("error_description"),
            pending.redirect_uri or redirect_uri(),
        )
        return _back_to_form(pending, message)
    try:
        return _link(pending, request.args.get("code", ""))
    except LinkError as e:
        return _back_to_form(pending, str(e))


UNKNOWN_ANSWER = (
    "This sign-in answer is unknown, already used or older than 10 minutes. "
    "Start again from the mail account."
)
RESULT_KEY = "oauth2_result"  # {title, message, error} for a browser without admin session
RETRY_KEY = "oauth2_retry"  # {account_id, form_data, message}: the form to show again


def _link(pending: Pending, code: str) -> Response:
    token, signed_in = sign_in(pending, code)
    account = link_signed_in_account(pending, token, signed_in)
    message = (
        f"Mail account {account.username} on {account.host} linked (signed in as {signed_in})."
    )
    if g.get("admin") is None:
        return _to_result_page("Mail account linked", message)
    flash(message, "success")
    if pending.finish:
        return redirect(url_for("mail_accounts.index"))
    return redirect(url_for("mail_accounts.edit", account_id=account.id))


def _to_result_page(title: str, message: str, error: bool = False) -> Response:
    """For a browser without an admin session (a link printed by the CLI)."""
    session[RESULT_KEY] = {"title": title, "message": message, "error": error}
    return redirect(url_for("oauth2.callback"))


def _refuse(message: str) -> Response:
    if g.get("admin") is None:
        return _to_result_page("Sign-in refused", message, error=True)
    flash(message, "error")
    return redirect(url_for("mail_accounts.index"))


def _back_to_form(pending: Pending, message: str) -> Response:
    """Show the mail account form again with what was typed, and why it did not work."""
    if g.get("admin") is None:
        return _to_result_page("Sign-in failed", message, error=True)
    form_data = {k: v for k, v in pending.form_data.items() if k != "password"}
    session[RETRY_KEY] = {
        "account_id": pending.mail_account_id,
        "form_data": form_data,
        "message": message,
    }
    return redirect(url_for("oauth2.callback"))


def _show_result() -> Response | str:
    """The page after the callback's redirect: the form again, or the result."""
    retry = session.pop(RETRY_KEY, None)
    if isinstance(retry, dict) and g.get("admin") is not None:
        account_id = retry.get("account_id")
        account = get_mail_account(int(account_id)) if account_id else None
        form = MailAccountForm.for_input(MailAccountInput.from_dict(retry["form_data"]), account)
        flash(str(retry.get("message", "")), "error")
        return render_template("mail_accounts/form.html", form=form, account=account, runs=[])
    result = session.pop(RESULT_KEY, None)
    if isinstance(result, dict):
        return render_template(
            "oauth/result.html",
            title=str(result.get("title", "")),
            message=str(result.get("message", "")),
            error=bool(result.get("error")),
        )
    if g.get("admin") is not None:
        return redirect(url_for("mail_accounts.index"))
    return render_template(
        "oauth/result.html", title="Sign-in refused", message=UNKNOWN_ANSWER, error=True
    )
