"""The admin screens in a real Chromium: add, list, filter, edit, delete on the confirm screen."""

from __future__ import annotations

import pytest

from tests.browser import sign_in, wait_for

pytestmark = pytest.mark.browser

SECRET = "Narwhal-Tuba-5512-secret"
SCREENSHOT = "/tmp/postmaster-mail-accounts.png"


def visible_rows(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        row.text
        for row in driver.find_elements(By.CSS_SELECTOR, "#accounts-table tr[data-filter-row]")
        if row.is_displayed()
    ]


def add_account(driver, server, username: str, host: str, comment: str = "") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(server.url + "/mail-accounts/add")
    Select(driver.find_element(By.ID, "type")).select_by_value("IMAPS")
    wait_for(driver, lambda d: d.find_element(By.ID, "port").get_attribute("placeholder") == "993")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(SECRET)
    driver.find_element(By.ID, "host").send_keys(host)
    driver.find_element(By.ID, "comment").send_keys(comment)
    driver.find_element(By.ID, "submit").click()
    wait_for(driver, lambda d: d.current_url.endswith("/mail-accounts/"))


def test_add_filter_edit_delete(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    driver = browser
    sign_in(driver, live_server)

    # The form shows the fields of the chosen type and dispatching.
    driver.get(live_server.url + "/mail-accounts/add")
    queue_field = driver.find_element(By.ID, "field-queue_id")
    assert not queue_field.is_displayed()
    Select(driver.find_element(By.ID, "dispatch")).select_by_value("queue")
    assert queue_field.is_displayed()
    Select(driver.find_element(By.ID, "type")).select_by_value("POP3S")
    assert driver.find_element(By.ID, "port").get_attribute("placeholder") == "995"
    assert not driver.find_element(By.ID, "field-folder").is_displayed()
    Select(driver.find_element(By.ID, "type")).select_by_value("IMAPOAuth2")
    assert not driver.find_element(By.ID, "field-password").is_displayed()
    assert driver.find_element(By.ID, "field-oauth2_profile_id").is_displayed()

    add_account(driver, live_server, "support@example.com", "imap.example.com", "Support team")
    add_account(driver, live_server, "sales@example.com", "mail.example.org", "Sales team")
    rows = visible_rows(driver)
    assert len(rows) == 2 and "support@example.com" in rows[0]
    assert SECRET not in driver.page_source

    # The filter box narrows the list without a reload.
    driver.execute_script("window.__noReload = true;")
    box = driver.find_element(By.ID, "filter")
    box.send_keys("sales")
    wait_for(driver, lambda d: len(visible_rows(d)) == 1)
    assert "sales@example.com" in visible_rows(driver)[0]
    no_matches = driver.find_element(By.CSS_SELECTOR, "[data-no-matches]")
    assert not no_matches.is_displayed()
    box.send_keys("-nonsense-xyz")
    wait_for(driver, lambda d: len(visible_rows(d)) == 0)
    assert no_matches.is_displayed() and "No matches found" in no_matches.text
    assert driver.execute_script("return window.__noReload === true;")
    box.clear()
    box.send_keys(" ")
    box.clear()
    box.send_keys("example")
    wait_for(driver, lambda d: len(visible_rows(d)) == 2)
    driver.save_screenshot(SCREENSHOT)

    # Edit: the password field is empty; save without retyping it keeps it.
    driver.find_element(By.LINK_TEXT, "imap.example.com / support@example.com").click()
    wait_for(driver, ec.presence_of_element_located((By.ID, "mail-account-form")))
    assert driver.find_element(By.ID, "password").get_attribute("value") == ""
    assert SECRET not in driver.page_source
    comment = driver.find_element(By.ID, "comment")
    comment.clear()
    comment.send_keys("Support team, first level")
    driver.find_element(By.ID, "submit_finish").click()
    wait_for(driver, lambda d: d.current_url.endswith("/mail-accounts/"))
    assert "saved" in driver.find_element(By.CSS_SELECTOR, ".flash").text

    # Delete through the in-page confirmation screen; Cancel there deletes nothing.
    driver.find_element(
        By.CSS_SELECTOR, "a.delete-link[aria-label='Delete sales@example.com on mail.example.org']"
    ).click()
    wait_for(driver, lambda d: d.current_url.endswith("/delete"))
    assert "sales@example.com" in driver.find_element(By.TAG_NAME, "main").text
    driver.find_element(By.LINK_TEXT, "Cancel").click()
    wait_for(driver, lambda d: d.current_url.endswith("/mail-accounts/"))
    assert len(visible_rows(driver)) == 2
    driver.find_element(
        By.CSS_SELECTOR, "a.delete-link[aria-label='Delete sales@example.com on mail.example.org']"
    ).click()
    wait_for(driver, ec.presence_of_element_located((By.ID, "confirm-delete"))).click()
    wait_for(driver, lambda d: "deleted" in d.find_element(By.CSS_SELECTOR, ".flash").text)
    rows = visible_rows(driver)
    assert len(rows) == 1 and "support@example.com" in rows[0]
