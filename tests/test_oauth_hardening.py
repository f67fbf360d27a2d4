"""Tokens and secrets cannot be redirected (issue 11, items 2-5): a changed server needs a new
consent, a changed profile destination needs the secret again, URLs are read the way the HTTP
client reads them, and the id_token must come from the tenant, for this very sign-in."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

import pytest

from tests.idp.server import LocalIdentityProvider
from tests.oauth_helpers import (
    account_by_username,
    account_form,
    add_idp_user,
    follow_callback,
    link_account,
    make_profile,
    query,
    run_consent,
    sign_in_at_idp,
)
from webapp.extensions import db
from webapp.models import MailAccount, OAuth2PendingAuthorization, OAuth2Profile
from webapp.oauth.providers import url_error
from webapp.oauth.service import ProfileInput, create_profile, update_profile
from webapp.validation import ValidationError

CALLBACK = "http://localhost/oauth2/callback"
SECRET_AGAIN = "Enter the client secret again: where it is sent changed"
OTHER_TENANT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@pytest.fixture
def idp_redirect_uris() -> list[str]:
    return [CALLBACK]


@pytest.fixture
def profile_id(app_ctx, idp, ms_tenant) -> int:
    return make_profile(idp, ms_tenant)


@pytest.fixture
def user(idp, ms_tenant) -> str:
    return add_idp_user(idp, ms_tenant)


@pytest.fixture
def linked(admin_client, idp, profile_id, user) -> MailAccount:
    """An OAuth2 account on outlook.office365.com, linked through the consent."""
    link_account(admin_client, idp, profile_id, user)
    account = account_by_username(user)
    assert account is not None and account.oauth2_token is not None
    return account


class Listener:
    """A TCP port that only counts who connects (a server the token must never reach)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


# ----- 2. a changed server needs a new consent -----


@pytest.mark.parametrize(
    "change",
    [{"host": "imap.elsewhere.example"}, {"port": "1993"}, {"verify_tls": None}],
    ids=["host", "port", "tls-verification"],
)
def test_changing_the_server_of_a_linked_account_asks_for_consent_again(
    admin_client, idp, profile_id, user, linked, change
):
    form = account_form(profile_id, user, host=linked.host)
    form.update({k: v for k, v in change.items() if v is not None})
    for name in (k for k, v in change.items() if v is None):
        form.pop(name)  # an unchecked checkbox is not posted
    response = admin_client.post(f"/mail-accounts/{linked.id}", data=form)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(idp.base_url)  # the consent, not a save
    db.session.expire_all()
    account = db.session.get(MailAccount, linked.id)
    assert (account.host, account.port, account.verify_tls) == ("outlook.office365.com", None, True)
    run_consent(admin_client, idp, response, user)
    db.session.expire_all()
    account = db.session.get(MailAccount, linked.id)
    assert account.oauth2_token is not None and account.needs_reauth is False
    if "host" in change:
        assert account.host == "imap.elsewhere.example"


def test_changing_only_the_comment_saves_without_consent(admin_client, profile_id, user, linked):
    form = account_form(profile_id, user, host=linked.host, comment="just a note")
    response = admin_client.post(f"/mail-accounts/{linked.id}", data=form)
    assert response.headers["Location"].endswith(f"/mail-accounts/{linked.id}")
    db.session.expire_all()
    assert db.session.get(MailAccount, linked.id).oauth2_token is not None


def test_cli_host_change_drops_the_tokens_and_test_connection_sends_none(
    admin_client, runner, linked
):
    listener = Listener()
    try:
        result = runner.invoke(
            args=[
                "mail-account",
                "update",
                str(linked.id),
                "--host",
                "127.0.0.1",
                "--port",
                str(listener.port),
            ]
        )
        assert result.exit_code == 0, result.output
        assert f"flask --app wsgi mail-account authorize {linked.id}" in result.stderr
        assert "TLS verification changed" in result.stderr
        db.session.expire_all()
        account = db.session.get(MailAccount, linked.id)
        assert account.oauth2_token is None and account.needs_reauth is True
        page = admin_client.post(f"/mail-accounts/{linked.id}/test", follow_redirects=True)
        assert "Connection failed: This mail account is not linked yet" in page.get_data(
            as_text=True
        )
        test = runner.invoke(args=["mail-account", "test", str(linked.id)])
        assert test.exit_code == 1
    finally:
        listener.close()
    assert listener.connections == 0  # nothing, let alone a Bearer token, went there


