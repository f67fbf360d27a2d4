"""Real-browser fixtures: a headless Chromium (selenium) and the app served on a free loopback
port against a SQLite file database. `from tests.browser import *` (conftest.py does).

    def test_x(browser, live_server):
        sign_in(browser, live_server)
        browser.get(live_server.url + "/mail-accounts/")
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask

__all__ = ["LiveServer", "browser", "live_server", "sign_in", "wait_for"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
_MISSING = (
    "the browser tests need Debian packages chromium and chromium-driver "
    "(apt-get install chromium chromium-driver)"
)
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # we run as root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]


@dataclass
class LiveServer:
    url: str
    app: Flask


def _chromium_binary() -> str | None:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One headless Chromium for the session; skipped locally (failed in CI) when missing."""
    from tests.conftest import require

    driver_path = shutil.which("chromedriver") or (
        CHROMEDRIVER if os.path.exists(CHROMEDRIVER) else None
    )
    require(bool(driver_path) and _chromium_binary() is not None, _MISSING)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="postmaster-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = _chromium_binary()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    """The test app (fresh SQLite file database, seeded, admin user) served by werkzeug in a
    thread on a free 127.0.0.1 port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(url=f"http://127.0.0.1:{server.server_port}", app=app)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def wait_for(driver, condition, timeout: float = 30):
    """WebDriverWait(driver, timeout).until(condition), with a deadline a loaded machine
    meets. An element of the page being replaced (a click that loads the next page, a
    section redrawn by a script) is stale or missing for a moment: the condition is asked
    again, not failed."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    def asked_again_while_replaced(d):
        try:
            return condition(d)
        except WebDriverException as error:
            # chromedriver reports an element whose page is being replaced as an "unknown
            # error ... Node with given id does not belong to the document", not as stale.
            if "does not belong to the document" in (error.msg or ""):
                return False
            raise

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(
        asked_again_while_replaced
    )


def click_and_wait_for_next_page(driver, element, timeout: float = 30) -> None:
    """Click element (a submit button, a link) and wait until the browser has left the
    page it was on, so that what is checked next is read from the page the click loaded and
    not, by luck, from the old one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    old_page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait_for(driver, expected_conditions.staleness_of(old_page), timeout)


def sign_in(driver, server: LiveServer, username: str | None = None, password: str | None = None):
    """Sign in as the test admin (cookies of earlier tests are dropped first)."""
    from selenium.webdriver.common.by import By

    from tests.conftest import ADMIN_NAME, ADMIN_PASSWORD

    driver.get(server.url + "/login")
    driver.delete_all_cookies()
    driver.get(server.url + "/login")
    driver.find_element(By.ID, "username").send_keys(username or ADMIN_NAME)
    driver.find_element(By.ID, "password").send_keys(password or ADMIN_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "main form input[type=submit]").click()
    wait_for(driver, lambda d: "/login" not in d.current_url)
