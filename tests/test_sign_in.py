"""Signing in and out: where `next` may lead, throttling per client address, and sessions that
end at sign-out, at a new password and after SESSION_MAX_AGE_HOURS."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tests.conftest import ADMIN_NAME, ADMIN_PASSWORD
from webapp.auth import service
from webapp.auth.service import Throttle, set_admin_password
from webapp.extensions import db
from webapp.models import AdminUser, SignInAttempt, utcnow

WRONG = "Wrong username or password."
THROTTLED = re.compile(r"Too many failed sign-ins from your address; try again in (\d+) seconds\.")


def sign_in(client, username=ADMIN_NAME, password=ADMIN_PASSWORD, next_url=None):
    url = "/login" if next_url is None else f"/login?next={next_url}"
    return client.post(url, data={"username": username, "password": password})


# -- next: only a path on this site ---------------------------------------------------------


@pytest.mark.parametrize(
    "next_url",
    [
        "/%09/evil.example",  # a browser drops the tab: //evil.example
        "/%0d%0a/x",  # a header injection (was a 500)
        "/%0a/evil.example",
        "//evil.example",
        "/%2F/evil.example",
        "/%5C/evil.example",  # a backslash is a slash to a browser
        "/%5Cevil.example",
        "https://evil.example/",
        "https:evil.example",
        "javascript:alert(1)",
        "%20/x",
        "/x%20/../y",
        "/%00",
        "evil.example",
    ],
)
def test_sign_in_never_redirects_off_site(client, next_url):
    response = sign_in(client, next_url=next_url)
    assert response.status_code == 302
    assert response.headers["Location"] == "/mail-accounts/"


@pytest.mark.parametrize("next_url", ["/queues/", "/mail-accounts/1?tab=log", "/status/"])
def test_sign_in_goes_on_to_a_local_next_page(client, next_url):
    response = sign_in(client, next_url=next_url.replace("?", "%3F"))
    assert response.headers["Location"] == next_url


def test_the_sign_in_guard_sends_back_to_the_page_asked_for(client):
    response = client.get("/queues/?page=2")
    location = response.headers["Location"]
    assert location.startswith("/login?next=")
    assert sign_in(client, next_url=location.split("next=", 1)[1]).headers["Location"] == (
        "/queues/?page=2"
    )


# -- throttling per client address ----------------------------------------------------------


@pytest.fixture
def app_config(app_config):
    # Long delays: no block may run out while a test looks at it, however slow the machine.
    app_config["LOGIN_FIRST_DELAY_SECONDS"] = 600
    app_config["LOGIN_MAX_DELAY_SECONDS"] = 3600
    return app_config


def test_parallel_wrong_passwords_are_all_counted(app):
    """24 wrong passwords at once from one address: only the free ones are tried."""
    free = 5  # LOGIN_FREE_FAILURES

    def attempt(i: int) -> str:
        return sign_in(app.test_client(), password=f"wrong-{i}").get_data(as_text=True)

    with ThreadPoolExecutor(max_workers=24) as pool:
        pages = list(pool.map(attempt, range(24)))
    wrong = sum(WRONG in page for page in pages)
    throttled = sum(bool(THROTTLED.search(page)) for page in pages)
    assert (wrong, throttled) == (free, 24 - free)
    with app.app_context():
        assert db.session.get(SignInAttempt, "127.0.0.1").failures == free


def test_a_throttled_address_is_refused_even_the_right_password(client):
    for i in range(5):
        assert WRONG in sign_in(client, password=f"wrong-{i}").get_data(as_text=True)
    page = sign_in(client).get_data(as_text=True)
    seconds = int(THROTTLED.search(page).group(1))
    assert 590 <= seconds <= 600


def test_the_admin_signs_in_from_another_address_while_one_is_throttled(app):
    attacker = app.test_client()
    for i in range(6):
        sign_in(attacker, password=f"wrong-{i}")
    assert THROTTLED.search(sign_in(attacker).get_data(as_text=True))
    admin = app.test_client()
    admin.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert sign_in(admin).status_code == 302


@pytest.mark.parametrize("trusted_proxies", [1], indirect=True)
def test_behind_the_proxy_the_forwarded_client_address_is_throttled(trusted_proxies, app):
    attacker = app.test_client()
    attacker.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.5"
    for i in range(6):
        sign_in(attacker, password=f"wrong-{i}")
    assert THROTTLED.search(sign_in(attacker).get_data(as_text=True))
    admin = app.test_client()  # the same proxy (127.0.0.1), another client behind it
    admin.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.6"
    assert sign_in(admin).status_code == 302
    with app.app_context():
        assert db.session.get(SignInAttempt, "203.0.113.5") is not None
        assert db.session.get(SignInAttempt, "127.0.0.1") is None


@pytest.fixture
def trusted_proxies(app_config, request):
    """POSTMASTER_TRUSTED_PROXIES for the app (ask for it before `app`)."""
    app_config["TRUSTED_PROXIES"] = request.param
    return request.param


def test_a_successful_sign_in_clears_the_count(app, client):
    for i in range(4):
        sign_in(client, password=f"wrong-{i}")
    assert sign_in(client).status_code == 302
    with app.app_context():
        assert db.session.get(SignInAttempt, "127.0.0.1") is None


def test_the_wait_doubles_with_each_failure_up_to_the_cap(app, client):
    assert [Throttle().delay_after(n) for n in (1, 4, 5, 6, 7, 13, 14, 100)] == [
        0,
        0,
        2,
        4,
        8,
        512,
        900,
        900,
    ]
    for i in range(5):
        sign_in(client, password=f"wrong-{i}")
    with app.app_context():
        row = db.session.get(SignInAttempt, "127.0.0.1")
        row.blocked_until = utcnow() - timedelta(seconds=1)  # the first wait is over
        db.session.commit()
    assert WRONG in sign_in(client, password="wrong-5").get_data(as_text=True)
    seconds = int(THROTTLED.search(sign_in(client).get_data(as_text=True)).group(1))
    assert 1190 <= seconds <= 1200  # 600 s doubled


def test_unknown_and_known_users_get_identical_answers(app, monkeypatch):
    checked: list[str] = []
    real_check = service.check_password_hash

    def spy(pwhash: str, password: str) -> bool:
        checked.append(pwhash)
        return real_check(pwhash, password)

    monkeypatch.setattr(service, "check_password_hash", spy)
    known = sign_in(app.test_client(), username=ADMIN_NAME, password="wrong-password")
    unknown = sign_in(app.test_client(), username="nobody", password="wrong-password")
    assert known.status_code == unknown.status_code == 200
    # The page shows the name typed in; apart from that, byte for byte the same.
    assert known.data.replace(b'value="admin"', b"") == unknown.data.replace(b'value="nobody"', b"")
    assert WRONG in known.get_data(as_text=True)
    # Both ran one password hash check of the same kind (and cost).
    assert len(checked) == 2
    assert checked[0].split("$")[0] == checked[1].split("$")[0]
    assert checked[1] != checked[0]  # the unknown user's was the dummy hash


# -- sessions end -----------------------------------------------------------------------------


def _copy_of(app, signed_in_client):
    thief = app.test_client()
    thief.set_cookie("session", signed_in_client.get_cookie("session").value)
    return thief


def test_sign_out_ends_a_copied_session_cookie(app, admin_client):
    thief = _copy_of(app, admin_client)
    assert thief.get("/mail-accounts/").status_code == 200
    admin_client.post("/logout")
    response = thief.get("/mail-accounts/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    # Signing in again works and gives a new session.
    assert sign_in(admin_client).status_code == 302
    assert admin_client.get("/mail-accounts/").status_code == 200
    assert thief.get("/mail-accounts/").status_code == 302


def test_a_new_password_ends_every_session(app, admin_client, runner):
    thief = _copy_of(app, admin_client)
    result = runner.invoke(
        args=["admin", "set-password", ADMIN_NAME, "--password-stdin"],
        input="a new password 42\n",
    )
    assert result.exit_code == 0, result.output
    assert "a new password 42" not in result.output
    assert admin_client.get("/mail-accounts/").status_code == 302
    assert thief.get("/mail-accounts/").status_code == 302
    assert WRONG in sign_in(admin_client).get_data(as_text=True)
    assert sign_in(admin_client, password="a new password 42").status_code == 302


def test_set_password_refuses_short_passwords_and_unknown_admins(app, runner):
    short = runner.invoke(
        args=["admin", "set-password", ADMIN_NAME, "--password-stdin"], input="x\n"
    )
    assert short.exit_code == 2 and "at least 8 characters" in short.output
    unknown = runner.invoke(
        args=["admin", "set-password", "nobody", "--password-stdin"], input="long enough pw\n"
    )
    assert unknown.exit_code == 2 and "There is no admin named 'nobody'" in unknown.output
    with app.app_context():
        version = db.session.query(AdminUser).filter_by(username=ADMIN_NAME).one().session_version
        set_admin_password(ADMIN_NAME, "another password")
        admin = db.session.query(AdminUser).filter_by(username=ADMIN_NAME).one()
        assert admin.session_version == version + 1


def test_a_session_ends_after_its_maximum_age_however_active(app, admin_client):
    assert app.config["SESSION_MAX_AGE_HOURS"] == 12
    with admin_client.session_transaction() as session:
        session["signed_in_at"] -= 11 * 3600
    assert admin_client.get("/mail-accounts/").status_code == 200
    with admin_client.session_transaction() as session:
        session["signed_in_at"] -= 3600 + 60
    response = admin_client.get("/mail-accounts/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_a_session_without_version_or_sign_in_time_is_not_signed_in(app, admin_client):
    with admin_client.session_transaction() as session:
        user_id = session["admin_user_id"]
        session.clear()
        session["admin_user_id"] = user_id  # a cookie from before this change
    assert admin_client.get("/mail-accounts/").status_code == 302
