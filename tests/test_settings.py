"""The Settings screen."""

from __future__ import annotations

from webapp.extensions import db
from webapp.models import Queue
from webapp.settings.store import SETTINGS, get_setting


def settings_data(**overrides) -> dict:
    data = {key: spec.default for key, spec in SETTINGS.items()}
    data.update(overrides)
    return data


def test_settings_page_shows_defaults(admin_client):
    text = admin_client.get("/settings/").get_data(as_text=True)
    assert "PostMaster Settings" in text
    for spec in SETTINGS.values():
        assert spec.label in text


def test_save_settings(admin_client, app):
    with app.app_context():
        db.session.add(Queue(name="Inbound"))
        db.session.commit()
    response = admin_client.post(
        "/settings/",
        data=settings_data(FetchIntervalMinutes="5", PostmasterDefaultQueue="Inbound"),
    )
    assert response.status_code == 302
    with app.app_context():
        assert get_setting("FetchIntervalMinutes") == "5"
        assert get_setting("PostmasterDefaultQueue") == "Inbound"


def test_bad_settings_are_refused(admin_client, app):
    response = admin_client.post("/settings/", data=settings_data(FetchIntervalMinutes="0"))
    assert response.status_code == 200
    assert 'class="error"' in response.get_data(as_text=True)
    response = admin_client.post("/settings/", data=settings_data(PostmasterDefaultQueue="Nope"))
    assert response.status_code == 200
    with app.app_context():
        assert get_setting("FetchIntervalMinutes") == "10"
        assert get_setting("PostmasterDefaultQueue") == "Raw"


def test_settings_need_sign_in(client):
    assert client.get("/settings/").status_code == 302
