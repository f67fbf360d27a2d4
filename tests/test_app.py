"""The app factory, sign-in and the guard on every page."""

import pytest

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
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"PRODUCTION": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})


GOOD_SECRET_KEY = "k7Qm2x9LrT4vN8wZ1pB6yH3cF5dJ0sGaE-uIoPqRtY"  # 42 bytes


def _production(tmp_path, **settings):
    from cryptography.fernet import Fernet

    config = {
        "PRODUCTION": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.sqlite'}",
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SECRET_KEY": GOOD_SECRET_KEY,
        "SESSION_COOKIE_SECURE": True,
        "PUBLIC_URL": "https://helpdesk.example.com/postmaster",
    }
    config.update(settings)
    return create_app(config)


def test_production_mode_starts_with_safe_settings(tmp_path):
    assert _production(tmp_path).config["PRODUCTION"] is True


@pytest.mark.parametrize(
    "secret_key, reason",
    [
        ("change-me", "placeholder"),  # the example of docs/deploy/postmaster.env
        ("CHANGE-ME", "placeholder"),
        ("dev-only-secret-key-change-me", "placeholder"),
        ("changeme", "placeholder"),
        ("secret", "placeholder"),
        ("", "is not set"),
        ("a-31-byte-secret-key-is-short!!", "shorter than 32 bytes"),
    ],
)
def test_production_mode_refuses_a_weak_secret_key(tmp_path, secret_key, reason):
    with pytest.raises(RuntimeError) as refused:
        _production(tmp_path, SECRET_KEY=secret_key)
    message = str(refused.value)
    assert message.startswith("POSTMASTER_SECRET_KEY ") and reason in message
    assert "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'" in message


def test_the_shipped_env_file_does_not_start_as_it_is(tmp_path):
    """docs/deploy/postmaster.env with its placeholders must be refused, not run."""
    from pathlib import Path

    env = Path(__file__).parent.parent / "docs" / "deploy" / "postmaster.env"
    values = dict(
        line.split("=", 1)
        for line in env.read_text().splitlines()
        if line.startswith("POSTMASTER_")
    )
    with pytest.raises(RuntimeError, match="POSTMASTER_SECRET_KEY is a placeholder"):
        _production(tmp_path, SECRET_KEY=values["POSTMASTER_SECRET_KEY"])


def test_production_mode_requires_secure_cookies_and_the_public_url(tmp_path):
    with pytest.raises(RuntimeError, match="POSTMASTER_SESSION_COOKIE_SECURE=true"):
        _production(tmp_path, SESSION_COOKIE_SECURE=False)
    with pytest.raises(RuntimeError, match="POSTMASTER_PUBLIC_URL must be set"):
        _production(tmp_path, PUBLIC_URL=None)
    with pytest.raises(RuntimeError, match="POSTMASTER_PUBLIC_URL must be set"):
        _production(tmp_path, PUBLIC_URL="http://helpdesk.example.com")
