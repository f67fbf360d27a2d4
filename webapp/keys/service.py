"""Key rotation for every encrypted column (the keys and the column type: crypto.py)."""

from __future__ import annotations

from cryptography.fernet import Fernet
from sqlalchemy import text

from .. import crypto
from ..crypto import EncryptedText
from ..extensions import db


def encrypted_columns() -> list[tuple[str, str, str]]:
    """(table, primary key column, column) for every EncryptedText column of every model."""
    found = []
    for table in db.metadata.sorted_tables:
        pk = list(table.primary_key.columns)[0].name
        for column in table.columns:
            if isinstance(column.type, EncryptedText):
                found.append((table.name, pk, column.name))
    return found


def rotate_all_secrets(instance_path: str, configured_keys: str) -> int:
    """Put a new key first (key file) or use the first configured key, then re-encrypt all.

    With POSTMASTER_ENCRYPTION_KEYS the admin puts the new key first in the variable on every
    node, then runs this; with the key file a new key is added to the file here.
    """
    if not configured_keys:
        path = crypto.ensure_key_file(instance_path)
        path.write_text(Fernet.generate_key().decode() + "\n" + path.read_text())
    crypto.configure(crypto.load_keys(configured_keys, instance_path))
    count = 0
    for table, pk, column in encrypted_columns():
        # Raw SQL on purpose: the ciphertext is rotated as is, never decrypted into Python objects.
        rows = db.session.execute(
            text(f"SELECT {pk}, {column} FROM {table} WHERE {column} IS NOT NULL")
        ).all()
        for key, value in rows:
            db.session.execute(
                text(f"UPDATE {table} SET {column} = :value WHERE {pk} = :key"),
                {"value": crypto.rotate(value), "key": key},
            )
            count += 1
    db.session.commit()
    return count
