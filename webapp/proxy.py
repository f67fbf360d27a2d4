"""Running behind a reverse proxy (nginx, see docs/deploy/).

With POSTMASTER_TRUSTED_PROXIES=N the app trusts the last N hops of X-Forwarded-For/-Proto/
-Host/-Port/-Prefix, so redirects, static URLs, links and the OAuth2 redirect URI use the
external scheme, host and path prefix. With 0 (the default) the headers are ignored: a client
talking to the app directly must not be able to choose the host or scheme of our URLs.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app: Flask) -> None:
    hops = int(app.config.get("TRUSTED_PROXIES") or 0)
    if hops <= 0:
        return
    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
        app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
    )
