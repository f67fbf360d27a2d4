"""Every screen in a real Chromium, at desktop width and at 390 px (a phone): no sideways
scrolling of the page, the Menu button opens the navigation, a skip link comes first, axe-core
finds nothing serious or critical; form errors take the focus and are announced with the field;
delete is one control everywhere; the HTML view of a mail is as tall as the mail.

With POSTMASTER_SCREENSHOTS=1 the walk also saves the main screens to docs/screenshots/
(<screen>-desktop.png, <screen>-phone.png), the set shown in the README.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import url_for

from tests.browser import sign_in, wait_for
from tests.mailgen import make_mail
from tests.test_dispatch import make_account, run
from tests.test_pipeline import in_process_parse
from webapp.addresses.service import save_address
from webapp.extensions import db
from webapp.filters.service import FilterInput, create_filter
from webapp.models import Queue
from webapp.oauth.service import ProfileInput, create_profile
from webapp.postmaster import pipeline
from webapp.postmaster.filters import Condition

pytestmark = pytest.mark.browser

DESKTOP = (1280, 800)
PHONE = (390, 844)
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
# The screens whose pictures the README shows.
SCREENSHOT_SCREENS = {"mail-accounts", "mail-account-edit", "ticket", "status", "filters"}
LONG_HTML = "".join(
    f"<p>Paragraph {i}: the printer on floor {i} is out of toner.</p>" for i in range(60)
)


@dataclass
class Screens:
    """Ids of the rows the walk opens."""

    account: int
    filter: int
    profile: int
    queue: int
    address: int
    long_ticket: int
    short_ticket: int
    failed: int


@pytest.fixture
def screens(app, monkeypatch) -> Screens:
    """One of everything, so every screen has a row to show."""
    with app.app_context():
        account = make_account()
        account.username = "support@example.com"
        account.host = "mail.example.com"
        account.comment = "First-level support"
        flt = create_filter(
            FilterInput(
                name="Alerts to Monitoring",
                conditions=[Condition("Subject", "^\\[alert\\]")],
                actions=[("X-OTOBO-Queue", "Misc")],
            ),
            "admin",
        )
        profile = create_profile(
            ProfileInput(
                name="Contoso",
                client_id="0b3a9d3e-5c4e-4e57-9b59-54a3c0c0a111",
                client_secret="not-a-real-secret",
                tenant_id="contoso.onmicrosoft.com",
            ),
            "admin",
        )
        queue = db.session.query(Queue).filter_by(name="Raw").one()
        address = save_address(None, "help@example.com", queue.id, "valid", "Help", None, "admin")
        long_ticket = run(account, make_mail(subject="Printer toner", html=LONG_HTML)).ticket_id
        short = make_mail(subject="Thanks", html="<p>Thanks, all <b>fine</b> now.</p>")
        short_ticket = run(account, short).ticket_id

        def boom(raw):
            raise ValueError("cannot parse: truncated MIME part")

        monkeypatch.setattr(pipeline, "parse_many_with_limit", in_process_parse(boom))
        broken = make_mail(frm="Carol <carol@example.test>", subject="Scanner report")
        failed = run(account, broken).failed_mail_id
        monkeypatch.undo()
        db.session.commit()
        return Screens(
            account=account.id,
            filter=flt.id,
            profile=profile.id,
            queue=queue.id,
            address=address.id,
            long_ticket=long_ticket,
            short_ticket=short_ticket,
            failed=failed,
        )


def screen_urls(app, ids: Screens) -> dict[str, str]:
    """Every screen an admin can open: each navigation entry (so a new area is walked too)
    and the add, edit and delete screens of each row."""
    with app.test_request_context():
        from webapp.navigation import NAV_ITEMS

        urls = {
            endpoint.split(".")[0]: url_for(endpoint)
            for endpoint, _ in NAV_ITEMS
            if endpoint in app.view_functions
        }
        urls.update(
            {
                "mail-accounts": url_for("mail_accounts.index"),
                "mail-account-add": url_for("mail_accounts.add"),
                "mail-account-edit": url_for("mail_accounts.edit", account_id=ids.account),
                "mail-account-delete": url_for("mail_accounts.delete", account_id=ids.account),
                "filters": url_for("postmaster_filters.index"),
                "filter-add": url_for("postmaster_filters.edit"),
                "filter-edit": url_for("postmaster_filters.edit", filter_id=ids.filter),
                "filter-delete": url_for("postmaster_filters.delete", filter_id=ids.filter),
                "oauth2-profile-add": url_for("oauth2_profiles.add"),
                "oauth2-profile-edit": url_for("oauth2_profiles.edit", profile_id=ids.profile),
                "oauth2-profile-delete": url_for("oauth2_profiles.delete", profile_id=ids.profile),
                "queue-add": url_for("queues.edit"),
                "queue-edit": url_for("queues.edit", queue_id=ids.queue),
                "address-add": url_for("addresses.edit"),
                "address-edit": url_for("addresses.edit", address_id=ids.address),
                "status": url_for("status.index"),
                "ticket-queue": url_for("tickets.queue", queue_id=ids.queue),
                "ticket": url_for("tickets.show", ticket_id=ids.long_ticket),
                "failed-mail-delete": url_for("failed_mail.delete", failed_id=ids.failed),
            }
        )
    return urls


def set_viewport(driver, size: tuple[int, int]) -> None:
    """Emulate a device of this CSS size (mobile below 600 px, so the viewport meta counts)."""
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


@pytest.fixture
def viewport(browser):
    """set_viewport for this test; the shared browser gets its own size back afterwards."""
    try:
        yield lambda size: set_viewport(browser, size)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def axe_source() -> str:
    """axe.min.js as shipped in the axe-playwright-python wheel (requirements-dev.txt); only
    the file is used, the package is never imported."""
    spec = importlib.util.find_spec("axe_playwright_python")
    assert spec is not None and spec.submodule_search_locations, "pip install axe-playwright-python"
    return (Path(list(spec.submodule_search_locations)[0]) / "axe.min.js").read_text()


def serious_axe_findings(driver, source: str) -> list[str]:
    """axe-core's serious and critical violations on the current page, one line each."""
    if not driver.execute_script("return typeof window.axe === 'object';"):
        driver.execute_script(source)
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then((r) => done(r.violations), (e) => done([{id: 'axe-error', impact: 'critical',"
        " help: String(e), nodes: []}]));"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n.get("target")) for n in v["nodes"][:5])
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def page_overflow(driver) -> int:
    """How many CSS pixels the page is wider than the window (0: no sideways scrolling).
    In mobile emulation window.innerWidth grows with content that overflows (the layout
    viewport widens), so the page is measured against the visual viewport and clientWidth."""
    return driver.execute_script(
        "const d = document.documentElement;"
        "const width = Math.min(d.clientWidth, window.visualViewport.width, window.innerWidth);"
        "return Math.max(d.scrollWidth, document.body.scrollWidth) - Math.floor(width);"
    )


def widest_elements(driver) -> str:
    """The innermost elements reaching past the window's right edge: what to fix."""
    return driver.execute_script(
        "const w = document.documentElement.clientWidth; const out = [];"
        "for (const el of document.querySelectorAll('main *')) {"
        "  const r = el.getBoundingClientRect();"
        "  if (r.right > w + 1 && ![...el.children].some("
        "      c => c.getBoundingClientRect().right > w + 1))"
        "    out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +"
        "             (el.className ? '.' + String(el.className).split(' ').join('.') : '') +"
        "             ' right=' + Math.round(r.right));"
        "}"
        "return out.slice(0, 5).join(', ');"
    )


def first_focusable(driver) -> str:
    return driver.execute_script(
        "const el = document.querySelector('a[href], button, input:not([type=hidden]),"
        ' select, textarea, [tabindex]:not([tabindex="-1"])\');'
        "return el ? el.className : '';"
    )


def nav_visible(driver) -> bool:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, ".topbar nav a").is_displayed()


def check_screen(driver, name: str, width: str, source: str) -> list[str]:
    """What is wrong with the page on screen; saves its picture when asked to."""
    problems = []
    overflow = page_overflow(driver)
    if overflow > 0:
        problems.append(
            f"{name} @ {width}: the page scrolls sideways by {overflow}px "
            f"({widest_elements(driver)})"
        )
    if first_focusable(driver) != "skip-link":
        problems.append(f"{name} @ {width}: the first focusable element is not the skip link")
    problems += [f"{name} @ {width}: {f}" for f in serious_axe_findings(driver, source)]
    if os.environ.get("POSTMASTER_SCREENSHOTS") == "1" and name in SCREENSHOT_SCREENS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        label = "phone" if width == "390px" else "desktop"
        driver.save_screenshot(str(SCREENSHOTS / f"{name}-{label}.png"))
    return problems


def test_every_screen_fits_a_phone_and_passes_axe(browser, live_server, screens, viewport):
    from selenium.webdriver.common.by import By

    driver = browser
    source = axe_source()
    urls = screen_urls(live_server.app, screens)
    problems: list[str] = []
    for size, width in ((DESKTOP, f"{DESKTOP[0]}px"), (PHONE, "390px")):
        viewport(size)
        driver.delete_all_cookies()
        driver.get(live_server.url + "/login")
        problems += check_screen(driver, "sign-in", width, source)
        sign_in(driver, live_server)
        for name, path in urls.items():
            driver.get(live_server.url + path)
            assert driver.find_element(By.TAG_NAME, "main"), name
            assert "Not Found" not in driver.title and "Error" not in driver.title, name
            problems += check_screen(driver, name, width, source)
    assert not problems, "\n".join(problems)


def test_menu_button_opens_the_navigation_on_a_phone(browser, live_server, viewport):
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, live_server)
    viewport(DESKTOP)
    driver.get(live_server.url + "/mail-accounts/")
    menu = driver.find_element(By.ID, "nav-toggle-label")
    assert nav_visible(driver) and not menu.is_displayed()

    viewport(PHONE)
    driver.get(live_server.url + "/mail-accounts/")
    menu = driver.find_element(By.ID, "nav-toggle-label")
    assert menu.is_displayed() and menu.text == "Menu"
    assert not nav_visible(driver)
    menu.click()
    wait_for(driver, lambda d: nav_visible(d))
    assert driver.find_element(By.LINK_TEXT, "Status").is_displayed()
    assert page_overflow(driver) <= 0
    driver.find_element(By.LINK_TEXT, "Status").click()
    wait_for(driver, lambda d: d.current_url.endswith("/status/"))
    assert not nav_visible(driver)  # a new page starts with the menu closed

    # The keyboard opens it too: Tab to the (visually hidden) box, Space.
    from selenium.webdriver.common.keys import Keys

    toggle = driver.find_element(By.ID, "nav-toggle")
    toggle.send_keys(Keys.SPACE)
    wait_for(driver, lambda d: nav_visible(d))


