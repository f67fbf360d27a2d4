"""Google profiles and Custom providers with a key set: the consent against the local
Google look-alike (tests/idp/google.py), the right-account check by the verified email, and
the id_token signature and issuer checks of a Custom profile."""

from __future__ import annotations

import html
import json
from datetime import timedelta

import pytest
import requests

from tests.fetching import port_for
from tests.idp.google_fixtures import *  # noqa: F403
from tests.idp.google_fixtures import GoogleApp
from tests.mailgen import make_mail
from tests.oauth_helpers import (
    USER_PASSWORD,
    account_by_username,
    account_form,
    add_idp_user,
    new_username,
    query,
    run_consent,
    sign_in_at_idp,
)
from webapp.extensions import db
from webapp.models import MailAccount, OAuth2Profile, Ticket, utcnow
from webapp.oauth.providers import GOOGLE_SCOPES
from webapp.oauth.service import ProfileInput, create_profile
from webapp.oauth.tokens import access_token_for
from webapp.postmaster.fetch import fetch_account
from webapp.validation import ValidationError

CALLBACK = "http://localhost/oauth2/callback"


@pytest.fixture
def idp_redirect_uris() -> list[str]:
    return [CALLBACK]


@pytest.fixture
def app_config(app_config, google_idp, dovecot):
    app_config["OAUTH2_GOOGLE_BASE_URL"] = google_idp.base_url
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


def google_profile(app: GoogleApp, name: str = "Workspace") -> int:
    profile = create_profile(
        ProfileInput(
            name=name,
            provider="Google",
            client_id=app.client_id,
            client_secret=app.client_secret,
        ),
        "test",
    )
    return profile.id


@pytest.fixture
def profile_id(app_ctx, google_app) -> int:
    return google_profile(google_app)


def google_user(google_idp, verified: bool = True) -> str:
    email = new_username("gmail")
    google_idp.add_user(email, USER_PASSWORD, email_verified=verified)
    return email


def start_link(admin_client, profile_id: int, username: str, **extra):
    return admin_client.post("/mail-accounts/add", data=account_form(profile_id, username, **extra))


# ----- the profile -----


def test_google_profile_needs_no_tenant_and_ignores_a_typed_one(app_ctx, google_app):
    profile = db.session.get(OAuth2Profile, google_profile(google_app))
    assert profile.provider == "Google" and profile.tenant_id == ""
    other = create_profile(
        ProfileInput(
            name="Typed",
            provider="Google",
            client_id="c",
            client_secret="s",
            tenant_id="common",  # a Microsoft-only check: not for Google
        ),
        "test",
    )
    assert other.tenant_id == ""


