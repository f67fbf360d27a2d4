"""Security headers on every response.

CSP form-action: forms may post to this site only, plus the identity providers' origins. The
OAuth2 consent posts to our own URL, which redirects to the provider's authorize URL, and
Chromium applies form-action to redirects after a form submission too; so the origins of the
configured providers (the presets' and every profile's authorize URL) are allowed, and no other
site is.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, g
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db
from .models import OAuth2Profile
from .oauth.providers import PROVIDERS, endpoints_for

BASE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'self'"
)


def _origin(url: str) -> str | None:
    """scheme://host[:port] of an http(s) URL, or None."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or any(c in host for c in " ;,'\""):
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def identity_provider_origins() -> list[str]:
    """The origins the consent may redirect a form submission to, once per request."""
    cached = g.get("_idp_origins")
    if cached is not None:
        return list(cached)
    urls = [p.authorize_url for p in PROVIDERS.values() if p.authorize_url]
    try:
        profiles = db.session.query(OAuth2Profile).all()
    except SQLAlchemyError:
        db.session.rollback()  # an error page must still get its headers
        profiles = []
    for profile in profiles:
        try:
            urls.append(endpoints_for(profile).authorize_url)
        except (KeyError, ValueError):  # a profile of a provider this version does not know
            continue
    origins = sorted({o for o in map(_origin, urls) if o})
    g._idp_origins = origins
    return origins


def content_security_policy(html: bool = True) -> str:
    """The policy; only an HTML page has forms, so only its form-action needs the providers."""
    origins = identity_provider_origins() if html else []
    return " ".join([f"{BASE_POLICY}; form-action 'self'", *origins])


def add_security_headers(response: Response) -> Response:
    if "Content-Security-Policy" not in response.headers:
        html = response.mimetype == "text/html"
        response.headers["Content-Security-Policy"] = content_security_policy(html)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
