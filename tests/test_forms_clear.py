"""Clear forms (issue 12): number fields say their range and keep what was typed, secrets are
asked for again (never sent back), Test connection / List folders on unsaved values against
the real Dovecot, Microsoft client IDs are GUIDs, required fields carry the asterisk, every
linked OAuth2 account can be re-authorized, and the TLS error names POSTMASTER_MAIL_CA_FILE."""

from __future__ import annotations

import re

import pytest

from tests.fetching import add_account, port_for
from tests.idp.fixtures import CLIENT_ID
from tests.test_mail_accounts import form_data
from webapp.extensions import db
from webapp.mail_accounts.service import (
    OAUTH2_CHANGED,
    OAUTH2_NOT_LINKED,
    ConnectionFailed,
    check_unsaved_connection,
)
from webapp.mail_accounts.validators import MailAccountInput
from webapp.models import MailAccount, OAuth2Profile, OAuth2Token
from webapp.settings.store import SETTINGS, get_setting
from webapp.validation import ValidationError

SECRET = "Ocelot-Banjo-4410-secret"


@pytest.fixture(autouse=True)
def _in_app_context(app_ctx):
    """Every test looks at the database; requests reuse this app context."""


def settings_data(**overrides) -> dict:
    data = {key: spec.default for key, spec in SETTINGS.items()}
    data.update(overrides)
    return data


def account_form(**overrides) -> dict:
    """The mail account form as posted (IMAPS on the loopback address, a password typed)."""
    return form_data(**{"host": "127.0.0.1", "password": SECRET, **overrides})


def field_html(page: str, field_id: str) -> str:
    """The markup of one form field's block (label, input, help, errors)."""
    match = re.search(rf'<div class="field[^"]*" id="field-{field_id}">(.*?)</div>', page, re.S)
    assert match, f"no field {field_id}"
    return match.group(1)


# --- 7: number fields say their range and keep what was typed ---


@pytest.mark.parametrize("typed", ["0", "abc", "1441", " "])
def test_fetch_interval_setting_says_the_range_and_keeps_the_value(admin_client, typed):
    response = admin_client.post("/settings/", data=settings_data(FetchIntervalMinutes=typed))
    assert response.status_code == 200
    block = field_html(response.get_data(as_text=True), "FetchIntervalMinutes")
    assert "Enter a whole number from 1 to 1440." in block
    assert "This field is required" not in block
    assert f'value="{typed}"' in block
    assert 'type="text"' in block and 'inputmode="numeric"' in block
    assert get_setting("FetchIntervalMinutes") == "10"


def test_every_number_setting_names_its_range_in_the_help(admin_client):
    page = admin_client.get("/settings/").get_data(as_text=True)
    for spec in SETTINGS.values():
        if spec.kind == "int":
            block = field_html(page, spec.key)
            assert f"A whole number from {spec.minimum} to {spec.maximum}." in block
            assert f"{spec.label} *" in re.sub(r"<[^>]+>", "", block)


def test_number_setting_is_stored_without_leading_zeros(admin_client):
    response = admin_client.post("/settings/", data=settings_data(FetchIntervalMinutes=" 015 "))
    assert response.status_code == 302
    assert get_setting("FetchIntervalMinutes") == "15"


@pytest.mark.parametrize(
    ("name", "typed", "message"),
    [
        ("port", "0", "Enter a whole number from 1 to 65535."),
        ("port", "imap", "Enter a whole number from 1 to 65535."),
        ("fetch_interval_minutes", "0", "Enter a whole number from 1 to 1440."),
        ("fetch_interval_minutes", "abc", "Enter a whole number from 1 to 1440."),
    ],
)
def test_mail_account_number_fields_say_the_range_and_keep_the_value(
    admin_client, name, typed, message
):
    response = admin_client.post("/mail-accounts/add", data=account_form(**{name: typed}))
    assert response.status_code == 200
    block = field_html(response.get_data(as_text=True), name)
    assert message in block and f'value="{typed}"' in block
    assert db.session.query(MailAccount).count() == 0


