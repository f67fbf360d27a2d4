"""Clear forms in a real Chromium (issue 12 items 6, 7, 8, 12, 13, 14), with CSRF on: Test
connection and List folders on unsaved values against the real Dovecot (with the script and
without it), number fields, secrets asked again, GUID client IDs, Re-authorize, the TLS hint,
and the Admins screen."""

from __future__ import annotations

import re

import pytest

from tests.browser import click_and_wait_for_next_page, wait_for
from tests.browser import sign_in as plain_sign_in
from tests.conftest import ADMIN_NAME, ADMIN_PASSWORD
from tests.fetching import port_for
from tests.test_forms_clear import linked_account
from webapp.extensions import db
from webapp.models import MailAccount, OAuth2Profile

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Walrus-Trombone-8812"


@pytest.fixture
def app_config(app_config):
    app_config["WTF_CSRF_ENABLED"] = True  # every form here posts its token
    return app_config


@pytest.fixture
def ca_file(live_server, dovecot):
    """Trust the test Dovecot's CA, as POSTMASTER_MAIL_CA_FILE does."""
    live_server.app.config["MAIL_CA_FILE"] = dovecot.ca_file


def sign_in(driver, server, password: str | None = None) -> None:
    """Sign in with CSRF on. A request of the page before (its favicon) may still be in flight
    and bring back the old session cookie, and with it another CSRF token: the sign-in is then
    refused with 400, and tried again with the cookie that is now current."""
    from selenium.common.exceptions import TimeoutException

    for _ in range(3):
        try:
            plain_sign_in(driver, server, password=password)
            return
        except TimeoutException:
            if "/login" not in driver.current_url or "expired" not in driver.page_source:
                raise
    plain_sign_in(driver, server, password=password)


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def field_text(driver, name: str) -> str:
    return by_id(driver, f"field-{name}").text


def type_into(driver, element_id: str, text: str) -> None:
    element = by_id(driver, element_id)
    element.clear()
    element.send_keys(text)


def fill_dovecot_account(driver, server, dovecot, user, password: str | None = None) -> None:
    from selenium.webdriver.support.ui import Select

    driver.get(server.url + "/mail-accounts/add")
    Select(by_id(driver, "type")).select_by_value("IMAPS")
    type_into(driver, "username", user.username)
    type_into(driver, "password", user.password if password is None else password)
    type_into(driver, "host", "127.0.0.1")
    type_into(driver, "port", str(port_for(dovecot, "IMAPS")))


def result_text(driver) -> str:
    return by_id(driver, "connection-result").text


def account_count(server) -> int:
    with server.app.app_context():
        return db.session.query(MailAccount).count()


# --- 6: Test connection and List folders on the unsaved values ---


def test_add_form_lists_folders_from_unsaved_values(
    browser, live_server, ca_file, dovecot, mail_user
):
    from selenium.webdriver.support.ui import Select

    dovecot.create_folder(mail_user.username, "Support")
    driver = browser
    sign_in(driver, live_server)
    fill_dovecot_account(driver, live_server, dovecot, mail_user)
    driver.execute_script("window.__noReload = true;")
    by_id(driver, "list_folders").click()
    wait_for(driver, lambda d: "Connection OK" in result_text(d), timeout=30)
    assert driver.execute_script("return window.__noReload === true;")  # no page load
    options = [
        o.get_attribute("value")
        for o in by_id(driver, "folder-choices").find_elements("css selector", "option")
    ]
    assert "Support" in options and "INBOX" in options
    Select(by_id(driver, "folder-picker")).select_by_value("Support")
    assert by_id(driver, "folder").get_attribute("value") == "Support"
    # The script never got the password back; the field still holds what was typed.
    assert by_id(driver, "password").get_attribute("value") == mail_user.password
    assert mail_user.password not in driver.page_source
    assert account_count(live_server) == 0  # nothing was saved by the test
    by_id(driver, "submit").click()
    wait_for(driver, lambda d: d.current_url.endswith("/mail-accounts/"))
    with live_server.app.app_context():
        [account] = db.session.query(MailAccount).all()
        assert account.folder == "Support" and account.password == mail_user.password


def test_add_form_test_connection_says_what_is_wrong(
    browser, live_server, ca_file, dovecot, mail_user
):
    driver = browser
    sign_in(driver, live_server)
    fill_dovecot_account(driver, live_server, dovecot, mail_user, password="wrong-password-1")
    by_id(driver, "test").click()
    wait_for(driver, lambda d: "Connection failed" in result_text(d), timeout=30)
    assert "wrong-password-1" not in driver.page_source
    type_into(driver, "password", mail_user.password)
    by_id(driver, "test").click()
    wait_for(driver, lambda d: "Connection OK: 0 messages in INBOX" in result_text(d), timeout=30)
    assert account_count(live_server) == 0


