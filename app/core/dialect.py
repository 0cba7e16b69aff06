"""Queries that read or write many rows at once, the same way on SQLite and
PostgreSQL (helpers for operations; they run in the caller's transaction).

PostgreSQL gets a whole list as one string parameter (`string_to_array`): the driver
would escape a long list item by item. SQLite, one writer at a time and no network,
gets the same statements through its own driver's executemany: SQLAlchemy's per-row
processing would cost more than the statements.
"""
import json
from datetime import datetime
from typing import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from app.extensions import db
from app.core.bulk import driver_errors, sqlite_datetime

# PostgreSQL error codes for a transaction that lost to another: it is retried.
RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def retryable(exc: Exception) -> bool:
    """The database gave up on this transaction for another's sake: try again."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRYABLE_SQLSTATES


def id_chunks(ids: list) -> Iterator[list]:
    """Ids in chunks for `IN`; PostgreSQL takes them all as one array (`in_`)."""
    size = 100_000 if postgres() else 1000
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def in_(column, values: list, item_type):
    """`column IN values`; on PostgreSQL `= ANY(array)` with the array sent as one
    string."""
    if postgres():
        if item_type is sa.LargeBinary:
            text = ",".join(bytes(v).hex() for v in values)
            array = sa.func.array(sa.select(sa.func.decode(sa.column("x"), "hex")).select_from(
                sa.func.unnest(sa.func.string_to_array(text, ",")).alias("x")).scalar_subquery())
        else:
            array = sa.cast(sa.func.string_to_array(",".join(map(str, values)), ","),
                            postgresql.ARRAY(item_type))
        return column == sa.any_(array)
    return column.in_(values)


def run(sql: str, params: dict):
    return db.session.execute(sa.text(sql), params)


def csv(numbers: Iterable) -> str:
    """Numbers as one parameter, for `string_to_array`."""
    return ",".join(map(str, numbers))


def ids_in(column: str, ids: list[int]) -> tuple[str, dict]:
    """SQL text: `column` is one of these ids, as one parameter whatever their number."""
    if postgres():
        return f"{column} = ANY(CAST(string_to_array(:ids, ',') AS bigint[]))", {"ids": csv(ids)}
    return f"{column} IN (SELECT value FROM json_each(:ids))", {"ids": json.dumps(ids)}


def locked(table: str, columns: str, ids: list[int], **params) -> dict:
    """The rows of these ids, locked in id order (SQLite: the transaction already
    holds the database's write lock)."""
    where, more = ids_in("id", ids)
    params.update(more)
    lock = " FOR NO KEY UPDATE" if postgres() else ""
    rows = run(f"SELECT id, {columns} FROM {table} WHERE {where} ORDER BY id{lock}", params)
    return {row[0]: row for row in rows}


def lock_in_id_order(model, *where) -> list[int]:
    """Lock the rows of `model` that match `where`, in id order -- the order in which
    the market's fills lock leads -- and return their ids. A bulk UPDATE alone locks
    rows in whatever order it scans them, so it could deadlock with a group of fills;
    after this it only waits for them (or they for it). SQLite: the transaction holds
    the database's write lock already, and FOR UPDATE is left out."""
    return db.session.scalars(sa.select(model.id).where(*where).order_by(model.id)
                              .with_for_update()).all()


def stamp(value):
    """A parameter as the driver of this database takes it in a raw statement."""
    return sqlite_datetime(value) if isinstance(value, datetime) and not postgres() else value


def update_many(sql: str, names: tuple[str, ...], rows: list[tuple], shared: dict) -> int:
    """One conditional UPDATE over many rows, the statement written for this database
    (PostgreSQL: each of `names` as one array parameter; SQLite: one execution per
    row); returns how many rows it changed."""
    if postgres():
        arrays = {name: csv(row[i] for row in rows) for i, name in enumerate(names)}
        return run(sql, {**arrays, **shared}).rowcount
    shared = {k: stamp(v) for k, v in shared.items()}
    with driver_errors(sql):
        return sqlite_connection().executemany(
            sql, [{**dict(zip(names, row)), **shared} for row in rows]).rowcount


def sqlite_connection():
    """The raw sqlite3 connection of the session's transaction."""
    return db.session.connection().connection.driver_connection