def test_mail_account_number_fields_name_their_range_in_the_help(admin_client):
    page = admin_client.get("/mail-accounts/add").get_data(as_text=True)
    assert "A whole number from 1 to 65535." in field_html(page, "port")
    assert "A whole number from 1 to 1440." in field_html(page, "fetch_interval_minutes")


def test_filter_test_article_id_says_the_range_and_keeps_the_value(admin_client):
    data = {"name": "F", "validity": "valid", "test_article": "x1", "test": "Test"}
    response = admin_client.post("/postmaster-filters/add", data=data)
    block = field_html(response.get_data(as_text=True), "test_article")
    assert "Enter a whole number from 1 to" in block and 'value="x1"' in block


# --- 8: secrets are asked for again, never sent back ---


def test_password_field_says_enter_again_after_form_error(admin_client):
    response = admin_client.post("/mail-accounts/add", data=account_form(host="bad host"))
    page = response.get_data(as_text=True)
    assert "Enter the password again: it is never sent back" in field_html(page, "password")
    assert SECRET not in page
    assert 'value="support@example.com"' in page  # the rest is kept


def test_password_field_says_nothing_when_no_password_was_typed_on_edit(admin_client):
    account = MailAccount(type="IMAPS", username="u@example.com", host="mail.example.com")
    account.password = SECRET
    db.session.add(account)
    db.session.commit()
    data = account_form(username="u@example.com", host="mail.example.com", password="")
    data["fetch_interval_minutes"] = "0"
    page = admin_client.post(f"/mail-accounts/{account.id}", data=data).get_data(as_text=True)
    assert "Enter a whole number from 1 to 1440." in page
    assert "Enter the password again" not in page
    assert SECRET not in page


def test_client_secret_field_says_enter_again_after_form_error(admin_client):
    data = {
        "name": "Contoso",
        "provider": "MicrosoftAzure",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "tenant_id": "common",
        "validity": "valid",
    }
    page = admin_client.post("/oauth2-profiles/add", data=data).get_data(as_text=True)
    assert "Enter the client secret again: it is never sent back" in field_html(
        page, "client_secret"
    )
    assert SECRET not in page
    assert db.session.query(OAuth2Profile).count() == 0


# --- 12: GUID client IDs, asterisks, Re-authorize everywhere ---


def profile_data(**overrides) -> dict:
    data = {
        "name": "Contoso",
        "provider": "MicrosoftAzure",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "tenant_id": "contoso.com",
        "validity": "valid",
    }
    data.update(overrides)
    return data


def test_microsoft_client_id_that_is_not_a_guid_is_refused(admin_client):
    page = admin_client.post(
        "/oauth2-profiles/add", data=profile_data(client_id="Contoso helpdesk app")
    ).get_data(as_text=True)
    assert "A Microsoft client ID is a GUID" in field_html(page, "client_id")
    assert db.session.query(OAuth2Profile).count() == 0
    response = admin_client.post("/oauth2-profiles/add", data=profile_data())
    assert response.status_code == 302


def test_custom_provider_client_id_may_be_any_text(admin_client):
    data = profile_data(
        provider="Custom",
        client_id="helpdesk-app",
        authorize_url="https://login.example.com/{tenant}/authorize",
        token_url="https://login.example.com/{tenant}/token",
    )
    assert admin_client.post("/oauth2-profiles/add", data=data).status_code == 302


def test_cli_refuses_a_microsoft_client_id_that_is_not_a_guid(runner):
    args = ["oauth2-profile", "add", "--name", "Cli", "--provider", "MicrosoftAzure"]
    args += ["--client-id", "abc", "--client-secret-stdin", "--tenant-id", "contoso.com"]
    result = runner.invoke(args=args, input=SECRET + "\n")
    assert result.exit_code == 2
    assert "GUID" in result.output and SECRET not in result.output


REQUIRED_LABELS = {
    "/mail-accounts/add": ["Type", "Username", "Password", "Host", "Trusted", "Dispatching"],
    "/oauth2-profiles/add": ["Name", "Provider", "Client ID", "Client secret", "Tenant ID"],
    "/queues/add": ["Name", "Validity"],
    "/email-addresses/add": ["Email address", "Queue", "Validity"],
    "/postmaster-filters/add": ["Name", "Validity"],
    "/settings/": ["Default queue", "Fetch interval (minutes)", "Ticket hook"],
    "/admins/add": ["Username", "Password", "Password again"],
    "/admins/password": ["Current password", "New password", "New password again"],
}