def test_add_form_test_works_without_javascript(browser, live_server, ca_file, dovecot, mail_user):
    driver = browser
    sign_in(driver, live_server)
    fill_dovecot_account(driver, live_server, dovecot, mail_user)
    type_into(driver, "comment", "Support team")
    # Without the script the buttons are plain submit buttons: the server answers a page.
    driver.execute_script(
        "document.querySelectorAll('[data-try]').forEach(b => b.removeAttribute('data-try'));"
        "window.__reloaded = false;"
    )
    by_id(driver, "list_folders").click()
    wait_for(driver, lambda d: d.execute_script("return window.__reloaded === undefined;"))
    wait_for(driver, lambda d: "Connection OK" in result_text(d), timeout=30)
    assert by_id(driver, "username").get_attribute("value") == mail_user.username
    assert by_id(driver, "comment").get_attribute("value") == "Support team"
    assert by_id(driver, "password").get_attribute("value") == ""
    assert "Enter the password again" in field_text(driver, "password")
    assert mail_user.password not in driver.page_source
    assert "INBOX" in result_text(driver)
    assert account_count(live_server) == 0


def test_oauth2_test_says_the_stored_sign_in_is_needed(browser, live_server):
    from selenium.webdriver.support.ui import Select

    with live_server.app.app_context():
        db.session.add(
            OAuth2Profile(name="M365", provider="MicrosoftAzure", client_id="c", tenant_id="t")
        )
        db.session.commit()
    driver = browser
    sign_in(driver, live_server)
    driver.get(live_server.url + "/mail-accounts/add")
    Select(by_id(driver, "type")).select_by_value("IMAPOAuth2")
    Select(by_id(driver, "oauth2_profile_id")).select_by_visible_text("M365")
    type_into(driver, "username", "shared@contoso.test")
    by_id(driver, "test").click()
    wait_for(driver, lambda d: "stored sign-in" in result_text(d), timeout=30)
    assert "save it" in result_text(driver)


# --- 13: the TLS error names the variable an admin sets ---


def test_tls_error_names_postmaster_mail_ca_file(browser, live_server, dovecot, mail_user):
    live_server.app.config["MAIL_CA_FILE"] = None  # the test CA is not in the system store
    driver = browser
    sign_in(driver, live_server)
    fill_dovecot_account(driver, live_server, dovecot, mail_user)
    by_id(driver, "test").click()
    wait_for(driver, lambda d: "Connection failed" in result_text(d), timeout=30)
    assert "POSTMASTER_MAIL_CA_FILE" in result_text(driver)


# --- 7 and 8: number fields, secrets asked again ---


def test_fetch_interval_zero_says_the_accepted_range_and_keeps_the_value(browser, live_server):
    driver = browser
    sign_in(driver, live_server)
    driver.get(live_server.url + "/settings/")
    assert "A whole number from 1 to 1440." in field_text(driver, "FetchIntervalMinutes")
    for typed in ("0", "abc"):
        type_into(driver, "FetchIntervalMinutes", typed)
        click_and_wait_for_next_page(driver, by_id(driver, "submit"))
        wait_for(driver, lambda d: "Enter a whole number" in field_text(d, "FetchIntervalMinutes"))
        assert "Enter a whole number from 1 to 1440." in field_text(driver, "FetchIntervalMinutes")
        assert "This field is required" not in driver.page_source
        assert by_id(driver, "FetchIntervalMinutes").get_attribute("value") == typed
    type_into(driver, "FetchIntervalMinutes", "15")
    by_id(driver, "submit").click()
    wait_for(driver, lambda d: "Settings saved" in d.page_source)
    assert by_id(driver, "FetchIntervalMinutes").get_attribute("value") == "15"


def test_password_field_says_enter_again_after_form_error(browser, live_server):
    from selenium.webdriver.support.ui import Select

    driver = browser
    sign_in(driver, live_server)
    driver.get(live_server.url + "/mail-accounts/add")
    Select(by_id(driver, "type")).select_by_value("IMAPS")
    type_into(driver, "username", "support@example.com")
    type_into(driver, "password", "Typed-Secret-4417")
    type_into(driver, "host", "imap.example.com")
    type_into(driver, "port", "99999")
    by_id(driver, "submit").click()
    wait_for(driver, lambda d: "Enter a whole number from 1 to 65535." in field_text(d, "port"))
    assert by_id(driver, "port").get_attribute("value") == "99999"
    assert by_id(driver, "password").get_attribute("value") == ""
    assert "Enter the password again" in field_text(driver, "password")
    assert "Typed-Secret-4417" not in driver.page_source


def test_microsoft_profile_flags_a_client_id_that_is_not_a_guid(browser, live_server):
    from selenium.webdriver.support.ui import Select

    driver = browser
    sign_in(driver, live_server)
    driver.get(live_server.url + "/oauth2-profiles/add")
    type_into(driver, "name", "Contoso")
    Select(by_id(driver, "provider")).select_by_value("MicrosoftAzure")
    type_into(driver, "client_id", "Contoso helpdesk")
    type_into(driver, "client_secret", "Client-Secret-Value-1")
    type_into(driver, "tenant_id", "contoso.com")
    by_id(driver, "submit").click()
    wait_for(driver, lambda d: "GUID" in field_text(d, "client_id"))
    assert by_id(driver, "client_id").get_attribute("value") == "Contoso helpdesk"
    assert "Enter the client secret again" in field_text(driver, "client_secret")
    assert "Client-Secret-Value-1" not in driver.page_source


