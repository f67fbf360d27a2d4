"""Behind a reverse proxy: a real nginx (the location block of docs/deploy/nginx-postmaster.conf)
in front of a real gunicorn under /postmaster/; and forwarded headers ignored without a proxy."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.fernet import Fernet

from tests.fetching import REPO
from tests.servers.dovecot import free_port

ADMIN_PASSWORD = "proxy test password"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE = REPO / "docs" / "deploy" / "nginx-postmaster.conf"


# --- without a real proxy -------------------------------------------------------------------

FORWARDED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Prefix": "/evil",
}


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(app):
    response = app.test_client().get("/mail-accounts/", headers=FORWARDED)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    with app.test_request_context("/", headers=FORWARDED):
        from flask import url_for

        assert url_for("oauth2.callback", _external=True) == "http://localhost/oauth2/callback"


@pytest.fixture
def proxied_app(app_config):
    from webapp import create_app

    app_config["TRUSTED_PROXIES"] = 1
    return create_app(app_config)


def test_a_trusted_proxy_sets_scheme_host_and_prefix(app, proxied_app):
    from tests.conftest import ADMIN_NAME
    from tests.conftest import ADMIN_PASSWORD as PASSWORD

    client = proxied_app.test_client()
    response = client.get("/mail-accounts/", headers=FORWARDED)
    assert response.headers["Location"].startswith("/evil/login?next=/evil/mail-accounts/")
    signed_in = client.post(
        "/login?next=/evil/mail-accounts/",
        data={"username": ADMIN_NAME, "password": PASSWORD},
        headers=FORWARDED,
    )
    assert signed_in.headers["Location"] == "/evil/mail-accounts/"
    page = client.get("/oauth2-profiles/", headers=FORWARDED).get_data(as_text=True)
    assert 'value="https://evil.example/evil/oauth2/callback"' in page
    assert 'href="/evil/static/style.css"' in page


# --- nginx + gunicorn -----------------------------------------------------------------------


@dataclass
class Site:
    base: str  # http://127.0.0.1:<nginx port>/postmaster/
    host: str  # 127.0.0.1:<nginx port>
    logs: list[Path]


def location_block() -> str:
    """The documented location block, run as written; only TLS is simulated (proto https)."""
    text = SITE.read_text()
    block = text.split("# BEGIN postmaster location", 1)[1].split("# END postmaster location")[0]
    block = block.split("\n", 1)[1]  # the rest of the BEGIN comment line
    # The test listens on plain http; pretend nginx terminated TLS, as in production.
    return block.replace("X-Forwarded-Proto $scheme", "X-Forwarded-Proto https")


def nginx_conf(tmp: Path, port: int, upstream_port: int) -> str:
    temp = "\n".join(
        f"    {name}_temp_path {tmp}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    access_log {tmp}/access.log;
{temp}
    upstream postmaster_web {{ server 127.0.0.1:{upstream_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
{location_block()}
    }}
}}
"""


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} did not open:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    if not os.path.exists(NGINX):
        from tests.conftest import require

        require(False, "this test needs Debian's nginx (scripts/install-system-deps.sh test)")
    env = dict(os.environ)
    env.update(
        FLASK_APP="wsgi",
        POSTMASTER_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'postmaster.sqlite'}",
        POSTMASTER_SECRET_KEY="proxy-test-secret",
        POSTMASTER_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        POSTMASTER_TRUSTED_PROXIES="1",
        POSTMASTER_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    setup = subprocess.run(
        [sys.executable, "-m", "flask", "setup"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr

    web_port, proxy_port = free_port(), free_port()
    web_log = tmp_path / "gunicorn.log"
    gunicorn = [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{web_port}"]
    web = subprocess.Popen(
        [*gunicorn, "--workers", "2", "wsgi:app"],
        cwd=REPO, env=env, stdout=open(web_log, "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    conf = nginx_dir / "nginx.conf"
    conf.write_text(nginx_conf(nginx_dir, proxy_port, web_port))
    error_log = nginx_dir / "error.log"
    proxy = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(nginx_dir), "-e", str(error_log),
         "-g", f"daemon off; pid {nginx_dir / 'nginx.pid'};"],
        stdout=subprocess.DEVNULL, stderr=open(nginx_dir / "stderr.log", "wb"),
    )  # fmt: skip
    try:
        wait_for_port(web_port, web, web_log)
        wait_for_port(proxy_port, proxy, error_log)
        host = f"127.0.0.1:{proxy_port}"
        yield Site(f"http://{host}/postmaster/", host, [web_log, error_log])
    finally:
        stop(proxy)
        stop(web)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, html
    return match.group(1)


def assert_under_prefix(response: requests.Response) -> str:
    """A redirect that stays under /postmaster/ on the proxy's host (relative or absolute)."""
    assert response.status_code in (301, 302, 303), response.text
    location = response.headers["Location"]
    parts = urlsplit(location)
    assert parts.path.startswith("/postmaster/"), location
    if parts.netloc:
        assert parts.netloc == response.url.split("/")[2] and parts.scheme == "https", location
    return location


def test_behind_nginx_with_a_path_prefix(site):
    http = requests.Session()
    # A browser on the https site sends an https Referer, which Flask-WTF's CSRF check
    # compares with the external host (as the app sees it through the proxy).
    http.headers["Referer"] = f"https://{site.host}/postmaster/"
    go = site.base.rstrip("/")  # http://host:port/postmaster

    def follow(location: str) -> str:
        return f"http://{site.host}{urlsplit(location).path}" + (
            f"?{urlsplit(location).query}" if urlsplit(location).query else ""
        )

    # nginx adds the trailing slash; the app sends an anonymous visitor to its sign-in page.
    bare = http.get(go, allow_redirects=False)
    assert bare.status_code == 301 and bare.headers["Location"].endswith("/postmaster/")
    start = http.get(site.base, allow_redirects=False)
    login_url = assert_under_prefix(start)
    assert urlsplit(login_url).path == "/postmaster/login"

    # Sign in with the CSRF token of the form; "next" brings us back under the prefix.
    login_page = http.get(follow(login_url))
    assert login_page.status_code == 200
    assert 'href="/postmaster/static/style.css"' in login_page.text
    signed_in = http.post(
        follow(login_url),
        data={"csrf_token": csrf_token(login_page.text), "username": "admin",
              "password": ADMIN_PASSWORD},
        allow_redirects=False,
    )  # fmt: skip
    target = assert_under_prefix(signed_in)
    listing = http.get(follow(target))
    assert listing.status_code == 200 and "Mail Account Management" in listing.text
    assert 'href="/postmaster/mail-accounts/add"' in listing.text
    assert 'action="/postmaster/logout"' in listing.text

    # Static files through the proxy.
    for asset in re.findall(r'(?:href|src)="(/postmaster/static/[^"]+)"', listing.text):
        response = http.get(f"http://{site.host}{asset}")
        assert response.status_code == 200, asset
    css = http.get(f"{site.base}static/style.css")
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]

    # Add a mail account through the real form; the redirect stays under the prefix.
    form = http.get(f"{site.base}mail-accounts/add")
    assert form.status_code == 200
    saved = http.post(
        f"{site.base}mail-accounts/add",
        data={
            "csrf_token": csrf_token(form.text), "type": "IMAPS", "username": "team@example.test",
            "password": "secret", "host": "imap.example.test", "port": "", "folder": "",
            "trusted": "0", "dispatch": "to", "queue_id": "", "validity": "valid",
            "comment": "", "verify_tls": "y", "after_fetch": "delete", "move_folder": "",
            "fetch_interval_minutes": "", "submit": "Save",
        },
        allow_redirects=False,
    )  # fmt: skip
    listing_url = assert_under_prefix(saved)
    listing = http.get(follow(listing_url))
    assert "team@example.test" in listing.text and "imap.example.test" in listing.text
    assert "No scheduler is alive" in listing.text  # none runs in this test

    # The OAuth2 redirect URI uses the external scheme, host and prefix.
    profiles = http.get(f"{site.base}oauth2-profiles/")
    assert profiles.status_code == 200
    expected = f"https://{site.host}/postmaster/oauth2/callback"
    assert f'value="{expected}"' in profiles.text, profiles.text

    # The status page and the health check work under the prefix too.
    assert http.get(f"{site.base}status/").status_code == 200
    assert http.get(f"{site.base}healthz").json() == {"status": "ok"}