def test_microsoft_profile_warns_when_the_host_is_not_microsoft_365(runner, app_ctx):
    create_profile(
        ProfileInput(
            name="M365",
            client_id="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            client_secret="s3cret-value",
            tenant_id="5f1c3a2e-8d4b-4e6f-9a7c-0b1d2e3f4a5b",
        ),
        "test",
    )
    base = ["mail-account", "add", "--type", "IMAPOAuth2", "--oauth2-profile", "M365"]
    odd = runner.invoke(args=[*base, "--username", "a@contoso.com", "--host", "imap.evil.example"])
    assert odd.exit_code == 0, odd.output
    assert "imap.evil.example is not a Microsoft 365 host" in odd.stderr
    fine = runner.invoke(args=[*base, "--username", "b@contoso.com"])
    assert fine.exit_code == 0, fine.output
    assert "not a Microsoft 365 host" not in fine.stderr


def test_microsoft_profile_host_warning_is_flashed_on_the_screen(admin_client, app_ctx):
    profile = create_profile(
        ProfileInput(
            name="M365",
            client_id="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            client_secret="s3cret-value",
            tenant_id="5f1c3a2e-8d4b-4e6f-9a7c-0b1d2e3f4a5b",
        ),
        "test",
    )
    form = account_form(profile.id, "a@contoso.com", host="imap.evil.example")
    response = admin_client.post("/mail-accounts/add", data=form)
    assert response.headers["Location"].startswith("https://login.microsoftonline.com/")
    page = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert "imap.evil.example is not a Microsoft 365 host" in page


# ----- 3. a changed destination needs the client secret again -----


@pytest.mark.parametrize(
    "change",
    [
        {"tenant_id": "contoso.test"},
        {"token_url": "https://login.evil.example/{tenant}/oauth2/v2.0/token"},
        {"authorize_url": "https://login.evil.example/{tenant}/oauth2/v2.0/authorize"},
        {"provider": "MicrosoftAzure"},
    ],
    ids=["tenant", "token-url", "authorize-url", "provider"],
)
def test_changing_where_the_secret_is_sent_requires_the_secret_again(
    idp, ms_tenant, profile_id, change
):
    profile = db.session.get(OAuth2Profile, profile_id)
    data = ProfileInput(
        name=profile.name,
        provider=profile.provider,
        client_id=profile.client_id,
        tenant_id=profile.tenant_id,
        authorize_url=profile.authorize_url,
        token_url=profile.token_url,
    )
    for name, value in change.items():
        setattr(data, name, value)
    with pytest.raises(ValidationError) as caught:
        update_profile(profile, data, "test")
    assert caught.value.errors == {"client_secret": SECRET_AGAIN}
    db.session.expire_all()
    assert db.session.get(OAuth2Profile, profile_id).token_url == idp.base_url + (
        "/{tenant}/oauth2/v2.0/token"
    )
    data.client_secret = "a-new-secret-value"
    update_profile(profile, data, "test")


