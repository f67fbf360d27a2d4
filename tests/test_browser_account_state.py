"""What the admin sees after a fetch, in a real Chromium against the real Dovecot: rows that
update themselves, errors that clear once fixed, oversized mail on Status, each run's fetch
log, the in-page delete confirmation, invalid accounts greyed out, one badge per row.

The scheduler's part (taking a requested fetch) is played by the test: it runs the same
fetch_account the scheduler runs, while the page is open."""

from __future__ import annotations

import pytest

from tests.browser import sign_in, wait_for
from tests.fetching import add_account, ticket_count
from tests.mailgen import make_mail
from webapp.extensions import db
from webapp.models import MailAccount
from webapp.postmaster.fetch import FetchOptions, fetch_account
from webapp.settings.store import set_setting
from webapp.states import FetchTrigger

pytestmark = pytest.mark.browser

TIMEOUT = 30  # seconds a page may take to catch up (polls every 1.5 s while pending)


@pytest.fixture
def app_config(app_config, dovecot):
    app_config["MAIL_CA_FILE"] = dovecot.ca_file
    return app_config


def by_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def row(driver, account_id: int):
    return by_css(driver, f"[data-account-row='{account_id}']")


def badge_of(driver, account_id: int) -> str:
    return row(driver, account_id).find_element("css selector", "[data-badge]").text


def run_requested_fetch(app, account_id: int) -> None:
    """What the scheduler does with a requested fetch (same function, same database)."""
    with app.app_context():
        account = db.session.get(MailAccount, account_id)
        assert account.fetch_requested_at is not None, "no fetch was requested"
        fetch_account(account_id, FetchOptions(trigger=FetchTrigger.BUTTON, owner="test"))


def mark_no_reload(driver) -> None:
    driver.execute_script("window.__noReload = true;")


def assert_not_reloaded(driver) -> None:
    assert driver.execute_script("return window.__noReload === true;"), "the page was reloaded"


def test_fetch_now_updates_the_row_without_reload(browser, live_server, dovecot, mail_user):
    driver, app = browser, live_server.app
    mail_user.deliver(make_mail(subject="Printer on fire"))
    with app.app_context():
        account_id = add_account(dovecot, mail_user, "IMAPS")
    sign_in(driver, live_server)
    driver.get(live_server.url + "/mail-accounts/")
    assert badge_of(driver, account_id) == "never fetched"
    row(driver, account_id).find_element("css selector", "button[type=submit]").click()
    wait_for(driver, lambda d: badge_of(d, account_id) == "queued")
    mark_no_reload(driver)

    run_requested_fetch(app, account_id)

    wait_for(driver, lambda d: badge_of(d, account_id) == "ok", TIMEOUT)
    the_row = row(driver, account_id)
    assert "1 new ticket" in the_row.text
    assert the_row.find_element("css selector", "[data-last-run]").text.endswith(" UTC")
    assert_not_reloaded(driver)

    # Status: the same row updates itself there too.
    with app.app_context():
        from webapp.postmaster.requests import request_fetch

        request_fetch(db.session.get(MailAccount, account_id))
    driver.get(live_server.url + "/status/")
    assert badge_of(driver, account_id) == "queued"
    mark_no_reload(driver)
    run_requested_fetch(app, account_id)
    wait_for(driver, lambda d: badge_of(d, account_id) == "ok", TIMEOUT)
    assert "no new mail" in row(driver, account_id).text
    assert_not_reloaded(driver)


def test_fixed_password_clears_the_error_after_save(browser, live_server, dovecot, mail_user):
    driver, app = browser, live_server.app
    with app.app_context():
        account_id = add_account(dovecot, mail_user, "IMAPS", password="wrong-password")
        fetch_account(account_id)
    sign_in(driver, live_server)
    driver.get(live_server.url + "/status/")
    assert "last fetch failed" in by_css(driver, "#attention").text
    assert badge_of(driver, account_id) == "error"

    driver.get(f"{live_server.url}/mail-accounts/{account_id}")
    by_css(driver, "#password").send_keys(mail_user.password)
    by_css(driver, "#submit").click()
    wait_for(driver, lambda d: "saved" in by_css(d, ".flash").text)
    assert "The next fetch was requested now." in by_css(driver, ".flash").text
    assert badge_of(driver, account_id) == "queued"  # not the old error any more

    driver.get(live_server.url + "/status/")
    mark_no_reload(driver)
    assert "a new fetch is queued" in by_css(driver, "#attention").text
    run_requested_fetch(app, account_id)
    wait_for(driver, lambda d: badge_of(d, account_id) == "ok", TIMEOUT)
    # The attention list is redrawn once the run ends, still without a reload.
    wait_for(driver, lambda d: "last fetch failed" not in by_css(d, "#attention-section").text)
    assert_not_reloaded(driver)


