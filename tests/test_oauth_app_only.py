"""App-only access (client credentials): accounts need no sign-in, their login is checked
on save, and one token per profile serves every account (real Dovecot, local IdP)."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from tests.app_only_helpers import app_ready, granted_mailbox, make_app_profile
from tests.fetching import port_for
from tests.mailgen import make_mail
from tests.oauth_helpers import account_by_username, account_form
from webapp.extensions import db
from webapp.models import MailAccount, OAuth2Profile, Ticket
from webapp.oauth.service import ProfileInput, update_profile
from webapp.oauth.tokens import access_token_for
from webapp.postmaster.fetch import fetch_account


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


@pytest.fixture
def app_profile(app_ctx, idp, ms_tenant, dovecot) -> int:
    app_ready(idp, ms_tenant, dovecot)
    return make_app_profile(idp, ms_tenant)


def add_account(admin_client, dovecot, profile_id, mailbox, account_type="IMAPOAuth2"):
    form = account_form(
        profile_id,
        mailbox,
        account_type=account_type,
        host="127.0.0.1",
        port=str(port_for(dovecot, account_type)),
    )
    return admin_client.post("/mail-accounts/add", data=form)


def test_app_only_imap_and_pop3_accounts_fetch_two_mailboxes_with_one_token(
    admin_client, idp, ms_tenant, dovecot, app_profile, caplog
):
    caplog.set_level(logging.DEBUG)
    first = granted_mailbox(idp, ms_tenant, dovecot)
    second = granted_mailbox(idp, ms_tenant, dovecot)
    for mailbox, account_type in ((first, "IMAPOAuth2"), (second, "POP3OAuth2")):
        response = add_account(admin_client, dovecot, app_profile, mailbox, account_type)
        # Saved at once: no trip to the sign-in page.
        assert response.status_code == 302, response.get_data(as_text=True)
        assert response.headers["Location"].endswith("/mail-accounts/")
    dovecot.deliver(first, make_mail(subject="Into the IMAP box", message_id="<a1@t>"))
    dovecot.deliver(second, make_mail(subject="Into the POP3 box", message_id="<a2@t>"))
    for mailbox in (first, second):
        result = fetch_account(account_by_username(mailbox).id)
        assert result.status == "ok", result.message
    titles = sorted(t.title for t in db.session.query(Ticket))
    assert titles == ["Into the IMAP box", "Into the POP3 box"]
    assert [r["status"] for r in idp.app_token_requests()] == [200]
    assert not [r for r in idp.token_requests if r["grant_type"] != "client_credentials"]
    token = db.session.get(OAuth2Profile, app_profile).app_access_token
    assert token and token not in caplog.text and ms_tenant.client_secret not in caplog.text
    page = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert "app-only access" in page and "Not linked yet" not in page


def test_the_app_token_is_taken_again_shortly_before_it_expires(
    admin_client, idp, ms_tenant, dovecot, app_profile
):
    idp.access_token_lifetime = 60  # inside the 5-minute margin: every use takes a new one
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    assert add_account(admin_client, dovecot, app_profile, mailbox).status_code == 302
    assert fetch_account(account_by_username(mailbox).id).status == "ok"
    assert len(idp.app_token_requests()) == 2  # the save's check, then the fetch


def test_a_mailbox_the_app_was_not_granted_is_refused_on_save_with_the_fix(
    admin_client, idp, ms_tenant, dovecot, app_profile
):
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    other = mailbox.replace("shared", "private")
    dovecot.add_user(other)  # exists, but no Add-MailboxPermission for the app
    response = add_account(admin_client, dovecot, app_profile, other)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Add-MailboxPermission" in page and "New-ServicePrincipal" in page
    assert account_by_username(other) is None
    assert idp.mailbox_checks[-1]["reason"] == "no mailbox permission"


def test_a_service_principal_missing_in_exchange_is_refused_on_save(
    admin_client, idp, ms_tenant, dovecot, app_profile
):
    idp._exchange_service_principals.clear()
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    page = add_account(admin_client, dovecot, app_profile, mailbox).get_data(as_text=True)
    assert "register the app&#39;s service principal in Exchange Online" in page
    assert account_by_username(mailbox) is None


def test_missing_admin_consent_is_named_on_save(admin_client, idp, ms_tenant, dovecot, app_profile):
    idp.grant_admin_consent(ms_tenant.tenant_id, ms_tenant.client_id, roles=())
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    page = add_account(admin_client, dovecot, app_profile, mailbox).get_data(as_text=True)
    assert "no IMAP.AccessAsApp permission" in page and "Grant admin consent" in page
    assert account_by_username(mailbox) is None


def test_a_wrong_client_secret_is_refused_on_save_with_the_aadsts_code(
    admin_client, app_ctx, idp, ms_tenant, dovecot
):
    app_ready(idp, ms_tenant, dovecot)
    profile_id = make_app_profile(idp, ms_tenant, client_secret=ms_tenant.client_secret_id)
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    page = add_account(admin_client, dovecot, profile_id, mailbox).get_data(as_text=True)
    assert "AADSTS7000215" in page and "not its Secret ID" in page
    assert account_by_username(mailbox) is None


def test_an_app_without_service_principal_in_the_tenant_is_refused(
    admin_client, idp, ms_tenant, dovecot, app_profile
):
    idp.remove_service_principal(ms_tenant.tenant_id, ms_tenant.client_id)
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    page = add_account(admin_client, dovecot, app_profile, mailbox).get_data(as_text=True)
    assert "AADSTS7000229" in page and "admin consent" in page


def test_an_app_only_profile_never_sends_anyone_to_a_sign_in(
    admin_client, idp, ms_tenant, dovecot, app_profile
):
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    assert add_account(admin_client, dovecot, app_profile, mailbox).status_code == 302
    account_id = account_by_username(mailbox).id
    response = admin_client.post(f"/oauth2/reauthorize/{account_id}")
    assert response.status_code == 302
    assert not response.headers["Location"].startswith(idp.base_url)
    assert not idp.authorize_requests


def test_cli_adds_an_app_only_profile_and_an_account_checked_at_once(
    runner, app_ctx, idp, ms_tenant, dovecot
):
    app_ready(idp, ms_tenant, dovecot)
    result = runner.invoke(
        args=[
            "oauth2-profile", "add", "--name", "App", "--provider", "Custom",
            "--client-id", ms_tenant.client_id, "--client-secret-stdin",
            "--tenant-id", ms_tenant.tenant_id, "--grant", "app-only",
            "--authorize-url", idp.base_url + "/{tenant}/oauth2/v2.0/authorize",
            "--token-url", idp.base_url + "/{tenant}/oauth2/v2.0/token",
        ],
        input=ms_tenant.client_secret + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(args=["oauth2-profile", "list", "--json"]).output)
    assert listed[0]["grant"] == "app_only" and listed[0]["credential"] == "secret"
    assert ms_tenant.client_secret not in json.dumps(listed)

    def add(mailbox: str):
        return runner.invoke(
            args=[
                "mail-account", "add", "--type", "IMAPOAuth2", "--oauth2-profile", "App",
                "--username", mailbox, "--host", f"127.0.0.1:{dovecot.imaps_port}",
            ]
        )  # fmt: skip

    added = add(granted_mailbox(idp, ms_tenant, dovecot))
    assert added.exit_code == 0, added.output
    assert "authorize" not in added.output
    stranger = "nobody-" + granted_mailbox(idp, ms_tenant, dovecot, "x").split("-", 1)[1]
    dovecot.add_user(stranger)
    refused = add(stranger)
    assert refused.exit_code == 2
    assert "--username:" in refused.output and "Add-MailboxPermission" in refused.output


def test_concurrent_fetches_of_a_profiles_accounts_share_one_token_request(
    app, app_ctx, idp, ms_tenant, dovecot
):
    app_ready(idp, ms_tenant, dovecot)
    profile_id = make_app_profile(idp, ms_tenant)
    account_ids = []
    for i in range(4):
        account = MailAccount(
            type="IMAPOAuth2", username=f"box{i}@contoso.test", host="127.0.0.1",
            oauth2_profile_id=profile_id,
        )  # fmt: skip
        db.session.add(account)
        db.session.commit()
        account_ids.append(account.id)
    tokens: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(account_ids))

    def fetcher(account_id: int) -> None:
        with app.app_context():
            try:
                account = db.session.get(MailAccount, account_id)
                barrier.wait()
                tokens.append(access_token_for(account))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=fetcher, args=(i,)) for i in account_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(tokens) == 4 and len(set(tokens)) == 1
    assert len(idp.app_token_requests()) == 1


def test_a_mailbox_permission_removed_later_fails_the_fetch_with_the_fix(
    admin_client, idp, ms_tenant, dovecot, app_profile
):
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    assert add_account(admin_client, dovecot, app_profile, mailbox).status_code == 302
    idp._mailbox_grants[ms_tenant.client_id].discard(mailbox.lower())  # Remove-MailboxPermission
    result = fetch_account(account_by_username(mailbox).id)
    assert result.status == "error"
    assert "Add-MailboxPermission" in result.message


def test_switching_a_profile_to_app_only_keeps_its_accounts_fetching(
    admin_client, idp, ms_tenant, dovecot, app_profile
):
    profile = db.session.get(OAuth2Profile, app_profile)
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    assert add_account(admin_client, dovecot, app_profile, mailbox).status_code == 302
    account_id = account_by_username(mailbox).id
    to_delegated = input_from_profile(profile, grant="delegated", client_secret="")
    update_profile(profile, to_delegated, "test")
    assert db.session.get(MailAccount, account_id).needs_reauth is True  # a person must sign in
    update_profile(profile, input_from_profile(profile, grant="app_only"), "test")
    account = db.session.get(MailAccount, account_id)
    assert account.needs_reauth is False
    dovecot.deliver(mailbox, make_mail(subject="Back to app-only"))
    assert fetch_account(account_id).status == "ok"


def input_from_profile(profile: OAuth2Profile, **changes) -> ProfileInput:
    data = ProfileInput(
        name=profile.name,
        provider=profile.provider,
        client_id=profile.client_id,
        tenant_id=profile.tenant_id,
        authorize_url=profile.authorize_url,
        token_url=profile.token_url,
        grant=profile.grant,
        credential=profile.credential,
    )
    for key, value in changes.items():
        setattr(data, key, value)
    return data


def test_test_connection_before_saving_an_app_only_account_logs_in_with_the_apps_token(
    admin_client, idp, ms_tenant, dovecot, app_profile
):
    mailbox = granted_mailbox(idp, ms_tenant, dovecot)
    form = account_form(
        app_profile, mailbox, host="127.0.0.1", port=str(port_for(dovecot, "IMAPOAuth2"))
    )
    result = admin_client.post("/mail-accounts/try", data={**form, "test": "Test connection"})
    assert result.json["ok"] is True, result.json
    assert "INBOX" in result.json["folders"]
    assert account_by_username(mailbox) is None  # nothing saved
