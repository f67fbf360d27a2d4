"""Tests for the local Microsoft-like identity provider, driven by requests and Authlib."""

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from tests.idp import LocalIdentityProvider, decode_jwt, s256_challenge, verify_jwt
from tests.idp.fixtures import *  # noqa: F403
from tests.idp.fixtures import IdpTenant

OTHER_TENANT = "9e8d7c6b-5a49-4837-a625-140f3e2d1c0b"


def _session(t: IdpTenant, auth_method: str = "client_secret_post", **kwargs) -> OAuth2Session:
    return OAuth2Session(
        client_id=t.client_id,
        client_secret=kwargs.pop("client_secret", t.client_secret),
        scope=kwargs.pop("scope", t.scope),
        redirect_uri=t.redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
        **kwargs,
    )


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _login(
    idp: LocalIdentityProvider, t: IdpTenant, session: OAuth2Session | None = None, **extra
) -> dict:
    """Run the whole flow with auto-approve and return the token response."""
    session = session or _session(t)
    verifier = generate_token(48)
    idp.auto_approve_as(t.username)
    url, _state = session.create_authorization_url(
        t.authorize_url, code_verifier=verifier, prompt="select_account", **extra
    )
    response = requests.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302
    return session.fetch_token(
        t.token_url, authorization_response=response.headers["Location"], code_verifier=verifier
    )


