"""The consent round trip: Save (or Re-authorize) sends the browser to the provider, the
callback exchanges the code and only then creates or updates the mail account.

The pending form waits on the server (OAuth2PendingAuthorization, encrypted, keyed by a
random state, 10 minutes, used once), bound to the admin's session by a random value kept in
the signed session cookie. `mail-account authorize ID` binds it to the CLI instead: then the
callback works from any browser, because the admin opens the link on another machine. The
trade-off: whoever holds that link within 10 minutes can finish it, so it must not be shared;
the right-account check still refuses every identity but the mailbox's own (or, for a shared
mailbox, a delegate's), and the state still works only once.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from ..account_types import ACCOUNT_TYPES
from ..auth import current_admin_name
from ..extensions import db
from ..mail_accounts.service import create_mail_account, update_mail_account
from ..mail_accounts.validators import MailAccountInput, input_from_account
from ..models import AdminUser, MailAccount, OAuth2PendingAuthorization, OAuth2Profile, utcnow
from ..validation import ValidationError
from .errors import explain
from .identity import IdentityError, signed_in_identity
from .providers import endpoints_for, scopes_for
from .tokens import TOKEN_REQUEST_TIMEOUT, oauth_client, store_tokens

bp = Blueprint("oauth2", __name__, url_prefix="/oauth2")

PENDING_LIFETIME = timedelta(minutes=10)
CLI_BINDING = "cli"
SESSION_BINDING_KEY = "oauth2_binding"
CALLBACK_PATH = "/oauth2/callback"
# Changing one of these needs a new sign-in; other fields are saved directly.
CONSENT_FIELDS = ("type", "username", "oauth2_profile_id", "shared_mailbox")


class ConsentError(Exception):
    """The consent cannot start (e.g. no valid profile); str() is for the admin."""


def redirect_uri() -> str:
    """The callback URL to register in Azure: PUBLIC_URL when set (Host is then ignored)."""
    public_url = current_app.config.get("PUBLIC_URL")
    if public_url:
        return public_url.rstrip("/") + CALLBACK_PATH
    return url_for("oauth2.callback", _external=True)


# ----- starting -----


def needs_consent(form_data: dict[str, Any], account: MailAccount | None) -> bool:
    """A new account, a dead grant, or a changed identity needs the provider sign-in."""
    if account is None or account.needs_reauth or account.oauth2_token is None:
        return True
    data = MailAccountInput.from_dict(form_data)
    return (
        str(data.type).strip() != account.type
        or str(data.username).strip() != account.username
        or str(data.oauth2_profile_id or "").strip() != str(account.oauth2_profile_id or "")
        or bool(data.shared_mailbox) != bool(account.shared_mailbox)
    )


def start_authorization(
    form_data: dict[str, Any], account: MailAccount | None, finish: bool
) -> Response:
    """Called by the mail account form for OAuth2 types: save directly or go to the provider."""
    if account is not None and not needs_consent(form_data, account):
        return _save_directly(form_data, account, finish)
    try:
        url = begin_consent(
            form_data,
            account.id if account is not None else None,
            finish,
            admin_user_id=g.admin.id,
            binding=_session_binding(),
            callback_url=redirect_uri(),
        )
    except ConsentError as e:
        raise ValidationError({"oauth2_profile_id": str(e)}) from None
    return redirect(url)


def _save_directly(form_data: dict[str, Any], account: MailAccount, finish: bool) -> Response:
    update_mail_account(account, MailAccountInput.from_dict(form_data), current_admin_name())
    flash(f"Mail account {account.username} on {account.host} saved.", "success")
    if finish:
        return redirect(url_for("mail_accounts.index"))
    return redirect(url_for("mail_accounts.edit", account_id=account.id))


def _session_binding() -> str:
    binding = session.get(SESSION_BINDING_KEY)
    if not binding:
        binding = secrets.token_urlsafe(32)
        session[SESSION_BINDING_KEY] = binding
    return binding


def begin_consent(
    form_data: dict[str, Any],
    account_id: int | None,
    finish: bool,
    admin_user_id: int,
    binding: str,
    callback_url: str,
) -> str:
    """Park the form under a fresh state and return the provider's consent URL."""
    data = MailAccountInput.from_dict(form_data)
    profile = _valid_profile(data.oauth2_profile_id)
    account_type = ACCOUNT_TYPES.get(str(data.type))
    if account_type is None or not account_type.oauth2:
        raise ConsentError("The account type is not an OAuth2 type.")
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    client = oauth_client(profile, callback_url, scopes_for(account_type.protocol))
    extra = {"prompt": "select_account"}
    if not data.shared_mailbox:
        # A shared mailbox cannot sign in itself: a delegate does, so no hint then.
        extra["login_hint"] = str(data.username).strip()
    url, _ = client.create_authorization_url(
        endpoints_for(profile).authorize_url, state=state, code_verifier=verifier, **extra
    )
    _purge_expired_pending()
    db.session.add(
        OAuth2PendingAuthorization(
            state=state,
            admin_user_id=admin_user_id,
            session_binding=binding,
            code_verifier=verifier,
            mail_account_id=account_id,
            form_data=json.dumps(form_data),
            finish=finish,
            expires_at=utcnow() + PENDING_LIFETIME,
        )
    )
    db.session.commit()
    return url


