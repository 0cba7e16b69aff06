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

SQLite: every request reads the key (`read`).
"""
import threading
from collections import OrderedDict
from typing import Callable, Optional

import sqlalchemy as sa
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.models import ApiKey, User

MAX_KEYS = 1024  # per process; the least recently used goes first
_kept: OrderedDict[str, tuple[tuple, ApiKey]] = OrderedDict()  # hash -> (revision, key)
_lock = threading.Lock()


def _digest(table: sa.Table, volatile: str):
    """md5 of the row's columns but `volatile`, as one record's text."""
    return sa.func.md5(sa.cast(sa.tuple_(*(c for c in table.c if c.name != volatile)), sa.Text))


_KEYS, _USERS = ApiKey.__table__, User.__table__
_REVISION = (sa.select(_digest(_KEYS, "last_used_at"), _digest(_USERS, "figures_revision"),
                       _KEYS.c.last_used_at, _USERS.c.figures_revision)
             .join_from(_KEYS, _USERS, _USERS.c.id == _KEYS.c.user_id)
             .where(_KEYS.c.key_hash == sa.bindparam("h")))


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
    revision, (last_used_at, figures_revision) = found[:2], found[2:]
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
        set_committed_value(key.user, "figures_revision", figures_revision)
        return key
    key = read()
    if key is not None:
        with _lock:
            _kept[key_hash] = (revision, _detached(key))
            while len(_kept) > MAX_KEYS:
                _kept.popitem(last=False)
    return key


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