@pytest.mark.parametrize("path", sorted(REQUIRED_LABELS))
def test_required_fields_carry_the_asterisk(admin_client, path):
    page = admin_client.get(path)
    assert page.status_code == 200, path
    labels = [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip()
        for text in re.findall(r"<label[^>]*>(.*?)</label>", page.get_data(as_text=True), re.S)
    ]
    for label in REQUIRED_LABELS[path]:
        assert f"{label} *" in labels, (path, label, labels)
    assert not any(label.endswith("* *") for label in labels), labels


def linked_account(linked_by: str = "alex@contoso.test") -> MailAccount:
    profile = OAuth2Profile(name="Linked", provider="MicrosoftAzure", client_id="c", tenant_id="t")
    db.session.add(profile)
    db.session.flush()
    account = MailAccount(
        type="IMAPOAuth2",
        username="shared@contoso.test",
        host="outlook.office365.com",
        oauth2_profile_id=profile.id,
    )
    account.oauth2_token = OAuth2Token(access_token="a", refresh_token="r", linked_by=linked_by)
    db.session.add(account)
    db.session.commit()
    return account


def test_linked_oauth2_account_has_a_reauthorize_button(admin_client):
    account = linked_account()
    action = f'action="/oauth2/reauthorize/{account.id}"'
    for path in ("/mail-accounts/", f"/mail-accounts/{account.id}"):
        page = admin_client.get(path).get_data(as_text=True)
        assert "linked by alex@contoso.test" in page
        assert action in page, path
        assert "Re-authorization needed" not in page


# --- 6: Test connection and List folders on unsaved values (real Dovecot) ---


def dovecot_form(dovecot, user, **overrides) -> dict:
    values = dict(
        username=user.username,
        password=user.password,
        host="127.0.0.1",
        port=str(port_for(dovecot, "IMAPS")),
    )
    values.update(overrides)
    return account_form(**values)


@pytest.fixture
def ca_file(app, dovecot):
    """Trust the test Dovecot's CA (as POSTMASTER_MAIL_CA_FILE would)."""
    app.config["MAIL_CA_FILE"] = dovecot.ca_file


def test_add_form_lists_folders_from_unsaved_values(ca_file, admin_client, dovecot, mail_user):
    dovecot.create_folder(mail_user.username, "Support")
    data = dovecot_form(dovecot, mail_user, list_folders="List folders")
    page = admin_client.post("/mail-accounts/add", data=data).get_data(as_text=True)
    assert "Connection OK: 0 messages in INBOX" in page
    datalist = re.search(r'<datalist id="folder-choices">(.*?)</datalist>', page, re.S).group(1)
    assert '<option value="Support">' in datalist and '<option value="INBOX">' in datalist
    assert 'list="folder-choices"' in field_html(page, "folder")
    assert f'value="{mail_user.username}"' in page  # the typed values come back
    assert mail_user.password not in page  # the password does not
    assert "Enter the password again" in field_html(page, "password")
    assert db.session.query(MailAccount).count() == 0


def test_unsaved_test_with_a_wrong_password_says_so_and_saves_nothing(
    ca_file, admin_client, dovecot, mail_user
):
    data = dovecot_form(dovecot, mail_user, password="not-the-password", test="Test connection")
    page = admin_client.post("/mail-accounts/add", data=data).get_data(as_text=True)
    assert "Connection failed:" in page
    assert "not-the-password" not in page
    assert db.session.query(MailAccount).count() == 0


def test_unsaved_test_checks_only_the_connection_fields(ca_file, admin_client, dovecot, mail_user):
    # A queue is missing (it would stop saving) but the connection can be tried.
    data = dovecot_form(dovecot, mail_user, dispatch="queue", queue_id="", test="Test connection")
    page = admin_client.post("/mail-accounts/add", data=data).get_data(as_text=True)
    assert "Connection OK" in page
    data = dovecot_form(dovecot, mail_user, host="", test="Test connection")
    page = admin_client.post("/mail-accounts/add", data=data).get_data(as_text=True)
    assert "Correct the marked fields" in page
    assert "Enter the host name" in field_html(page, "host")