def test_google_profile_screen_hides_the_tenant_and_saves(admin_client, app_ctx, google_app):
    page = admin_client.get("/oauth2-profiles/add").get_data(as_text=True)
    assert 'value="Google"' in page and "data-provider-tenant" in page
    response = admin_client.post(
        "/oauth2-profiles/add",
        data={
            "name": "Gmail",
            "provider": "Google",
            "client_id": google_app.client_id,
            "client_secret": google_app.client_secret,
            "tenant_id": "",
            "validity": "valid",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert db.session.query(OAuth2Profile).filter_by(name="Gmail").one().tenant_id == ""


def test_cli_adds_a_google_profile_and_list_json_shows_the_provider(runner, app_ctx):
    args = ["oauth2-profile", "add", "--name", "Gmail", "--provider", "Google"]
    args += ["--client-id", "123-abc.apps.googleusercontent.com", "--client-secret-stdin"]
    result = runner.invoke(args=args, input="GOCSPX-secret-value\n")
    assert result.exit_code == 0, result.output
    [entry] = json.loads(runner.invoke(args=["oauth2-profile", "list", "--json"]).output)
    assert entry["provider"] == "Google" and entry["tenant_id"] == ""
    assert "GOCSPX-secret-value" not in json.dumps(entry)


# ----- the consent -----


def test_google_consent_asks_for_offline_access_the_mail_scope_and_consent(
    admin_client, google_idp, profile_id
):
    user = google_user(google_idp)
    for account_type in ("IMAPOAuth2", "POP3OAuth2"):
        response = start_link(admin_client, profile_id, user, account_type=account_type)
        location = response.headers["Location"]
        assert location.startswith(google_idp.base_url + "/o/oauth2/v2/auth?")
        params = query(location)
        assert params["scope"] == "https://mail.google.com/ openid email"
        assert params["scope"] == " ".join(GOOGLE_SCOPES)
        assert params["access_type"] == "offline" and params["prompt"] == "consent"
        assert params["login_hint"] == user and params["redirect_uri"] == CALLBACK
        assert params["code_challenge_method"] == "S256" and params["nonce"]


@pytest.mark.parametrize("account_type", ["IMAPOAuth2", "POP3OAuth2"])
def test_google_account_defaults_to_the_gmail_host(
    admin_client, google_idp, profile_id, account_type
):
    user = google_user(google_idp)
    response = start_link(admin_client, profile_id, user, account_type=account_type)
    run_consent(admin_client, google_idp, response, user)
    account = account_by_username(user)
    expected = "imap.gmail.com" if account_type == "IMAPOAuth2" else "pop.gmail.com"
    assert (account.host, account.effective_port) == (
        expected,
        993 if account_type == "IMAPOAuth2" else 995,
    )
    assert account.oauth2_token.linked_by == user.lower()


def test_google_account_on_another_host_is_warned_about(admin_client, google_idp, profile_id):
    user = google_user(google_idp)
    response = start_link(admin_client, profile_id, user, host="imap.evil.example")
    run_consent(admin_client, google_idp, response, user)
    page = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert "imap.evil.example is not a Gmail host" in page
    assert "not a Microsoft 365 host" not in page


def test_google_mailbox_links_fetches_and_refreshes_without_rotation(
    admin_client, google_idp, profile_id, dovecot
):
    dovecot.trust_jwt_key(google_idp.kid, google_idp.public_key_pem)
    user = google_user(google_idp)
    dovecot.add_user(user)
    port = str(port_for(dovecot, "IMAPOAuth2"))
    response = start_link(admin_client, profile_id, user, host="127.0.0.1", port=port)
    run_consent(admin_client, google_idp, response, user)
    account = account_by_username(user)
    refresh_token = account.oauth2_token.refresh_token
    assert refresh_token and refresh_token in google_idp.issued_refresh_tokens(user)

    dovecot.deliver(user, make_mail(subject="From Gmail"))
    result = fetch_account(account.id)
    assert result.status == "ok", result.message
    assert [t.title for t in db.session.query(Ticket)] == ["From Gmail"]

    # The access token runs out: the refresh answers without a refresh token, the old stays.
    account.oauth2_token.access_token_expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert access_token_for(account)
    assert google_idp.token_requests[-1] == {"grant_type": "refresh_token", "error": None}
    assert db.session.get(MailAccount, account.id).oauth2_token.refresh_token == refresh_token


def test_revoked_google_sign_in_asks_for_re_authorization(admin_client, google_idp, profile_id):
    user = google_user(google_idp)
    run_consent(admin_client, google_idp, start_link(admin_client, profile_id, user), user)
    account = account_by_username(user)
    google_idp.revoke_refresh_tokens(user)
    account.oauth2_token.access_token_expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    with pytest.raises(Exception, match="Token has been expired or revoked") as caught:
        access_token_for(account)
    assert "Re-authorize" in str(caught.value)
    assert db.session.get(MailAccount, account.id).needs_reauth is True


def _refused_consent(admin_client, google_idp, profile_id, username: str, as_user: str) -> str:
    response = start_link(admin_client, profile_id, username)
    page = run_consent(admin_client, google_idp, response, as_user)
    assert account_by_username(username) is None
    return html.unescape(page.get_data(as_text=True))


def test_wrong_google_account_is_refused_by_its_email(admin_client, google_idp, profile_id):
    user = google_user(google_idp)
    intruder = google_user(google_idp)
    page = _refused_consent(admin_client, google_idp, profile_id, user, intruder)
    assert f"signed in at the provider as {intruder.lower()}" in page


def test_unverified_google_email_is_refused(admin_client, google_idp, profile_id):
    user = google_user(google_idp, verified=False)
    page = _refused_consent(admin_client, google_idp, profile_id, user, user)
    assert "has not verified the email address" in page


@pytest.mark.parametrize(
    ("claims", "refused"),
    [
        ({"iss": "accounts.google.com"}, None),
        ({"iss": "https://accounts.google.com/"}, "not by Google"),
        ({"iss": "https://evil.example"}, "not by Google"),
        ({"email_verified": "true"}, "has not verified"),
        ({"email": None}, "no email"),
        ({"azp": "another-client.apps.googleusercontent.com"}, "another application (azp)"),
        ({"aud": "another-client.apps.googleusercontent.com"}, "another application (aud)"),
    ],
    ids=[
        "bare-issuer",
        "issuer-slash",
        "other-issuer",
        "verified-string",
        "no-email",
        "azp",
        "aud",
    ],
)
def test_google_id_token_claims_are_checked(admin_client, google_idp, profile_id, claims, refused):
    user = google_user(google_idp)
    google_idp.override_id_token_claims(**claims)
    response = start_link(admin_client, profile_id, user)
    page = run_consent(admin_client, google_idp, response, user).get_data(as_text=True)
    if refused is None:
        assert account_by_username(user) is not None, page
    else:
        assert refused in page and account_by_username(user) is None


def test_a_sign_in_without_a_refresh_token_is_refused(admin_client, google_idp, profile_id):
    user = google_user(google_idp)
    google_idp.withhold_refresh_tokens()
    page = _refused_consent(admin_client, google_idp, profile_id, user, user)
    assert "sent no refresh token" in page and "access_type=offline" in page


def test_forged_google_id_token_is_refused(admin_client, google_idp, profile_id):
    user = google_user(google_idp)
    google_idp.sign_id_tokens_with_unpublished_key()
    page = _refused_consent(admin_client, google_idp, profile_id, user, user)
    assert "signature is not valid" in page


def test_wrong_google_client_secret_is_explained(admin_client, google_idp, google_app, app_ctx):
    profile = create_profile(
        ProfileInput(
            name="Bad",
            provider="Google",
            client_id=google_app.client_id,
            client_secret="GOCSPX-wrong",
        ),
        "test",
    )
    user = google_user(google_idp)
    page = _refused_consent(admin_client, google_idp, profile.id, user, user)
    assert "invalid_client" in page and "GOCSPX-wrong" not in page


# ----- the Google look-alike refuses the way Google does -----


def _consent_url(google_idp, google_app, **params) -> str:
    base = {
        "client_id": google_app.client_id,
        "redirect_uri": google_app.redirect_uri,
        "response_type": "code",
        "scope": "https://mail.google.com/ openid email",
        "state": "s1",
    }
    base.update(params)
    return (
        google_idp.authorize_url
        + "?"
        + "&".join(f"{k}={requests.utils.quote(v)}" for k, v in base.items())
    )


def _redeem(google_idp, google_app, location: str) -> dict:
    response = requests.post(
        google_idp.token_url,
        data={
            "grant_type": "authorization_code",
            "code": query(location)["code"],
            "redirect_uri": google_app.redirect_uri,
            "client_id": google_app.client_id,
            "client_secret": google_app.client_secret,
        },
        timeout=10,
    )
    return response.json()


def test_google_look_alike_gives_a_refresh_token_only_for_offline_access(google_idp, google_app):
    user = google_user(google_idp)
    online = sign_in_at_idp(google_idp, _consent_url(google_idp, google_app), user)
    assert "refresh_token" not in _redeem(google_idp, google_app, online)
    offline = _consent_url(google_idp, google_app, access_type="offline")
    assert "refresh_token" in _redeem(
        google_idp, google_app, sign_in_at_idp(google_idp, offline, user)
    )
    # A second consent without prompt=consent gets none (Google's rule); with it, a new one.
    again = sign_in_at_idp(google_idp, offline, user)
    assert "refresh_token" not in _redeem(google_idp, google_app, again)
    forced = _consent_url(google_idp, google_app, access_type="offline", prompt="consent")
    body = _redeem(google_idp, google_app, sign_in_at_idp(google_idp, forced, user))
    assert body["refresh_token"].startswith("1//")


def test_google_look_alike_refuses_like_google(google_idp, google_app):
    mismatch = requests.get(
        _consent_url(google_idp, google_app, redirect_uri="http://localhost/elsewhere"),
        allow_redirects=False,
        timeout=10,
    )
    assert mismatch.status_code == 400 and "Error 400: redirect_uri_mismatch" in mismatch.text
    unknown = requests.get(
        _consent_url(google_idp, google_app, client_id="nobody"), allow_redirects=False, timeout=10
    )
    assert unknown.status_code == 401 and "invalid_client" in unknown.text
    bad_scope = requests.get(
        _consent_url(
            google_idp, google_app, scope="https://outlook.office.com/IMAP.AccessAsUser.All"
        ),
        allow_redirects=False,
        timeout=10,
    )
    assert query(bad_scope.headers["Location"]) == {"error": "invalid_scope", "state": "s1"}
    refresh = requests.post(
        google_idp.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": "1//0-never-issued",
            "client_id": google_app.client_id,
            "client_secret": google_app.client_secret,
        },
        timeout=10,
    )
    assert refresh.status_code == 400
    assert refresh.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    wrong_secret = requests.post(
        google_idp.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": google_app.client_id,
            "client_secret": "x",
        },
        timeout=10,
    )
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"


