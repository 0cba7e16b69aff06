"""Writing many rows at once, faster than the ORM: COPY on PostgreSQL, one
executemany of prepared values on SQLite, and ids handed out in advance so related
rows can be written together without RETURNING."""
import json
from contextlib import contextmanager
from datetime import datetime, timezone

import sqlalchemy as sa

from app.extensions import db
from app.models.types import UTCDateTime


def sqlite_datetime(moment: datetime) -> str:
    """An aware datetime as SQLAlchemy stores it in SQLite (comparable as text)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_value(column_type):
    """How SQLAlchemy would store a value of this type in SQLite, done without it."""
    if isinstance(column_type, UTCDateTime):
        return lambda v: sqlite_datetime(v) if v else v
    if isinstance(column_type, sa.JSON):
        return lambda v: None if v is None else json.dumps(v, ensure_ascii=False)
    if isinstance(column_type, sa.Boolean):
        return lambda v: None if v is None else int(v)
    return None


@contextmanager
def driver_errors(statement: str):
    """Calls made on the driver's own connection raise what SQLAlchemy would raise
    (IntegrityError, OperationalError, ... with the driver's error as `.orig`), so
    callers catch one family of errors whichever way a statement was sent."""
    dbapi = db.session.get_bind().dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi.Error) from exc


def bulk_insert(table: sa.Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Many rows in one go: COPY on PostgreSQL, one executemany of prepared values on
    SQLite (SQLAlchemy's per-value processing would cost more than the insert)."""
    if not rows:
        return
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        converters = [(i, convert) for i, name in enumerate(columns)
                      if (convert := _sqlite_value(table.c[name].type))]
        prepared = []
        for row in rows:
            row = list(row)
            for i, convert in converters:
                row[i] = convert(row[i])
            prepared.append(row)
        placeholders = ", ".join("?" * len(columns))
        statement = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})"
        with driver_errors(statement):
            connection.connection.driver_connection.executemany(statement, prepared)
        return
    if connection.dialect.name == "postgresql":
        from psycopg.types.json import Json

        json_columns = [i for i, name in enumerate(columns)
                        if isinstance(table.c[name].type, sa.JSON)]
        cursor = connection.connection.driver_connection.cursor()
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with driver_errors(statement), cursor.copy(statement) as copy:
            for row in rows:
                if json_columns:
                    row = list(row)
                    for i in json_columns:
                        row[i] = Json(row[i])
                copy.write_row(row)
        return
    connection.execute(table.insert(), [dict(zip(columns, row)) for row in rows])


def _sqlite_literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (bool, int)):
        return str(int(value))
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"No SQLite literal for {type(value).__name__}")


def sqlite_insert(table: sa.Table, columns: tuple[str, ...], constants: dict[str, object]
                  ) -> str:
    """SQLite: an INSERT of `columns` bound per row, plus columns that hold one value
    for all rows (ints, bools, text; datetimes given as the database's text), written
    into the statement once instead of being bound for every row."""
    names, values = _sqlite_columns(dict.fromkeys(columns, "?"), constants)
    return f"INSERT INTO {table.name} ({names}) VALUES ({values})"


def sqlite_insert_select(table: sa.Table, selected: dict[str, str],
                         constants: dict[str, object], source: str) -> str:
    """SQLite: an INSERT of the rows of `source`, each column of `selected` given by its
    expression over them, plus `constants` (sqlite_insert)."""
    names, values = _sqlite_columns(selected, constants)
    return f"INSERT INTO {table.name} ({names}) SELECT {values} FROM {source}"


def _sqlite_columns(expressions: dict[str, str], constants: dict[str, object]
                    ) -> tuple[str, str]:
    """The column list of an INSERT, and what goes in each column."""
    return (", ".join((*expressions, *constants)),
            ", ".join([*expressions.values(), *map(_sqlite_literal, constants.values())]))


def insert_ready(table: sa.Table, columns: tuple[str, ...], rows: list[tuple],
                 constants: dict[str, object]) -> None:
    """Rows already in the driver's own form (see ingest.workers.STORAGE_FORMATS), plus
    `constants` (sqlite_insert); COPY sends them with each row."""
    if not rows:
        return
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        connection.connection.driver_connection.executemany(
            sqlite_insert(table, columns, constants), rows)
        return
    names = ", ".join(columns + tuple(constants))
    if connection.dialect.name != "postgresql":
        raise NotImplementedError(connection.dialect.name)
    tail = tuple(constants.values())
    cursor = connection.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        write = copy.write_row
        for row in rows:
            write(row + tail)


class SessionConnection:
    """The session's own connection, as app.services.ingest.storing takes one: its
    transaction begun by SQLAlchemy (on SQLite with the app's write lock) and ended
    by the session."""

    def __init__(self):
        self.dialect = db.session.get_bind().dialect.name
        self.driver = None

    def begin(self) -> "SessionConnection":
        self.driver = db.session.connection().connection.driver_connection
        return self

    def commit(self) -> None:
        db.session.commit()

    def rollback(self) -> None:
        db.session.rollback()


def kind_of(column_type) -> str:
    """A column type's kind in PostgreSQL's binary COPY format (app.core.pgcopy)."""
    if isinstance(column_type, UTCDateTime):
        return "timestamptz"
    for kind, types in (("int8", sa.BigInteger), ("int2", sa.SmallInteger), ("int4", sa.Integer),
                        ("bool", sa.Boolean), ("bytea", sa.LargeBinary),
                        ("text", (sa.String, sa.JSON))):
        if isinstance(column_type, types):
            return kind
    raise TypeError(f"No binary COPY kind for {column_type!r}")


def copy_binary(table: sa.Table, columns: tuple[str, ...], data: bytes) -> None:
    """PostgreSQL: a whole binary COPY stream (app.core.pgcopy) of these columns."""
    driver = db.session.connection().connection.driver_connection
    if driver.info.encoding != "utf-8":  # text fields are packed as UTF-8
        raise RuntimeError(f"binary COPY needs a UTF-8 connection, not {driver.info.encoding}")
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with driver_errors(statement), driver.cursor().copy(statement) as copy:
        copy.write(data)


_sequences: dict[tuple[str, str], str] = {}  # (database, table) -> its id sequence


def allocate_ids(table: sa.Table, count: int) -> list[int]:
    """`count` fresh primary keys for `table`, reserved for this transaction."""
    if count == 0:
        return []
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        key = (str(connection.engine.url), table.name)
        if key not in _sequences:
            _sequences[key] = connection.execute(sa.text(
                "SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table.name}).scalar()
        # The sequence named by a parameter: PostgreSQL resolves it once, where a lookup
        # inside the statement ran for every id (eight times slower).
        ids = connection.execute(  # one string rather than `count` rows
            sa.text("SELECT string_agg(nextval(CAST(:sequence AS regclass))::text, ',') "
                    "FROM generate_series(1, :count)"),
            {"sequence": _sequences[key], "count": count}).scalar()
        return list(map(int, ids.split(",")))
    # SQLite: this transaction holds the database's write lock (BEGIN IMMEDIATE), so
    # nobody else can take the next ids before we insert them.
    top = connection.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar()
    return list(range(top + 1, top + 1 + count))
