"""A Google-shaped identity provider for tests: Google's OAuth2 endpoint paths, scopes,
id_token claims, and Google's ways of refusing.

- `/o/oauth2/v2/auth`: the consent. An unknown client is an error page (Error 401:
  invalid_client), a redirect URI that is not registered too (Error 400:
  redirect_uri_mismatch): Google never redirects to an unregistered URI. Other problems and
  a declined consent go back to the redirect URI as `error=...`.
- `/token`: JSON errors as Google sends them: `invalid_client` ("Unauthorized"),
  `invalid_grant` ("Bad Request" for a code, "Token has been expired or revoked." for a
  refresh token), `redirect_uri_mismatch`.
- `/oauth2/v3/certs`: the key set that signs id_tokens.

A refresh token comes back only with `access_type=offline`, and (as at Google) only on the
first consent of a user to a client unless `prompt=consent` asks again. Refresh tokens do not
rotate. Access tokens are JWTs signed with the same key as the Microsoft look-alike's, with the
mailbox in `upn`, so the test Dovecot trusts them for XOAUTH2 as it does Microsoft's.
"""

from __future__ import annotations

import base64
import html
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlencode

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from .jwt_rs256 import SigningKey, s256_challenge, shared_key
from .server import LocalIdentityProvider

MAIL_SCOPE = "https://mail.google.com/"
KNOWN_SCOPES = frozenset({MAIL_SCOPE, "openid", "email", "profile"})
ISSUER = "https://accounts.google.com"
AUTH_PARAMS = (
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "prompt",
    "login_hint",
    "access_type",
)
EXPIRED_OR_REVOKED = "Token has been expired or revoked."


