"""The token store against the local IdP: reuse, refresh with rotation, serialized refreshes,
invalid_grant and transient failures."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest

from tests.oauth_helpers import account_by_username, add_idp_user, link_account, make_profile
from webapp.extensions import db
from webapp.models import MailAccount, OAuth2Token, utcnow
from webapp.oauth.tokens import OAuth2TokenError, access_token_for


@pytest.fixture
def idp_redirect_uris() -> list[str]:
    return ["http://localhost/oauth2/callback"]


@pytest.fixture
def linked(admin_client, app_ctx, idp, ms_tenant) -> MailAccount:
    """A linked IMAPOAuth2 account, its IdP user signed in once."""
    profile_id = make_profile(idp, ms_tenant)
    user = add_idp_user(idp, ms_tenant)
    link_account(admin_client, idp, profile_id, user)
    return account_by_username(user)


def refresh_requests(idp) -> list[dict]:
    return [r for r in idp.token_requests if r["grant_type"] == "refresh_token"]


def expire_access_token(account_id: int) -> None:
    row = db.session.get(OAuth2Token, account_id)
    row.access_token_expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()


def test_access_token_is_reused_until_shortly_before_expiry(idp, linked):
    first = linked.oauth2_token.access_token
    assert access_token_for(linked) == first
    assert refresh_requests(idp) == []
    row = db.session.get(OAuth2Token, linked.id)
    row.access_token_expires_at = utcnow() + timedelta(minutes=4)  # inside the 5-minute margin
    db.session.commit()
    assert access_token_for(linked) != first
    assert len(refresh_requests(idp)) == 1


def test_refresh_persists_the_rotated_refresh_token(idp, linked):
    old_refresh = linked.oauth2_token.refresh_token
    for _ in range(3):  # every refresh uses the token of the one before: rotation kept
        expire_access_token(linked.id)
        access_token_for(linked)
    db.session.expire_all()
    row = db.session.get(OAuth2Token, linked.id)
    assert row.refresh_token != old_refresh
    assert row.refresh_token in idp.issued_refresh_tokens(linked.username)
    assert [r["status"] for r in refresh_requests(idp)] == [200, 200, 200]
    assert row.last_refresh_at is not None and row.last_error is None


def test_concurrent_refreshes_of_one_account_are_serialized(app, idp, linked):
    expire_access_token(linked.id)
    account_id = linked.id
    tokens: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def fetcher() -> None:
        with app.app_context():
            try:
                account = db.session.get(MailAccount, account_id)
                barrier.wait()
                tokens.append(access_token_for(account))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=fetcher) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(set(tokens)) == 1 and len(tokens) == 4
    assert len(refresh_requests(idp)) == 1  # one refresh; nobody used a spent refresh token


def test_revoked_grant_marks_reauth_and_commits_it_before_raising(idp, linked, caplog):
    caplog.set_level(logging.DEBUG)
    refresh = linked.oauth2_token.refresh_token
    idp.revoke_user_sessions(linked.username)
    expire_access_token(linked.id)
    with pytest.raises(OAuth2TokenError) as caught:
        access_token_for(linked)
    assert caught.value.fetch_status == "reauth"
    assert "AADSTS50173" in caught.value.admin_message
    assert "Re-authorize" in caught.value.admin_message
    db.session.rollback()  # what the fetch does on an error: the bookkeeping must survive
    db.session.expire_all()
    account = db.session.get(MailAccount, linked.id)
    assert account.needs_reauth is True
    assert "AADSTS50173" in account.oauth2_token.last_error
    assert refresh not in caplog.text


def test_expired_refresh_token_needs_reauth(idp, linked):
    idp.expire_refresh_tokens()
    expire_access_token(linked.id)
    with pytest.raises(OAuth2TokenError) as caught:
        access_token_for(linked)
    assert caught.value.fetch_status == "reauth"
    assert "AADSTS700082" in caught.value.admin_message


def test_provider_503_is_transient(idp, linked):
    idp.fail_token_requests(1, 503)
    expire_access_token(linked.id)
    with pytest.raises(OAuth2TokenError) as caught:
        access_token_for(linked)
    assert caught.value.fetch_status == "warning"
    db.session.expire_all()
    account = db.session.get(MailAccount, linked.id)
    assert account.needs_reauth is False
    assert account.oauth2_token.last_error
    assert access_token_for(account)  # the next run retries and works


def test_unreachable_token_endpoint_is_transient(idp, linked):
    idp.stop()
    expire_access_token(linked.id)
    with pytest.raises(OAuth2TokenError) as caught:
        access_token_for(linked)
    assert caught.value.fetch_status == "warning"
    assert db.session.get(MailAccount, linked.id).needs_reauth is False


def test_expired_client_secret_is_an_error_not_reauth(idp, ms_tenant, linked):
    idp.set_secret_expired(ms_tenant.tenant_id, ms_tenant.client_id)
    expire_access_token(linked.id)
    with pytest.raises(OAuth2TokenError) as caught:
        access_token_for(linked)
    assert caught.value.fetch_status == "error"
    assert "AADSTS7000222" in caught.value.admin_message
    assert "Create a new client secret" in caught.value.admin_message


def test_account_without_tokens_needs_reauth(app_ctx, idp, ms_tenant):
    profile_id = make_profile(idp, ms_tenant)
    account = MailAccount(
        type="IMAPOAuth2", username="x@contoso.test", host="h", oauth2_profile_id=profile_id
    )
    db.session.add(account)
    db.session.commit()
    with pytest.raises(OAuth2TokenError) as caught:
        access_token_for(account)
    assert caught.value.fetch_status == "reauth"
    assert db.session.get(MailAccount, account.id).needs_reauth is True


def test_cli_authorize_prints_a_one_time_link_that_works_from_another_browser(
    app, runner, idp, linked
):
    app.config["PUBLIC_URL"] = "http://localhost"
    result = runner.invoke(args=["mail-account", "authorize", str(linked.id)])
    assert result.exit_code == 0, result.output
    url = result.output.strip().splitlines()[-1]
    assert url.startswith(idp.base_url)
    from tests.oauth_helpers import sign_in_at_idp

    callback = sign_in_at_idp(idp, url, linked.username)
    other_browser = app.test_client()  # not signed in: bound to the CLI, not a session
    page = other_browser.get(callback, follow_redirects=True).get_data(as_text=True)
    assert "linked (signed in as" in page
    replay = other_browser.get(callback, follow_redirects=True)
    assert "unknown, already used" in replay.get_data(as_text=True)
    for line in result.output.splitlines():
        assert linked.oauth2_token.refresh_token not in line


def test_cli_authorize_needs_the_public_url(runner, linked):
    result = runner.invoke(args=["mail-account", "authorize", str(linked.id)])
    assert result.exit_code == 2
    assert "POSTMASTER_PUBLIC_URL" in result.output


def test_test_connection_of_an_unlinked_account_says_why(admin_client, app_ctx, idp, ms_tenant):
    profile_id = make_profile(idp, ms_tenant)
    account = MailAccount(
        type="IMAPOAuth2", username="x@contoso.test", host="h", oauth2_profile_id=profile_id
    )
    db.session.add(account)
    db.session.commit()
    page = admin_client.post(f"/mail-accounts/{account.id}/test", follow_redirects=True)
    text = page.get_data(as_text=True)
    assert "Connection failed: This mail account is not linked yet" in text
    assert "Not linked yet" in text and f"/oauth2/reauthorize/{account.id}" in text
