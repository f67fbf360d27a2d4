"""Key rotation and retirement for every encrypted column (the keys and the column type:
crypto.py).

Rotation puts a new key first and re-encrypts each stored secret with a compare-and-set
(`UPDATE ... WHERE id = :id AND column = :old`), one short transaction per secret: a token
refreshed by the scheduler meanwhile is never overwritten with its older value, it is read
again and re-encrypted. Running processes pick the new key file up by themselves (crypto.py).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import text

from .. import crypto
from ..crypto import EncryptedText
from ..extensions import db

# A secret that changes this many times while being re-encrypted is left to the next run.
CAS_ATTEMPTS = 10


class KeyChangeRefused(Exception):
    """A rotation or retirement that cannot go ahead; the message says what to do."""


def encrypted_columns() -> list[tuple[str, str, str]]:
    """(table, primary key column, column) for every EncryptedText column of every model."""
    found = []
    for table in db.metadata.sorted_tables:
        pk = list(table.primary_key.columns)[0].name
        for column in table.columns:
            if isinstance(column.type, EncryptedText):
                found.append((table.name, pk, column.name))
    return found


def _row_ids(table: str, pk: str, column: str) -> list[object]:
    ids = [key for (key,) in db.session.execute(
        text(f"SELECT {pk} FROM {table} WHERE {column} IS NOT NULL ORDER BY {pk}")
    )]  # fmt: skip
    db.session.commit()
    return ids


def _rotate_row(table: str, pk: str, column: str, key: object) -> bool:
    """Re-encrypt one stored secret with the newest key; True when it was rewritten.
    Raw SQL on purpose: the ciphertext is rotated as is, never decrypted into Python objects."""
    for _ in range(CAS_ATTEMPTS):
        old = db.session.execute(
            text(f"SELECT {column} FROM {table} WHERE {pk} = :key"), {"key": key}
        ).scalar()
        if old is None or crypto.uses_newest_key(old):
            db.session.commit()
            return False
        try:
            new = crypto.rotate(old)
        except crypto.SecretDecryptError:
            db.session.rollback()
            raise KeyChangeRefused(
                f"{table}.{column} of row {key} cannot be decrypted with any key: "
                "restore the key it was written with to the key file (or the setting)"
            ) from None
        result = db.session.execute(
            text(f"UPDATE {table} SET {column} = :new WHERE {pk} = :key AND {column} = :old"),
            {"new": new, "key": key, "old": old},
        )
        db.session.commit()
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return True
        # Changed since we read it (a refreshed token, an edited password): read it again.
    raise KeyChangeRefused(
        f"{table}.{column} of row {key} kept changing: run `flask --app wsgi keys rotate` again"
    )


def rotate_all_secrets(key_path: Path, configured_keys: str) -> int:
    """Put a new key first (key file) or use the first configured key, then re-encrypt all.

    With POSTMASTER_ENCRYPTION_KEYS the admin puts the new key first in the variable on every
    node and restarts them, then runs this; with the key file a new key is added to the file
    here (atomically) and every running process follows it.
    """
    if not crypto.fixed_keys(configured_keys):
        keys = crypto.read_key_file(key_path)
        if not keys:
            raise crypto.MissingEncryptionKey()
        crypto.write_key_file(key_path, [Fernet.generate_key().decode(), *keys])
    crypto.configure(configured_keys, key_path)
    count = 0
    for table, pk, column in encrypted_columns():
        for key in _row_ids(table, pk, column):
            count += _rotate_row(table, pk, column, key)
    return count


def secrets_on_old_keys() -> dict[str, int]:
    """'table.column' -> how many stored secrets do not decrypt with the newest key."""
    crypto.reload_if_changed()
    found: dict[str, int] = {}
    for table, _pk, column in encrypted_columns():
        values = db.session.execute(
            text(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")
        ).scalars()
        stale = sum(1 for value in values if not crypto.uses_newest_key(value))
        if stale:
            found[f"{table}.{column}"] = stale
    db.session.commit()
    return found


def retire_old_keys(key_path: Path, configured_keys: str) -> int:
    """Remove every key but the newest from the key file once no secret uses them; the number
    of keys removed. With POSTMASTER_ENCRYPTION_KEYS only the check is done (KeyChangeRefused says
    what to remove from the variable)."""
    crypto.configure(configured_keys, key_path)
    stale = secrets_on_old_keys()
    if stale:
        where = ", ".join(f"{name}: {n}" for name, n in stale.items())
        raise KeyChangeRefused(
            f"{sum(stale.values())} stored secrets still use an old key ({where}): "
            "run `flask --app wsgi keys rotate` first"
        )
    fixed = crypto.fixed_keys(configured_keys)
    keys = fixed or crypto.read_key_file(key_path)
    if len(keys) <= 1:
        return 0
    if fixed:
        raise KeyChangeRefused(
            "no stored secret uses an old key: keep only the first key in "
            "POSTMASTER_ENCRYPTION_KEYS on every node and restart them"
        )
    crypto.write_key_file(key_path, keys[:1])
    crypto.reload_if_changed()
    return len(keys) - 1
