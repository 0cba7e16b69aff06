"""Keeping leads' contact keys (app.models.contact_keys) in step when leads are
written in bulk, past the ORM. Operations: they write in the caller's transaction."""
from typing import Iterator

import sqlalchemy as sa

from app.core.bulk import SessionConnection
from app.extensions import db
from app.models import ContactKey, Lead
from app.models.contact_keys import keys_of
from app.services.ingest import storing

_CHUNK = 2000  # leads at a time


def store(rows: list[tuple[int, int]]) -> None:
    """Write (key, lead_id) rows, in key order: each touched page is written once."""
    storing.write_keys(SessionConnection().begin(), rows)


def _keys_of_leads(where) -> Iterator[list[tuple[int, int]]]:
    """The (key, lead_id) rows of the leads matching `where`, a chunk of leads at a
    time: a million-row batch stays in bounded memory."""
    after = 0
    while True:
        leads = db.session.execute(
            sa.select(Lead.id, Lead.email_hash, Lead.phone_hash).where(*where, Lead.id > after)
            .order_by(Lead.id).limit(_CHUNK)).all()
        if not leads:
            return
        yield sorted(pair for lead in leads for pair in keys_of(*lead))
        after = leads[-1][0]


def restore(*where) -> None:
    """Write the keys of the leads matching `where` that have none."""
    for rows in _keys_of_leads(where):
        store(rows)


def forget(*where) -> None:
    """Remove the keys of the leads matching `where` (before their hashes or the leads
    themselves go)."""
    table = ContactKey.__table__
    delete = table.delete().where(table.c.key == sa.bindparam("k"),
                                  table.c.lead_id == sa.bindparam("i"))
    for rows in _keys_of_leads(where):
        if rows:
            db.session.execute(delete, [{"k": k, "i": i} for k, i in rows])
