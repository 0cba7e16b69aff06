"""Pooled connections a database server dropped are found before use (app/core/pool.py)."""
import pytest
import sqlalchemy as sa

from app.core import pool
from app.extensions import db
from tests.conftest import on_postgres

pytestmark = pytest.mark.skipif(not on_postgres(), reason="a server that drops connections")


def _drop_the_pooled_connection() -> None:
    """Check a connection out and in, then have the server end its backend."""
    with db.engine.connect() as conn:
        backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with db.engine.connect() as other:  # the pool's one idle connection is the dropped one
        assert other.exec_driver_sql("SELECT pg_backend_pid()").scalar() == backend
        other.exec_driver_sql("SELECT 1")
    killer = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
    with killer.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({backend})").scalar()
    killer.dispose()


def test_an_idle_connection_the_server_dropped_is_replaced(app, monkeypatch):
    db.session.remove()
    db.engine.dispose()
    monkeypatch.setattr(pool, "PING_AFTER_IDLE_SECONDS", 0.0)
    _drop_the_pooled_connection()
    assert db.session.execute(sa.text("SELECT 1")).scalar() == 1


def test_a_connection_used_just_now_is_not_pinged(app, monkeypatch):
    """The check that makes pinging rare: with a long idle limit, the dropped
    connection is handed out as it is (what the first test guards against)."""
    db.session.remove()
    db.engine.dispose()
    monkeypatch.setattr(pool, "PING_AFTER_IDLE_SECONDS", 3600.0)
    _drop_the_pooled_connection()
    with pytest.raises(sa.exc.OperationalError):
        db.session.execute(sa.text("SELECT 1"))
    db.session.rollback()
    db.session.remove()
    db.engine.dispose()