def test_edit_form_test_uses_the_stored_password_when_left_empty(
    ca_file, admin_client, dovecot, mail_user
):
    dovecot.create_folder(mail_user.username, "Archive")
    account_id = add_account(dovecot, mail_user)
    data = dovecot_form(dovecot, mail_user, password="", list_folders="List folders")
    response = admin_client.post(f"/mail-accounts/{account_id}/try", data=data)
    answer = response.get_json()
    assert answer["ok"] is True, answer
    assert "Archive" in answer["folders"]
    assert mail_user.password not in response.get_data(as_text=True)
    # A changed port needs the password typed again (it would go to another server).
    data = dovecot_form(dovecot, mail_user, password="", port=str(dovecot.imap_port))
    data["type"] = "IMAPTLS"
    answer = admin_client.post(f"/mail-accounts/{account_id}/try", data=data).get_json()
    assert answer["ok"] is False and "password" in answer["errors"]


def test_unsaved_test_answers_json_for_the_script(ca_file, admin_client, dovecot, mail_user):
    data = dovecot_form(dovecot, mail_user, test="Test connection")
    response = admin_client.post("/mail-accounts/try", data=data)
    answer = response.get_json()
    assert answer["ok"] is True and "INBOX" in answer["folders"]
    assert mail_user.password not in response.get_data(as_text=True)
    assert db.session.query(MailAccount).count() == 0


def test_oauth2_test_on_unsaved_values_says_it_needs_the_stored_sign_in(app_ctx):
    profile = OAuth2Profile(name="M365", provider="MicrosoftAzure", client_id="c", tenant_id="t")
    db.session.add(profile)
    db.session.commit()
    data = MailAccountInput(
        type="IMAPOAuth2", username="a@contoso.test", oauth2_profile_id=profile.id
    )
    with pytest.raises(ConnectionFailed) as caught:
        check_unsaved_connection(data, None)
    assert str(caught.value) == OAUTH2_NOT_LINKED
    account = linked_account()
    changed = MailAccountInput(
        type="IMAPOAuth2",
        username="other@contoso.test",
        host=account.host,
        oauth2_profile_id=account.oauth2_profile_id,
    )
    with pytest.raises(ConnectionFailed) as caught:
        check_unsaved_connection(changed, account)
    assert str(caught.value) == OAUTH2_CHANGED


def test_unsaved_test_refuses_bad_connection_fields(app_ctx):
    with pytest.raises(ValidationError) as caught:
        check_unsaved_connection(MailAccountInput(type="IMAPS", host="x y"), None)
    assert set(caught.value.errors) == {"username", "host", "password"}


def test_unsaved_test_needs_the_csrf_token(ca_file, app_config, dovecot, mail_user):
    from tests.conftest import ADMIN_NAME, ADMIN_PASSWORD
    from webapp import create_app

    app_config = dict(app_config, WTF_CSRF_ENABLED=True)
    csrf_app = create_app(app_config)
    client = csrf_app.test_client()
    with csrf_app.app_context():
        login = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login).group(1)
        signed_in = client.post(
            "/login", data={"username": ADMIN_NAME, "password": ADMIN_PASSWORD, "csrf_token": token}
        )
        assert signed_in.status_code == 302
        data = dovecot_form(dovecot, mail_user, test="Test connection")
        for path in ("/mail-accounts/try", "/mail-accounts/add"):
            response = client.post(path, data=data)
            assert response.status_code == 400, path
            assert "Connection OK" not in response.get_data(as_text=True)


# --- 13: the TLS error names the variable an admin sets ---


def test_tls_error_names_postmaster_mail_ca_file(app, admin_client, dovecot, mail_user):
    app.config["MAIL_CA_FILE"] = None  # the test CA is not in the system store
    data = dovecot_form(dovecot, mail_user, test="Test connection")
    answer = admin_client.post("/mail-accounts/try", data=data).get_json()
    assert answer["ok"] is False
    assert "POSTMASTER_MAIL_CA_FILE" in answer["message"]
    assert "Verify TLS certificate" in answer["message"]
