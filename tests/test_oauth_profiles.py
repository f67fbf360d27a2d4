"""The OAuth2 Profiles screen, its CLI and the provider presets."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from tests.conftest import ADMIN_NAME, ADMIN_PASSWORD
from tests.idp.fixtures import CLIENT_ID
from tests.oauth_helpers import profile_by_name
from webapp.extensions import db
from webapp.models import OAuth2Profile
from webapp.oauth.errors import explain
from webapp.oauth.providers import endpoints_for, scopes_for, tenant_error
from webapp.oauth.service import secret_warning

SECRET = "Xq8~Tz.4Kb_rN2vLw-9pQeYh7sDf3GjMa1cVbU0"
ADMIN = {"username": ADMIN_NAME, "password": ADMIN_PASSWORD}
TENANT = "5f1c3a2e-8d4b-4e6f-9a7c-0b1d2e3f4a5b"


def profile_form(**extra) -> dict:
    data = {
        "name": "Contoso",
        "provider": "MicrosoftAzure",
        "client_id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "client_secret": SECRET,
        "tenant_id": TENANT,
        "authorize_url": "",
        "token_url": "",
        "validity": "valid",
        "secret_expires_on": "",
        "comment": "",
    }
    data.update(extra)
    return data


def test_add_profile_stores_the_secret_encrypted_and_never_shows_it(admin_client, app_ctx):
    response = admin_client.post("/oauth2-profiles/add", data=profile_form())
    assert response.status_code == 302
    profile = profile_by_name("Contoso")
    assert profile.client_secret == SECRET
    raw = db.session.execute(db.text("SELECT client_secret FROM oauth2_profile")).scalar()
    assert SECRET not in raw
    for path in ("/oauth2-profiles/", f"/oauth2-profiles/{profile.id}"):
        assert SECRET not in admin_client.get(path).get_data(as_text=True)
    endpoints = endpoints_for(profile)
    assert endpoints.authorize_url == (
        f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize"
    )
    assert endpoints.token_url == f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"


def test_empty_secret_on_edit_keeps_the_stored_one(admin_client, app_ctx):
    admin_client.post("/oauth2-profiles/add", data=profile_form())
    profile_id = profile_by_name("Contoso").id
    response = admin_client.post(
        f"/oauth2-profiles/{profile_id}", data=profile_form(client_secret="", comment="x")
    )
    assert response.status_code == 302
    db.session.expire_all()
    profile = db.session.get(OAuth2Profile, profile_id)
    assert (profile.client_secret, profile.comment) == (SECRET, "x")


@pytest.mark.parametrize(
    ("tenant", "message"),
    [("common", "not a tenant"), ("", "Enter the tenant ID"), ("not a tenant!", "GUID")],
)
def test_tenant_must_be_a_guid_or_domain(admin_client, app_ctx, tenant, message):
    response = admin_client.post("/oauth2-profiles/add", data=profile_form(tenant_id=tenant))
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert db.session.query(OAuth2Profile).count() == 0


def test_tenant_validation():
    assert tenant_error("contoso.onmicrosoft.com") is None
    assert tenant_error(TENANT) is None
    assert "AADSTS50194" in tenant_error("organizations")


def test_custom_provider_needs_its_urls(admin_client, app_ctx):
    response = admin_client.post("/oauth2-profiles/add", data=profile_form(provider="Custom"))
    assert response.get_data(as_text=True).count("Enter the URL (Custom provider).") == 2
    response = admin_client.post(
        "/oauth2-profiles/add",
        data=profile_form(
            provider="Custom",
            authorize_url="http://idp.example.com/{tenant}/authorize",
            token_url="https://idp.example.com/{tenant}/oauth2/v2.0/token",
        ),
    )
    assert "must start with https://" in response.get_data(as_text=True)


def test_scopes_are_exact_per_protocol():
    imap = "https://outlook.office.com/IMAP.AccessAsUser.All"
    pop = "https://outlook.office.com/POP.AccessAsUser.All"
    assert scopes_for("imap") == f"{imap} offline_access openid profile email"
    assert scopes_for("pop3") == f"{pop} offline_access openid profile email"


def test_redirect_uri_comes_from_public_url_and_ignores_a_forged_host(app, admin_client):
    page = admin_client.get("/oauth2-profiles/").get_data(as_text=True)
    assert 'value="http://localhost/oauth2/callback"' in page
    assert 'data-copy-target="redirect-uri"' in page
    app.config["PUBLIC_URL"] = "https://helpdesk.example.com/postmaster/"
    forged = app.test_client()
    forged.post("/login", data=ADMIN, headers={"Host": "evil.example"})
    page = forged.get("/oauth2-profiles/add", headers={"Host": "evil.example"}).get_data(
        as_text=True
    )
    assert "Add OAuth2 Profile" in page
    assert 'value="https://helpdesk.example.com/postmaster/oauth2/callback"' in page
    assert "evil.example" not in page


def test_secret_expiry_warning(admin_client, app_ctx):
    soon = (date.today() + timedelta(days=10)).isoformat()
    admin_client.post("/oauth2-profiles/add", data=profile_form(secret_expires_on=soon))
    profile = profile_by_name("Contoso")
    page = admin_client.get("/oauth2-profiles/").get_data(as_text=True)
    assert f"expires on {soon} (in 10 days)" in page
    assert secret_warning(profile, date.today() + timedelta(days=11)).startswith(
        "The client secret expired"
    )
    assert secret_warning(profile, date.today() - timedelta(days=30)) is None
    assert "Azure" in secret_warning(profile, date.today() + timedelta(days=11))


def test_secret_expiry_warning_names_the_providers_console(app_ctx):
    expired = date.today() - timedelta(days=1)
    google = OAuth2Profile(provider="Google", credential="secret", secret_expires_on=expired)
    warning = secret_warning(google)
    assert "Google Cloud console" in warning
    assert "Azure" not in warning and "AADSTS" not in warning


def test_profile_in_use_cannot_be_deleted(admin_client, app_ctx):
    from webapp.models import MailAccount

    admin_client.post("/oauth2-profiles/add", data=profile_form())
    profile = profile_by_name("Contoso")
    db.session.add(
        MailAccount(
            type="IMAPOAuth2", username="a@contoso.test", host="h", oauth2_profile_id=profile.id
        )
    )
    db.session.commit()
    confirm = admin_client.get(f"/oauth2-profiles/{profile.id}/delete").get_data(as_text=True)
    assert "is used by 1 mail account" in confirm and 'id="confirm-delete"' not in confirm
    page = admin_client.post(f"/oauth2-profiles/{profile.id}/delete", follow_redirects=True)
    assert "is used by 1 mail account" in page.get_data(as_text=True)
    assert profile_by_name("Contoso") is not None


def test_delete_asks_on_a_confirm_screen_that_names_the_profile(admin_client, app_ctx):
    admin_client.post("/oauth2-profiles/add", data=profile_form())
    profile = profile_by_name("Contoso")
    page = admin_client.get(f"/oauth2-profiles/{profile.id}/delete").get_data(as_text=True)
    assert "Delete the OAuth2 profile <strong>Contoso</strong>" in page
    assert 'id="confirm-delete"' in page and SECRET not in page
    assert profile_by_name("Contoso") is not None  # GET deletes nothing
    admin_client.post(f"/oauth2-profiles/{profile.id}/delete")
    assert profile_by_name("Contoso") is None


def test_cli_add_reads_the_secret_from_stdin_and_list_never_shows_it(runner, app_ctx):
    args = ["oauth2-profile", "add", "--name", "Cli", "--provider", "MicrosoftAzure"]
    args += ["--client-id", CLIENT_ID, "--client-secret-stdin", "--tenant-id", "contoso.com"]
    args += ["--secret-expires", "2031-01-31"]
    result = runner.invoke(args=args, input=SECRET + "\n")
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    profile = profile_by_name("Cli")
    assert profile.client_secret == SECRET
    assert profile.secret_expires_on == date(2031, 1, 31)
    listed = runner.invoke(args=["oauth2-profile", "list", "--json"])
    assert SECRET not in listed.output
    [entry] = json.loads(listed.output)
    assert entry["name"] == "Cli" and entry["has_client_secret"] is True
    plain = runner.invoke(args=["oauth2-profile", "list"])
    assert "Cli" in plain.output and SECRET not in plain.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tenant-id", "common"], "--tenant-id:"),
        (["--tenant-id", "contoso.com", "--provider", "Yahoo"], "--provider:"),
        (["--tenant-id", "contoso.com", "--secret-expires", "31.01.2031"], "YYYY-MM-DD"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(runner, app_ctx, extra, message):
    args = ["oauth2-profile", "add", "--name", "Bad", "--provider", "MicrosoftAzure"]
    args += ["--client-id", CLIENT_ID, "--client-secret-stdin", *extra]
    result = runner.invoke(args=args, input=SECRET + "\n")
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert SECRET not in result.output
    assert db.session.query(OAuth2Profile).count() == 0


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("50011", "https://pm.example/oauth2/callback"),
        ("7000215", "not its Secret ID"),
        ("7000222", "expired"),
        ("90002", "tenant was not found"),
        ("65001", "admin consent"),
        ("65004", "declined"),
        ("50194", "single-tenant"),
        ("700016", "client ID"),
        ("50020", "not a member of this tenant"),
    ],
)
def test_aadsts_codes_are_explained(code, hint):
    description = f"AADSTS{code}: Something.\r\nTrace ID: 1\r\nCorrelation ID: 2"
    message = explain("invalid_request", description, "https://pm.example/oauth2/callback")
    assert message.startswith(f"The provider answered: invalid_request: AADSTS{code}: Something")
    assert hint in message
    assert "Trace ID" not in message
