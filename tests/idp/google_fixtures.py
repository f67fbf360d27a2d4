"""Pytest fixtures for the Google-shaped identity provider; a test module imports them
(`from tests.idp.google_fixtures import *`) and overrides `google_redirect_uris` to register
the app's callback."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .google import LocalGoogleProvider

__all__ = ["GoogleApp", "google_app", "google_idp", "google_redirect_uris"]

# Google's client ids and secrets look like these.
CLIENT_ID = "123456789012-abcdefghijklmnopqrstuvwxyz012345.apps.googleusercontent.com"
CLIENT_SECRET = "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"


@dataclass(frozen=True)
class GoogleApp:
    """A registered OAuth client (type Web application)."""

    client_id: str
    client_secret: str
    redirect_uri: str


@pytest.fixture
def google_idp() -> Iterator[LocalGoogleProvider]:
    """A running, empty Google look-alike, stopped after the test."""
    provider = LocalGoogleProvider()
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def google_redirect_uris() -> list[str]:
    return ["http://localhost/oauth2/callback"]


@pytest.fixture
def google_app(google_idp: LocalGoogleProvider, google_redirect_uris: list[str]) -> GoogleApp:
    google_idp.add_client(CLIENT_ID, CLIENT_SECRET, google_redirect_uris)
    return GoogleApp(CLIENT_ID, CLIENT_SECRET, google_redirect_uris[0])
