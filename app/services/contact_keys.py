"""Keeping leads' contact keys (app.models.contact_keys) in step when leads are
written in bulk, past the ORM. Operations: they write in the caller's transaction."""
import struct

import sqlalchemy as sa

from app.core import pgcopy
from app.core.bulk import copy_binary, insert_ready
from app.extensions import db
from app.models import ContactKey, Lead
from app.models.contact_keys import keys_of

_FORGET_CHUNK = 2000
# A row of COPY's binary format (app.core.pgcopy): two fields, each an 8-byte integer.
_COPY_ROW = struct.Struct(">hiqiq")


def store(rows: list[tuple[int, int]]) -> None:
    """Write (key, lead_id) rows, in key order: each touched page is written once."""
    rows.sort()
    connection = db.session.connection()
    if not rows or connection.dialect.name != "postgresql":
        insert_ready(ContactKey.__table__, ("key", "lead_id"), rows, {})
        return
    # Packed here in one go: psycopg's write_row cost ~4 µs a row, two rows per lead.
    pack = _COPY_ROW.pack
    copy_binary(ContactKey.__table__, ("key", "lead_id"), b"".join(
        [pgcopy.SIGNATURE, *[pack(2, 8, k, 8, i) for k, i in rows], pgcopy.TRAILER]))


def ensure_statistics() -> bool:
    """PostgreSQL: give contact_keys statistics if it has none yet (ANALYZE, which
    sees this transaction's own rows), and say whether it has them. Without any, the
    planner takes every `key = ...` to match thousands of rows and plans scans and
    JIT compilation for a lookup of a few keys; a table that grows from nothing
    within one upload gets none from autovacuum in time. Once it has them, they scale
    with the table (its keys are nearly all distinct). A user who may not ANALYZE
    the table gets a warning from PostgreSQL, not an error."""
    if db.session.get_bind().dialect.name != "postgresql":
        return True
    driver = db.session.connection().connection.driver_connection
    have = "SELECT 1 FROM pg_stats WHERE tablename = 'contact_keys' AND attname = 'key' " \
           "AND schemaname = current_schema()"
    if driver.execute(have).fetchone():
        return True
    driver.execute("ANALYZE contact_keys")
    return driver.execute(have).fetchone() is not None


def forget(*where) -> int:
    """Remove the keys of the leads matching `where` (before their hashes or the leads
    themselves go); returns how many leads that was."""
    table = ContactKey.__table__
    delete = table.delete().where(table.c.key == sa.bindparam("k"),
                                  table.c.lead_id == sa.bindparam("i"))
    after, count = 0, 0
    while True:  # in chunks of leads: a failed million-row batch stays in bounded memory
        leads = db.session.execute(
            sa.select(Lead.id, Lead.email_hash, Lead.phone_hash).where(*where, Lead.id > after)
            .order_by(Lead.id).limit(_FORGET_CHUNK)).all()
        if not leads:
            return count
        rows = sorted(pair for lead in leads for pair in keys_of(*lead))
        if rows:
            db.session.execute(delete, [{"k": k, "i": i} for k, i in rows])
        after, count = leads[-1][0], count + len(leads)
