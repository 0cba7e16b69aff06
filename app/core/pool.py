"""Connections a database server dropped (a restart, an idle timeout, a failover) are
found before a request uses them: one that sat unused in the pool for more than a
second is pinged as it is checked out, and replaced if the ping fails (SQLAlchemy's
pessimistic disconnect handling, raising DisconnectionError from the checkout event).

SQLAlchemy's `pool_pre_ping` pings at every checkout instead, and a signed-in page
checks out twice (app/auth/decorators.py commits after the role check): on PostgreSQL
that was two round trips more per page, a quarter of a small page's. A busy server
reuses its connections within milliseconds, so it pings almost never; a quiet one,
whose connections idle for seconds, pings as pool_pre_ping did. A SQLite file drops
no connection and is never pinged."""
import time

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

PING_AFTER_IDLE_SECONDS = 1.0


def ping_idle_connections(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        return

    @event.listens_for(engine, "connect")
    def connected(dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def checked_in(dbapi_connection, record) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection, record, proxy) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError("the connection was dropped") from error