def _valid_profile(profile_id: Any) -> OAuth2Profile:
    try:
        profile = db.session.get(OAuth2Profile, int(str(profile_id)))
    except (TypeError, ValueError):
        profile = None
    if profile is None:
        raise ConsentError("Choose the OAuth2 profile.")
    if profile.validity != "valid":
        raise ConsentError("This OAuth2 profile is not valid.")
    return profile


def _purge_expired_pending() -> None:
    db.session.query(OAuth2PendingAuthorization).filter(
        OAuth2PendingAuthorization.expires_at < utcnow()
    ).delete()


@bp.route("/reauthorize/<int:account_id>", methods=["POST"])
def reauthorize(account_id: int) -> Response:
    """Run the consent again for an account, keeping every setting."""
    account = db.session.get(MailAccount, account_id)
    if account is None:
        abort(404)
    if not account.account_type.oauth2:
        flash("Only OAuth2 mail accounts can be re-authorized.", "error")
        return redirect(url_for("mail_accounts.index"))
    try:
        url = begin_consent(
            input_from_account(account).to_dict(),
            account.id,
            finish=True,
            admin_user_id=g.admin.id,
            binding=_session_binding(),
            callback_url=redirect_uri(),
        )
    except ConsentError as e:
        flash(f"Cannot re-authorize {account.username}: {e}", "error")
        return redirect(url_for("mail_accounts.index"))
    return redirect(url)


# ----- the callback -----


@dataclass(frozen=True)
class Pending:
    """A consumed pending authorization (the row itself is already deleted)."""

    admin_user_id: int
    session_binding: str
    code_verifier: str
    mail_account_id: int | None
    form_data: dict[str, Any]
    finish: bool

    @property
    def input(self) -> MailAccountInput:
        return MailAccountInput.from_dict(self.form_data)


def take_pending(state: str) -> Pending | None:
    """The pending authorization for state, deleted so it works once; None if unknown/expired."""
    if not state or len(state) > 200:
        return None
    row = db.session.get(OAuth2PendingAuthorization, state)
    if row is None:
        return None
    pending = Pending(
        row.admin_user_id,
        row.session_binding,
        row.code_verifier,
        row.mail_account_id,
        json.loads(row.form_data),
        row.finish,
    )
    expired = row.expires_at < utcnow()
    deleted = (
        db.session.query(OAuth2PendingAuthorization)
        .filter(OAuth2PendingAuthorization.state == state)
        .delete(synchronize_session=False)
    )
    db.session.commit()
    if deleted != 1 or expired:  # a concurrent replay lost the race, or too late
        return None
    return pending


def _bound_to_this_browser(pending: Pending) -> bool:
    if pending.session_binding == CLI_BINDING:
        return True
    admin = g.get("admin")
    binding = session.get(SESSION_BINDING_KEY) or ""
    return (
        admin is not None
        and admin.id == pending.admin_user_id
        and secrets.compare_digest(binding, pending.session_binding)
    )


@bp.route("/callback")
def callback() -> Response | str:
    """The provider sends the browser back here with code and state (or an error)."""
    pending = take_pending(request.args.get("state", ""))
    if pending is None:
        return _refuse(
            "This sign-in answer is unknown, already used or older than 10 minutes. "
            "Start again from the mail account."
        )
    if not _bound_to_this_browser(pending):
        return _refuse(
            "This sign-in was started in another browser session. Start again from the mail "
            "account in this browser."
        )
    if request.args.get("error"):
        message = explain(
            request.args.get("error"), request.args.get("error_description"), redirect_uri()
        )
        return _back_to_form(pending, message)
    try:
        return _link(pending, request.args.get("code", ""))
    except LinkError as e:
        return _back_to_form(pending, str(e))


class LinkError(Exception):
    """The sign-in did not give a usable link; str() is for the admin."""