# ----- Custom providers: JWKS and issuer -----


def custom_profile(idp, ms_tenant, name: str = "Custom", **urls) -> OAuth2Profile:
    return create_profile(
        ProfileInput(
            name=name,
            provider="Custom",
            client_id=ms_tenant.client_id,
            client_secret=ms_tenant.client_secret,
            tenant_id=ms_tenant.tenant_id,
            authorize_url=idp.base_url + "/{tenant}/oauth2/v2.0/authorize",
            token_url=idp.base_url + "/{tenant}/oauth2/v2.0/token",
            **urls,
        ),
        "test",
    )


def _custom_consent(admin_client, idp, ms_tenant, profile: OAuth2Profile):
    user = add_idp_user(idp, ms_tenant)
    response = start_link(admin_client, profile.id, user)
    page = run_consent(admin_client, idp, response, user).get_data(as_text=True)
    return user, html.unescape(page)


def test_custom_profile_with_jwks_verifies_the_id_token_signature(
    admin_client, app_ctx, idp, ms_tenant
):
    profile = custom_profile(
        idp,
        ms_tenant,
        jwks_url=idp.base_url + "/{tenant}/discovery/v2.0/keys",
        issuer="https://login.microsoftonline.com/{tenant}/v2.0",
    )
    user, page = _custom_consent(admin_client, idp, ms_tenant, profile)
    assert account_by_username(user) is not None, page