def _code(idp: LocalIdentityProvider, t: IdpTenant, verifier: str, **params) -> str:
    """Get an authorization code with plain requests and auto-approve."""
    idp.auto_approve_as(t.username)
    query = {
        "client_id": t.client_id,
        "response_type": "code",
        "redirect_uri": t.redirect_uri,
        "scope": t.scope,
        "state": "st",
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
        **params,
    }
    response = requests.get(t.authorize_url, params=query, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    return _query(response.headers["Location"])["code"]


def _redeem(t: IdpTenant, code: str, verifier: str, **overrides) -> requests.Response:
    url = overrides.pop("url", t.token_url)
    data = {
        "grant_type": "authorization_code",
        "client_id": t.client_id,
        "client_secret": t.client_secret,
        "code": code,
        "redirect_uri": t.redirect_uri,
        "code_verifier": verifier,
        **overrides,
    }
    return requests.post(url, data=data, timeout=5)


def _assert_aad_error(response: requests.Response, status: int, error: str, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert f"\r\nTrace ID: {body['trace_id']}\r\nCorrelation ID: " in body["error_description"]
    assert body["correlation_id"] and body["timestamp"]


def _hidden_inputs(page: str) -> dict[str, str]:
    pairs = re.findall(r"<input type='hidden' name='([^']*)' value='([^']*)'>", page)
    return {name: html.unescape(value) for name, value in pairs}


def test_authlib_flow_with_auto_approve(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    token = _login(idp, ms_tenant, login_hint=ms_tenant.username, nonce="n-123")

    assert token["token_type"] == "Bearer"
    assert token["scope"] == ms_tenant.scope
    assert token["expires_in"] == 3600 and token["ext_expires_in"] == 3600
    assert token["refresh_token"]
    header, _ = decode_jwt(token["access_token"])
    assert header == {"typ": "JWT", "alg": "RS256", "kid": idp.kid}
    claims = verify_jwt(token["access_token"], idp.public_key_pem)
    assert claims["aud"] == "https://outlook.office.com"
    assert claims["iss"] == f"https://sts.windows.net/{ms_tenant.tenant_id}/"
    assert claims["upn"] == claims["unique_name"] == ms_tenant.username
    assert claims["tid"] == ms_tenant.tenant_id
    assert claims["appid"] == ms_tenant.client_id
    assert claims["scp"] == "IMAP.AccessAsUser.All POP.AccessAsUser.All"
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
    assert all(isinstance(v, str | int) for v in claims.values()), claims

    id_claims = verify_jwt(token["id_token"], idp.public_key_pem)
    assert id_claims["aud"] == ms_tenant.client_id
    assert id_claims["iss"] == f"https://login.microsoftonline.com/{ms_tenant.tenant_id}/v2.0"
    assert id_claims["preferred_username"] == id_claims["email"] == ms_tenant.username
    assert id_claims["name"] == "Contoso Admin" and id_claims["nonce"] == "n-123"
    assert id_claims["oid"] == claims["oid"]

    assert idp.authorize_requests[-1]["prompt"] == "select_account"
    assert idp.authorize_requests[-1]["login_hint"] == ms_tenant.username
    assert [(r["grant_type"], r["auth_method"], r["status"]) for r in idp.token_requests] == [
        ("authorization_code", "client_secret_post", 200)
    ]


def test_basic_auth_refresh_rotation(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    session = _session(ms_tenant, auth_method="client_secret_basic")
    first = _login(idp, ms_tenant, session)

    second = session.refresh_token(ms_tenant.token_url, refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert verify_jwt(second["access_token"], idp.public_key_pem)["upn"] == ms_tenant.username
    assert idp.issued_refresh_tokens(ms_tenant.username) == [second["refresh_token"]]

    with pytest.raises(OAuthError) as excinfo:
        session.refresh_token(ms_tenant.token_url, refresh_token=first["refresh_token"])
    assert excinfo.value.error == "invalid_grant"
    assert excinfo.value.description.startswith("AADSTS70008:")

    third = session.refresh_token(ms_tenant.token_url, refresh_token=second["refresh_token"])
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
    assert [(r["grant_type"], r["auth_method"], r["status"]) for r in idp.token_requests] == [
        ("authorization_code", "client_secret_basic", 200),
        ("refresh_token", "client_secret_basic", 200),
        ("refresh_token", "client_secret_basic", 400),
        ("refresh_token", "client_secret_basic", 200),
    ]


def test_sign_in_form(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    session = _session(ms_tenant)
    verifier = generate_token(48)
    url, state = session.create_authorization_url(
        ms_tenant.authorize_url, code_verifier=verifier, login_hint=ms_tenant.username
    )
    page = requests.get(url, timeout=5)
    assert page.status_code == 200
    assert "id='idSIButton9'" in page.text and "id='idBtn_Back'" in page.text
    assert f"name='loginfmt' id='i0116' value='{ms_tenant.username}'" in page.text
    assert "name='passwd'" in page.text
    form = _hidden_inputs(page.text)
    assert form["state"] == state and form["redirect_uri"] == ms_tenant.redirect_uri

    wrong = requests.post(
        ms_tenant.authorize_url,
        data={**form, "loginfmt": ms_tenant.username, "passwd": "nope", "action": "Sign in"},
        allow_redirects=False,
        timeout=5,
    )
    assert wrong.status_code == 200
    assert "Your account or password is incorrect" in wrong.text

    ok = requests.post(
        ms_tenant.authorize_url,
        data={**form, "loginfmt": ms_tenant.username, "passwd": ms_tenant.password},
        allow_redirects=False,
        timeout=5,
    )
    assert ok.status_code == 302
    assert ok.headers["Location"].startswith(ms_tenant.redirect_uri + "?")
    token = session.fetch_token(
        ms_tenant.token_url, authorization_response=ok.headers["Location"], code_verifier=verifier
    )
    assert verify_jwt(token["access_token"], idp.public_key_pem)["upn"] == ms_tenant.username


def test_sign_in_cancel_and_foreign_user(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    idp.add_tenant(OTHER_TENANT, "fabrikam.test")
    idp.add_user(OTHER_TENANT, "eve@fabrikam.test", "pw")
    url, _ = _session(ms_tenant).create_authorization_url(
        ms_tenant.authorize_url, code_verifier=generate_token(48), state="s-1"
    )
    form = _hidden_inputs(requests.get(url, timeout=5).text)

    cancel = requests.post(
        ms_tenant.authorize_url, data={**form, "action": "Cancel"}, allow_redirects=False, timeout=5
    )
    assert cancel.status_code == 302
    result = _query(cancel.headers["Location"])
    assert result["error"] == "access_denied" and result["state"] == "s-1"
    assert result["error_description"].startswith("AADSTS65004: User declined to consent")

    foreign = requests.post(
        ms_tenant.authorize_url,
        data={**form, "loginfmt": "eve@fabrikam.test", "passwd": "pw"},
        allow_redirects=False,
        timeout=5,
    )
    assert foreign.status_code == 302
    assert _query(foreign.headers["Location"])["error_description"].startswith("AADSTS50020:")


def test_replayed_code_and_bad_verifier(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    verifier = generate_token(48)
    code = _code(idp, ms_tenant, verifier)
    assert _redeem(ms_tenant, code, verifier).status_code == 200
    _assert_aad_error(_redeem(ms_tenant, code, verifier), 400, "invalid_grant", 54005)

    code = _code(idp, ms_tenant, verifier)
    _assert_aad_error(_redeem(ms_tenant, code, generate_token(48)), 400, "invalid_grant", 501481)
    code = _code(idp, ms_tenant, verifier)
    _assert_aad_error(
        _redeem(ms_tenant, code, verifier, redirect_uri="http://localhost/other"),
        400,
        "invalid_grant",
        500112,
    )


def test_code_expiry_and_tenant_binding(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    verifier = generate_token(48)
    code = _code(idp, ms_tenant, verifier)
    idp.expire_authorization_codes()
    _assert_aad_error(_redeem(ms_tenant, code, verifier), 400, "invalid_grant", 70008)

    # The same app id registered in another tenant cannot redeem this tenant's code.
    idp.add_tenant(OTHER_TENANT)
    idp.add_app(
        OTHER_TENANT, ms_tenant.client_id, ms_tenant.client_secret, [ms_tenant.redirect_uri]
    )
    code = _code(idp, ms_tenant, verifier)
    other = _redeem(ms_tenant, code, verifier, url=idp.token_url(OTHER_TENANT))
    _assert_aad_error(other, 400, "invalid_grant", 70000)

    # The verified domain names the same tenant as the GUID.
    code = _code(idp, ms_tenant, verifier)
    assert _redeem(ms_tenant, code, verifier, url=idp.token_url(ms_tenant.domain)).ok


def test_client_secret_errors(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    verifier = generate_token(48)
    code = _code(idp, ms_tenant, verifier)
    wrong = _redeem(ms_tenant, code, verifier, client_secret=ms_tenant.client_secret_id)
    _assert_aad_error(wrong, 401, "invalid_client", 7000215)
    assert "not the client secret ID" in wrong.json()["error_description"]

    session = _session(ms_tenant, auth_method="client_secret_basic", client_secret="wrong")
    with pytest.raises(OAuthError) as excinfo:
        _login(idp, ms_tenant, session)
    assert excinfo.value.description.startswith("AADSTS7000215:")

    idp.set_secret_expired(ms_tenant.tenant_id, ms_tenant.client_id)
    _assert_aad_error(_redeem(ms_tenant, code, verifier), 401, "invalid_client", 7000222)


def test_tenant_and_client_errors(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    query = {
        "client_id": ms_tenant.client_id,
        "response_type": "code",
        "redirect_uri": ms_tenant.redirect_uri,
        "scope": ms_tenant.scope,
        "code_challenge": s256_challenge("v" * 43),
        "code_challenge_method": "S256",
    }

    def authorize(tenant: str, **overrides: str) -> requests.Response:
        return requests.get(
            idp.authorize_url(tenant),
            params={**query, **overrides},
            allow_redirects=False,
            timeout=5,
        )

    unknown = authorize("unknown.example")
    assert unknown.status_code == 400 and "AADSTS90002" in unknown.text
    assert "AADSTS50194" in authorize("common").text
    assert "AADSTS700016" in authorize(ms_tenant.tenant_id, client_id="nope").text
    bad_redirect = authorize(ms_tenant.tenant_id, redirect_uri="http://evil.test/cb")
    assert bad_redirect.status_code == 400 and "Location" not in bad_redirect.headers
    assert "AADSTS50011" in bad_redirect.text

    no_pkce = authorize(ms_tenant.tenant_id, code_challenge="", state="x")
    assert _query(no_pkce.headers["Location"])["error"] == "invalid_request"

    token = requests.post(
        idp.token_url("unknown.example"),
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        timeout=5,
    )
    _assert_aad_error(token, 400, "invalid_request", 90002)


def test_revoked_and_expired_refresh_tokens(
    idp: LocalIdentityProvider, ms_tenant: IdpTenant
) -> None:
    session = _session(ms_tenant)
    token = _login(idp, ms_tenant, session)
    active = requests.post(idp.introspection_url, data={"token": token["access_token"]}, timeout=5)
    assert active.json()["active"] is True and active.json()["upn"] == ms_tenant.username

    idp.revoke_user_sessions(ms_tenant.username)
    with pytest.raises(OAuthError) as excinfo:
        session.refresh_token(ms_tenant.token_url, refresh_token=token["refresh_token"])
    assert excinfo.value.description.startswith("AADSTS50173:")
    revoked = requests.post(idp.introspection_url, data={"token": token["access_token"]}, timeout=5)
    assert revoked.json() == {"active": False}

    token = _login(idp, ms_tenant, session)
    idp.expire_refresh_tokens()
    with pytest.raises(OAuthError) as excinfo:
        session.refresh_token(ms_tenant.token_url, refresh_token=token["refresh_token"])
    assert excinfo.value.error == "invalid_grant"
    assert excinfo.value.description.startswith("AADSTS700082:")


def test_transient_failures(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    session = _session(ms_tenant)
    token = _login(idp, ms_tenant, session)
    idp.fail_token_requests(2)
    for _ in range(2):
        with pytest.raises(requests.HTTPError) as excinfo:
            session.refresh_token(ms_tenant.token_url, refresh_token=token["refresh_token"])
        assert excinfo.value.response.status_code == 503
    # The failed attempts did not use up the refresh token.
    assert session.refresh_token(ms_tenant.token_url, refresh_token=token["refresh_token"])
    assert [r["status"] for r in idp.token_requests] == [200, 503, 503, 200]


def test_graph_scopes_get_untrusted_token(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    for scope in ("User.Read offline_access", "IMAP.AccessAsUser.All offline_access"):
        token = _login(idp, ms_tenant, _session(ms_tenant, scope=scope))
        header, claims = decode_jwt(token["access_token"])
        assert claims["aud"] == "https://graph.microsoft.com"
        assert header["kid"] == idp.untrusted_kid != idp.kid
        with pytest.raises(ValueError):
            verify_jwt(token["access_token"], idp.public_key_pem)
        verify_jwt(token["access_token"], idp.untrusted_public_key_pem)
        assert "id_token" not in token


def test_token_upn_override_and_minting(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    idp.set_token_upn(ms_tenant.username, ms_tenant.shared_mailbox)
    token = _login(idp, ms_tenant)
    assert verify_jwt(token["access_token"], idp.public_key_pem)["upn"] == ms_tenant.shared_mailbox
    id_claims = verify_jwt(token["id_token"], idp.public_key_pem)
    assert id_claims["preferred_username"] == ms_tenant.username

    minted = idp.mint_access_token("bob@contoso.test", lifetime=-60, scp="IMAP.AccessAsUser.All")
    claims = verify_jwt(minted, idp.public_key_pem)
    assert claims["upn"] == "bob@contoso.test" and claims["exp"] < claims["iat"]
    assert claims["scp"] == "IMAP.AccessAsUser.All"
    with pytest.raises(ValueError):
        verify_jwt(idp.mint_access_token("bob@contoso.test", trusted=False), idp.public_key_pem)


def test_discovery_documents(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    config = requests.get(
        f"{idp.base_url}/{ms_tenant.domain}/v2.0/.well-known/openid-configuration", timeout=5
    ).json()
    assert config["token_endpoint"] == idp.token_url(ms_tenant.domain)
    keys = requests.get(config["jwks_uri"], timeout=5).json()["keys"]
    assert [k["kid"] for k in keys] == [idp.kid]


def test_prompt_none_and_form_post(idp: LocalIdentityProvider, ms_tenant: IdpTenant) -> None:
    session = _session(ms_tenant)
    url, _ = session.create_authorization_url(
        ms_tenant.authorize_url, code_verifier=generate_token(48), prompt="none", state="p"
    )
    silent = requests.get(url, allow_redirects=False, timeout=5)
    assert _query(silent.headers["Location"])["error"] == "login_required"

    idp.auto_approve_as(ms_tenant.username)
    url, _ = session.create_authorization_url(
        ms_tenant.authorize_url, code_verifier=generate_token(48), response_mode="form_post"
    )
    page = requests.get(url, allow_redirects=False, timeout=5)
    assert page.status_code == 200
    assert f"action='{ms_tenant.redirect_uri}'" in page.text
    assert _hidden_inputs(page.text)["code"]
