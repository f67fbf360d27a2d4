"""A local identity provider that speaks the Microsoft identity platform v2 endpoints, for tests.

It runs a real HTTP server on a free loopback port in a daemon thread, so our app, Authlib and a
headless browser talk to it over HTTP while tests steer it through Python methods.
"""

import base64
import html
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlencode

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from .app_only import AppOnlyMixin
from .jwt_rs256 import SigningKey, s256_challenge, shared_key, verify_jwt

OUTLOOK_RESOURCE = "https://outlook.office.com"
GRAPH_RESOURCE = "https://graph.microsoft.com"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
# Tenant aliases a single-tenant app may not use (AADSTS50194).
MULTI_TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})
AUTH_PARAMS = (
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "nonce",
    "prompt",
    "login_hint",
)


class AadError(Exception):
    """An error answered the way Microsoft Entra ID answers it."""

    def __init__(self, error: str, code: int, text: str, status: int = 400) -> None:
        super().__init__(f"AADSTS{code}: {text}")
        self.error = error
        self.code = code
        self.text = text
        self.status = status


@dataclass
class _Tenant:
    tenant_id: str
    domains: set[str] = field(default_factory=set)


@dataclass
class _App:
    tenant_id: str
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    secret_expired: bool = False


@dataclass
class _User:
    tenant_id: str
    username: str
    password: str
    display_name: str
    oid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class _Code:
    tenant_id: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: list[str]
    username: str
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class _RefreshToken:
    tenant_id: str
    client_id: str
    username: str
    scopes: list[str]
    issued_at: float
    expires_at: float
    used: bool = False
    revoked: bool = False


def _split_scopes(scope: str) -> list[str]:
    return [s for s in scope.split(" ") if s]


def _resource_and_scp(scopes: list[str]) -> tuple[str, str]:
    """Return the token audience and the scp claim for requested scopes."""
    prefix = OUTLOOK_RESOURCE + "/"
    resource_scopes = [s for s in scopes if s not in OIDC_SCOPES]
    if resource_scopes and all(s.startswith(prefix) for s in resource_scopes):
        return OUTLOOK_RESOURCE, " ".join(s.removeprefix(prefix) for s in resource_scopes)
    # Anything else (bare names like "IMAP.AccessAsUser.All", User.Read) means Graph, as at
    # Microsoft; mail servers refuse such a token.
    graph_scopes = [s.removeprefix(GRAPH_RESOURCE + "/") for s in resource_scopes]
    return GRAPH_RESOURCE, " ".join(graph_scopes or ["User.Read"])


def _add_query(url: str, params: dict[str, str], separator: str = "?") -> str:
    if separator == "?" and "?" in url:
        separator = "&"
    return url + separator + urlencode(params)