def test_successful_test_connection_says_the_next_fetch_was_requested(
    browser, live_server, dovecot, mail_user
):
    driver, app = browser, live_server.app
    with app.app_context():
        account_id = add_account(dovecot, mail_user, "IMAPS")
    sign_in(driver, live_server)
    driver.get(f"{live_server.url}/mail-accounts/{account_id}")
    by_css(driver, "#connection button[type=submit]").click()  # Test connection
    wait_for(driver, lambda d: "Connection OK" in by_css(d, ".flash").text, TIMEOUT)
    assert "The next fetch was requested now." in by_css(driver, ".flash").text
    assert badge_of(driver, account_id) == "queued"


def test_oversized_mail_is_listed_on_status_and_fetched_once(
    browser, live_server, dovecot, mail_user
):
    driver, app = browser, live_server.app
    big = [("scan.pdf", "application/pdf", b"x" * 1_500_000)]
    mail_user.deliver(make_mail(subject="Huge scan", attachments=big))
    mail_user.deliver(make_mail(subject="Holiday video", attachments=big))
    with app.app_context():
        set_setting("MaxMessageSizeMB", "1")
        db.session.commit()
        account_id = add_account(dovecot, mail_user, "IMAPS")
        fetch_account(account_id)
    sign_in(driver, live_server)
    driver.get(live_server.url + "/status/")
    items = driver.find_elements("css selector", "#attention [data-attention=oversized]")
    assert len(items) == 2
    assert "Huge scan" in items[0].text and "2023-11-14 22:13 UTC" in items[0].text
    assert "Holiday video" in items[1].text

    # Dismiss one: it leaves Status but stays on the server (and on the account page).
    items[1].find_element("css selector", "[data-oversized-action=dismiss]").click()
    wait_for(driver, lambda d: "Dismissed" in by_css(d, ".flash").text)
    items = driver.find_elements("css selector", "#attention [data-attention=oversized]")
    assert len(items) == 1 and "Huge scan" in items[0].text

    # Fetch the other anyway, once: the next fetch (requested now) takes it.
    items[0].find_element("css selector", "[data-oversized-action=fetch_once]").click()
    wait_for(driver, lambda d: "at the next fetch" in by_css(d, ".flash").text)
    run_requested_fetch(app, account_id)
    with app.app_context():
        assert ticket_count() == 1
    driver.get(f"{live_server.url}/mail-accounts/{account_id}")
    table = by_css(driver, "#oversized-table")
    assert "Holiday video" in table.text and "dismissed" in table.text
    assert "Huge scan" not in table.text
    driver.get(live_server.url + "/status/")
    assert not driver.find_elements("css selector", "[data-attention=oversized]")


def test_fetch_log_opens_from_the_run_history(browser, live_server, dovecot, mail_user):
    driver, app = browser, live_server.app
    mail_user.deliver(make_mail(subject="<b>Logged</b> mail"))
    with app.app_context():
        account_id = add_account(dovecot, mail_user, "IMAPS")
        fetch_account(account_id)
    sign_in(driver, live_server)
    driver.get(f"{live_server.url}/mail-accounts/{account_id}")
    by_css(driver, "#fetch-runs a[data-run-log]").click()
    log = wait_for(driver, lambda d: by_css(d, "#fetch-log"))
    assert "connecting to IMAPS" in log.text and "LOGIN" in log.text
    assert "new ticket" in log.text
    assert mail_user.password not in driver.page_source
    assert "Back to the account" in by_css(driver, "main").text