def test_profile_screen_asks_for_the_secret_when_the_token_url_changes(
    admin_client, idp, ms_tenant, profile_id
):
    form = {
        "name": "Contoso",
        "provider": "Custom",
        "client_id": ms_tenant.client_id,
        "client_secret": "",
        "tenant_id": ms_tenant.tenant_id,
        "authorize_url": idp.base_url + "/{tenant}/oauth2/v2.0/authorize",
        "token_url": "https://login.evil.example/{tenant}/oauth2/v2.0/token",
        "validity": "valid",
    }
    page = admin_client.post(f"/oauth2-profiles/{profile_id}", data=form).get_data(as_text=True)
    assert "Enter the client secret again: where it is sent changed" in page
    db.session.expire_all()
    assert "evil" not in db.session.get(OAuth2Profile, profile_id).token_url
    form["token_url"] = idp.base_url + "/{tenant}/oauth2/v2.0/token"
    form["comment"] = "only a comment"
    response = admin_client.post(f"/oauth2-profiles/{profile_id}", data=form)
    assert response.status_code == 302  # nothing about the destination changed


# ----- 4. URL checks -----


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example\\@127.0.0.1/token",
        "https://evil.example\\@login.example.com/token",
        "https://user@login.example.com/token",
        "https://user:pw@login.example.com/token",
        "https://login.example.com/to ken",
        "https://login.example.com/\x00token",
        "https://login.example.com\t/token",
        "http://localhost/token",
        "http://evil.example/token",
        "http://127.0.0.1.evil.example/token",
        "ftp://127.0.0.1/token",
        "https:///token",
    ],
)
def test_unsafe_provider_urls_are_refused(url):
    assert url_error(url) is not None


@pytest.mark.parametrize(
    "url",
    [
        "https://login.example.com/{tenant}/oauth2/v2.0/token",
        "http://127.0.0.1:8080/{tenant}/oauth2/v2.0/token",
        "http://127.1.2.3/token",
        "http://[::1]:8080/token",
    ],
)
def test_https_and_loopback_http_urls_are_accepted(url):
    assert url_error(url) is None


def test_a_backslash_token_url_cannot_be_saved(app_ctx, ms_tenant):
    with pytest.raises(ValidationError) as caught:
        create_profile(
            ProfileInput(
                name="Evil",
                provider="Custom",
                client_id=ms_tenant.client_id,
                client_secret="x",
                tenant_id=ms_tenant.tenant_id,
                authorize_url="https://login.example.com/{tenant}/authorize",
                token_url="http://evil.example\\@127.0.0.1/token",
            ),
            "test",
        )
    assert "token_url" in caught.value.errors


# ----- 5. the id_token and the callback -----


def test_the_nonce_is_sent_kept_and_checked(admin_client, idp, profile_id, user):
    start = admin_client.post("/mail-accounts/add", data=account_form(profile_id, user))
    params = query(start.headers["Location"])
    pending = db.session.get(OAuth2PendingAuthorization, params["state"])
    assert params["nonce"] and pending.nonce == params["nonce"]
    run_consent(admin_client, idp, start, user)
    assert account_by_username(user) is not None


@pytest.mark.parametrize(
    "claims, message",
    [
        ({"nonce": None}, "does not belong to this sign-in"),
        ({"nonce": "someone-elses-nonce"}, "does not belong to this sign-in"),
        ({"iss": "https://evil.example/{tid}/v2.0"}, "not by the tenant"),
        ({"iss": "https://login.microsoftonline.com/{tid}/v2.0/"}, "not by the tenant"),
    ],
    ids=["no-nonce", "wrong-nonce", "foreign-issuer", "issuer-not-exact"],
)
def test_an_id_token_not_from_the_tenant_for_this_sign_in_is_refused(
    admin_client, idp, ms_tenant, profile_id, user, claims, message
):
    idp.override_id_token_claims(
        **{k: v.replace("{tid}", ms_tenant.tenant_id) if v else v for k, v in claims.items()}
    )
    page = link_account(admin_client, idp, profile_id, user).get_data(as_text=True)
    assert message in page
    assert account_by_username(user) is None