class GoogleError(Exception):
    """An error answered the way Google's OAuth2 endpoints answer it."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


@dataclass
class _Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class _User:
    email: str
    password: str
    email_verified: bool
    sub: str


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: list[str]
    email: str
    nonce: str | None
    offline: bool
    expires_at: float
    used: bool = False


@dataclass
class _RefreshToken:
    client_id: str
    email: str
    scopes: list[str]
    revoked: bool = False


class LocalGoogleProvider:
    """Google's OAuth2 endpoints on a free loopback port; steered from tests."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.base_url = ""
        self.issuer = ISSUER  # Google's id_tokens also say "accounts.google.com"
        self.access_token_lifetime = 3599
        self.authorize_requests: list[dict] = []
        self.token_requests: list[dict] = []
        # The key Dovecot trusts (shared with the Microsoft look-alike) signs access tokens.
        self._mail_key: SigningKey = shared_key("trusted")
        self._id_key: SigningKey = shared_key("google-id")
        self._unpublished_key: SigningKey = shared_key("graph")
        self._sign_id_tokens_with_unpublished_key = False
        self._withhold_refresh_tokens = False
        self._clients: dict[str, _Client] = {}
        self._users: dict[str, _User] = {}
        self._codes: dict[str, _Code] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._consented: set[tuple[str, str]] = set()  # (client id, email) with a refresh token
        self._id_token_overrides: dict[str, object] = {}
        self._auto_approve_user: str | None = None
        self._lock = threading.RLock()
        self._server = None
        self._thread: threading.Thread | None = None
        self._url_map = Map(
            [
                Rule("/o/oauth2/v2/auth", endpoint="authorize", methods=["GET", "POST"]),
                Rule("/token", endpoint="token", methods=["POST"]),
                Rule("/oauth2/v3/certs", endpoint="certs", methods=["GET"]),
            ]
        )

    # ----- lifecycle -----

    def start(self) -> None:
        """Serve on a free loopback port; sets base_url."""
        self._server = make_server(self.host, 0, self._wsgi_app, threaded=True)
        self.port = self._server.server_port
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-google",
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

    # ----- keys and URLs -----

    @property
    def kid(self) -> str:
        """Key id of the key that signs access tokens (give it to Dovecot)."""
        return self._mail_key.kid

    @property
    def public_key_pem(self) -> str:
        return self._mail_key.public_key_pem

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/o/oauth2/v2/auth"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/oauth2/v3/certs"

    # ----- directory and switches -----

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        """Register an OAuth client of type Web application."""
        with self._lock:
            self._clients[client_id] = _Client(client_id, client_secret, list(redirect_uris))

    def add_user(self, email: str, password: str, email_verified: bool = True) -> None:
        """Register a Google account (Gmail or Workspace)."""
        with self._lock:
            sub = str(100000000000000000000 + len(self._users) * 7919 + secrets.randbelow(997))
            self._users[email.lower()] = _User(email, password, email_verified, sub)

    def auto_approve_as(self, email: str | None) -> None:
        """Make consent GETs redirect at once as if email signed in (None: show the form)."""
        with self._lock:
            self._auto_approve_user = email

    def override_id_token_claims(self, **claims: object) -> None:
        """Force claims into every id_token; a None value drops the claim."""
        with self._lock:
            self._id_token_overrides = dict(claims)

    def sign_id_tokens_with_unpublished_key(self, enabled: bool = True) -> None:
        """Sign id_tokens with a key the certs endpoint does not publish (a forgery)."""
        with self._lock:
            self._sign_id_tokens_with_unpublished_key = enabled

    def withhold_refresh_tokens(self, enabled: bool = True) -> None:
        """Answer consents without a refresh token, whatever was asked (offline access
        blocked for the app)."""
        with self._lock:
            self._withhold_refresh_tokens = enabled

    def revoke_refresh_tokens(self, email: str) -> None:
        """The user removed the app's access (myaccount.google.com) or changed the password."""
        with self._lock:
            for token in self._refresh_tokens.values():
                if token.email.lower() == email.lower():
                    token.revoked = True

    def issued_refresh_tokens(self, email: str) -> list[str]:
        """Refresh tokens of email that still work."""
        with self._lock:
            return [
                value
                for value, token in self._refresh_tokens.items()
                if token.email.lower() == email.lower() and not token.revoked
            ]

    # ----- HTTP -----

    def _wsgi_app(self, environ: dict, start_response: object) -> object:
        request = Request(environ)
        adapter = self._url_map.bind_to_environ(environ)
        try:
            endpoint, _args = adapter.match()
        except HTTPException as exc:
            return exc(environ, start_response)
        with self._lock:
            response = getattr(self, "_handle_" + endpoint)(request)
        return response(environ, start_response)

    # The same JSON and HTML answers as the Microsoft look-alike.
    _json = staticmethod(LocalIdentityProvider._json)
    _html = staticmethod(LocalIdentityProvider._html)

    def _error_page(self, err: GoogleError) -> Response:
        """Google's "Access blocked" page: no redirect to an untrusted redirect URI."""
        body = (
            "<h1 id='headingText'>Access blocked: Authorization Error</h1>"
            f"<p id='errorDescription'>{html.escape(err.description)}</p>"
            f"<p id='errorCode'>Error {err.status}: {html.escape(err.error)}</p>"
        )
        return self._html("Error 400 (OAuth2 Error)", body, status=err.status)

    def _redirect(self, redirect_uri: str, params: dict[str, str]) -> Response:
        separator = "&" if "?" in redirect_uri else "?"
        return Response(
            status=302, headers={"Location": redirect_uri + separator + urlencode(params)}
        )

    def _redirect_error(self, params: dict[str, str], error: str) -> Response:
        result = {"error": error}
        if params.get("state"):
            result["state"] = params["state"]
        return self._redirect(params["redirect_uri"], result)

    # ----- the consent -----

    def _handle_authorize(self, request: Request) -> Response:
        source = request.form if request.method == "POST" else request.args
        params = {name: source.get(name, "") for name in AUTH_PARAMS}
        self.authorize_requests.append({"method": request.method, **params})
        client = self._clients.get(params["client_id"])
        if client is None:
            return self._error_page(
                GoogleError("invalid_client", "The OAuth client was not found.", 401)
            )
        if params["redirect_uri"] not in client.redirect_uris:
            return self._error_page(
                GoogleError(
                    "redirect_uri_mismatch",
                    "You can't sign in to this app because it doesn't comply with Google's "
                    "OAuth 2.0 policy. If you're the app developer, register the redirect URI "
                    f"in the Google Cloud Console. Request details: redirect_uri="
                    f"{params['redirect_uri']}",
                )
            )
        problem = self._authorize_problem(params)
        if problem:
            return self._redirect_error(params, problem)
        if request.method == "POST":
            return self._handle_sign_in(request, params)
        if self._auto_approve_user is not None:
            return self._approve(self._users[self._auto_approve_user.lower()], params)
        return self._sign_in_page(params, params["login_hint"])

    @staticmethod
    def _authorize_problem(params: dict[str, str]) -> str | None:
        if params["response_type"] != "code":
            return "unsupported_response_type"
        scopes = params["scope"].split()
        if not scopes or any(s not in KNOWN_SCOPES for s in scopes):
            return "invalid_scope"
        if params["access_type"] not in ("", "online", "offline"):
            return "invalid_request"
        if params["code_challenge"] and params["code_challenge_method"] != "S256":
            return "invalid_request"
        return None

    def _sign_in_page(self, params: dict[str, str], email: str, message: str = "") -> Response:
        hidden = "".join(
            f"<input type='hidden' name='{name}' value='{html.escape(params[name])}'>"
            for name in AUTH_PARAMS
            if name != "login_hint" and params[name]
        )
        error = (
            f"<div id='signInError' role='alert'>{html.escape(message)}</div>" if message else ""
        )
        body = (
            f"<h1 id='headingText'>Sign in with Google</h1>{error}"
            "<form id='gaia_loginform' method='post' action='/o/oauth2/v2/auth'>"
            f"{hidden}<label for='identifierId'>Email or phone</label>"
            f"<input type='email' name='identifier' id='identifierId' "
            f"value='{html.escape(email)}'>"
            "<label for='password'>Enter your password</label>"
            "<input type='password' name='Passwd' id='password'>"
            "<input type='submit' name='action' value='Allow' id='submit_approve_access'>"
            "<input type='submit' name='action' value='Cancel' id='submit_deny_access'>"
            "</form>"
        )
        return self._html("Sign in - Google Accounts", body)

    def _handle_sign_in(self, request: Request, params: dict[str, str]) -> Response:
        if request.form.get("action") == "Cancel":
            return self._redirect_error(params, "access_denied")
        email = request.form.get("identifier", "").strip()
        user = self._users.get(email.lower())
        if user is None:
            return self._sign_in_page(params, email, "Couldn't find your Google Account")
        password = request.form.get("Passwd", "").encode()
        if not secrets.compare_digest(password, user.password.encode()):
            return self._sign_in_page(
                params, email, "Wrong password. Try again or click Forgot password to reset it."
            )
        return self._approve(user, params)

    def _approve(self, user: _User, params: dict[str, str]) -> Response:
        code = "4/0A" + secrets.token_urlsafe(48)
        self._codes[code] = _Code(
            client_id=params["client_id"],
            redirect_uri=params["redirect_uri"],
            code_challenge=params["code_challenge"],
            scopes=params["scope"].split(),
            email=user.email,
            nonce=params["nonce"] or None,
            offline=self._gets_refresh_token(user, params),
            expires_at=time.time() + 600,
        )
        result = {"code": code, "scope": params["scope"], "authuser": "0", "prompt": "consent"}
        if params["state"]:
            result["state"] = params["state"]
        return self._redirect(params["redirect_uri"], result)

    def _gets_refresh_token(self, user: _User, params: dict[str, str]) -> bool:
        """Offline access gives a refresh token on the first consent, or with prompt=consent."""
        if params["access_type"] != "offline" or self._withhold_refresh_tokens:
            return False
        key = (params["client_id"], user.email.lower())
        first = key not in self._consented
        self._consented.add(key)
        return first or "consent" in params["prompt"].split()

    # ----- the token endpoint -----

    def _handle_token(self, request: Request) -> Response:
        entry: dict = {"grant_type": request.form.get("grant_type"), "error": None}
        self.token_requests.append(entry)
        try:
            client = self._authenticate_client(request)
            grant_type = request.form.get("grant_type", "")
            if grant_type == "authorization_code":
                body = self._redeem_code(request, client)
            elif grant_type == "refresh_token":
                body = self._redeem_refresh_token(request, client)
            else:
                raise GoogleError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        except GoogleError as err:
            entry["error"] = err.error
            return self._json(
                {"error": err.error, "error_description": err.description}, err.status
            )
        return self._json(body)

    def _authenticate_client(self, request: Request) -> _Client:
        client_id = request.form.get("client_id", "")
        client_secret = request.form.get("client_secret", "")
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode("utf-8", "replace")
            client_id, _, client_secret = decoded.partition(":")
        client = self._clients.get(unquote(client_id))
        if client is None:
            raise GoogleError("invalid_client", "The OAuth client was not found.", 401)
        if client_secret != client.client_secret and unquote(client_secret) != client.client_secret:
            raise GoogleError("invalid_client", "Unauthorized", 401)
        return client

    def _redeem_code(self, request: Request, client: _Client) -> dict:
        code = self._codes.get(request.form.get("code", ""))
        if code is None or code.used or code.expires_at <= time.time():
            if code is not None:
                code.used = True
            raise GoogleError("invalid_grant", "Bad Request")
        code.used = True
        if code.client_id != client.client_id:
            raise GoogleError("invalid_grant", "Bad Request")
        if request.form.get("redirect_uri", "") != code.redirect_uri:
            raise GoogleError("redirect_uri_mismatch", "Bad Request")
        verifier = request.form.get("code_verifier", "")
        if code.code_challenge and not verifier:
            raise GoogleError("invalid_grant", "Missing code verifier.")
        if code.code_challenge and not secrets.compare_digest(
            s256_challenge(verifier), code.code_challenge
        ):
            raise GoogleError("invalid_grant", "Invalid code verifier.")
        user = self._users[code.email.lower()]
        body = self._tokens(client, user, code.scopes, code.nonce)
        if code.offline:
            value = "1//0" + secrets.token_urlsafe(64)
            self._refresh_tokens[value] = _RefreshToken(client.client_id, user.email, code.scopes)
            body["refresh_token"] = value
        return body

    def _redeem_refresh_token(self, request: Request, client: _Client) -> dict:
        token = self._refresh_tokens.get(request.form.get("refresh_token", ""))
        if token is None or token.revoked or token.client_id != client.client_id:
            raise GoogleError("invalid_grant", EXPIRED_OR_REVOKED)
        scopes = token.scopes
        requested = request.form.get("scope", "").split()
        if requested:
            if any(s not in token.scopes for s in requested):
                raise GoogleError("invalid_scope", "Bad Request")
            scopes = requested
        # Google does not rotate refresh tokens: the answer has none.
        return self._tokens(client, self._users[token.email.lower()], scopes, None)

    def _tokens(self, client: _Client, user: _User, scopes: list[str], nonce: str | None) -> dict:
        now = int(time.time())
        access = {
            "iss": ISSUER,
            "aud": MAIL_SCOPE if MAIL_SCOPE in scopes else "https://www.googleapis.com/",
            "upn": user.email,  # the claim the test Dovecot names the mailbox by
            "sub": user.sub,
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + self.access_token_lifetime,
        }
        key = self._mail_key if MAIL_SCOPE in scopes else self._unpublished_key
        body = {
            "access_token": key.sign(access),
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        if "openid" in scopes:
            body["id_token"] = self._id_token(client, user, scopes, nonce, now)
        return body

    def _id_token(
        self, client: _Client, user: _User, scopes: list[str], nonce: str | None, now: int
    ) -> str:
        claims: dict = {
            "iss": self.issuer,
            "azp": client.client_id,
            "aud": client.client_id,
            "sub": user.sub,
            "iat": now,
            "exp": now + 3600,
        }
        if "email" in scopes:
            claims["email"] = user.email
            claims["email_verified"] = user.email_verified
            domain = user.email.rsplit("@", 1)[-1].lower()
            if domain not in ("gmail.com", "googlemail.com"):
                claims["hd"] = domain
        if nonce:
            claims["nonce"] = nonce
        for name, value in self._id_token_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        key = self._id_key
        if self._sign_id_tokens_with_unpublished_key:
            # The published key's id, another key's signature: what a forger can do.
            key = SigningKey(self._id_key.kid, self._unpublished_key.private_key)
        return key.sign(claims)

    def _handle_certs(self, request: Request) -> Response:
        return self._json({"keys": [self._id_key.jwk()]})
