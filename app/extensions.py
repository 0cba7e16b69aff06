"""Extension objects, created here and bound to the app in create_app (Migrations: one per app)."""
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mailman import Mail
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
import sqlite3
from functools import cached_property

from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names so Alembic migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Migrations:
    """Flask-Migrate as an app's `extensions["migrate"]`, without importing it: its
    import loads Alembic, Mako and Pygments (12 MB, 120 modules) that only migrations
    and `flask db` use (app.cli.MigrationCommands). Holds what Flask-Migrate's functions
    and migrations/env.py read there (Flask-Migrate's own _MigrateConfig)."""

    directory = "migrations"

    def __init__(self, db: SQLAlchemy):
        self.db = db
        # Batch mode: SQLite changes a table by copying it. One dict per app: env.py adds to it.
        self.configure_args = {"render_as_batch": True, "compare_type": True}

    @cached_property
    def migrate(self):
        """The flask_migrate.Migrate whose settings Flask-Migrate's commands read."""
        from flask_migrate import Migrate

        return Migrate(db=self.db, directory=self.directory, **self.configure_args)


db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
csrf = CSRFProtect()
mail = Mail()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


@event.listens_for(Engine, "connect")
def _sqlite_connection_setup(dbapi_connection, connection_record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Let SQLAlchemy emit BEGIN itself (below) instead of pysqlite's late implicit one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # 8 MB of page cache instead of 2: an upload inserts its contact keys at random
    # places, and with the default cache much of its storing time went to re-reading
    # pages (bench/ingest.py). Grown only when used; 16 MB took the upload's process
    # tree past its 300 MB (300k rows: 301 MB at 1.79x, 292 MB at 1.70x with 8 MB).
    cursor.execute("PRAGMA cache_size=-8192")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(connection) -> None:
    # pysqlite would open the transaction only at the first write, so two processes
    # could both read, then both write (an oversold lead). Jobs and requests that
    # change things take SQLite's write lock up front, which serialises writers
    # (PostgreSQL uses row locks instead); a page that only reads takes a snapshot
    # and no lock, so no reader waits for, or makes wait, anyone else.
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE" if may_write() else "BEGIN")


def may_write() -> bool:
    """Whether this request or job may change things (a page that only reads: False)."""
    from flask import current_app, has_request_context, request

    if not has_request_context():
        return True
    if request.method in SAFE_METHODS:
        return False
    return not getattr(current_app.view_functions.get(request.endpoint), "reads_only", False)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def reads_only(view):
    """A view that is posted to but changes nothing (the builder's live estimate,
    posted so that its form's secrets stay out of URLs): on SQLite it reads in a
    snapshot like a GET instead of queueing for the write lock behind every writer."""
    view.reads_only = True
    return view


def commit_keeping_loaded() -> None:
    """Commit, keeping the objects loaded so far as they are. Called where a request
    has read what it checks (the caller, their role) and is about to do slow work
    that needs no database, such as reading an uploaded file: on SQLite a request
    that changes things holds the write lock from its first query to its commit."""
    session = db.session()
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire
