"""Secrets at rest: an EncryptedText column type over MultiFernet, so keys can rotate.

The keys come from POSTMASTER_ENCRYPTION_KEYS (fixed for the life of the process) or from the
key file (instance/encryption.key, newest key first). A running process follows the key file:
before encrypting it looks whether the file changed (one stat), and when a stored secret does
not decrypt it reloads the file and tries once more. So `flask keys rotate` in one process
never breaks the web workers or the scheduler running beside it.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Dialect
from sqlalchemy.types import Text, TypeDecorator

log = logging.getLogger(__name__)

NO_KEY_MESSAGE = (
    "no encryption key: run `flask --app wsgi setup` (it creates instance/encryption.key) "
    "or set POSTMASTER_ENCRYPTION_KEYS"
)


class SecretDecryptError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


class MissingEncryptionKey(RuntimeError):
    """No key is configured, so no secret can be stored or read."""

    def __init__(self) -> None:
        super().__init__(NO_KEY_MESSAGE)


class BadEncryptionKey(RuntimeError):
    """A configured key is not a Fernet key (the message never shows the key)."""


class _KeyRing:
    """The keys in use, and where they came from (the key file, or fixed keys)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fernet: MultiFernet | None = None
        self.newest: Fernet | None = None
        self.path: Path | None = None  # None: fixed keys, nothing to reload
        self.signature: tuple[int, int, int] | None = None


_ring = _KeyRing()


def key_file(instance_path: str) -> Path:
    """Where the key file lives by default (when ENCRYPTION_KEY_FILE is not set)."""
    return Path(instance_path) / "encryption.key"


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the file is replaced or rewritten (None: no file)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_key_file(path: Path) -> list[str]:
    """The keys in the file, newest first (none when there is no file)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [k.strip() for k in text.splitlines() if k.strip()]


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace the key file atomically: a temp file in the same directory (mode 0600), fsync,
    rename, fsync of the directory. A reader sees the old file or the new one, never half."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".encryption.key.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write("".join(k + "\n" for k in keys))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure_key_file(path: Path) -> bool:
    """Create the key file (mode 0600) with a fresh key when it does not exist; True if created."""
    if path.exists():
        return False
    write_key_file(path, [Fernet.generate_key().decode()])
    return True


def key_file_is_exposed(path: Path) -> bool:
    """True when the key file can be read by the group or by others."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def load_keys(config_value: str, instance_path: str) -> list[str]:
    """Keys from the setting, else from the default key file (for the production check)."""
    return fixed_keys(config_value) or read_key_file(key_file(instance_path))


def fixed_keys(config_value: str) -> list[str]:
    """The keys of POSTMASTER_ENCRYPTION_KEYS (comma-separated, newest first)."""
    return [k.strip() for k in (config_value or "").split(",") if k.strip()]


def _install(keys: list[str], where: str) -> None:
    """Use these keys from now on (the first one encrypts); call with the lock held."""
    if not keys:
        _ring.fernet = _ring.newest = None
        return
    try:
        fernets = [Fernet(k.encode()) for k in keys]
    except ValueError:
        raise BadEncryptionKey(
            f"{where}: not a Fernet key (32 url-safe base64-encoded bytes); make one with: "
            "python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None
    _ring.fernet, _ring.newest = MultiFernet(fernets), fernets[0]


def configure(config_value: str, path: Path) -> None:
    """Use the fixed keys when there are any, else follow the key file at `path`."""
    keys = fixed_keys(config_value)
    with _ring.lock:
        if keys:
            _ring.path, _ring.signature = None, None
            _install(keys, "POSTMASTER_ENCRYPTION_KEYS")
        else:
            _ring.path, _ring.signature = path, _signature(path)
            _install(read_key_file(path), str(path))


def has_key() -> bool:
    """Whether a key is configured (the key file is looked at again)."""
    reload_if_changed()
    return _ring.fernet is not None


def reload_if_changed() -> bool:
    """Reload the key file when it changed since it was read; True when it did."""
    path = _ring.path
    if path is None or _signature(path) == _ring.signature:
        return False
    with _ring.lock:
        signature = _signature(path)
        if signature == _ring.signature:
            return False
        _install(read_key_file(path), str(path))
        _ring.signature = signature
    log.info("Encryption keys reloaded from %s", path)
    return True


def _require() -> MultiFernet:
    if _ring.fernet is None:
        reload_if_changed()  # `flask setup` may have created the key file meanwhile
    fernet = _ring.fernet
    if fernet is None:
        raise MissingEncryptionKey()
    return fernet


def encrypt(value: str) -> str:
    """Encrypt with the newest key (of the key file as it is now)."""
    reload_if_changed()
    return _require().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    """Decrypt with any configured key; SecretDecryptError when none fits, even after
    reloading a key file that changed (a rotation in another process)."""
    try:
        return _require().decrypt(value.encode()).decode()
    except InvalidToken:
        if reload_if_changed():
            return decrypt(value)
        raise SecretDecryptError(
            "A stored secret cannot be decrypted: the encryption key does not match"
        ) from None


def rotate(value: str) -> str:
    """Re-encrypt a stored token with the newest key."""
    try:
        return _require().rotate(value.encode()).decode()
    except InvalidToken:
        raise SecretDecryptError(
            "A stored secret cannot be decrypted: the encryption key does not match"
        ) from None


def uses_newest_key(value: str) -> bool:
    """Whether a stored token decrypts with the newest key alone."""
    _require()
    newest = _ring.newest
    assert newest is not None
    try:
        newest.decrypt(value.encode())
    except InvalidToken:
        return False
    return True


class EncryptedText(TypeDecorator[str]):
    """A text column stored encrypted; Python sees plain text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> str | None:
        return None if value is None else decrypt(value)
