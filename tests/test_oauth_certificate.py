"""Certificate credentials: the key is kept encrypted and never shown, the screen shows the
thumbprint to upload, and token requests carry a signed client assertion (private_key_jwt)
for app-only and delegated profiles alike (real Dovecot, local IdP)."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import text

from tests.app_only_helpers import app_ready, granted_mailbox, make_app_profile, make_certificate
from tests.fetching import port_for
from tests.mailgen import make_mail
from tests.oauth_helpers import (
    account_by_username,
    account_form,
    add_idp_user,
    link_account,
    profile_by_name,
)
from webapp.extensions import db
from webapp.models import OAuth2Profile, Ticket
from webapp.oauth.certificates import JWT_BEARER, client_assertion
from webapp.oauth.service import KEY_AGAIN, ProfileInput, secret_warning, update_profile
from webapp.postmaster.fetch import fetch_account
from webapp.status.service import attention_items
from webapp.validation import ValidationError


@pytest.fixture
def idp_redirect_uris() -> list[str]:
    return ["http://localhost/oauth2/callback"]


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


@pytest.fixture
def key_and_cert() -> tuple[str, str]:
    return make_certificate()


def thumbprint(cert_pem: str) -> str:
    """The SHA-1 of the DER certificate, upper-case hex: what Azure shows."""
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(Encoding.DER)
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324


def profile_form(idp, ms_tenant, **extra) -> dict:
    data = {
        "name": "Contoso certificate",
        "provider": "Custom",
        "client_id": ms_tenant.client_id,
        "tenant_id": ms_tenant.tenant_id,
        "authorize_url": idp.base_url + "/{tenant}/oauth2/v2.0/authorize",
        "token_url": idp.base_url + "/{tenant}/oauth2/v2.0/token",
        "validity": "valid",
        "grant": "app_only",
        "credential": "certificate",
        "submit": "Save",
    }
    data.update(extra)
    return data


def test_certificate_profile_shows_its_thumbprint_and_never_the_key(
    admin_client, app_ctx, idp, ms_tenant, key_and_cert
):
    key, cert = key_and_cert
    response = admin_client.post(
        "/oauth2-profiles/add",
        data=profile_form(
            idp,
            ms_tenant,
            private_key_file=(io.BytesIO(key.encode()), "key.pem"),
            certificate=cert,
        ),
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    profile = profile_by_name("Contoso certificate")
    assert profile.credential == "certificate" and profile.client_secret is None
    page = admin_client.get(f"/oauth2-profiles/{profile.id}").get_data(as_text=True)
    assert thumbprint(cert) in page
    assert "PRIVATE KEY" not in page and key.splitlines()[1] not in page
    raw = db.session.execute(text("SELECT private_key FROM oauth2_profile")).scalar_one()
    assert "PRIVATE KEY" not in raw  # encrypted at rest
    listing = admin_client.get("/oauth2-profiles/").get_data(as_text=True)
    assert "app-only" in listing and "certificate" in listing


def test_an_expired_certificate_is_refused_with_a_clear_message(
    admin_client, app_ctx, idp, ms_tenant
):
    key, cert = make_certificate(days=-1, start_days_ago=400)
    page = admin_client.post(
        "/oauth2-profiles/add", data=profile_form(idp, ms_tenant, private_key=key, certificate=cert)
    ).get_data(as_text=True)
    assert "The certificate expired on" in page
    assert "PRIVATE KEY" not in page  # the pasted key is not sent back
    assert profile_by_name("Contoso certificate") is None


def test_a_key_of_another_certificate_is_refused(admin_client, app_ctx, idp, ms_tenant):
    key, _ = make_certificate()
    _, cert = make_certificate()
    page = admin_client.post(
        "/oauth2-profiles/add", data=profile_form(idp, ms_tenant, private_key=key, certificate=cert)
    ).get_data(as_text=True)
    assert "does not belong to this certificate" in page


def test_app_only_with_a_certificate_fetches_with_signed_assertions(
    admin_client, app_ctx, idp, ms_tenant, dovecot, key_and_cert, caplog
):
    caplog.set_level(logging.DEBUG)
    idp.add_app_certificate(ms_tenant.tenant_id, ms_tenant.client_id, key_and_cert[1])
    app_ready(idp, ms_tenant, dovecot)
    profile_id = make_app_profile(idp, ms_tenant, key_and_cert=key_and_cert)
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    form = account_form(
        profile_id, mailbox, host="127.0.0.1", port=str(port_for(dovecot, "IMAPOAuth2"))
    )
    assert admin_client.post("/mail-accounts/add", data=form).status_code == 302
    dovecot.deliver(mailbox, make_mail(subject="Signed, not secret"))
    assert fetch_account(account_by_username(mailbox).id).status == "ok"
    assert [t.title for t in db.session.query(Ticket)] == ["Signed, not secret"]
    assert [(r["auth_method"], r["status"]) for r in idp.app_token_requests()] == [
        ("private_key_jwt", 200)
    ]
    assert "PRIVATE KEY" not in caplog.text and key_and_cert[0].splitlines()[1] not in caplog.text


def test_a_certificate_not_uploaded_to_the_app_is_refused_on_save(
    admin_client, app_ctx, idp, ms_tenant, dovecot, key_and_cert
):
    app_ready(idp, ms_tenant, dovecot)  # the certificate is not in the app registration
    profile_id = make_app_profile(idp, ms_tenant, key_and_cert=key_and_cert)
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    form = account_form(
        profile_id, mailbox, host="127.0.0.1", port=str(port_for(dovecot, "IMAPOAuth2"))
    )
    page = admin_client.post("/mail-accounts/add", data=form).get_data(as_text=True)
    assert "AADSTS700027" in page and "The key was not found" in page
    assert "upload this profile&#39;s certificate" in page
    assert account_by_username(mailbox) is None


def test_delegated_profile_with_a_certificate_links_and_refreshes(
    admin_client, app_ctx, idp, ms_tenant, dovecot, key_and_cert
):
    idp.add_app_certificate(ms_tenant.tenant_id, ms_tenant.client_id, key_and_cert[1])
    dovecot.trust_jwt_key(idp.kid, idp.public_key_pem)
    idp.access_token_lifetime = 60  # inside the 5-minute margin: every fetch refreshes
    profile_id = make_app_profile(idp, ms_tenant, grant="delegated", key_and_cert=key_and_cert)
    username = add_idp_user(idp, ms_tenant)
    dovecot.add_user(username)
    port = str(port_for(dovecot, "IMAPOAuth2"))
    response = link_account(admin_client, idp, profile_id, username, host="127.0.0.1", port=port)
    assert response.status_code == 302, response.get_data(as_text=True)
    account_id = account_by_username(username).id
    for i in range(2):
        dovecot.deliver(username, make_mail(subject=f"d{i}", message_id=f"<d{i}@t>"))
        assert fetch_account(account_id).status == "ok"
    requests_seen = [(r["grant_type"], r["auth_method"], r["status"]) for r in idp.token_requests]
    assert requests_seen == [
        ("authorization_code", "private_key_jwt", 200),
        ("refresh_token", "private_key_jwt", 200),
        ("refresh_token", "private_key_jwt", 200),
    ]


def test_changing_the_tenant_needs_the_private_key_again(app_ctx, idp, ms_tenant, key_and_cert):
    profile_id = make_app_profile(idp, ms_tenant, key_and_cert=key_and_cert)
    profile = db.session.get(OAuth2Profile, profile_id)
    moved = ProfileInput(
        name=profile.name,
        provider="Custom",
        client_id=profile.client_id,
        tenant_id="contoso.test",
        authorize_url=profile.authorize_url,
        token_url=profile.token_url,
        grant="app_only",
        credential="certificate",
    )
    with pytest.raises(ValidationError) as refused:
        update_profile(profile, moved, "test")
    assert refused.value.errors == {"private_key": KEY_AGAIN}
    moved.private_key = key_and_cert[0]
    update_profile(profile, moved, "test")
    assert db.session.get(OAuth2Profile, profile_id).tenant_id == "contoso.test"


def test_the_idp_refuses_a_replayed_or_misaddressed_assertion(idp, ms_tenant, key_and_cert):
    idp.add_app_certificate(ms_tenant.tenant_id, ms_tenant.client_id, key_and_cert[1])
    idp.grant_admin_consent(ms_tenant.tenant_id, ms_tenant.client_id)

    def ask(assertion: str) -> requests.Response:
        return requests.post(
            ms_tenant.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": ms_tenant.client_id,
                "scope": "https://outlook.office365.com/.default",
                "client_assertion_type": JWT_BEARER,
                "client_assertion": assertion,
            },
            timeout=10,
        )

    assertion = client_assertion(ms_tenant.client_id, ms_tenant.token_url, *key_and_cert)
    assert ask(assertion).status_code == 200
    replayed = ask(assertion)
    assert replayed.status_code == 401 and "jti" in replayed.json()["error_description"]
    elsewhere = client_assertion(ms_tenant.client_id, "https://elsewhere/token", *key_and_cert)
    assert ask(elsewhere).json()["error_codes"] == [700023]
    other_app = client_assertion("someone-else", ms_tenant.token_url, *key_and_cert)
    assert ask(other_app).json()["error_codes"] == [700021]
    old_key, old_cert = make_certificate(days=-1, start_days_ago=400)
    idp.add_app_certificate(ms_tenant.tenant_id, ms_tenant.client_id, old_cert)
    expired = ask(client_assertion(ms_tenant.client_id, ms_tenant.token_url, old_key, old_cert))
    assert expired.status_code == 401 and "The key used is expired" in expired.text
    _, unknown_cert = make_certificate()
    unknown = ask(client_assertion(ms_tenant.client_id, ms_tenant.token_url, old_key, unknown_cert))
    assert "The key was not found" in unknown.json()["error_description"]


def test_cli_adds_a_certificate_profile_and_lists_its_thumbprint_and_expiry(
    runner, app_ctx, idp, ms_tenant, tmp_path, key_and_cert
):
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_file.write_text(key_and_cert[0])
    cert_file.write_text(key_and_cert[1])
    result = runner.invoke(
        args=[
            "oauth2-profile", "add", "--name", "Cert", "--provider", "Custom",
            "--client-id", ms_tenant.client_id, "--tenant-id", ms_tenant.tenant_id,
            "--grant", "app-only", "--credential", "certificate",
            "--certificate-file", str(cert_file), "--private-key-file", str(key_file),
            "--authorize-url", idp.base_url + "/{tenant}/oauth2/v2.0/authorize",
            "--token-url", idp.base_url + "/{tenant}/oauth2/v2.0/token",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert thumbprint(key_and_cert[1]) in result.output
    listed = runner.invoke(args=["oauth2-profile", "list", "--json"]).output
    assert "PRIVATE KEY" not in listed
    profile = json.loads(listed)[0]
    assert (profile["grant"], profile["credential"]) == ("app_only", "certificate")
    assert profile["certificate"]["thumbprint"] == thumbprint(key_and_cert[1])
    assert profile["credential_expires_on"] == profile["certificate"]["not_after"][:10]
    assert profile["has_private_key"] is True and profile["has_client_secret"] is False
    missing = runner.invoke(
        args=[
            "oauth2-profile", "add", "--name", "Cert2", "--provider", "MicrosoftAzure",
            "--client-id", ms_tenant.client_id, "--tenant-id", ms_tenant.tenant_id,
            "--credential", "certificate", "--certificate-file", str(cert_file),
        ]
    )  # fmt: skip
    assert missing.exit_code == 2 and "--private-key-file:" in missing.output


def test_status_flags_a_certificate_nearing_expiry(app_ctx, idp, ms_tenant):
    make_app_profile(idp, ms_tenant, key_and_cert=make_certificate(days=10))
    items = [i for i in attention_items() if i.kind == "secret_expiry"]
    assert len(items) == 1 and items[0].message.startswith("certificate expires in")


def test_a_profile_whose_certificate_expired_meanwhile_is_flagged_and_still_editable(
    app_ctx, idp, ms_tenant, key_and_cert
):
    profile_id = make_app_profile(idp, ms_tenant, key_and_cert=key_and_cert)
    profile = db.session.get(OAuth2Profile, profile_id)
    profile.private_key, profile.certificate = make_certificate(days=-1, start_days_ago=400)
    db.session.commit()
    edit = ProfileInput(
        name=profile.name,
        provider="Custom",
        client_id=profile.client_id,
        tenant_id=profile.tenant_id,
        authorize_url=profile.authorize_url,
        token_url=profile.token_url,
        grant="app_only",
        credential="certificate",
        validity="invalid",
    )
    update_profile(profile, edit, "test")
    assert db.session.get(OAuth2Profile, profile_id).validity == "invalid"
    assert secret_warning(profile).startswith("The certificate expired on")
