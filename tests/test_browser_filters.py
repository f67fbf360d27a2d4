"""The PostMaster Filters screen in a real Chromium: add with the Test button, list, delete."""

from __future__ import annotations

import pytest

from tests.browser import sign_in, wait_for
from tests.mailgen import make_mail

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/postmaster-filters.png"


@pytest.fixture
def app_config(app_config):
    app_config["WTF_CSRF_ENABLED"] = True  # the real forms, tokens included
    return app_config


def test_admin_tests_and_saves_a_filter_from_the_navigation(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    sign_in(driver, live_server)
    driver.find_element(By.LINK_TEXT, "PostMaster Filters").click()
    wait_for(driver, lambda d: d.current_url.endswith("/postmaster-filters/"))
    assert "No filters yet." in driver.find_element(By.ID, "filters-table").text
    driver.find_element(By.LINK_TEXT, "Add Filter").click()

    driver.find_element(By.ID, "name").send_keys("Spam to Junk")
    driver.find_element(By.ID, "conditions-0-header").send_keys("Subject")
    driver.find_element(By.ID, "conditions-0-pattern").send_keys(r"^\[SPAM\]")
    driver.find_element(By.ID, "conditions-1-header").send_keys("X-Loop")
    driver.find_element(By.ID, "conditions-1-pattern").send_keys(".")
    driver.find_element(By.ID, "conditions-1-negate").click()
    Select(driver.find_element(By.ID, "actions-0-header")).select_by_value("X-OTOBO-Queue")
    driver.find_element(By.ID, "actions-0-value").send_keys("Junk")
    raw = make_mail(subject="[SPAM] cheap <script>alert(1)</script>").decode()
    driver.execute_script("document.getElementById('test_message').value = arguments[0]", raw)
    driver.find_element(By.ID, "test").click()

    result = wait_for(driver, lambda d: d.find_element(By.ID, "test-result"))
    assert "The filter matches." in result.text
    assert "X-OTOBO-Queue: Junk" in result.text
    # The form kept what was typed, so the admin can save it as tested.
    assert driver.find_element(By.ID, "conditions-0-pattern").get_attribute("value") == r"^\[SPAM\]"
    driver.save_screenshot(SCREENSHOT)
    driver.find_element(By.ID, "submit").click()

    wait_for(driver, lambda d: d.current_url.endswith("/postmaster-filters/"))
    assert "Filter Spam to Junk saved." in driver.page_source
    table = driver.find_element(By.ID, "filters-table").text
    assert "Spam to Junk" in table and "!X-Loop=." in table and "X-OTOBO-Queue=Junk" in table

    driver.find_element(By.LINK_TEXT, "Delete").click()
    driver.find_element(By.CSS_SELECTOR, "button.danger-bg").click()
    wait_for(driver, lambda d: "Filter Spam to Junk deleted." in d.page_source)
    assert "No filters yet." in driver.find_element(By.ID, "filters-table").text