# --- 12: asterisks, Re-authorize on every linked account ---


@pytest.mark.parametrize(
    ("path", "required"),
    [
        ("/mail-accounts/add", ["type", "username", "password", "host", "trusted", "dispatch"]),
        ("/oauth2-profiles/add", ["name", "provider", "client_id", "client_secret", "tenant_id"]),
        ("/queues/add", ["name", "validity"]),
        ("/email-addresses/add", ["address", "queue_id", "validity"]),
        ("/settings/", ["PostmasterDefaultQueue", "FetchIntervalMinutes", "TicketHook"]),
        ("/admins/add", ["username", "password", "password_again"]),
    ],
)
def test_required_fields_show_the_asterisk(browser, live_server, path, required):
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, live_server)
    driver.get(live_server.url + path)
    for name in required:
        label = driver.find_element(By.CSS_SELECTOR, f"label[for='{name}']").text
        assert label.endswith(" *") and not label.endswith("* *"), (path, name, label)


def test_every_linked_account_has_a_reauthorize_button(browser, live_server):
    from selenium.webdriver.common.by import By

    with live_server.app.app_context():
        account_id = linked_account(linked_by="alex").id
    driver = browser
    sign_in(driver, live_server)
    for path in ("/mail-accounts/", f"/mail-accounts/{account_id}"):
        driver.get(live_server.url + path)
        assert "linked by alex" in driver.page_source
        button = driver.find_element(
            By.CSS_SELECTOR, f"form[action='/oauth2/reauthorize/{account_id}'] button"
        )
        assert button.text == "Re-authorize" and button.is_displayed()
        form = button.find_element(By.XPATH, "./..")
        assert form.find_element(By.NAME, "csrf_token").get_attribute("value")


# --- 14: the Admins screen ---


def other_session(server):
    """A second browser (the test client) signed in as the admin, with its CSRF token."""
    client = server.app.test_client()
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login).group(1)
    data = {"username": ADMIN_NAME, "password": ADMIN_PASSWORD, "csrf_token": token}
    assert client.post("/login", data=data).status_code == 302
    assert client.get("/admins/").status_code == 200
    return client


def test_admin_changes_own_password_and_old_sessions_end(browser, live_server):
    driver = browser
    sign_in(driver, live_server)
    old_session = other_session(live_server)
    driver.get(live_server.url + "/admins/")
    driver.find_element("link text", "Change my password").click()
    type_into(driver, "current_password", ADMIN_PASSWORD)
    type_into(driver, "new_password", NEW_PASSWORD)
    type_into(driver, "new_password_again", NEW_PASSWORD + "x")
    by_id(driver, "submit").click()
    wait_for(driver, lambda d: "differ" in field_text(d, "new_password_again"))
    assert "Enter the password again" in field_text(driver, "current_password")
    type_into(driver, "current_password", ADMIN_PASSWORD)
    type_into(driver, "new_password", NEW_PASSWORD)
    type_into(driver, "new_password_again", NEW_PASSWORD)
    by_id(driver, "submit").click()
    wait_for(driver, lambda d: "Your password was changed" in d.page_source)
    assert d_path(driver).endswith("/admins/")  # this browser is still signed in
    response = old_session.get("/admins/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    sign_in(driver, live_server, password=NEW_PASSWORD)
    assert "/login" not in driver.current_url


def d_path(driver) -> str:
    return driver.current_url.split("?")[0]


def test_admins_screen_adds_and_removes_an_admin_after_confirming(browser, live_server):
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, live_server)
    driver.get(live_server.url + "/mail-accounts/")
    driver.find_element(By.LINK_TEXT, "Admins").click()
    wait_for(driver, lambda d: d_path(d).endswith("/admins/"))
    row = driver.find_element(By.CSS_SELECTOR, f"tr[data-admin='{ADMIN_NAME}']")
    assert "(you)" in row.text and "Delete" not in row.text
    driver.find_element(By.LINK_TEXT, "Add admin").click()
    type_into(driver, "username", "maria")
    type_into(driver, "password", NEW_PASSWORD)
    type_into(driver, "password_again", NEW_PASSWORD)
    by_id(driver, "submit").click()
    wait_for(driver, lambda d: "Admin maria added." in d.page_source)
    row = driver.find_element(By.CSS_SELECTOR, "tr[data-admin='maria']")
    row.find_element(By.LINK_TEXT, "Delete").click()
    wait_for(driver, lambda d: "Do you really want to remove the admin" in d.page_source)
    assert "maria" in driver.find_element(By.CSS_SELECTOR, "main .card").text
    driver.find_element(By.XPATH, "//button[text()='Confirm']").click()
    wait_for(driver, lambda d: "Admin maria removed" in d.page_source)
    assert not driver.find_elements(By.CSS_SELECTOR, "tr[data-admin='maria']")
