"""The consent round trip against the local identity provider, with the Flask test client."""

from __future__ import annotations

import logging

import pytest

from tests.oauth_helpers import (
    account_by_username,
    account_form,
    add_idp_user,
    link_account,
    make_profile,
    query,
    run_consent,
    sign_in_at_idp,
)
from webapp.extensions import db
from webapp.models import MailAccount, OAuth2PendingAuthorization, OAuth2Token
from webapp.oauth.providers import IMAP_SCOPE, POP_SCOPE

CALLBACK = "http://localhost/oauth2/callback"


@pytest.fixture
def idp_redirect_uris() -> list[str]:
    return [CALLBACK]


@pytest.fixture
def profile_id(app_ctx, idp, ms_tenant) -> int:
    return make_profile(idp, ms_tenant)


@pytest.fixture
def user(idp, ms_tenant) -> str:
    return add_idp_user(idp, ms_tenant)


def test_save_sends_the_browser_to_the_provider_with_pkce_state_and_exact_scopes(
    admin_client, idp, profile_id, user
):
    response = admin_client.post("/mail-accounts/add", data=account_form(profile_id, user))
    assert response.status_code == 302
    params = query(response.headers["Location"])
    assert response.headers["Location"].startswith(idp.base_url + "/")
    assert params["scope"] == f"{IMAP_SCOPE} offline_access openid profile email"
    assert params["code_challenge_method"] == "S256" and params["code_challenge"]
    assert params["redirect_uri"] == CALLBACK
    assert params["prompt"] == "select_account"
    assert params["login_hint"] == user
    assert len(params["state"]) >= 32
    # Nothing is saved until the callback; the form waits on the server, keyed by state.
    assert db.session.query(MailAccount).count() == 0
    pending = db.session.get(OAuth2PendingAuthorization, params["state"])
    assert pending is not None and pending.finish is True


def test_pop3_asks_for_the_pop_scope_only(admin_client, profile_id, user):
    form = account_form(profile_id, user, account_type="POP3OAuth2")
    params = query(admin_client.post("/mail-accounts/add", data=form).headers["Location"])
    assert params["scope"] == f"{POP_SCOPE} offline_access openid profile email"


def test_callback_creates_the_account_with_tokens_and_who_linked_it(
    admin_client, idp, profile_id, user
):
    response = link_account(admin_client, idp, profile_id, user, comment="team box")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/mail-accounts/")
    account = account_by_username(user)
    assert account.type == "IMAPOAuth2"
    assert account.host == "outlook.office365.com"
    assert account.comment == "team box"
    assert account.password is None
    token = account.oauth2_token
    assert token.refresh_token and token.access_token and token.access_token_expires_at
    assert token.linked_by == user.lower()
    assert db.session.query(OAuth2PendingAuthorization).count() == 0
    page = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert user in page and "IMAPOAuth2" in page


def test_wrong_account_signed_in_is_refused_and_nothing_saved(
    admin_client, idp, ms_tenant, profile_id, user
):
    other = add_idp_user(idp, ms_tenant, prefix="other")
    response = link_account(admin_client, idp, profile_id, user, as_user=other)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f"signed in at the provider as {other}" in page
    assert f"this mail account is {user}" in page
    assert "private window" in page
    assert 'value="' + user + '"' in page  # back on the form, with what was typed
    assert db.session.query(MailAccount).count() == 0


def test_shared_mailbox_accepts_a_delegate(admin_client, idp, ms_tenant, profile_id):
    delegate = add_idp_user(idp, ms_tenant, prefix="delegate")
    shared = f"shared-{delegate}"
    start = admin_client.post(
        "/mail-accounts/add", data=account_form(profile_id, shared, shared_mailbox="y")
    )
    assert "login_hint" not in query(start.headers["Location"])
    run_consent(admin_client, idp, start, delegate)
    account = account_by_username(shared)
    assert account.shared_mailbox is True
    assert account.oauth2_token.linked_by == delegate.lower()


def test_state_mismatch_and_replayed_callback_are_refused(admin_client, idp, profile_id, user):
    start = admin_client.post("/mail-accounts/add", data=account_form(profile_id, user))
    callback = sign_in_at_idp(idp, start.headers["Location"], user)
    forged = callback.replace("state=", "state=x")
    response = admin_client.get(forged, follow_redirects=True)
    assert "unknown, already used or older than 10 minutes" in response.get_data(as_text=True)
    assert admin_client.get(callback).status_code == 302
    assert account_by_username(user) is not None
    replay = admin_client.get(callback, follow_redirects=True)
    assert "unknown, already used" in replay.get_data(as_text=True)
    assert db.session.query(MailAccount).count() == 1


def test_callback_in_another_session_is_refused(app, admin_client, idp, profile_id, user):
    start = admin_client.post("/mail-accounts/add", data=account_form(profile_id, user))
    callback = sign_in_at_idp(idp, start.headers["Location"], user)
    stranger = app.test_client()
    response = stranger.get(callback, follow_redirects=True)
    assert "started in another browser session" in response.get_data(as_text=True)
    assert db.session.query(MailAccount).count() == 0


