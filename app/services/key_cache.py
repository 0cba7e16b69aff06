"""API keys and their users kept per process between requests (an operation: it only
reads), checked against the database on every use.

Loading a key and its user through the ORM (one statement of ~35 columns, two objects
built) was two fifths of a real-time lead's request CPU (docs/scaling.md). Here each
request asks PostgreSQL only for the key's revision: the `xmin` of the key's row and of
its user's row (the id of the transaction that wrote each row last, so any write to
either -- revoked, rotated away, the user deactivated, suspended, their figures or
settings changed -- gives new ones, whoever wrote it, in any process, by the ORM or
not). The same revision: the request gets copies of the objects kept when it was read
(`Session.merge(load=False)`: no SQL); another one, or none (the key is gone): it is
read again, or refused, at once. The revision is read before the objects, so a
change between the two makes the kept revision older than the data, and the next
request reads the data again, never the other way round.

SQLite has no `xmin`: there every request reads the key (`read`).
"""
import threading
from collections import OrderedDict
from typing import Callable, Optional

import sqlalchemy as sa
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.core.dialect import postgres
from app.extensions import db
from app.models import ApiKey

MAX_KEYS = 1024  # per process; the least recently used goes first
_kept: OrderedDict[str, tuple[str, ApiKey]] = OrderedDict()  # hash -> (revision, key)
_lock = threading.Lock()
_REVISION = sa.text("SELECT api_keys.xmin::text || '.' || users.xmin::text FROM api_keys "
                    "JOIN users ON users.id = api_keys.user_id WHERE api_keys.key_hash = :h")


def key_with_user(key_hash: str, read: Callable[[], Optional[ApiKey]]) -> Optional[ApiKey]:
    """The key with this hash, its user loaded, in this request's session: as `read()`
    returns it, or a copy of what it returned at the same revision in this process."""
    if not postgres():
        return read()
    revision = db.session.execute(_REVISION, {"h": key_hash}).scalar()  # after a flush
    if revision is None:
        return None
    with _lock:
        entry = _kept.get(key_hash)
        if entry is not None and entry[0] == revision:
            _kept.move_to_end(key_hash)
            kept = entry[1]
        else:
            kept = None
    # A key this session holds already (a job's, a test's) is its own, as read.
    if kept is not None and sa.inspect(kept).key not in db.session.identity_map:
        return db.session.merge(kept, load=False)  # its user along, no SQL
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