class LocalIdentityProvider(AppOnlyMixin):
    """Microsoft identity platform v2 look-alike: authorize, token, keys; steered from tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.base_url = ""
        self.access_token_lifetime = 3600
        self.refresh_token_lifetime = 90 * 24 * 3600
        self.code_lifetime = 600
        self.token_requests: list[dict] = []
        self.authorize_requests: list[dict] = []
        self._trusted_key: SigningKey = shared_key("trusted")
        # Graph tokens are signed with a key mail servers never get, as in reality.
        self._graph_key: SigningKey = shared_key("graph")
        self._tenants: dict[str, _Tenant] = {}
        self._apps: dict[tuple[str, str], _App] = {}
        self._users: dict[str, _User] = {}
        self._codes: dict[str, _Code] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._upn_overrides: dict[str, str] = {}
        self._revoked_at: dict[str, float] = {}
        # Access token ids (uti) per signed-in user, so introspection can see revocation.
        self._access_token_ids: dict[str, str] = {}
        self._revoked_utis: set[str] = set()
        self._auto_approve_user: str | None = None
        # Claims forced into every id_token (None removes the claim): a misbehaving provider.
        self._id_token_overrides: dict[str, object] = {}
        self._fail_count = 0
        self._fail_status = 503
        # One lock for all state: requests are few and tests must see consistent state.
        self._lock = threading.RLock()
        self._server = None
        self._thread: threading.Thread | None = None
        self._url_map = Map(
            [
                Rule(
                    "/<tenant>/oauth2/v2.0/authorize", endpoint="authorize", methods=["GET", "POST"]
                ),
                Rule("/<tenant>/oauth2/v2.0/token", endpoint="token", methods=["POST"]),
                Rule("/<tenant>/discovery/v2.0/keys", endpoint="keys", methods=["GET"]),
                Rule(
                    "/<tenant>/v2.0/.well-known/openid-configuration",
                    endpoint="openid_configuration",
                    methods=["GET"],
                ),
                Rule("/introspect", endpoint="introspect", methods=["POST"]),
                Rule("/app-mailbox-check", endpoint="app_mailbox_check", methods=["POST"]),
            ]
        )
        self._init_app_only()

    # ----- lifecycle -----

    def start(self) -> None:
        """Start serving on a free loopback port; sets base_url."""
        self._server = make_server(self.host, self.port, self._wsgi_app, threaded=True)
        self.port = self._server.server_port
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            # A short poll interval keeps stop() fast; tests start one server each.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-idp",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "LocalIdentityProvider":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- keys -----

    @property
    def kid(self) -> str:
        """Key id of the key that signs mail (outlook) access tokens."""
        return self._trusted_key.kid

    @property
    def public_key_pem(self) -> str:
        """PEM public key that mail servers trust."""
        return self._trusted_key.public_key_pem

    @property
    def untrusted_kid(self) -> str:
        """Key id of the key that signs Graph tokens (mail servers must not trust it)."""
        return self._graph_key.kid

    @property
    def untrusted_public_key_pem(self) -> str:
        """PEM public key of the Graph signing key."""
        return self._graph_key.public_key_pem

    # ----- URLs -----

    def authorize_url(self, tenant: str) -> str:
        """Authorization endpoint for a tenant (GUID or domain)."""
        return f"{self.base_url}/{tenant}/oauth2/v2.0/authorize"

    def token_url(self, tenant: str) -> str:
        """Token endpoint for a tenant (GUID or domain)."""
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"

    def jwks_url(self, tenant: str) -> str:
        """JWKS endpoint for a tenant."""
        return f"{self.base_url}/{tenant}/discovery/v2.0/keys"

    @property
    def introspection_url(self) -> str:
        """RFC 7662 style endpoint for Dovecot's introspection_mode = post."""
        return f"{self.base_url}/introspect"

    # ----- directory -----

    def add_tenant(self, tenant_id: str, domain: str | None = None) -> None:
        """Register a tenant GUID, optionally with a verified domain usable in URLs."""
        with self._lock:
            tenant = self._tenants.setdefault(tenant_id.lower(), _Tenant(tenant_id.lower()))
            if domain:
                tenant.domains.add(domain.lower())

    def add_app(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        redirect_uris: list[str],
        secret_expired: bool = False,
    ) -> None:
        """Register (or replace) a single-tenant web app."""
        with self._lock:
            tid = self._tenant_or_raise(tenant_id)
            self._apps[(tid, client_id)] = _App(
                tid, client_id, client_secret, list(redirect_uris), secret_expired
            )

    def set_secret_expired(self, tenant_id: str, client_id: str, expired: bool = True) -> None:
        """Mark an app's client secret as expired (AADSTS7000222) or valid again."""
        with self._lock:
            self._apps[(self._tenant_or_raise(tenant_id), client_id)].secret_expired = expired

    def add_user(
        self, tenant_id: str, username: str, password: str, display_name: str | None = None
    ) -> None:
        """Register a user (usernames are unique across tenants, case-insensitive)."""
        with self._lock:
            tid = self._tenant_or_raise(tenant_id)
            name = display_name or username.split("@")[0].replace(".", " ").title()
            self._users[username.lower()] = _User(tid, username, password, name)

    def set_token_upn(self, user: str, upn: str | None) -> None:
        """Make access tokens for user carry upn instead (None removes the override)."""
        with self._lock:
            if upn is None:
                self._upn_overrides.pop(user.lower(), None)
            else:
                self._upn_overrides[user.lower()] = upn

    # ----- switches -----

    def override_id_token_claims(self, **claims: object) -> None:
        """Force claims into every id_token from now on; a None value drops the claim
        (e.g. iss="https://evil.example/...", nonce=None). No arguments: back to normal."""
        with self._lock:
            self._id_token_overrides = dict(claims)

    def auto_approve_as(self, username: str | None) -> None:
        """Make authorize GETs redirect at once as if username signed in (None: show the form)."""
        with self._lock:
            self._auto_approve_user = username

    def revoke_user_sessions(self, username: str) -> None:
        """Revoke the user's refresh tokens (AADSTS50173) and, for introspection, access tokens."""
        with self._lock:
            self._revoked_at[username.lower()] = time.time()
            self._revoked_utis.update(
                uti for uti, owner in self._access_token_ids.items() if owner == username.lower()
            )
            for token in self._refresh_tokens.values():
                if token.username.lower() == username.lower():
                    token.revoked = True

    def expire_refresh_tokens(self) -> None:
        """Expire every refresh token issued so far (AADSTS700082)."""
        with self._lock:
            for token in self._refresh_tokens.values():
                token.expires_at = 0

    def expire_authorization_codes(self) -> None:
        """Expire every authorization code issued so far (AADSTS70008)."""
        with self._lock:
            for code in self._codes.values():
                code.expires_at = 0

    def fail_token_requests(self, count: int, status: int = 503) -> None:
        """Answer the next count token requests with status (transient failure)."""
        with self._lock:
            self._fail_count = count
            self._fail_status = status

    # ----- tokens -----

    def mint_access_token(
        self, upn: str, lifetime: int = 3600, trusted: bool = True, **claims: object
    ) -> str:
        """Return an outlook access token for upn without a flow; claims override defaults."""
        with self._lock:
            user = self._users.get(upn.lower())
            tenant_id = user.tenant_id if user else next(iter(self._tenants), str(uuid.UUID(int=0)))
            base = self._access_claims(
                tenant_id=tenant_id,
                client_id=str(uuid.UUID(int=1)),
                upn=upn,
                user=user,
                audience=OUTLOOK_RESOURCE,
                scp="IMAP.AccessAsUser.All POP.AccessAsUser.All",
                lifetime=lifetime,
            )
        base.update(claims)
        return (self._trusted_key if trusted else self._graph_key).sign(base)

    def issued_refresh_tokens(self, username: str) -> list[str]:
        """Refresh tokens issued for username that still work, oldest first."""
        with self._lock:
            return [
                value
                for value, token in self._refresh_tokens.items()
                if token.username.lower() == username.lower()
                and not (token.used or token.revoked or token.expires_at <= time.time())
            ]

    # ----- internals: directory lookups -----

    def _tenant_or_raise(self, tenant: str) -> str:
        """Return the tenant GUID for a GUID or domain in a URL, or raise AadError."""
        key = tenant.lower()
        if key in self._tenants:
            return key
        for tenant_obj in self._tenants.values():
            if key in tenant_obj.domains:
                return tenant_obj.tenant_id
        if key in MULTI_TENANT_ALIASES:
            raise AadError(
                "invalid_request",
                50194,
                "Application is not configured as a multi-tenant application. Usage of the "
                f"/{tenant} endpoint is not supported for such applications created after "
                "'10/15/2018'. Use a tenant-specific endpoint or configure the application to "
                "be multi-tenant.",
            )
        raise AadError(
            "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud. Check with your subscription "
            "administrator, this may happen if there are no active subscriptions for the tenant.",
        )

    def _app_or_raise(self, tenant_id: str, client_id: str, error: str) -> _App:
        app = self._apps.get((tenant_id, client_id))
        if app is None:
            raise AadError(
                error,
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant_id}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant. "
                "You may have sent your authentication request to the wrong tenant.",
            )
        return app

    # ----- internals: HTTP -----

    def _wsgi_app(self, environ: dict, start_response: object) -> object:
        request = Request(environ)
        adapter = self._url_map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
        except HTTPException as exc:
            return exc(environ, start_response)
        with self._lock:
            response = getattr(self, "_handle_" + endpoint)(request, **args)
        return response(environ, start_response)

    @staticmethod
    def _error_fields(err: AadError) -> dict:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        description = (
            f"AADSTS{err.code}: {err.text}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        )
        return {
            "error": err.error,
            "error_description": description,
            "error_codes": [err.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={err.code}",
        }

    def _json_error(self, err: AadError) -> Response:
        return self._json(self._error_fields(err), status=err.status)

    @staticmethod
    def _json(body: dict, status: int = 200) -> Response:
        return Response(
            json.dumps(body),
            status=status,
            content_type="application/json; charset=utf-8",
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    @staticmethod
    def _html(title: str, body: str, status: int = 200) -> Response:
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
        )
        return Response(page, status=status, content_type="text/html; charset=utf-8")

    def _error_page(self, err: AadError) -> Response:
        # Microsoft shows these on its own page because the redirect URI cannot be trusted yet.
        fields = self._error_fields(err)
        body = (
            "<h1>Sign in</h1><h2 id='errorTitle'>Sorry, but we're having trouble signing you "
            f"in.</h2><p id='errorCode'>AADSTS{err.code}</p>"
            f"<p id='errorDescription'>AADSTS{err.code}: {html.escape(err.text)}</p>"
            f"<p>Trace ID: {fields['trace_id']}<br>Correlation ID: {fields['correlation_id']}"
            f"<br>Timestamp: {fields['timestamp']}</p>"
        )
        return self._html("Sign in to your account", body, status=400)

    def _redirect(self, redirect_uri: str, response_mode: str, params: dict[str, str]) -> Response:
        if response_mode == "form_post":
            inputs = "".join(
                f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>"
                for k, v in params.items()
            )
            body = (
                f"<form id='response' method='post' action='{html.escape(redirect_uri)}'>"
                f"{inputs}<noscript><button type='submit'>Continue</button></noscript></form>"
                "<script>document.getElementById('response').submit();</script>"
            )
            return self._html("Working...", body)
        separator = "#" if response_mode == "fragment" else "?"
        return Response(
            status=302, headers={"Location": _add_query(redirect_uri, params, separator)}
        )

    def _redirect_error(self, params: dict[str, str], err: AadError) -> Response:
        fields = self._error_fields(err)
        result = {"error": err.error, "error_description": fields["error_description"]}
        if params.get("state"):
            result["state"] = params["state"]
        return self._redirect(params["redirect_uri"], params.get("response_mode", ""), result)

    # ----- authorize endpoint -----

    def _handle_authorize(self, request: Request, tenant: str) -> Response:
        source = request.form if request.method == "POST" else request.args
        params = {name: source.get(name, "") for name in AUTH_PARAMS}
        self.authorize_requests.append({"method": request.method, "tenant": tenant, **params})
        try:
            tenant_id = self._tenant_or_raise(tenant)
            app = self._app_or_raise(tenant_id, params["client_id"], "unauthorized_client")
            if params["redirect_uri"] not in app.redirect_uris:
                raise AadError(
                    "invalid_request",
                    50011,
                    f"The redirect URI '{params['redirect_uri']}' specified in the request does "
                    f"not match the redirect URIs configured for the application "
                    f"'{app.client_id}'. Make sure the redirect URI sent in the request matches "
                    "one added to your application in the Azure portal.",
                )
        except AadError as err:
            return self._error_page(err)
        try:
            self._check_authorize_params(params)
        except AadError as err:
            return self._redirect_error(params, err)

        if request.method == "POST":
            return self._handle_sign_in(request, tenant, tenant_id, app, params)
        if self._auto_approve_user is not None:
            user = self._users.get(self._auto_approve_user.lower())
            if user is None:
                raise ValueError(f"auto_approve_as: unknown user {self._auto_approve_user}")
            return self._approve(tenant_id, app, user, params)
        if params["prompt"] == "none":
            return self._redirect_error(
                params,
                AadError(
                    "login_required",
                    50058,
                    "A silent sign-in request was sent but no user is signed in.",
                ),
            )
        return self._sign_in_page(tenant, params, params["login_hint"])

    @staticmethod
    def _check_authorize_params(params: dict[str, str]) -> None:
        if params["response_type"] != "code":
            raise AadError(
                "unsupported_response_type",
                700054,
                f"response_type '{params['response_type']}' is not enabled for the application.",
            )
        if not params["scope"]:
            raise AadError(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        if not params["code_challenge"] or params["code_challenge_method"] != "S256":
            raise AadError(
                "invalid_request",
                9002325,
                "Proof Key for Code Exchange is required: send code_challenge with "
                "code_challenge_method=S256.",
            )

    def _sign_in_page(
        self, tenant: str, params: dict[str, str], username: str, message: str = ""
    ) -> Response:
        hidden = "".join(
            f"<input type='hidden' name='{name}' value='{html.escape(params[name])}'>"
            for name in AUTH_PARAMS
            if name != "login_hint" and params[name]
        )
        error = (
            f"<div id='usernameError' role='alert'>{html.escape(message)}</div>" if message else ""
        )
        # Sign in comes first so that pressing Enter in a field submits it, not Cancel.
        body = (
            "<h1 id='loginHeader'>Sign in</h1>"
            f"{error}"
            f"<form name='f1' id='i0281' method='post' "
            f"action='/{html.escape(tenant)}/oauth2/v2.0/authorize'>{hidden}"
            "<label for='i0116'>Email, phone, or Skype</label>"
            f"<input type='email' name='loginfmt' id='i0116' value='{html.escape(username)}'>"
            "<label for='i0118'>Password</label>"
            "<input type='password' name='passwd' id='i0118'>"
            "<input type='submit' name='action' value='Sign in' id='idSIButton9'>"
            "<input type='submit' name='action' value='Cancel' id='idBtn_Back'>"
            "</form>"
        )
        return self._html("Sign in to your account", body)

    def _handle_sign_in(
        self, request: Request, tenant: str, tenant_id: str, app: _App, params: dict[str, str]
    ) -> Response:
        if request.form.get("action") == "Cancel":
            return self._redirect_error(
                params,
                AadError(
                    "access_denied",
                    65004,
                    "User declined to consent to access the app.",
                ),
            )
        username = request.form.get("loginfmt", "").strip()
        user = self._users.get(username.lower())
        if user is None:
            return self._sign_in_page(
                tenant,
                params,
                username,
                "This username may be incorrect. Make sure you typed it correctly. "
                "Otherwise, contact your admin.",
            )
        password = request.form.get("passwd", "").encode()
        if not secrets.compare_digest(password, user.password.encode()):
            return self._sign_in_page(
                tenant,
                params,
                username,
                "Your account or password is incorrect. If you don't remember your password, "
                "reset it now.",
            )
        return self._approve(tenant_id, app, user, params)

    def _approve(self, tenant_id: str, app: _App, user: _User, params: dict[str, str]) -> Response:
        if user.tenant_id != tenant_id:
            return self._redirect_error(
                params,
                AadError(
                    "access_denied",
                    50020,
                    f"User account '{user.username}' from identity provider "
                    f"'https://sts.windows.net/{user.tenant_id}/' does not exist in tenant "
                    f"'{tenant_id}' and cannot access the application '{app.client_id}' in that "
                    "tenant. The account needs to be added as an external user in the tenant "
                    "first. Sign out and sign in again with a different Azure Active Directory "
                    "user account.",
                ),
            )
        code = secrets.token_urlsafe(48)
        self._codes[code] = _Code(
            tenant_id=tenant_id,
            client_id=app.client_id,
            redirect_uri=params["redirect_uri"],
            code_challenge=params["code_challenge"],
            scopes=_split_scopes(params["scope"]),
            username=user.username,
            nonce=params["nonce"] or None,
            expires_at=time.time() + self.code_lifetime,
        )
        result = {"code": code}
        if params["state"]:
            result["state"] = params["state"]
        result["session_state"] = str(uuid.uuid4())
        return self._redirect(params["redirect_uri"], params["response_mode"], result)

    # ----- token endpoint -----

    def _handle_token(self, request: Request, tenant: str) -> Response:
        entry: dict = {
            "grant_type": request.form.get("grant_type"),
            "tenant": tenant,
            "client_id": None,
            "auth_method": None,
            "status": None,
            "error": None,
            "error_code": None,
        }
        self.token_requests.append(entry)
        if self._fail_count > 0:
            self._fail_count -= 1
            entry["status"] = self._fail_status
            err = AadError(
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
                status=self._fail_status,
            )
            entry["error"], entry["error_code"] = err.error, err.code
            return self._json_error(err)
        try:
            tenant_id = self._tenant_or_raise(tenant)
            app = self._authenticate_client(request, tenant_id, entry)
            grant_type = request.form.get("grant_type", "")
            if grant_type == "authorization_code":
                body = self._redeem_code(request, tenant_id, app)
            elif grant_type == "refresh_token":
                body = self._redeem_refresh_token(request, tenant_id, app)
            elif grant_type == "client_credentials":
                body = self._client_credentials(request, tenant_id, app)
            else:
                raise AadError(
                    "unsupported_grant_type",
                    70003,
                    f"The app requested an unsupported grant type '{grant_type}'.",
                )
        except AadError as err:
            entry.update(status=err.status, error=err.error, error_code=err.code)
            return self._json_error(err)
        entry["status"] = 200
        return self._json(body)

    def _authenticate_client(self, request: Request, tenant_id: str, entry: dict) -> _App:
        if request.form.get("client_assertion") or request.form.get("client_assertion_type"):
            return self._authenticate_assertion(request, tenant_id, entry)
        client_id = request.form.get("client_id", "")
        client_secret = request.form.get("client_secret")
        method = "client_secret_post" if client_secret is not None else "none"
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode("utf-8")
            except ValueError as exc:
                raise AadError(
                    "invalid_request", 900023, "Malformed Authorization header.", 400
                ) from exc
            client_id, _, client_secret = decoded.partition(":")
            method = "client_secret_basic"
        entry.update(client_id=client_id, auth_method=method)
        if not client_id:
            raise AadError(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        app = self._app_or_raise(tenant_id, client_id, "unauthorized_client")
        if not client_secret:
            raise AadError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
                status=401,
            )
        # RFC 6749 says Basic credentials are form-url-encoded, Authlib sends them raw: take both.
        if client_secret != app.client_secret and unquote(client_secret) != app.client_secret:
            raise AadError(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
                status=401,
            )
        if app.secret_expired:
            raise AadError(
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.client_id}' are expired. Visit "
                "the Azure portal to create new keys for your app: "
                "https://aka.ms/NewClientSecret, or consider using certificate credentials for "
                "added security: https://aka.ms/certCreds.",
                status=401,
            )
        return app

    def _redeem_code(self, request: Request, tenant_id: str, app: _App) -> dict:
        value = request.form.get("code", "")
        if not value:
            raise AadError(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'code'.",
            )
        code = self._codes.get(value)
        if code is None:
            raise AadError(
                "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
            )
        if code.used:
            raise AadError(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                "code or use an existing refresh token.",
            )
        # One attempt per code, successful or not, so a failed redemption cannot be retried.
        code.used = True
        if code.expires_at <= time.time():
            raise AadError(
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to "
                "inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        if code.tenant_id != tenant_id or code.client_id != app.client_id:
            raise AadError(
                "invalid_grant",
                70000,
                "The provided value for the 'code' parameter is not valid. The code was issued "
                "to another application or tenant.",
            )
        redirect_uri = request.form.get("redirect_uri", "")
        if redirect_uri != code.redirect_uri:
            raise AadError(
                "invalid_grant",
                500112,
                f"The reply address '{redirect_uri}' does not match the reply address "
                f"'{code.redirect_uri}' provided when requesting Authorization code.",
            )
        verifier = request.form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(
            s256_challenge(verifier), code.code_challenge
        ):
            raise AadError(
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the "
                "authorization request.",
            )
        user = self._users[code.username.lower()]
        return self._issue_tokens(tenant_id, app, user, code.scopes, code.scopes, nonce=code.nonce)

    def _redeem_refresh_token(self, request: Request, tenant_id: str, app: _App) -> dict:
        value = request.form.get("refresh_token", "")
        token = self._refresh_tokens.get(value)
        if token is None or token.tenant_id != tenant_id or token.client_id != app.client_id:
            raise AadError(
                "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
            )
        if token.revoked:
            issued = datetime.fromtimestamp(token.issued_at, UTC).isoformat()
            valid_from = datetime.fromtimestamp(
                self._revoked_at.get(token.username.lower(), time.time()), UTC
            ).isoformat()
            raise AadError(
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is "
                "needed. The user might have changed or reset their password. The grant was "
                f"issued on '{issued}' and the TokensValidFrom date (before which tokens are not "
                f"valid) for this user is '{valid_from}'.",
            )
        if token.expires_at <= time.time():
            raise AadError(
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity. The token was issued on "
                f"'{datetime.fromtimestamp(token.issued_at, UTC).isoformat()}' and was inactive "
                "for 90.00:00:00.",
            )
        if token.used:
            # Rotation: a refresh token works once; the client must keep the new one.
            raise AadError(
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to "
                "inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        scopes = token.scopes
        requested = _split_scopes(request.form.get("scope", ""))
        if requested:
            missing = [s for s in requested if s not in token.scopes and s not in OIDC_SCOPES]
            if missing:
                raise AadError(
                    "invalid_grant",
                    65001,
                    f"The user or administrator has not consented to use the application with ID "
                    f"'{app.client_id}'. Send an interactive authorization request for this user "
                    "and resource.",
                )
            scopes = requested
        token.used = True
        user = self._users[token.username.lower()]
        return self._issue_tokens(tenant_id, app, user, scopes, token.scopes, nonce=None)

    def _issue_tokens(
        self,
        tenant_id: str,
        app: _App,
        user: _User,
        scopes: list[str],
        granted: list[str],
        nonce: str | None,
    ) -> dict:
        audience, scp = _resource_and_scp(scopes)
        upn = self._upn_overrides.get(user.username.lower(), user.username)
        claims = self._access_claims(
            tenant_id, app.client_id, upn, user, audience, scp, self.access_token_lifetime
        )
        key = self._trusted_key if audience == OUTLOOK_RESOURCE else self._graph_key
        body = {
            "token_type": "Bearer",
            "scope": " ".join(scopes),
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": key.sign(claims),
        }
        if "offline_access" in granted:
            now = time.time()
            value = "1.A" + secrets.token_urlsafe(64)
            self._refresh_tokens[value] = _RefreshToken(
                tenant_id=tenant_id,
                client_id=app.client_id,
                username=user.username,
                scopes=list(granted),
                issued_at=now,
                expires_at=now + self.refresh_token_lifetime,
            )
            body["refresh_token"] = value
        if "openid" in scopes:
            body["id_token"] = self._trusted_key.sign(
                self._id_claims(tenant_id, app.client_id, user, nonce)
            )
        return body

    def _access_claims(
        self,
        tenant_id: str,
        client_id: str,
        upn: str,
        user: _User | None,
        audience: str,
        scp: str,
        lifetime: int,
    ) -> dict:
        # Plain strings and numbers only: Dovecot 2.3 rejects JSON arrays in claims. No "azp":
        # v1 outlook tokens carry "appid", and Dovecot would look the key up under the azp.
        now = int(time.time())
        oid = user.oid if user else str(uuid.uuid5(uuid.NAMESPACE_URL, upn))
        uti = secrets.token_urlsafe(16)
        self._access_token_ids[uti] = (user.username if user else upn).lower()
        return {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "appid": client_id,
            "appidacr": "1",
            "name": user.display_name if user else upn,
            "oid": oid,
            "scp": scp,
            "sub": oid,
            "tid": tenant_id,
            "unique_name": upn,
            "upn": upn,
            "uti": uti,
            "ver": "1.0",
        }

    def _id_claims(self, tenant_id: str, client_id: str, user: _User, nonce: str | None) -> dict:
        now = int(time.time())
        claims: dict = {
            "aud": client_id,
            "iss": f"https://login.microsoftonline.com/{tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": user.display_name,
            "oid": user.oid,
            "preferred_username": user.username,
            "email": user.username,
            "sub": user.oid,
            "tid": tenant_id,
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        for name, value in self._id_token_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    # ----- discovery and introspection -----

    def _handle_keys(self, request: Request, tenant: str) -> Response:
        # Publish only the trusted key: Graph tokens are not meant to be validated by us.
        return self._json({"keys": [self._trusted_key.jwk()]})

    def _handle_openid_configuration(self, request: Request, tenant: str) -> Response:
        try:
            tenant_id = self._tenant_or_raise(tenant)
        except AadError as err:
            return self._json_error(err)
        return self._json(
            {
                "issuer": f"https://login.microsoftonline.com/{tenant_id}/v2.0",
                "authorization_endpoint": self.authorize_url(tenant),
                "token_endpoint": self.token_url(tenant),
                "jwks_uri": self.jwks_url(tenant),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                    "private_key_jwt",
                ],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    def _handle_introspect(self, request: Request) -> Response:
        """Answer Dovecot's introspection_mode = post; unlike local JWT checks, sees revocation."""
        token = request.form.get("token", "")
        try:
            claims = verify_jwt(token, self.public_key_pem)
        except ValueError:
            return self._json({"active": False})
        active = claims.get("exp", 0) > time.time() and claims.get("uti") not in self._revoked_utis
        if not active:
            return self._json({"active": False})
        return self._json({"active": True, **claims})