def test_expired_pending_authorization_is_refused(admin_client, idp, profile_id, user):
    from datetime import timedelta

    start = admin_client.post("/mail-accounts/add", data=account_form(profile_id, user))
    state = query(start.headers["Location"])["state"]
    pending = db.session.get(OAuth2PendingAuthorization, state)
    pending.expires_at -= timedelta(minutes=11)
    db.session.commit()
    response = run_consent(admin_client, idp, start, user)
    assert "older than 10 minutes" in admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert response.status_code == 302
    assert db.session.query(MailAccount).count() == 0


def test_denied_consent_returns_to_the_form_with_the_message(admin_client, idp, profile_id, user):
    start = admin_client.post(
        "/mail-accounts/add", data=account_form(profile_id, user, comment="keep me")
    )
    # What the IdP's Cancel button sends back (AADSTS65004).
    state = query(start.headers["Location"])["state"]
    response = admin_client.get(
        f"/oauth2/callback?error=access_denied&state={state}"
        "&error_description=AADSTS65004%3A+User+declined+to+consent+to+access+the+app.",
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "access_denied" in page and "User declined to consent" in page
    assert "Consent was declined" in page
    assert "keep me" in page
    assert db.session.query(MailAccount).count() == 0


def test_wrong_client_secret_is_explained(admin_client, idp, ms_tenant, profile_id, user):
    from webapp.models import OAuth2Profile

    profile = db.session.get(OAuth2Profile, profile_id)
    profile.client_secret = ms_tenant.client_secret_id  # the classic mistake
    db.session.commit()
    response = link_account(admin_client, idp, profile_id, user)
    page = response.get_data(as_text=True)
    assert "invalid_client" in page and "AADSTS7000215" in page
    assert "not its Secret ID" in page
    assert ms_tenant.client_secret_id not in page
    assert db.session.query(MailAccount).count() == 0


def test_editing_only_the_comment_saves_without_a_new_sign_in(admin_client, idp, profile_id, user):
    link_account(admin_client, idp, profile_id, user)
    account = account_by_username(user)
    form = account_form(profile_id, user, comment="changed", host="outlook.office365.com")
    response = admin_client.post(f"/mail-accounts/{account.id}", data=form)
    assert response.status_code == 302
    assert not response.headers["Location"].startswith(idp.base_url)
    db.session.expire_all()
    assert account_by_username(user).comment == "changed"


def test_changing_the_username_needs_a_new_sign_in_and_keeps_the_old_until_then(
    admin_client, idp, ms_tenant, profile_id, user
):
    link_account(admin_client, idp, profile_id, user)
    account_id = account_by_username(user).id
    other = add_idp_user(idp, ms_tenant, prefix="renamed")
    form = account_form(profile_id, other, comment="renamed", submit=None)
    form["submit_finish"] = "Save and finish"
    form.pop("submit")
    start = admin_client.post(f"/mail-accounts/{account_id}", data=form)
    assert start.headers["Location"].startswith(idp.base_url)
    db.session.expire_all()
    assert db.session.get(MailAccount, account_id).username == user  # not half-saved
    done = run_consent(admin_client, idp, start, other)
    assert done.headers["Location"].endswith("/mail-accounts/")  # Save and finish survived
    db.session.expire_all()
    account = db.session.get(MailAccount, account_id)
    assert (account.username, account.comment) == (other, "renamed")
    assert account.oauth2_token.linked_by == other.lower()


def test_reauthorize_keeps_every_setting(admin_client, idp, profile_id, user):
    link_account(admin_client, idp, profile_id, user, comment="c1", folder="Support")
    account = account_by_username(user)
    account.needs_reauth = True
    db.session.commit()
    start = admin_client.post(f"/oauth2/reauthorize/{account.id}")
    run_consent(admin_client, idp, start, user)
    db.session.expire_all()
    account = account_by_username(user)
    assert account.needs_reauth is False
    assert (account.comment, account.folder) == ("c1", "Support")


def test_deleting_the_account_deletes_its_tokens(admin_client, idp, profile_id, user):
    link_account(admin_client, idp, profile_id, user)
    account_id = account_by_username(user).id
    assert db.session.get(OAuth2Token, account_id) is not None
    admin_client.post(f"/mail-accounts/{account_id}/delete")
    db.session.expire_all()
    assert db.session.get(MailAccount, account_id) is None
    assert db.session.query(OAuth2Token).count() == 0


def test_no_secret_or_token_in_pages_or_logs(
    admin_client, idp, ms_tenant, profile_id, user, caplog
):
    caplog.set_level(logging.DEBUG)
    link_account(admin_client, idp, profile_id, user)
    account = account_by_username(user)
    secrets = [ms_tenant.client_secret, account.oauth2_token.refresh_token]
    secrets.append(account.oauth2_token.access_token)
    pages = [
        admin_client.get(path).get_data(as_text=True)
        for path in (
            "/mail-accounts/",
            f"/mail-accounts/{account.id}",
            "/oauth2-profiles/",
            f"/oauth2-profiles/{profile_id}",
        )
    ]
    for secret in secrets:
        assert all(secret not in page for page in pages)
        assert secret not in caplog.text