def test_skip_link_is_the_first_tab_stop_and_jumps_to_the_content(browser, live_server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    sign_in(driver, live_server)
    driver.get(live_server.url + "/queues/")
    ActionChains(driver).send_keys(Keys.TAB).perform()
    active = driver.switch_to.active_element
    assert active.get_attribute("class") == "skip-link"
    assert active.is_displayed() and active.text == "Skip to main content"
    active.send_keys(Keys.ENTER)
    wait_for(driver, lambda d: d.execute_script("return document.activeElement.id") == "main")
    assert driver.find_element(By.ID, "main").tag_name == "main"


def test_form_error_moves_focus_to_the_first_invalid_field(browser, live_server):
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, live_server)
    driver.get(live_server.url + "/mail-accounts/add")
    driver.find_element(By.ID, "host").send_keys("mail.example.com")
    driver.find_element(By.ID, "submit").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[aria-invalid=true]"))

    invalid = driver.find_elements(By.CSS_SELECTOR, "[aria-invalid=true]")
    active = driver.switch_to.active_element
    assert active == invalid[0], active.get_attribute("id")
    assert invalid[0].get_attribute("id") == "username"
    for field in invalid:
        described = field.get_attribute("aria-describedby").split()
        texts = [driver.find_element(By.ID, i).text for i in described]
        errors = [driver.find_element(By.ID, i) for i in described if "-error-" in i]
        assert errors, field.get_attribute("id")
        assert all(e.get_attribute("class") == "error" and e.text for e in errors), texts
    # A valid field with help text points at it and is not marked invalid.
    host = driver.find_element(By.ID, "host")
    assert host.get_attribute("aria-invalid") is None
    assert host.get_attribute("value") == "mail.example.com"
    tls = driver.find_element(By.ID, "verify_tls")
    help_text = driver.find_element(By.ID, tls.get_attribute("aria-describedby"))
    assert "man-in-the-middle" in help_text.get_attribute("textContent")


