"""PostgreSQL: a request that only reads runs without a transaction until it writes
(a helper wired to the engine's events; neither an operation nor a job).

In a transaction, every request paid a BEGIN before its first query and a ROLLBACK
after its last: two round trips to the server, more than a small page's own queries
(the health check is one SELECT). At READ COMMITTED, PostgreSQL's level here, each
statement of a transaction sees its own snapshot anyway, so reading in autocommit
changes nothing about what a page sees.

A request that may write (`app.extensions.may_write`: anything but GET, HEAD,
OPTIONS and the views marked `reads_only`) and every job keep their transactions as
before: the matcher, the money paths, every operation. A request that reads and then
writes after all (an API key's use recorded once a minute, a link opened from an
email) switches back before its first write: the driver's BEGIN then goes out with
that statement, and everything from there commits or rolls back together, as in any
transaction. What counts as a write is anything but a plain SELECT (locking reads,
savepoints and statements starting with WITH included); a streamed read (a server-side
cursor, which only lives in a transaction) opens one too."""
import re

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

_READING = "autocommit_reads"  # the connection record's info: set while we read so
_PLAIN_SELECT = re.compile(r"^\s*SELECT\b(?!.*\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE)\b)",
                           re.I | re.S)


def _driver_connection(connection):
    return connection.connection.dbapi_connection


def _stop_reading(dbapi_connection, info) -> None:
    if info.pop(_READING, False):
        dbapi_connection.autocommit = False  # no transaction is open: no round trip


@event.listens_for(Engine, "begin")
def _begin(connection) -> None:
    if connection.dialect.name != "postgresql":
        return
    from app.extensions import may_write

    driver = _driver_connection(connection)
    _stop_reading(driver, connection.info)
    if (not driver.autocommit and not may_write()
            and "isolation_level" not in connection.get_execution_options()):
        driver.autocommit = True
        connection.info[_READING] = True


@event.listens_for(Engine, "before_cursor_execute")
def _before_execute(connection, cursor, statement, parameters, context, executemany) -> None:
    # A streamed result reads through a server-side cursor, which lives in a transaction.
    if connection.info.get(_READING) and (getattr(context, "_is_server_side", False)
                                          or not _PLAIN_SELECT.match(statement)):
        _stop_reading(_driver_connection(connection), connection.info)


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
def _end(connection) -> None:
    if not connection.invalidated and connection.info.get(_READING):
        _stop_reading(_driver_connection(connection), connection.info)


@event.listens_for(Pool, "checkin")
def _checkin(dbapi_connection, record) -> None:
    if (record is not None and record.info.get(_READING) and dbapi_connection is not None
            and not dbapi_connection.closed):
        _stop_reading(dbapi_connection, record.info)
