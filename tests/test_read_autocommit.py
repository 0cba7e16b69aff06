"""PostgreSQL: a request that only reads opens no transaction; one that writes, and
every job, keeps its transaction (app/core/read_autocommit.py). What the server
thinks is read from libpq's transaction status, which the server reports after
every statement."""
import pytest
import sqlalchemy as sa
from psycopg.pq import TransactionStatus

from app.extensions import db
from app.models import User
from tests.conftest import make_user, on_postgres

pytestmark = pytest.mark.skipif(not on_postgres(), reason="PostgreSQL's transactions")


def _server_status() -> TransactionStatus:
    return db.session.connection().connection.dbapi_connection.info.transaction_status


def _name_elsewhere(user_id: int) -> str:
    """The user's name as another connection sees it (what was committed)."""
    with db.engine.connect() as other:
        return other.execute(sa.select(User.display_name).where(User.id == user_id)).scalar()


@pytest.fixture
def user_id():
    user_id = make_user(display_name="Before").id
    db.session.remove()
    return user_id


def test_a_read_request_sends_no_begin_and_no_rollback(app, user_id):
    with app.test_request_context("/buyer/", method="GET"):
        db.session.execute(sa.select(User.id))
        assert _server_status() is TransactionStatus.IDLE  # no transaction open
        db.session.execute(sa.select(User.email))
        assert _server_status() is TransactionStatus.IDLE
        db.session.remove()


def test_a_read_request_that_writes_after_all_writes_in_one_transaction(app, user_id):
    with app.test_request_context("/api/v1/orders", method="GET"):
        user = db.session.get(User, user_id)
        user.display_name = "Half"
        db.session.flush()
        assert _server_status() is TransactionStatus.INTRANS
        db.session.execute(sa.update(User).where(User.id == user_id)
                           .values(email="changed@example.com"))
        assert _name_elsewhere(user_id) == "Before"  # not committed statement by statement
        db.session.rollback()
        assert _name_elsewhere(user_id) == "Before"
        user = db.session.get(User, user_id)
        assert _server_status() is TransactionStatus.IDLE  # reading again after the rollback
        user.display_name = "After"
        db.session.commit()
        db.session.remove()
    assert _name_elsewhere(user_id) == "After"


def test_a_locking_read_opens_a_transaction(app, user_id):
    with app.test_request_context("/buyer/", method="GET"):
        db.session.execute(sa.select(User.id).where(User.id == user_id).with_for_update())
        assert _server_status() is TransactionStatus.INTRANS  # the lock lasts until the end
        db.session.remove()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_request_that_may_write_reads_in_its_transaction(app, user_id, method):
    with app.test_request_context("/buyer/orders/new", method=method):
        db.session.execute(sa.select(User.id))
        assert _server_status() is TransactionStatus.INTRANS
        db.session.remove()


def test_a_job_after_a_read_request_on_the_same_connection_has_its_transaction(app, user_id):
    db.engine.dispose()  # the pool's one connection serves the request, then the job
    with app.test_request_context("/buyer/", method="GET"):
        db.session.execute(sa.select(User.id))
        backend = db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        db.session.remove()
    db.session.execute(sa.select(User.id))  # no request: a job
    assert db.session.execute(sa.text("SELECT pg_backend_pid()")).scalar() == backend
    assert _server_status() is TransactionStatus.INTRANS


def test_a_streamed_read_runs_in_a_transaction(app, user_id):
    """A server-side cursor (an export streamed in chunks) exists only in a transaction."""
    with app.test_request_context("/buyer/orders/1/leads.csv", method="GET"):
        rows = db.session.execute(sa.select(User.id), execution_options={"yield_per": 10})
        assert [row.id for row in rows] == [user_id]
        db.session.remove()
