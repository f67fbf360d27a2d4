"""Every page requires sign-in, every form needs a CSRF token, and the security headers."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ADMIN_NAME, ADMIN_PASSWORD
from webapp.extensions import db
from webapp.mail_accounts.service import create_mail_account
from webapp.mail_accounts.validators import MailAccountInput
from webapp.models import MailAccount, Queue, SystemAddress
from webapp.oauth.service import ProfileInput, create_profile

# The only endpoints reachable without signing in. oauth2.callback is public on purpose: the
# provider's redirect (and the CLI's one-time sign-in link) arrives without our session, so
# the flow checks its own state and binding (webapp/oauth/flow.py). Any new public endpoint
# must be added here consciously.
ALLOWED_ANONYMOUS = {"auth.login", "dashboard.healthz", "static", "oauth2.callback"}


def _seed_rows(app) -> None:
    """One row of each kind with id 1, so URLs with an id hit an existing row."""
    with app.app_context():
        create_mail_account(
            MailAccountInput(
                type="IMAPS", username="u@example.com", password="pw-1", host="mail.example.com"
            ),
            "test",
        )
        raw = db.session.query(Queue).filter_by(name="Raw").one()
        db.session.add(SystemAddress(address="a@example.com", queue_id=raw.id))
        db.session.commit()


def _url_for_rule(rule) -> str:
    url = rule.rule
    for argument in rule.arguments:
        converter = rule._converters[argument]
        value = "1" if type(converter).__name__ in ("IntegerConverter", "NumberConverter") else "x"
        url = re.sub(rf"<(?:[^:<>]+:)?{argument}>", value, url)
    return url


def test_public_endpoints_are_exactly_the_allowed_ones():
    from webapp.auth.views import PUBLIC_ENDPOINTS

    assert set(PUBLIC_ENDPOINTS) == ALLOWED_ANONYMOUS


def test_every_route_requires_sign_in(app, client):
    _seed_rows(app)
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ALLOWED_ANONYMOUS:
            continue
        url = _url_for_rule(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            assert response.status_code == 302, (rule.endpoint, method, response.status_code)
            assert response.headers["Location"].startswith("/login"), (rule.endpoint, method)
            checked += 1
    assert checked >= 10
    with app.app_context():
        assert db.session.query(MailAccount).count() == 1  # nothing changed


def test_allowed_anonymous_endpoints_answer(client):
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/app.js").status_code == 200


@pytest.fixture
def csrf_app_config(app_config):
    app_config["WTF_CSRF_ENABLED"] = True
    return app_config


def _token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


@pytest.fixture
def csrf_client(csrf_app_config, app):
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"username": ADMIN_NAME, "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    return client


def test_post_without_csrf_token_is_refused(csrf_client, app):
    _seed_rows(app)
    data = {"type": "IMAPS", "username": "x@example.com", "password": "p", "host": "h.example.com"}
    response = csrf_client.post("/mail-accounts/add", data=data)
    assert response.status_code == 400
    assert "Reload the page" in response.get_data(as_text=True)
    assert csrf_client.post("/mail-accounts/1/delete").status_code == 400
    assert csrf_client.post("/mail-accounts/1/fetch").status_code == 400
    assert (
        csrf_client.post("/queues/add", data={"name": "Q", "validity": "valid"}).status_code == 400
    )
    with app.app_context():
        assert db.session.query(MailAccount).count() == 1

    # With the token from the page it works.
    token = _token(csrf_client.get("/mail-accounts/").get_data(as_text=True))
    response = csrf_client.post("/mail-accounts/1/delete", data={"csrf_token": token})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.query(MailAccount).count() == 0


def test_security_headers(client, admin_client):
    for response in (client.get("/login"), admin_client.get("/mail-accounts/")):
        csp = response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def _form_action(response) -> list[str]:
    csp = response.headers["Content-Security-Policy"]
    directive = next(d.strip() for d in csp.split(";") if d.strip().startswith("form-action "))
    return directive.split()[1:]


def test_forms_may_post_only_here_and_to_the_identity_providers(app, admin_client):
    # No profile yet: this site and the presets' sign-in origins (Google, Microsoft), no other.
    assert _form_action(admin_client.get("/mail-accounts/")) == [
        "'self'",
        "https://accounts.google.com",
        "https://login.microsoftonline.com",
    ]
    with app.app_context():
        create_profile(
            ProfileInput(
                name="Custom IdP",
                provider="Custom",
                client_id="c",
                client_secret="s",
                tenant_id="contoso.com",
                authorize_url="https://{tenant}.idp.example:8443/authorize",
                token_url="https://{tenant}.idp.example:8443/token",
            ),
            "test",
        )
    for url in ("/mail-accounts/", "/login"):
        assert _form_action(admin_client.get(url)) == [
            "'self'",
            "https://accounts.google.com",
            "https://contoso.com.idp.example:8443",
            "https://login.microsoftonline.com",
        ]
    # Not an HTML page: no forms, no database query.
    assert _form_action(admin_client.get("/healthz")) == ["'self'"]


@pytest.mark.browser
def test_chromium_blocks_a_form_posting_to_another_site(browser, live_server):
    from tests.browser import sign_in, wait_for

    sign_in(browser, live_server)
    browser.get(live_server.url + "/mail-accounts/")
    # A form injected into our page (as an HTML injection would) that posts elsewhere.
    browser.execute_script(
        """
        window.violations = [];
        document.addEventListener("securitypolicyviolation",
            (e) => window.violations.push(e.violatedDirective + " " + e.blockedURI));
        const form = document.createElement("form");
        form.method = "post";
        form.action = "http://127.0.0.1:9/steal";
        document.body.appendChild(form);
        form.submit();
        """
    )
    violations = wait_for(browser, lambda d: d.execute_script("return window.violations"))
    assert violations[0].startswith("form-action http://127.0.0.1:9")
    assert browser.current_url == live_server.url + "/mail-accounts/"


def test_session_cookie_flags(client):
    response = client.post("/login", data={"username": ADMIN_NAME, "password": ADMIN_PASSWORD})
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_no_inline_script_or_style_in_pages(admin_client, app):
    _seed_rows(app)
    for url in (
        "/mail-accounts/",
        "/mail-accounts/add",
        "/mail-accounts/1",
        "/queues/",
        "/email-addresses/",
        "/settings/",
        "/mail-accounts/1/delete",
    ):
        html = admin_client.get(url).get_data(as_text=True)
        assert "<style" not in html and " style=" not in html, url
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url
        assert not re.search(r"\son[a-z]+=", html), url


def test_error_pages_are_friendly(admin_client):
    response = admin_client.get("/mail-accounts/424242")
    assert response.status_code == 404
    assert "There is no such page." in response.get_data(as_text=True)
    response = admin_client.get("/mail-accounts/1/fetch")
    assert response.status_code == 405