def test_tls_warning_shows_only_while_verification_is_off(browser, live_server):
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, live_server)
    driver.get(live_server.url + "/mail-accounts/add")
    box = driver.find_element(By.ID, "verify_tls")
    warning = driver.find_element(By.ID, "verify_tls-help")
    assert box.is_selected() and not warning.is_displayed()
    box.click()
    wait_for(driver, lambda d: warning.is_displayed())
    assert "man-in-the-middle" in warning.text
    box.click()
    wait_for(driver, lambda d: not warning.is_displayed())


def test_delete_is_one_control_with_an_in_page_confirm_screen(browser, live_server, screens):
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, live_server)
    looks = set()
    for path in ("/mail-accounts/", "/postmaster-filters/", "/oauth2-profiles/", "/failed-mail/"):
        driver.get(live_server.url + path)
        assert not driver.find_elements(By.CSS_SELECTOR, "form[data-confirm]"), path
        control = driver.find_element(By.CSS_SELECTOR, "a.delete-link")
        assert control.text == "Delete"
        assert control.get_attribute("aria-label").startswith("Delete ")
        looks.add(
            driver.execute_script(
                "const s = getComputedStyle(arguments[0]);"
                "return [s.color, s.borderColor, s.fontSize, s.paddingLeft].join(' ');",
                control,
            )
        )
        control.click()
        confirm = wait_for(driver, lambda d: d.find_element(By.ID, "confirm-delete"))
        assert confirm.text == "Confirm"
        driver.find_element(By.LINK_TEXT, "Cancel").click()
        wait_for(driver, lambda d, url=live_server.url + path: d.current_url == url)
    assert len(looks) == 1, looks

    # The failed mail goes after Confirm (the others are covered by their features' tests).
    driver.find_element(By.CSS_SELECTOR, "a.delete-link").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "confirm-delete")).click()
    wait_for(driver, lambda d: "deleted" in d.find_element(By.CSS_SELECTOR, ".flash").text)
    assert "No failed mail." in driver.find_element(By.ID, "failed-mail").text


