"""App-only access for the local identity provider: the client-credentials grant, client
assertions signed with a certificate (private_key_jwt, RFC 7523), and the Exchange side of
app-only access (service principals registered in Exchange, mailbox permissions) that the test
Dovecot asks about through /app-mailbox-check.

Refusals look like Entra ID's: AADSTS codes in error_description and error_codes."""

import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from werkzeug.wrappers import Request, Response

from .jwt_rs256 import b64url, b64url_decode

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EXCHANGE_RESOURCE = "https://outlook.office365.com"
APP_ROLES = ("IMAP.AccessAsApp", "POP.AccessAsApp")
SERVICE_ROLES = {"imap": "IMAP.AccessAsApp", "pop3": "POP.AccessAsApp"}


def _aad_error():  # late import: server.py imports this module
    from .server import AadError

    return AadError


class AppOnlyMixin:
    """Mixed into LocalIdentityProvider; uses its lock, apps and JSON helpers."""

    def _init_app_only(self) -> None:
        self._app_token_key = secrets.token_bytes(32)  # Dovecot asks /app-mailbox-check
        self._app_certificates: dict[tuple[str, str], list[x509.Certificate]] = {}
        self._app_roles: dict[tuple[str, str], set[str]] = {}
        self._apps_without_sp: set[tuple[str, str]] = set()
        self._exchange_service_principals: set[str] = set()
        self._mailbox_grants: dict[str, set[str]] = {}
        self._used_jtis: set[str] = set()
        self.mailbox_checks: list[dict] = []

    # ----- steering -----

    def add_app_certificate(self, tenant_id: str, client_id: str, cert_pem: str) -> None:
        """Upload a certificate to the app registration (Certificates & secrets)."""
        with self._lock:
            key = (self._tenant_or_raise(tenant_id), client_id)
            cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
            self._app_certificates.setdefault(key, []).append(cert)

    def grant_admin_consent(
        self, tenant_id: str, client_id: str, roles: tuple[str, ...] = APP_ROLES
    ) -> None:
        """Application permissions with admin consent: they appear as `roles` in app tokens."""
        with self._lock:
            self._app_roles[(self._tenant_or_raise(tenant_id), client_id)] = set(roles)

    def remove_service_principal(self, tenant_id: str, client_id: str) -> None:
        """The app has no service principal in the tenant (AADSTS7000229)."""
        with self._lock:
            self._apps_without_sp.add((self._tenant_or_raise(tenant_id), client_id))

    def register_exchange_service_principal(self, client_id: str) -> None:
        """Exchange Online: New-ServicePrincipal -AppId <client_id> -ObjectId <sp id>."""
        with self._lock:
            self._exchange_service_principals.add(client_id)

    def grant_mailbox(self, client_id: str, mailbox: str) -> None:
        """Exchange Online: Add-MailboxPermission -Identity <mailbox> -User <sp> FullAccess."""
        with self._lock:
            self._mailbox_grants.setdefault(client_id, set()).add(mailbox.lower())

    def app_token_requests(self) -> list[dict]:
        """The client-credentials token requests so far."""
        return [r for r in self.token_requests if r["grant_type"] == "client_credentials"]

    # ----- client assertion -----

    def _authenticate_assertion(self, request: Request, tenant_id: str, entry: dict):
        err = _aad_error()
        if request.form.get("client_assertion_type") != JWT_BEARER:
            raise err(
                "invalid_request",
                50027,
                f"Invalid client_assertion_type: expected '{JWT_BEARER}'.",
            )
        assertion = request.form.get("client_assertion", "")
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(b64url_decode(header_b64))
            claims = json.loads(b64url_decode(claims_b64))
        except ValueError:
            raise err("invalid_client", 50027, "JWT token is invalid or malformed.", 401) from None
        client_id = request.form.get("client_id") or str(claims.get("sub", ""))
        entry.update(client_id=client_id, auth_method="private_key_jwt")
        app = self._app_or_raise(tenant_id, client_id, "unauthorized_client")
        cert = self._certificate_for(tenant_id, client_id, str(header.get("x5t", "")))
        try:
            cert.public_key().verify(  # type: ignore[union-attr, call-arg]
                b64url_decode(signature_b64),
                f"{header_b64}.{claims_b64}".encode("ascii"),
                padding.PKCS1v15(),  # type: ignore[arg-type]
                hashes.SHA256(),  # type: ignore[arg-type]
            )
        except InvalidSignature:
            raise self._bad_key(
                "The provided signature value did not match", cert, client_id
            ) from None
        self._check_assertion_claims(request, claims, client_id)
        return app

    def _certificate_for(self, tenant_id: str, client_id: str, x5t: str) -> x509.Certificate:
        for cert in self._app_certificates.get((tenant_id, client_id), []):
            if b64url(cert.fingerprint(hashes.SHA1())) == x5t:  # noqa: S303
                if cert.not_valid_after_utc <= datetime.now(UTC):
                    raise self._bad_key("The key used is expired.", cert, client_id)
                return cert
        try:
            thumbprint = b64url_decode(x5t).hex().upper()
        except ValueError:
            thumbprint = x5t
        raise _aad_error()(
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The key was not found., "
            f"Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, "
            f"Graph Explorer or directly use MS Graph to see configured keys for app Id "
            f"'{client_id}'.]",
            401,
        )

    @staticmethod
    def _bad_key(reason: str, cert: x509.Certificate, client_id: str):
        thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
        start = f"{cert.not_valid_before_utc:%m/%d/%Y %H:%M:%S}"
        end = f"{cert.not_valid_after_utc:%m/%d/%Y %H:%M:%S}"
        return _aad_error()(
            "invalid_client",
            700027,
            f"Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint "
            f"of key used by client: '{thumbprint}', Found key 'Start={start}, End={end}'] for "
            f"app '{client_id}'.",
            401,
        )

    def _check_assertion_claims(self, request: Request, claims: dict, client_id: str) -> None:
        err = _aad_error()
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise err(
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
                401,
            )
        expected_aud = self.base_url + request.path
        if claims.get("aud") != expected_aud:
            raise err(
                "invalid_client",
                700023,
                f"Client assertion audience claim does not match Realm issuer. Expected "
                f"'{expected_aud}'.",
                401,
            )
        now = time.time()
        if not (float(claims.get("nbf", now)) - 300 <= now < float(claims.get("exp", 0))):
            raise err(
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range. Current time: "
                f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S}Z.",
                401,
            )
        jti = str(claims.get("jti", ""))
        if not jti or jti in self._used_jtis:
            # Entra ID keeps assertion ids until they expire; the code is this IdP's choice.
            raise err(
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The assertion (jti) "
                "was already used.]",
                401,
            )
        self._used_jtis.add(jti)

    # ----- client credentials -----

    def _client_credentials(self, request: Request, tenant_id: str, app) -> dict:
        err = _aad_error()
        scope = request.form.get("scope", "").strip()
        if not scope.endswith("/.default") or " " in scope:
            raise err(
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        if (tenant_id, app.client_id) in self._apps_without_sp:
            raise err(
                "invalid_client",
                7000229,
                f"The client application {app.client_id} is missing service principal in the "
                f"tenant {tenant_id}. See instructions here: https://go.microsoft.com/fwlink/"
                "?linkid=2225119",
                401,
            )
        # Fewer claims than Entra ID's app tokens, and HS256: Dovecot's checkpassword takes
        # at most 512 bytes of user and token together (see app_grant_check.py). Only this
        # IdP checks app tokens; clients treat them as opaque (peeking at roles at most).
        claims = {
            "aud": scope.removesuffix("/.default"),
            "exp": int(time.time()) + self.access_token_lifetime,
            "appid": app.client_id,
            "tid": tenant_id,
        }
        roles = sorted(self._app_roles.get((tenant_id, app.client_id), set()))
        if roles:  # without admin consent Entra ID issues a token without roles
            claims["roles"] = roles
        return {
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": self._sign_app_token(claims),
        }

    def _sign_app_token(self, claims: dict) -> str:
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64url(json.dumps(claims, separators=(",", ":")).encode())
        mac = hmac.new(self._app_token_key, f"{header}.{body}".encode(), hashlib.sha256)
        token = f"{header}.{body}.{b64url(mac.digest())}"
        assert len(token) < 440, "app tokens must fit Dovecot's checkpassword limit"
        return token

    def _verify_app_token(self, token: str) -> dict:
        try:
            header, body, signature = token.split(".")
        except ValueError:
            raise ValueError("not a JWT") from None
        mac = hmac.new(self._app_token_key, f"{header}.{body}".encode(), hashlib.sha256)
        if not hmac.compare_digest(b64url(mac.digest()), signature):
            raise ValueError("bad signature")
        return json.loads(b64url_decode(body))

    # ----- the Exchange side, for Dovecot -----

    def _handle_app_mailbox_check(self, request: Request) -> Response:
        user = request.form.get("user", "").lower()
        service = request.form.get("service", "")
        check = {"user": user, "service": service, "allowed": False, "reason": ""}
        self.mailbox_checks.append(check)
        try:
            claims = self._verify_app_token(request.form.get("token", ""))
        except ValueError:
            check["reason"] = "not an app token"
            return Response("no", status=403)
        client_id = str(claims.get("appid", ""))
        if claims.get("exp", 0) <= time.time():
            check["reason"] = "expired"
        elif claims.get("aud") != EXCHANGE_RESOURCE:
            check["reason"] = "audience"
        elif SERVICE_ROLES.get(service, "IMAP.AccessAsApp") not in claims.get("roles", []):
            check["reason"] = "role missing"
        elif client_id not in self._exchange_service_principals:
            check["reason"] = "service principal not registered in Exchange"
        elif user not in self._mailbox_grants.get(client_id, set()):
            check["reason"] = "no mailbox permission"
        else:
            check["allowed"] = True
            return Response("ok", status=200)
        return Response("no", status=403)

    @property
    def app_mailbox_check_url(self) -> str:
        return f"{self.base_url}/app-mailbox-check"
