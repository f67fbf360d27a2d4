"""Certificate credentials: reading a PEM key and certificate, their thumbprint and expiry,
and the signed client assertion (private_key_jwt, RFC 7523) that replaces a client secret.

Nothing here logs or returns the private key or an assertion in a message."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Entra ID accepts assertions valid for at most 10 minutes (and keeps their jti until then).
ASSERTION_LIFETIME = 600

_PEM_KEY_MARK = "PRIVATE KEY-----"
_PEM_CERT_MARK = "-----BEGIN CERTIFICATE-----"


class CertificateError(ValueError):
    """The key or certificate cannot be used; str() is for the admin (never holds the key)."""


@dataclass(frozen=True)
class CertificateInfo:
    """What the admin needs to upload and watch the certificate."""

    subject: str
    not_before: datetime  # naive UTC
    not_after: datetime  # naive UTC
    sha1: bytes
    sha256: bytes

    @property
    def thumbprint_hex(self) -> str:
        """The SHA-1 thumbprint as Azure shows it (upper-case hex)."""
        return self.sha1.hex().upper()

    @property
    def x5t(self) -> str:
        """The SHA-1 thumbprint, base64url: the JWT header's x5t."""
        return _b64url(self.sha1)

    @property
    def x5t_s256(self) -> str:
        return _b64url(self.sha256)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def load_certificate(pem: str) -> x509.Certificate:
    """The first certificate in a PEM text; raises CertificateError."""
    start = pem.find(_PEM_CERT_MARK)
    if start < 0:
        raise CertificateError(
            "Paste the certificate in PEM form (-----BEGIN CERTIFICATE----- ...)."
        )
    try:
        return x509.load_pem_x509_certificate(pem[start:].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise CertificateError("The certificate could not be read (PEM expected).") from None


def certificate_info(pem: str) -> CertificateInfo:
    """Thumbprints, subject and validity of a PEM certificate; raises CertificateError."""
    cert = load_certificate(pem)
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        not_before=_naive_utc(cert.not_valid_before_utc),
        not_after=_naive_utc(cert.not_valid_after_utc),
        sha1=cert.fingerprint(hashes.SHA1()),  # noqa: S303 - the x5t thumbprint is SHA-1
        sha256=cert.fingerprint(hashes.SHA256()),
    )


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The RSA private key of a PEM text; raises CertificateError (without the key in it)."""
    if _PEM_KEY_MARK not in pem:
        raise CertificateError(
            "Paste the private key in PEM form (-----BEGIN PRIVATE KEY----- ...)."
        )
    if "ENCRYPTED" in pem:
        raise CertificateError(
            "The private key is protected by a passphrase: export it without one (for example "
            "openssl pkey -in key.pem -out plain-key.pem); it is stored encrypted here."
        )
    start = pem.find("-----BEGIN")
    try:
        key = serialization.load_pem_private_key(pem[start:].encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise CertificateError("The private key could not be read (PEM expected).") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError("The private key must be an RSA key (Entra ID signs with RS256).")
    return key


def split_pem(text: str) -> tuple[str, str]:
    """(key part, certificate part) of a text that may hold both, as one paste or file."""
    key = cert = ""
    for block in text.split("-----END "):
        begin = block.find("-----BEGIN ")
        if begin < 0:
            continue
        body = block[begin:]
        kind = body[len("-----BEGIN ") :].split("-----", 1)[0]
        full = body + "-----END " + kind + "-----\n"
        if kind.endswith("PRIVATE KEY") and not key:
            key = full
        elif kind == "CERTIFICATE" and not cert:
            cert = full
    return key, cert


def check_pair(
    key_pem: str, cert_pem: str, now: datetime | None = None, new: bool = True
) -> CertificateInfo:
    """The certificate's info after checking the key belongs to it and (a `new` one) that it
    has not expired."""
    key = load_private_key(key_pem)
    cert = load_certificate(cert_pem)
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != (
        key.public_key().public_numbers()
    ):
        raise CertificateError(
            "The private key does not belong to this certificate: upload the key the "
            "certificate was made for."
        )
    info = certificate_info(cert_pem)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if new and info.not_after <= now:
        raise CertificateError(
            f"The certificate expired on {info.not_after:%Y-%m-%d}: make a new one, upload it "
            "to the app registration (Certificates & secrets) and here."
        )
    return info


def client_assertion(client_id: str, audience: str, key_pem: str, cert_pem: str) -> str:
    """A fresh RS256 client assertion for the token endpoint `audience` (RFC 7523 section 3)."""
    key = load_private_key(key_pem)
    info = certificate_info(cert_pem)
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "x5t": info.x5t, "x5t#S256": info.x5t_s256}
    claims = {
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": secrets.token_urlsafe(24),
        "nbf": now,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


def peek_claims(token: str) -> dict:
    """The claims of a JWT access token, unverified (only to explain a refused login)."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
