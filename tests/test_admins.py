"""Admins (issue 12 item 14): change one's own password (other sessions end), add and remove
admins on the Admins screen (never oneself, never the last), and `flask admin`."""

from __future__ import annotations

import re

import pytest
from werkzeug.security import check_password_hash

from tests.conftest import ADMIN_NAME, ADMIN_PASSWORD
from webapp.auth.service import AdminError, create_admin, delete_admin, find_admin
from webapp.extensions import db
from webapp.models import AdminUser

NEW_PASSWORD = "Walrus-Trombone-8812"


@pytest.fixture(autouse=True)
def _in_app_context(app_ctx):
    """Every test looks at the database; requests reuse this app context."""


def sign_in(client, name: str = ADMIN_NAME, password: str = ADMIN_PASSWORD):
    response = client.post("/login", data={"username": name, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def signed_in(client) -> bool:
    return client.get("/admins/").status_code == 200


def change(client, current: str, new: str, again: str | None = None):
    data = {
        "current_password": current,
        "new_password": new,
        "new_password_again": new if again is None else again,
    }
    return client.post("/admins/password", data=data)


def password_of(name: str) -> str:
    user = db.session.query(AdminUser).filter_by(username=name).one()
    db.session.refresh(user)
    return user.password_hash


def test_admin_changes_own_password_and_old_sessions_end(app):
    this_browser = sign_in(app.test_client())
    other_browser = sign_in(app.test_client())
    response = change(this_browser, ADMIN_PASSWORD, NEW_PASSWORD)
    assert response.status_code == 302
    assert signed_in(this_browser)  # the browser that changed it stays signed in
    assert not signed_in(other_browser)  # every other session ended
    assert check_password_hash(password_of(ADMIN_NAME), NEW_PASSWORD)
    fresh = app.test_client()
    wrong = fresh.post("/login", data={"username": ADMIN_NAME, "password": ADMIN_PASSWORD})
    assert wrong.status_code == 200
    sign_in(fresh, password=NEW_PASSWORD)


@pytest.mark.parametrize(
    ("current", "new", "again", "field", "message"),
    [
        ("wrong password", NEW_PASSWORD, None, "current_password", "current password is wrong"),
        (ADMIN_PASSWORD, "short", None, "new_password", "at least 8 characters"),
        (ADMIN_PASSWORD, NEW_PASSWORD, "Walrus-Other", "new_password_again", "differ"),
        (ADMIN_PASSWORD, "", None, "new_password", "Enter the new password."),
    ],
)
def test_change_password_refuses_bad_input(admin_client, current, new, again, field, message):
    before = password_of(ADMIN_NAME)
    page = change(admin_client, current, new, again).get_data(as_text=True)
    block = re.search(rf'id="field-{field}">(.*?)</div>', page, re.S).group(1)
    assert message in block
    assert password_of(ADMIN_NAME) == before
    assert NEW_PASSWORD not in page and ADMIN_PASSWORD not in page
    assert signed_in(admin_client)


def test_change_password_says_enter_the_passwords_again(admin_client):
    page = change(admin_client, ADMIN_PASSWORD, NEW_PASSWORD, "Walrus-Other").get_data(as_text=True)
    assert page.count("Enter the password again: it is never sent back") == 2


def test_admins_screen_adds_an_admin_who_can_sign_in(admin_client, app):
    page = admin_client.get("/admins/").get_data(as_text=True)
    assert ADMIN_NAME in page and "(you)" in page
    data = {"username": "maria", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    response = admin_client.post("/admins/add", data=data, follow_redirects=True)
    assert "Admin maria added." in response.get_data(as_text=True)
    sign_in(app.test_client(), "maria", NEW_PASSWORD)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"username": ADMIN_NAME}, "username", "already exists"),
        ({"password_again": "Different-9999"}, "password_again", "differ"),
        ({"username": ""}, "username", "Enter a username."),
    ],
)
def test_adding_an_admin_refuses_bad_input(admin_client, data, field, message):
    values = {"username": "maria", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    values.update(data)
    page = admin_client.post("/admins/add", data=values).get_data(as_text=True)
    block = re.search(rf'id="field-{field}">(.*?)</div>', page, re.S).group(1)
    assert message in block
    assert NEW_PASSWORD not in page
    assert db.session.query(AdminUser).count() == 1


def test_removing_an_admin_asks_first_and_ends_their_sessions(admin_client, app):
    maria = create_admin("maria", NEW_PASSWORD)
    maria_browser = sign_in(app.test_client(), "maria", NEW_PASSWORD)
    confirm = admin_client.get(f"/admins/{maria.id}/delete").get_data(as_text=True)
    assert "Do you really want to remove the admin <strong>maria</strong>?" in confirm
    assert db.session.query(AdminUser).count() == 2  # the GET changed nothing
    response = admin_client.post(f"/admins/{maria.id}/delete", follow_redirects=True)
    assert "Admin maria removed" in response.get_data(as_text=True)
    assert db.session.query(AdminUser).filter_by(username="maria").count() == 0
    assert not signed_in(maria_browser)


def test_an_admin_cannot_remove_themselves(admin_client):
    create_admin("maria", NEW_PASSWORD)
    me = find_admin(ADMIN_NAME)
    confirm = admin_client.get(f"/admins/{me.id}/delete").get_data(as_text=True)
    assert "You cannot remove yourself" in confirm and "Confirm</button>" not in confirm
    page = admin_client.post(f"/admins/{me.id}/delete", follow_redirects=True)
    assert "You cannot remove yourself" in page.get_data(as_text=True)
    assert signed_in(admin_client)
    assert db.session.query(AdminUser).count() == 2


def test_the_last_admin_cannot_be_removed(app_ctx):
    only = find_admin(ADMIN_NAME)
    with pytest.raises(AdminError, match="last admin"):
        delete_admin(only, None)
    assert db.session.query(AdminUser).count() == 1


def test_admin_pages_need_sign_in(client):
    for path in ("/admins/", "/admins/password", "/admins/add", "/admins/1/delete"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_admin_forms_need_the_csrf_token(app_config):
    from webapp import create_app

    app = create_app(dict(app_config, WTF_CSRF_ENABLED=True))
    client = app.test_client()
    with app.app_context():
        login = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login).group(1)
        data = {"username": ADMIN_NAME, "password": ADMIN_PASSWORD, "csrf_token": token}
        assert client.post("/login", data=data).status_code == 302
        maria = create_admin("maria", NEW_PASSWORD)
        assert client.post(f"/admins/{maria.id}/delete").status_code == 400
        assert change(client, ADMIN_PASSWORD, NEW_PASSWORD).status_code == 400
        new = {"username": "x", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
        assert client.post("/admins/add", data=new).status_code == 400
        assert db.session.query(AdminUser).count() == 2
        assert check_password_hash(password_of(ADMIN_NAME), ADMIN_PASSWORD)


# --- flask admin ---


def test_cli_set_password_from_stdin_ends_the_sessions(runner, app):
    browser = sign_in(app.test_client())
    result = runner.invoke(
        args=["admin", "set-password", ADMIN_NAME, "--password-stdin"], input=NEW_PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert not signed_in(browser)
    sign_in(app.test_client(), password=NEW_PASSWORD)


def test_cli_set_password_refuses_unknown_admins_and_short_passwords(runner):
    unknown = runner.invoke(
        args=["admin", "set-password", "nobody", "--password-stdin"], input=NEW_PASSWORD + "\n"
    )
    assert unknown.exit_code == 2 and "no admin named 'nobody'" in unknown.output
    short = runner.invoke(
        args=["admin", "set-password", ADMIN_NAME, "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 2 and "at least 8" in short.output


def test_cli_lists_and_deletes_admins_but_never_the_last(runner):
    create_admin("maria", NEW_PASSWORD)
    listed = runner.invoke(args=["admin", "list"])
    assert listed.output.split() == [ADMIN_NAME, "maria"]
    removed = runner.invoke(args=["admin", "delete", "maria"])
    assert removed.exit_code == 0, removed.output
    last = runner.invoke(args=["admin", "delete", ADMIN_NAME])
    assert last.exit_code == 2 and "last admin" in last.output
    assert runner.invoke(args=["admin", "list"]).output.split() == [ADMIN_NAME]
