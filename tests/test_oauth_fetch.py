"""OAuth2 mail accounts fetching from the real test Dovecot with tokens of the local IdP."""

from __future__ import annotations

import logging

import pytest

from tests.fetching import port_for, run_cli, ticket_count
from tests.mailgen import make_mail
from tests.oauth_helpers import (
    account_by_username,
    add_idp_user,
    link_account,
    make_profile,
    run_consent,
)
from webapp.extensions import db
from webapp.models import MailAccount, Ticket
from webapp.postmaster.fetch import FetchOptions, fetch_account


@pytest.fixture
def idp_redirect_uris() -> list[str]:
    return ["http://localhost/oauth2/callback"]


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


@pytest.fixture
def oauth_setup(app_ctx, idp, ms_tenant, dovecot) -> int:
    """Dovecot trusts this IdP's signing key; returns a Custom profile pointing at the IdP."""
    dovecot.trust_jwt_key(idp.kid, idp.public_key_pem)
    return make_profile(idp, ms_tenant)


def new_mailbox(idp, ms_tenant, dovecot, prefix: str = "box") -> str:
    """A user at the IdP and an OAuth-only Dovecot user of the same name."""
    username = add_idp_user(idp, ms_tenant, prefix)
    dovecot.add_user(username)
    return username


def link(admin_client, idp, dovecot, profile_id, username, account_type="IMAPOAuth2", **extra):
    port = str(port_for(dovecot, account_type))
    response = link_account(
        admin_client,
        idp,
        profile_id,
        username,
        account_type=account_type,
        host="127.0.0.1",
        port=port,
        **extra,
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return account_by_username(username).id


@pytest.mark.parametrize("account_type", ["IMAPOAuth2", "POP3OAuth2"])
def test_oauth2_account_fetches_mail_into_a_ticket(
    admin_client, idp, ms_tenant, dovecot, oauth_setup, account_type, caplog
):
    caplog.set_level(logging.DEBUG)
    username = new_mailbox(idp, ms_tenant, dovecot)
    account_id = link(admin_client, idp, dovecot, oauth_setup, username, account_type)
    dovecot.deliver(username, make_mail(subject=f"Printer on fire via {account_type}"))
    lines: list[str] = []
    result = fetch_account(account_id, FetchOptions(debug=lines.append))
    assert result.status == "ok", result.message
    assert result.new_tickets == 1
    assert db.session.query(Ticket).one().title == f"Printer on fire via {account_type}"
    assert dovecot.message_count(username) == 0
    token = db.session.get(MailAccount, account_id).oauth2_token
    for secret in (token.access_token, token.refresh_token, ms_tenant.client_secret):
        assert secret not in caplog.text
        assert all(secret not in line for line in lines)


def test_shared_mailbox_is_fetched_with_the_delegates_token(
    admin_client, idp, ms_tenant, dovecot, oauth_setup
):
    delegate = new_mailbox(idp, ms_tenant, dovecot, "delegate")
    shared = new_mailbox(idp, ms_tenant, dovecot, "shared")
    # Exchange puts the delegate in the token and checks FullAccess on user=; the test
    # Dovecot maps the token's upn to the login, so the IdP says the shared address.
    idp.set_token_upn(delegate, shared)
    account_id = link(
        admin_client, idp, dovecot, oauth_setup, shared, as_user=delegate, shared_mailbox="y"
    )
    assert db.session.get(MailAccount, account_id).oauth2_token.linked_by == delegate.lower()
    dovecot.deliver(shared, make_mail(subject="For the shared box"))
    dovecot.deliver(delegate, make_mail(subject="Personal mail of the delegate"))
    result = fetch_account(account_id)
    assert result.status == "ok", result.message
    assert [t.title for t in db.session.query(Ticket)] == ["For the shared box"]
    assert dovecot.message_count(delegate) == 1


def test_expiring_access_tokens_are_refreshed_and_rotation_is_kept(
    admin_client, idp, ms_tenant, dovecot, oauth_setup
):
    idp.access_token_lifetime = 60  # inside the 5-minute margin: every fetch refreshes
    username = new_mailbox(idp, ms_tenant, dovecot)
    account_id = link(admin_client, idp, dovecot, oauth_setup, username)
    for i in range(3):
        dovecot.deliver(username, make_mail(subject=f"m{i}", message_id=f"<m{i}@t>"))
        assert fetch_account(account_id).status == "ok"
    refreshes = [r for r in idp.token_requests if r["grant_type"] == "refresh_token"]
    assert [r["status"] for r in refreshes] == [200, 200, 200]
    assert ticket_count() == 3


def test_revoked_grant_needs_reauth_others_keep_working_and_reauthorize_heals(
    admin_client, idp, ms_tenant, dovecot, oauth_setup, caplog
):
    idp.access_token_lifetime = 60
    revoked = new_mailbox(idp, ms_tenant, dovecot, "revoked")
    healthy = new_mailbox(idp, ms_tenant, dovecot, "healthy")
    revoked_id = link(admin_client, idp, dovecot, oauth_setup, revoked)
    healthy_id = link(admin_client, idp, dovecot, oauth_setup, healthy)
    idp.revoke_user_sessions(revoked)
    dovecot.deliver(revoked, make_mail(subject="waiting", message_id="<w@t>"))
    dovecot.deliver(healthy, make_mail(subject="flowing", message_id="<f@t>"))

    result = fetch_account(revoked_id)
    assert result.status == "reauth"
    assert "AADSTS50173" in result.message
    account = db.session.get(MailAccount, revoked_id)
    assert account.needs_reauth is True and account.last_status == "reauth"
    assert fetch_account(healthy_id).status == "ok"

    # Skipped without asking the IdP again, with one clear line.
    before = len(idp.token_requests)
    skipped = fetch_account(revoked_id)
    assert "Re-authorization needed" in skipped.message
    assert len(idp.token_requests) == before

    page = admin_client.get("/mail-accounts/").get_data(as_text=True)
    assert "Re-authorization needed" in page
    assert f"/oauth2/reauthorize/{revoked_id}" in page

    start = admin_client.post(f"/oauth2/reauthorize/{revoked_id}")
    assert run_consent(admin_client, idp, start, revoked).status_code == 302
    db.session.expire_all()
    assert db.session.get(MailAccount, revoked_id).needs_reauth is False
    assert fetch_account(revoked_id).status == "ok"
    assert sorted(t.title for t in db.session.query(Ticket)) == ["flowing", "waiting"]


def test_cli_fetch_of_an_oauth2_account(app, admin_client, idp, ms_tenant, dovecot, oauth_setup):
    username = new_mailbox(idp, ms_tenant, dovecot)
    account_id = link(admin_client, idp, dovecot, oauth_setup, username)
    dovecot.deliver(username, make_mail(subject="Via the CLI"))
    token = db.session.get(MailAccount, account_id).oauth2_token
    done = run_cli(app, "mail-account", "fetch", "--mail-account-id", str(account_id), "--debug")
    assert done.returncode == 0, done.stderr
    for secret in (token.access_token, token.refresh_token, ms_tenant.client_secret):
        assert secret not in done.stdout and secret not in done.stderr
    db.session.expire_all()
    assert [t.title for t in db.session.query(Ticket)] == ["Via the CLI"]