def test_custom_profile_refuses_an_id_token_its_key_set_did_not_sign(
    admin_client, app_ctx, idp, ms_tenant, google_idp
):
    # The key set of another provider: the id_token's signature does not verify against it.
    profile = custom_profile(idp, ms_tenant, jwks_url=google_idp.jwks_url)
    user, page = _custom_consent(admin_client, idp, ms_tenant, profile)
    assert "signature is not valid" in page and account_by_username(user) is None


def test_custom_profile_refuses_another_issuer(admin_client, app_ctx, idp, ms_tenant):
    profile = custom_profile(idp, ms_tenant, issuer="https://sso.contoso.test/realms/mail")
    user, page = _custom_consent(admin_client, idp, ms_tenant, profile)
    assert "not by the profile's issuer https://sso.contoso.test/realms/mail" in page
    assert account_by_username(user) is None


def test_custom_profile_issuer_is_matched_exactly_without_microsoft_claims(
    admin_client, app_ctx, idp, ms_tenant
):
    issuer = "https://sso.contoso.test/realms/mail"
    idp.override_id_token_claims(iss=issuer, tid=None)
    profile = custom_profile(idp, ms_tenant, issuer=issuer)
    user, page = _custom_consent(admin_client, idp, ms_tenant, profile)
    assert account_by_username(user) is not None, page