def _link(pending: Pending, code: str) -> Response | str:
    data = pending.input
    profile = _valid_profile_or_link_error(data.oauth2_profile_id)
    endpoints = endpoints_for(profile)
    token = _exchange_code(profile, endpoints.token_url, code, pending)
    try:
        signed_in = signed_in_identity(token, profile, endpoints)
    except IdentityError as e:
        raise LinkError(str(e)) from None
    expected = str(data.username).strip()
    if not data.shared_mailbox and signed_in != expected.lower():
        raise LinkError(
            f"You signed in at the provider as {signed_in}, but this mail account is "
            f"{expected}. Sign in as {expected} (use a private window, so the browser does not "
            "reuse the account that is already signed in), or mark the account as Shared "
            f"mailbox if {signed_in} is a delegate with access to it."
        )
    account = _save_linked_account(pending, token, signed_in)
    message = (
        f"Mail account {account.username} on {account.host} linked (signed in as {signed_in})."
    )
    if g.get("admin") is None:
        return _result_page("Mail account linked", message)
    flash(message, "success")
    if pending.finish:
        return redirect(url_for("mail_accounts.index"))
    return redirect(url_for("mail_accounts.edit", account_id=account.id))


def _valid_profile_or_link_error(profile_id: Any) -> OAuth2Profile:
    try:
        return _valid_profile(profile_id)
    except ConsentError as e:
        raise LinkError(str(e)) from None


def _exchange_code(profile: OAuth2Profile, token_url: str, code: str, pending: Pending) -> dict:
    if not code:
        raise LinkError("The provider sent neither a code nor an error.")
    client = oauth_client(profile, redirect_uri())
    try:
        return client.fetch_token(
            token_url,
            grant_type="authorization_code",
            code=code,
            code_verifier=pending.code_verifier,
            timeout=TOKEN_REQUEST_TIMEOUT,
        )
    except OAuthError as e:
        raise LinkError(explain(e.error, e.description, redirect_uri())) from None
    except requests.RequestException as e:
        raise LinkError(
            f"The provider's token endpoint could not be reached ({type(e).__name__}). Try again."
        ) from None
    except ValueError:
        raise LinkError("The provider's token endpoint did not answer with JSON.") from None
    finally:
        client.close()


def _save_linked_account(pending: Pending, token: dict, signed_in: str) -> MailAccount:
    """Create or update the account together with its tokens, in one transaction."""
    actor = _actor(pending)
    data = pending.input
    try:
        if pending.mail_account_id is None:
            account = create_mail_account(data, actor, commit=False)
        else:
            account = db.session.get(MailAccount, pending.mail_account_id)
            if account is None:
                raise LinkError("The mail account was deleted in the meantime.")
            store_tokens(account, token, signed_in)  # committed by the update below
            update_mail_account(account, data, actor)
            return account
    except ValidationError as e:
        raise LinkError("; ".join(e.errors.values())) from None
    store_tokens(account, token, signed_in)
    db.session.commit()
    return account


def _actor(pending: Pending) -> str | None:
    admin = db.session.get(AdminUser, pending.admin_user_id)
    name = admin.username if admin is not None else None
    return f"{name} (cli)" if pending.session_binding == CLI_BINDING and name else name


def _result_page(title: str, message: str, error: bool = False) -> str:
    """For a browser without an admin session (a link printed by the CLI)."""
    return render_template("oauth/result.html", title=title, message=message, error=error)


def _refuse(message: str) -> Response | str:
    if g.get("admin") is None:
        return _result_page("Sign-in refused", message, error=True)
    flash(message, "error")
    return redirect(url_for("mail_accounts.index"))


def _back_to_form(pending: Pending, message: str) -> Response | str:
    """Show the mail account form again with what was typed, and why it did not work."""
    if g.get("admin") is None:
        return _result_page("Sign-in failed", message, error=True)
    from ..mail_accounts.forms import MailAccountForm

    account = (
        db.session.get(MailAccount, pending.mail_account_id) if pending.mail_account_id else None
    )
    form = MailAccountForm(formdata=None, data=_form_values(pending.input), account=account)
    flash(message, "error")
    return render_template("mail_accounts/form.html", form=form, account=account, runs=[])


def _form_values(data: MailAccountInput) -> dict[str, Any]:
    values = data.to_dict()
    values.pop("password", None)
    values["trusted"] = "1" if data.trusted else "0"
    for name in ("port", "queue_id", "fetch_interval_minutes", "oauth2_profile_id"):
        values[name] = "" if values.get(name) is None else str(values[name])
    return values