def test_a_domain_tenant_accepts_only_its_own_tenant_id(
    admin_client, app_ctx, idp, ms_tenant, user
):
    profile_id = make_profile(idp, ms_tenant, "By domain", tenant_id=ms_tenant.domain)
    # Another tenant's token, consistent in itself (iss names its tid), signed by the IdP.
    idp.add_tenant(OTHER_TENANT)
    idp.override_id_token_claims(
        tid=OTHER_TENANT, iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"
    )
    page = link_account(admin_client, idp, profile_id, user).get_data(as_text=True)
    assert "not by the tenant" in page
    assert account_by_username(user) is None
    idp.override_id_token_claims()
    link_account(admin_client, idp, profile_id, user)
    assert account_by_username(user) is not None


def test_a_profile_changed_during_the_sign_in_gets_neither_code_nor_secret(
    admin_client, idp, ms_tenant, profile_id, user
):
    other = LocalIdentityProvider()
    other.start()
    try:
        start = admin_client.post("/mail-accounts/add", data=account_form(profile_id, user))
        profile = db.session.get(OAuth2Profile, profile_id)
        update_profile(
            profile,
            ProfileInput(
                name=profile.name,
                provider="Custom",
                client_id=profile.client_id,
                client_secret=ms_tenant.client_secret,
                tenant_id=profile.tenant_id,
                authorize_url=profile.authorize_url,
                token_url=other.base_url + "/{tenant}/oauth2/v2.0/token",
            ),
            "test",
        )
        page = run_consent(admin_client, idp, start, user).get_data(as_text=True)
        assert "was changed during the sign-in" in page
        assert other.token_requests == []
        assert account_by_username(user) is None
    finally:
        other.stop()


def test_a_callback_in_the_wrong_browser_does_not_burn_the_state(
    app, admin_client, idp, profile_id, user
):
    start = admin_client.post("/mail-accounts/add", data=account_form(profile_id, user))
    callback = sign_in_at_idp(idp, start.headers["Location"], user)
    stranger = app.test_client()
    refused = stranger.get(callback, follow_redirects=True).get_data(as_text=True)
    assert "started in another browser session" in refused
    follow_callback(admin_client, callback)  # the right browser still can finish
    assert account_by_username(user) is not None


@pytest.mark.parametrize("outcome", ["error", "wrong-account", "cli-link"])
def test_the_callback_redirects_before_rendering_anything(
    app, runner, admin_client, idp, ms_tenant, profile_id, user, outcome
):
    if outcome == "cli-link":
        link_account(admin_client, idp, profile_id, user)
        account = account_by_username(user)
        app.config["PUBLIC_URL"] = "http://localhost"
        url = runner.invoke(args=["mail-account", "authorize", str(account.id)]).output
        client, consent_url = app.test_client(), url.strip().splitlines()[-1]
        callback = sign_in_at_idp(idp, consent_url, user)
    else:
        client = admin_client
        start = client.post("/mail-accounts/add", data=account_form(profile_id, user))
        if outcome == "error":
            state = query(start.headers["Location"])["state"]
            callback = f"/oauth2/callback?error=access_denied&state={state}&code=leak"
        else:
            other = add_idp_user(idp, ms_tenant, prefix="other")
            callback = sign_in_at_idp(idp, start.headers["Location"], other)
    response = client.get(callback)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert "code" not in location.query and "state" not in location.query
    shown = client.get(location.path)
    assert shown.status_code == 200
    assert ("linked (signed in as" if outcome == "cli-link" else "error") in shown.get_data(
        as_text=True
    )


def test_a_stored_profile_with_an_unsafe_token_url_gets_no_refresh_request(idp, linked):
    from webapp.oauth.tokens import OAuth2TokenError, access_token_for

    # Saved before the URL checks existed (written straight to the database).
    profile = linked.oauth2_profile
    profile.token_url = "http://evil.example\\@127.0.0.1/{tenant}/oauth2/v2.0/token"
    linked.oauth2_token.access_token_expires_at = None
    db.session.commit()
    requests_before = len(idp.token_requests)
    with pytest.raises(OAuth2TokenError) as caught:
        access_token_for(linked)
    assert caught.value.fetch_status == "error"
    assert "token URL is refused" in caught.value.admin_message
    assert len(idp.token_requests) == requests_before
