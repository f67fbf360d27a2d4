"""Large BLOBs (a raw mail, an attachment) into SQLite without two more copies of each.

A bytes parameter costs SQLite two full copies before it reaches a page: pysqlite binds it
as a transient copy, and the INSERT builds the whole row as one record. For a 25 MB message
that was 50 MB on top of the 25 MB the fetcher holds. So on SQLite a value of at least
LARGE_BLOB bytes is inserted as b"", then set to zeroblob(size) (SQLite does not allocate the
zeros of the last column) and written in 1 MB slices through incremental blob I/O
(sqlite3.Connection.blobopen), which writes into the page cache and spills to the WAL: a
few MB whatever the size. All of it runs in the caller's transaction (and savepoint), so a
rollback removes the row and its content together. PostgreSQL gets the plain INSERT.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, update
from sqlalchemy import exc as sa_exc

LARGE_BLOB = 1024 * 1024  # smaller values stay in the batch INSERT: not worth a round trip
_SLICE = 1024 * 1024


def has_large_values(conn: Connection, rows: list[dict], column: str) -> bool:
    """Whether take_large_values would take any value of these rows."""
    return conn.dialect.name == "sqlite" and any(
        len(row.get(column) or b"") >= LARGE_BLOB for row in rows
    )


def take_large_values(conn: Connection, rows: list[dict], column: str) -> dict[int, bytes]:
    """On SQLite: row index -> value of `column` for values of LARGE_BLOB bytes or more,
    which are replaced by b"" in rows (write_large_values writes them after the INSERT)."""
    if conn.dialect.name != "sqlite":
        return {}
    large: dict[int, bytes] = {}
    for index, row in enumerate(rows):
        value = row.get(column)
        if value is not None and len(value) >= LARGE_BLOB:
            large[index], row[column] = value, b""
    return large


def write_large_values(
    conn: Connection, table: Table, column: str, values: dict[int, bytes]
) -> None:
    """Write each value (by row id) into `column` of its row, inserted with b"" before."""
    if not values:
        return
    conn.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({column: func.zeroblob(bindparam("b_size"))}),
        [{"b_id": row_id, "b_size": len(value)} for row_id, value in values.items()],
    )
    driver = conn.connection.driver_connection
    with _as_sqlalchemy_errors(conn):
        for row_id, value in values.items():
            data = memoryview(value)
            with driver.blobopen(table.name, column, row_id) as blob:  # type: ignore[union-attr]
                for start in range(0, len(data), _SLICE):
                    blob.write(data[start : start + _SLICE])


@contextmanager
def _as_sqlalchemy_errors(conn: Connection) -> Iterator[None]:
    """The driver's errors as SQLAlchemy's (OperationalError for a full disk or a lock), as
    if a statement had raised them: the fetch loop tells database trouble apart by those."""
    dbapi: Any = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise sa_exc.DBAPIError.instance("blob write", None, exc, dbapi.Error) from exc