def frame_fits(driver, frame) -> bool:
    """The frame is as tall as its document (no scrolling inside) and not taller."""
    return driver.execute_script(
        "const f = arguments[0], doc = f.contentDocument;"
        "const content = doc.documentElement.scrollHeight;"
        "return Math.abs(f.clientHeight - content) <= 4 && doc.documentElement.clientHeight"
        " >= content;",
        frame,
    )


def test_ticket_html_view_is_as_tall_as_the_mail(browser, live_server, screens, viewport):
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, live_server)
    heights = {}
    for size in (DESKTOP, PHONE):
        viewport(size)
        for ticket_id in (screens.long_ticket, screens.short_ticket):
            driver.get(f"{live_server.url}/tickets/{ticket_id}")
            back = driver.find_element(By.ID, "back-to-queue")
            assert back.text == "← Back to queue Raw"
            driver.find_element(By.CSS_SELECTOR, ".article summary").click()
            frame = driver.find_element(By.CSS_SELECTOR, "iframe.article-html")
            wait_for(driver, lambda d, f=frame: frame_fits(d, f))
            heights[(size, ticket_id)] = frame.size["height"]
            assert page_overflow(driver) <= 0
            # The mail's HTML still runs no script: the frame is sandboxed without scripts.
            assert "allow-scripts" not in frame.get_attribute("sandbox")
    for size in (DESKTOP, PHONE):
        assert heights[(size, screens.long_ticket)] > 480 > heights[(size, screens.short_ticket)]
    # A narrower window wraps the text into more lines: the frame grows with it.
    assert heights[(PHONE, screens.long_ticket)] > heights[(DESKTOP, screens.long_ticket)]
