"""Keeping leads' contact keys (app.models.contact_keys) in step when leads are
written in bulk, past the ORM. Operations: they write in the caller's transaction."""
import sqlalchemy as sa

from app.core.bulk import SessionConnection
from app.extensions import db
from app.models import ContactKey, Lead
from app.models.contact_keys import keys_of
from app.services.ingest import storing

_FORGET_CHUNK = 2000


def store(rows: list[tuple[int, int]]) -> None:
    """Write (key, lead_id) rows, in key order: each touched page is written once."""
    storing.write_keys(SessionConnection().begin(), rows)


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
