"""An account's figures (its sales, their returns and outcomes, its batches'
spot-checks, aggregated for its pages), computed once per revision of the account
(a helper: neither an operation nor a job; it adds one statement to the commits of
the operations that change such figures).

Every write that changes an account's figures says whose in its transaction
(`changed(*user_ids)`); as that transaction commits, those accounts'
`users.figures_revision` goes up by one in it, in id order and after everything else
the transaction locked (so it makes no new lock cycle). Pages read the revision with
the account they load anyway (the signed-in user's query, an API key's) and `kept()`
gives back what was computed at that revision in this process: a bounded LRU of
aggregates, never personal data. A commit in any process raises the revision in the
database, so every process's entries go stale at once; read before the figures, the
revision can only be older than the data the figures were computed from, never newer.

An account's money is among its figures: the ledger says whose accounts every
movement touches (app/services/ledger.py writes every entry), so balances and
statements are kept per revision too; so are a buyer's open privacy notices (people
who asked to be erased or opted out), counted on their dashboard.

With FIGURES_CHECK_WRITES (the testing configuration), a commit that wrote to sales,
returns, sale_outcomes, spot_checks, ledger_entries, erasure_notices or
opt_out_notices without saying whose figures changed raises: a write path that forgets `changed()` fails the test suite (a
movement between the exchange's own accounts says so with no account)."""
import re
import threading
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.extensions import db

T = TypeVar("T")
MAX_ENTRIES = 4096  # per process; the least recently used goes first
_entries: OrderedDict[Hashable, object] = OrderedDict()
_lock = threading.Lock()
_CHANGED = "figures_changed"  # session.info: ids of the accounts whose figures changed
_CONNECTION = "figures_connection"  # session.info: its transaction's connection, if any
_CHECKED, _WROTE = "figures_checked", "figures_wrote"  # connection.info, for the check
_MISSING = object()
WATCHED = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE)\s+"?(sales|returns|sale_outcomes|'
                     r'spot_checks|ledger_entries|erasure_notices|opt_out_notices)\b', re.I)


def changed(*user_ids) -> None:
    """These accounts' figures change in the current transaction."""
    db.session.info.setdefault(_CHANGED, set()).update(i for i in user_ids if i is not None)


def kept(account, name: str, key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`'s value for this account at its revision, computed once per
    process. The value is shared: callers read it, never change it. A transaction
    that changed the account's figures and has not committed yet computes its own."""
    if account.id in db.session.info.get(_CHANGED, ()):
        return compute()
    entry = (name, account.id, account.figures_revision, key)
    with _lock:
        value = _entries.get(entry, _MISSING)
        if value is not _MISSING:
            _entries.move_to_end(entry)
            return value  # type: ignore[return-value]
    value = compute()
    with _lock:
        _entries[entry] = value
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return value


def forget() -> None:
    """Drop every entry (tests: a database emptied between them reuses ids and
    revisions)."""
    with _lock:
        _entries.clear()


@event.listens_for(Session, "before_commit")
def _raise_revisions(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint's release: the transaction goes on
    conn = session.info.get(_CONNECTION)
    if conn is not None and conn.info.get(_CHECKED):
        _check(session, conn)
    ids = sorted(session.info.pop(_CHANGED, ()))
    if not ids:
        return
    from app.models import User

    users = User.__table__
    which = users.c.id.in_(ids)
    if len(ids) > 1 and session.get_bind().dialect.name == "postgresql":
        # Locked in id order (the sort is under the lock: two transactions raising the
        # same accounts wait, never deadlock), in the update's own statement.
        which = users.c.id.in_(sa.select(users.c.id).where(users.c.id.in_(ids))
                               .order_by(users.c.id).with_for_update(key_share=True))
    session.execute(sa.update(users).where(which)
                    .values(figures_revision=users.c.figures_revision + 1))
    for loaded in list(session.identity_map.values()):
        # By identity key: reading `.id` of an expired user whose row is gone would
        # load it, and raise.
        if isinstance(loaded, User) and sa.inspect(loaded).identity[0] in ids:
            session.expire(loaded, ["figures_revision"])  # read again after the commit


@event.listens_for(Session, "after_begin")
def _connected(session: Session, transaction, conn) -> None:
    session.info[_CONNECTION] = conn


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction) -> None:
    if transaction.parent is None:  # the whole transaction, not a savepoint of it
        session.info.pop(_CHANGED, None)
        session.info.pop(_CONNECTION, None)


def _check(session: Session, conn) -> None:
    session.flush()  # what the commit would flush is written now, and seen
    table = conn.info.pop(_WROTE, None)
    if table and _CHANGED not in session.info:
        raise AssertionError(f"a transaction wrote to {table} and is committing without "
                             "app.core.figures.changed(): the figures of the accounts it "
                             "changed would stay stale")


def check_writes(engine: Engine) -> None:
    """Fail a session's commit that wrote a watched table without `changed()` (tests;
    migrations and the tests' own clean-up write outside sessions)."""

    @event.listens_for(engine, "begin")
    def begun(conn) -> None:
        conn.info.pop(_WROTE, None)
        conn.info[_CHECKED] = True

    @event.listens_for(engine, "before_cursor_execute")
    def wrote(conn, cursor, statement, parameters, context, executemany) -> None:
        found = WATCHED.match(statement)
        if found:
            conn.info[_WROTE] = found.group(1)
