"""API keys and their users kept per process between requests (an operation: it only
reads), checked against the database on every use.

Loading a key and its user through the ORM (one statement of ~35 columns, two objects
built) was two fifths of a real-time lead's request CPU (docs/scaling.md). Here each
request reads only the key's revision: a digest (md5) of each of the two rows, every
column but the one that changes with use -- the key's last use, the user's figures
revision (raised by every sale of theirs) -- and those two columns themselves. Any
other write to either row -- the key revoked, the user deactivated, suspended, their
settings changed -- changes a digest, whoever wrote it, in any process, by the ORM or
not. The same digests: the request gets copies of the objects kept when they were read
(`Session.merge(load=False)`: no SQL) with the two columns as just read, exactly what
reading them would have given; other digests, or no row (the key is gone): they are
read again, or the key refused, at once. The digests are read before the objects, so a
change between the two leaves older digests kept than the data, and the next request
reads the data again, never the other way round. (Rows' `xmin` would do without the
digests but changes with those two columns, i.e. with each of a seller's sales.)

A real-time lead (`POST /leads`, app.api.auth.key_checked_with_sale) skips even that
statement: the request takes the kept copy unchecked (`unchecked`) and the seller's
group transaction that would store the lead checks the revision first (`changed`: one
statement for all of a group's keys); a changed or missing key stores nothing and the
request authenticates again and starts over. A request that reaches the database
before, or answers without a sale, checks it itself first.

SQLite: every request reads the key (`read`).
"""
import threading
from collections import OrderedDict
from typing import Callable, Optional

import sqlalchemy as sa
from flask import g, has_request_context
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.errors import DomainError
from app.extensions import db
from app.models import ApiKey, User

MAX_KEYS = 1024  # per process; the least recently used goes first
_kept: OrderedDict[str, tuple[tuple, ApiKey]] = OrderedDict()  # hash -> (revision, key)
_lock = threading.Lock()
_PENDING = "leadx_key_checks_pending"  # flask.g: {(key hash, revision)} not checked yet


def _digest(table: sa.Table, volatile: str):
    """md5 of the row's columns but `volatile`, as one record's text."""
    return sa.func.md5(sa.cast(sa.tuple_(*(c for c in table.c if c.name != volatile)), sa.Text))


_KEYS, _USERS = ApiKey.__table__, User.__table__
_REVISION = (sa.select(_digest(_KEYS, "last_used_at"), _digest(_USERS, "figures_revision"),
                       _KEYS.c.last_used_at, _USERS.c.figures_revision)
             .join_from(_KEYS, _USERS, _USERS.c.id == _KEYS.c.user_id)
             .where(_KEYS.c.key_hash == sa.bindparam("h")))
_REVISIONS = (sa.select(_KEYS.c.key_hash, _digest(_KEYS, "last_used_at"),
                        _digest(_USERS, "figures_revision"))
              .join_from(_KEYS, _USERS, _USERS.c.id == _KEYS.c.user_id)
              .where(_KEYS.c.key_hash.in_(sa.bindparam("hs", expanding=True))))


class KeyChanged(DomainError):
    """The kept copy a request used unchecked is no longer the key's or its user's
    state (or the key is gone): the request authenticates again (never answered as is)."""

    code = "api_key_changed"
    status = 401


