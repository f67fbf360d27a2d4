"""Secrets at rest: an EncryptedText column type over MultiFernet, so keys can rotate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Dialect
from sqlalchemy.types import Text, TypeDecorator

_fernet: MultiFernet | None = None


class SecretDecryptError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


def key_file(instance_path: str) -> Path:
    """Where the key file lives when POSTMASTER_ENCRYPTION_KEYS is not set."""
    return Path(instance_path) / "encryption.key"


def ensure_key_file(instance_path: str) -> Path:
    """Create instance/encryption.key (mode 0600) with a fresh key when it does not exist."""
    path = key_file(instance_path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(Fernet.generate_key().decode() + "\n")
    return path


def load_keys(config_value: str, instance_path: str) -> list[str]:
    """Keys from the setting (comma-separated, newest first), else from the key file."""
    keys = [k.strip() for k in (config_value or "").split(",") if k.strip()]
    if not keys:
        path = key_file(instance_path)
        if path.exists():
            keys = [k.strip() for k in path.read_text().splitlines() if k.strip()]
    return keys


def configure(keys: list[str]) -> None:
    """Install the keys used by EncryptedText (the first one encrypts)."""
    global _fernet
    _fernet = MultiFernet([Fernet(k.encode()) for k in keys]) if keys else None


def _require() -> MultiFernet:
    if _fernet is None:
        raise RuntimeError("No encryption key configured (instance/encryption.key)")
    return _fernet


def encrypt(value: str) -> str:
    """Encrypt with the newest key."""
    return _require().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    """Decrypt with any configured key; SecretDecryptError when none fits."""
    try:
        return _require().decrypt(value.encode()).decode()
    except InvalidToken:
        raise SecretDecryptError(
            "A stored secret cannot be decrypted: the encryption key does not match"
        ) from None


def rotate(value: str) -> str:
    """Re-encrypt a stored token with the newest key."""
    return _require().rotate(value.encode()).decode()


class EncryptedText(TypeDecorator[str]):
    """A text column stored encrypted; Python sees plain text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> str | None:
        return None if value is None else decrypt(value)
