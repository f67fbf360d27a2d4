"""Local identity provider that speaks the Microsoft identity platform v2 endpoints, for tests."""

from .jwt_rs256 import decode_jwt, s256_challenge, verify_jwt
from .server import AadError, LocalIdentityProvider

__all__ = ["AadError", "LocalIdentityProvider", "decode_jwt", "s256_challenge", "verify_jwt"]
