"""A Google Workspace mailbox in a real Chromium: create a Google profile on the Profiles
screen, add an OAuth2 mail account, consent at the (local) Google, land back on the list,
fetch from the real Dovecot."""

from __future__ import annotations

import pytest

from tests.browser import sign_in, wait_for
from tests.fetching import port_for
from tests.idp.google_fixtures import *  # noqa: F403
from tests.mailgen import make_mail
from tests.oauth_helpers import USER_PASSWORD, account_by_username, new_username
from webapp.extensions import db
from webapp.models import Ticket
from webapp.postmaster.fetch import fetch_account

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config, dovecot, google_idp):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    app_config["OAUTH2_GOOGLE_BASE_URL"] = google_idp.base_url
    return app_config


@pytest.fixture
def google_redirect_uris(live_server) -> list[str]:
    return [live_server.url + "/oauth2/callback"]


def create_google_profile_on_screen(driver, server, google_app) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(server.url + "/oauth2-profiles/add")
    driver.find_element(By.ID, "name").send_keys("Workspace")
    Select(driver.find_element(By.ID, "provider")).select_by_value("Google")
    assert not driver.find_element(By.ID, "tenant_id").is_displayed()
    assert not driver.find_element(By.ID, "authorize_url").is_displayed()
    driver.find_element(By.ID, "client_id").send_keys(google_app.client_id)
    driver.find_element(By.ID, "client_secret").send_keys(google_app.client_secret)
    driver.find_element(By.ID, "submit").click()
    wait_for(driver, lambda d: d.current_url.endswith("/oauth2-profiles/"))
    assert "Workspace" in driver.find_element(By.ID, "profiles-table").text
    assert google_app.client_secret not in driver.page_source


def add_google_account(driver, server, account_type: str, username: str, port: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(server.url + "/mail-accounts/add")
    Select(driver.find_element(By.ID, "type")).select_by_value(account_type)
    Select(driver.find_element(By.ID, "oauth2_profile_id")).select_by_visible_text("Workspace")
    host = driver.find_element(By.ID, "host")
    expected = "imap.gmail.com" if account_type == "IMAPOAuth2" else "pop.gmail.com"
    assert host.get_attribute("placeholder") == expected
    driver.find_element(By.ID, "username").send_keys(username)
    host.send_keys("127.0.0.1")
    driver.find_element(By.ID, "port").send_keys(str(port))
    driver.find_element(By.ID, "submit").click()


def consent_at_google(driver, google_idp, login_hint: str, as_user: str) -> None:
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda d: d.current_url.startswith(google_idp.authorize_url))
    identifier = driver.find_element(By.ID, "identifierId")
    assert identifier.get_attribute("value") == login_hint
    if as_user != login_hint:
        identifier.clear()
        identifier.send_keys(as_user)
    driver.find_element(By.ID, "password").send_keys(USER_PASSWORD)
    driver.find_element(By.ID, "submit_approve_access").click()


@pytest.mark.parametrize("account_type", ["IMAPOAuth2", "POP3OAuth2"])
def test_link_a_google_mailbox_and_fetch_it(
    browser, live_server, app_ctx, google_idp, google_app, dovecot, account_type
):
    from selenium.webdriver.common.by import By

    dovecot.trust_jwt_key(google_idp.kid, google_idp.public_key_pem)
    username = new_username("gmail")
    google_idp.add_user(username, USER_PASSWORD)
    dovecot.add_user(username)
    driver = browser
    sign_in(driver, live_server)
    create_google_profile_on_screen(driver, live_server, google_app)

    add_google_account(driver, live_server, account_type, username, port_for(dovecot, account_type))
    consent_at_google(driver, google_idp, username, username)
    wait_for(driver, lambda d: d.current_url == live_server.url + "/mail-accounts/")
    row = driver.find_element(By.ID, "accounts-table").text
    assert username in row and f"linked by {username.lower()}" in row
    assert "is not a Gmail host" in driver.page_source  # 127.0.0.1: the warning says so
    [consent] = [r for r in google_idp.authorize_requests if r["method"] == "POST"]
    assert (consent["access_type"], consent["prompt"]) == ("offline", "consent")

    account = account_by_username(username)
    assert account.oauth2_token.refresh_token
    dovecot.deliver(username, make_mail(subject=f"Hello from Gmail via {account_type}"))
    result = fetch_account(account.id)
    assert result.status == "ok", result.message
    assert [t.title for t in db.session.query(Ticket)] == [f"Hello from Gmail via {account_type}"]
    for secret in (google_app.client_secret, account.oauth2_token.refresh_token):
        assert secret not in driver.page_source


def test_another_google_account_in_the_browser_is_refused(
    browser, live_server, app_ctx, google_idp, google_app
):
    from selenium.webdriver.common.by import By

    username = new_username("gmail")
    intruder = new_username("intruder")
    for email in (username, intruder):
        google_idp.add_user(email, USER_PASSWORD)
    driver = browser
    sign_in(driver, live_server)
    create_google_profile_on_screen(driver, live_server, google_app)
    add_google_account(driver, live_server, "IMAPOAuth2", username, 993)
    consent_at_google(driver, google_idp, username, intruder)
    wait_for(driver, lambda d: d.current_url.startswith(live_server.url))
    text = driver.find_element(By.TAG_NAME, "main").text
    assert f"signed in at the provider as {intruder.lower()}" in text
    assert driver.find_element(By.ID, "username").get_attribute("value") == username
    assert account_by_username(username) is None