def key_with_user(key_hash: str, read: Callable[[], Optional[ApiKey]]) -> Optional[ApiKey]:
    """The key with this hash, its user loaded, in this request's session: as `read()`
    returns it, or a copy of what it returned at the same revision in this process."""
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        return read()
    db.session.flush()  # what this session changed counts
    found = connection.execute(_REVISION, {"h": key_hash}).first()
    if found is None:
        return None
    revision, (last_used_at, figures_revision) = tuple(found[:2]), found[2:]
    with _lock:
        entry = _kept.get(key_hash)
        if entry is not None and entry[0] == revision:
            _kept.move_to_end(key_hash)
            kept = entry[1]
        else:
            kept = None
    # A key this session holds already (a job's, a test's) is its own, as read.
    if kept is not None and sa.inspect(kept).key not in db.session.identity_map:
        key = db.session.merge(kept, load=False)  # its user along, no SQL
        set_committed_value(key, "last_used_at", last_used_at)
        set_committed_value(kept, "last_used_at", last_used_at)  # for `unchecked`
        set_committed_value(key.user, "figures_revision", figures_revision)
        return key
    key = read()
    if key is not None:
        with _lock:
            _kept[key_hash] = (revision, _detached(key))
            while len(_kept) > MAX_KEYS:
                _kept.popitem(last=False)
    return key


def unchecked(key_hash: str, usable: Callable[[ApiKey], bool]) -> Optional[ApiKey]:
    """The kept copy of the key with this hash, its user along, in this request's
    session (no SQL), not checked, if `usable(copy)`: the request then owes the check
    of the revision it was kept at (`take_pending`, `check_pending`) before anything
    it does counts. None if not kept or not usable."""
    with _lock:
        entry = _kept.get(key_hash)
        if entry is not None:
            _kept.move_to_end(key_hash)
    if (entry is None or not usable(entry[1])
            or sa.inspect(entry[1]).key in db.session.identity_map):
        return None
    g.setdefault(_PENDING, set()).add((key_hash, entry[0]))
    return db.session.merge(entry[1], load=False)


def take_pending() -> frozenset:
    """The (key hash, revision) pairs this request owes a check of, handed to whoever
    checks them in the transaction that makes the request count (a real-time group)."""
    return frozenset(g.pop(_PENDING, ()) if has_request_context() else ())


def check_pending(connection=None) -> None:
    """Check the revisions this request owes now: KeyChanged if one changed."""
    pending = take_pending()
    if pending and changed(pending, connection):
        raise KeyChanged("The API key or its user changed since it was kept.")


def changed(pairs, connection=None) -> set[tuple]:
    """Which of these (key hash, revision) pairs are no longer their key's and user's
    rows (or the key is gone), read in one statement in this session's transaction
    (or on `connection`); their keys are no longer kept."""
    pairs = set(pairs)
    if not pairs:
        return set()
    connection = connection if connection is not None else db.session.connection()
    found = {(h, *revision) for h, *revision
             in connection.execute(_REVISIONS, {"hs": sorted({h for h, _ in pairs})})}
    stale = {(h, revision) for h, revision in pairs if (h, *revision) not in found}
    with _lock:
        for key_hash, _ in stale:
            _kept.pop(key_hash, None)
    return stale


@sa.event.listens_for(Session, "after_begin")
def _checked_before_first_statement(session, transaction, connection) -> None:
    """A request using a key unchecked reaches the database: the key is checked
    before the request's first statement."""
    if has_request_context() and _PENDING in g:
        check_pending(connection)


def noted_use(key_hash: str, when) -> None:
    """The key's use just recorded: the kept copy says so, so that this process writes
    it again only a minute later (`accounts.use_to_record`)."""
    with _lock:
        entry = _kept.get(key_hash)
    if entry is not None:
        set_committed_value(entry[1], "last_used_at", when)


def forget() -> None:
    """Drop every kept key (tests: a database emptied between them reuses ids, and a
    revision may come again)."""
    with _lock:
        _kept.clear()


def _detached(key: ApiKey) -> ApiKey:
    """A copy of the key and its user in no session (shared by threads, only read)."""
    copy = _copy(key)
    set_committed_value(copy, "user", _copy(key.user))
    return copy


def _copy(obj):
    mapper = sa.inspect(obj).mapper
    copy = mapper.class_manager.new_instance()
    for attr in mapper.column_attrs:
        set_committed_value(copy, attr.key, getattr(obj, attr.key))
    make_transient_to_detached(copy)
    return copy