@pytest.mark.parametrize("field", ["jwks_url", "issuer"])
@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://idp.example/keys", True),
        ("http://localhost:8080/keys", True),  # a name, not a loopback address
        ("http://127.0.0.1:8080/keys", False),
        ("http://[::1]:8080/keys", False),
    ],
)
def test_custom_urls_must_be_https_except_loopback_addresses(
    app_ctx, idp, ms_tenant, field, url, refused
):
    data = ProfileInput(
        name="U",
        provider="Custom",
        client_id="c",
        client_secret="s",
        tenant_id="t",
        authorize_url="https://idp.example/authorize",
        token_url="https://idp.example/token",
    )
    setattr(data, field, url)
    if refused:
        with pytest.raises(ValidationError) as caught:
            create_profile(data, "test")
        assert "https://" in caught.value.errors[field]
    else:
        assert getattr(create_profile(data, "test"), field) == url


def test_cli_custom_profile_takes_jwks_and_issuer_and_refuses_plain_http(runner, app_ctx):
    base = ["oauth2-profile", "add", "--provider", "Custom", "--client-id", "c"]
    base += ["--client-secret-stdin", "--authorize-url", "https://sso.example/auth"]
    base += ["--token-url", "https://sso.example/token"]
    bad = runner.invoke(
        args=[*base, "--name", "A", "--jwks-url", "http://sso.example/certs"], input="s\n"
    )
    assert bad.exit_code == 2 and "--jwks-url:" in bad.output
    good = runner.invoke(
        args=[
            *base,
            "--name",
            "B",
            "--jwks-url",
            "https://sso.example/certs",
            "--issuer",
            "https://sso.example",
        ],
        input="s\n",
    )
    assert good.exit_code == 0, good.output
    [entry] = json.loads(runner.invoke(args=["oauth2-profile", "list", "--json"]).output)
    assert (entry["provider"], entry["jwks_url"], entry["issuer"]) == (
        "Custom",
        "https://sso.example/certs",
        "https://sso.example",
    )


def test_microsoft_tenant_checks_stay_for_microsoft_only(app_ctx):
    with pytest.raises(ValidationError) as caught:
        create_profile(
            ProfileInput(
                name="M",
                provider="MicrosoftAzure",
                client_id="c",
                client_secret="s",
                tenant_id="common",
            ),
            "test",
        )
    assert "not a tenant" in caught.value.errors["tenant_id"]
    custom = create_profile(
        ProfileInput(
            name="K",
            provider="Custom",
            client_id="c",
            client_secret="s",
            tenant_id="mail-realm",
            authorize_url="https://sso.example/{tenant}/auth",
            token_url="https://sso.example/{tenant}/token",
        ),
        "test",
    )
    assert custom.tenant_id == "mail-realm"


def test_production_refuses_the_tests_only_google_base_url(tmp_path):
    from tests.test_app import _production

    with pytest.raises(RuntimeError, match="OAUTH2_GOOGLE_BASE_URL is for tests only"):
        _production(tmp_path, OAUTH2_GOOGLE_BASE_URL="http://127.0.0.1:1")
    assert _production(tmp_path).config["OAUTH2_GOOGLE_BASE_URL"] is None