def test_delete_from_the_list_uses_the_confirm_screen(browser, live_server, dovecot, mail_user):
    driver, app = browser, live_server.app
    with app.app_context():
        keep_id = add_account(dovecot, mail_user, "IMAPS", comment="stays")
        gone_id = add_account(dovecot, mail_user, "POP3S", comment="goes")
    sign_in(driver, live_server)
    driver.get(live_server.url + "/mail-accounts/")
    row(driver, gone_id).find_element("css selector", "a.delete-link").click()
    wait_for(driver, lambda d: d.current_url.endswith(f"/mail-accounts/{gone_id}/delete"))
    assert driver.execute_script("return document.querySelector('h1').textContent") == (
        "Delete Mail Account"
    )
    card = by_css(driver, "main .card").text
    assert mail_user.username in card and "POP3S" in card and "Tickets it created stay" in card
    by_css(driver, "main .card button[type=submit]").click()  # Confirm; no browser pop-up
    wait_for(driver, lambda d: "deleted" in by_css(d, ".flash").text)
    with app.app_context():
        assert db.session.get(MailAccount, gone_id) is None
        assert db.session.get(MailAccount, keep_id) is not None


def test_invalid_accounts_are_greyed_out_with_a_filter_to_hide_them(
    browser, live_server, dovecot, mail_user
):
    driver, app = browser, live_server.app
    with app.app_context():
        valid = add_account(dovecot, mail_user, "IMAPS")
        invalid = add_account(dovecot, mail_user, "IMAPS", validity="invalid")
        paused = add_account(dovecot, mail_user, "IMAPS", validity="invalid-temporarily")
    sign_in(driver, live_server)
    driver.get(live_server.url + "/mail-accounts/")
    colour = "return getComputedStyle(arguments[0].querySelector('td')).color"
    grey = driver.execute_script(colour, row(driver, invalid))
    assert grey == driver.execute_script(colour, row(driver, paused))
    assert grey != driver.execute_script(colour, row(driver, valid))
    by_css(driver, "#toggle-invalid").click()  # Hide invalid
    wait_for(driver, lambda d: "hide_invalid=1" in d.current_url)
    shown = {r.get_attribute("data-account-row") for r in driver.find_elements(
        "css selector", "[data-account-row]")}  # fmt: skip
    assert shown == {str(valid)}
    by_css(driver, "#toggle-invalid").click()  # Show invalid
    wait_for(driver, lambda d: len(d.find_elements("css selector", "[data-account-row]")) == 3)


def test_list_row_has_one_badge_and_a_one_line_last_run(browser, live_server, dovecot, mail_user):
    driver, app = browser, live_server.app
    with app.app_context():
        account_id = add_account(dovecot, mail_user, "IMAPS", password="wrong-password")
        fetch_account(account_id)
        error = db.session.get(MailAccount, account_id).last_message
    sign_in(driver, live_server)
    driver.get(live_server.url + "/mail-accounts/")
    the_row = row(driver, account_id)
    assert len(the_row.find_elements("css selector", ".badge")) == 1
    assert badge_of(driver, account_id) == "error"
    short = the_row.find_element("css selector", "[data-badge-text]").text
    assert short and len(short) <= 80
    assert the_row.text.count(short[:30]) == 1  # the error is not repeated under Fetch now
    fetch_cell = the_row.find_element("css selector", "td form button").find_element(
        "xpath", "ancestor::td"
    )
    assert fetch_cell.text == "Fetch now"
    last_run = the_row.find_element("css selector", "[data-last-run]")
    lines = driver.execute_script(
        "const r = document.createRange(); r.selectNodeContents(arguments[0]);"
        "return new Set(Array.from(r.getClientRects(), (b) => Math.round(b.top))).size;",
        last_run,
    )
    assert lines == 1, f"Last run takes {lines} lines"
    assert "fetched 0" not in the_row.text and error  # the counters stay on the account page
    # The details are on the account page.
    driver.get(f"{live_server.url}/mail-accounts/{account_id}")
    assert badge_of(driver, account_id) == "error"
    assert "fetch-runs" in driver.page_source
