"""RS256 signing keys and compact JWTs for the local identity provider, built on cryptography."""

import base64
import functools
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    """Encode bytes as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url text."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def s256_challenge(code_verifier: str) -> str:
    """Return the PKCE S256 code_challenge for a code_verifier."""
    return b64url(hashlib.sha256(code_verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with a key id, as published in a JWKS."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @property
    def public_key_pem(self) -> str:
        """The public key as PEM (SubjectPublicKeyInfo), the form Dovecot reads."""
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def jwk(self) -> dict:
        """The public key as a JWK."""
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }

    def sign(self, claims: dict) -> str:
        """Return a compact RS256 JWT for the claims."""
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.private_key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return signing_input + "." + b64url(signature)


# Key generation costs tens of milliseconds; tests start many servers, so share keys per process.
@functools.cache
def shared_key(name: str) -> SigningKey:
    """Return the process-wide signing key called name, creating it on first use."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid=f"postmaster-test-{name}", private_key=private_key)


def decode_jwt(token: str) -> tuple[dict, dict]:
    """Return (header, claims) of a JWT without checking its signature."""
    header_b64, claims_b64, _signature = token.split(".")
    return json.loads(b64url_decode(header_b64)), json.loads(b64url_decode(claims_b64))


def verify_jwt(token: str, public_key_pem: str) -> dict:
    """Return the claims of a JWT after checking its RS256 signature; raise ValueError if bad."""
    header_b64, claims_b64, signature_b64 = token.split(".")
    public_key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    try:
        public_key.verify(  # type: ignore[union-attr]
            b64url_decode(signature_b64),
            f"{header_b64}.{claims_b64}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature as exc:
        raise ValueError("JWT signature does not match the key") from exc
    return json.loads(b64url_decode(claims_b64))
