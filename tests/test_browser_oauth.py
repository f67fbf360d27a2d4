"""The whole Microsoft 365 story in a real Chromium: create a profile on the Profiles screen,
add an OAuth2 mail account, sign in at the (local) provider, land back on the list, fetch."""

from __future__ import annotations

import pytest

from tests.browser import sign_in, wait_for
from tests.fetching import port_for
from tests.mailgen import make_mail
from tests.oauth_helpers import USER_PASSWORD, account_by_username, add_idp_user
from webapp.extensions import db
from webapp.models import Ticket
from webapp.postmaster.fetch import fetch_account

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


@pytest.fixture
def idp_redirect_uris(live_server) -> list[str]:
    return [live_server.url + "/oauth2/callback"]


def create_profile_on_screen(driver, server, idp, tenant) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(server.url + "/oauth2-profiles/add")
    shown = driver.find_element(By.ID, "redirect-uri").get_attribute("value")
    assert shown == server.url + "/oauth2/callback"
    driver.find_element(By.ID, "name").send_keys("Contoso")
    Select(driver.find_element(By.ID, "provider")).select_by_value("Custom")
    driver.find_element(By.ID, "client_id").send_keys(tenant.client_id)
    driver.find_element(By.ID, "client_secret").send_keys(tenant.client_secret)
    driver.find_element(By.ID, "tenant_id").send_keys(tenant.tenant_id)
    driver.find_element(By.ID, "authorize_url").send_keys(
        idp.base_url + "/{tenant}/oauth2/v2.0/authorize"
    )
    driver.find_element(By.ID, "token_url").send_keys(idp.base_url + "/{tenant}/oauth2/v2.0/token")
    driver.find_element(By.ID, "submit").click()
    wait_for(driver, lambda d: d.current_url.endswith("/oauth2-profiles/"))
    assert "Contoso" in driver.find_element(By.ID, "profiles-table").text
    assert tenant.client_secret not in driver.page_source


def add_oauth_account(driver, server, account_type: str, username: str, port: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(server.url + "/mail-accounts/add")
    Select(driver.find_element(By.ID, "type")).select_by_value(account_type)
    assert not driver.find_element(By.ID, "field-password").is_displayed()
    Select(driver.find_element(By.ID, "oauth2_profile_id")).select_by_visible_text("Contoso")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "host").send_keys("127.0.0.1")
    driver.find_element(By.ID, "port").send_keys(str(port))
    driver.find_element(By.ID, "submit").click()


def sign_in_at_provider(driver, idp, username: str) -> None:
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda d: d.current_url.startswith(idp.base_url))
    login = driver.find_element(By.NAME, "loginfmt")
    assert login.get_attribute("value") == username  # login_hint
    driver.find_element(By.NAME, "passwd").send_keys(USER_PASSWORD)
    driver.find_element(By.ID, "idSIButton9").click()


@pytest.mark.parametrize("account_type", ["IMAPOAuth2", "POP3OAuth2"])
def test_link_a_microsoft_365_mailbox_and_fetch_it(
    browser, live_server, app_ctx, idp, ms_tenant, dovecot, account_type
):
    from selenium.webdriver.common.by import By

    dovecot.trust_jwt_key(idp.kid, idp.public_key_pem)
    username = add_idp_user(idp, ms_tenant)
    dovecot.add_user(username)
    driver = browser
    sign_in(driver, live_server)
    create_profile_on_screen(driver, live_server, idp, ms_tenant)

    add_oauth_account(driver, live_server, account_type, username, port_for(dovecot, account_type))
    sign_in_at_provider(driver, idp, username)
    wait_for(driver, lambda d: d.current_url == live_server.url + "/mail-accounts/")
    row = driver.find_element(By.ID, "accounts-table").text
    assert username in row and account_type in row
    assert f"linked by {username.lower()}" in row
    assert "linked (signed in as" in driver.page_source

    account = account_by_username(username)
    dovecot.deliver(username, make_mail(subject=f"Hello from {account_type}"))
    result = fetch_account(account.id)
    assert result.status == "ok", result.message
    assert [t.title for t in db.session.query(Ticket)] == [f"Hello from {account_type}"]
    for secret in (ms_tenant.client_secret, account.oauth2_token.refresh_token):
        assert secret not in driver.page_source


def test_wrong_account_in_the_browser_is_refused(
    browser, live_server, app_ctx, idp, ms_tenant, dovecot
):
    from selenium.webdriver.common.by import By

    username = add_idp_user(idp, ms_tenant)
    intruder = add_idp_user(idp, ms_tenant, prefix="intruder")
    driver = browser
    sign_in(driver, live_server)
    create_profile_on_screen(driver, live_server, idp, ms_tenant)
    add_oauth_account(driver, live_server, "IMAPOAuth2", username, 993)
    wait_for(driver, lambda d: d.current_url.startswith(idp.base_url))
    login = driver.find_element(By.NAME, "loginfmt")
    login.clear()
    login.send_keys(intruder)
    driver.find_element(By.NAME, "passwd").send_keys(USER_PASSWORD)
    driver.find_element(By.ID, "idSIButton9").click()
    wait_for(driver, lambda d: d.current_url.startswith(live_server.url))
    text = driver.find_element(By.TAG_NAME, "main").text
    assert f"signed in at the provider as {intruder}" in text
    assert "private window" in text
    assert driver.find_element(By.ID, "username").get_attribute("value") == username
    assert account_by_username(username) is None
