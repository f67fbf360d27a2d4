"""Signing in and out: where `next` may lead after sign-in."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_NAME, ADMIN_PASSWORD


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
