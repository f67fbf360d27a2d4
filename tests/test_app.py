"""The app factory, sign-in and the guard on every page."""

from webapp import create_app


def test_healthz_answers_without_sign_in(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_pages_redirect_to_sign_in(client):
    response = client.get("/mail-accounts/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_sign_in_with_wrong_password_is_refused(client):
    response = client.post("/login", data={"username": "admin", "password": "nope"})
    assert response.status_code == 200
    assert "Wrong username or password." in response.get_data(as_text=True)


def test_production_mode_refuses_dev_secret_key(tmp_path):
    import pytest

    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"PRODUCTION": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
