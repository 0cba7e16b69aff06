"""How a lead is found by its contacts: one narrow row per email or phone hash.

Leads carry the keyed hashes of their email and phone (16 bytes each). Finding the
leads that hold a hash goes through this table instead of an index on each hash
column: a key is the hash's first 8 bytes as a signed integer with the kind in its
low bit, stored beside the lead's id as the table's whole primary key (WITHOUT ROWID
on SQLite: one b-tree, no table behind it), half the size of an index on one 16-byte
hash, and ingest writes a transaction's keys in key order; two indexes on leads had every
stored lead land on a random page of each. A key only narrows the search: readers
compare the full hash on the lead (`holding`), so two hashes sharing a prefix never
pass for one person, and a key left behind finds nothing.

Leads written through the ORM get their keys here (mapper events); bulk writers
(ingest, erasure, a failed batch's clean-up) keep them in step themselves through
app.services.contact_keys.
"""
from typing import Iterable, Optional

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.leads import Lead

KIND_BITS = {"email": 0, "phone": 1}


def key(kind: str, digest: bytes) -> int:
    """The key of a contact hash of this kind ("email" or "phone")."""
    return (int.from_bytes(digest[:8], "big", signed=True) & ~1) | KIND_BITS[kind]


def keys_of(lead_id: int, email_hash: Optional[bytes], phone_hash: Optional[bytes]
            ) -> list[tuple[int, int]]:
    """A lead's (key, lead_id) rows."""
    return [(key(kind, digest), lead_id)
            for kind, digest in (("email", email_hash), ("phone", phone_hash)) if digest]


class ContactKey(db.Model):
    __tablename__ = "contact_keys"
    __table_args__ = {"sqlite_with_rowid": False}

    key: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    lead_id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                         primary_key=True, autoincrement=False)


def holding(contacts: Iterable[tuple[str, bytes]]) -> sa.ColumnElement[bool]:
    """SQL: the leads holding any of these (kind, hash) contacts."""
    contacts = {(kind, bytes(digest)) for kind, digest in contacts if digest}
    if not contacts:
        return sa.false()
    by_kind = {kind: sorted(d for k, d in contacts if k == kind) for kind in KIND_BITS}
    columns = {"email": Lead.email_hash, "phone": Lead.phone_hash}
    return sa.and_(
        Lead.id.in_(sa.select(ContactKey.lead_id).where(
            ContactKey.key.in_(sorted({key(kind, d) for kind, d in contacts})))),
        sa.or_(*(columns[kind].in_(digests) for kind, digests in by_kind.items() if digests)))


_table = ContactKey.__table__


@sa.event.listens_for(Lead, "after_insert")
def _lead_inserted(mapper, connection, lead: Lead) -> None:
    rows = keys_of(lead.id, lead.email_hash, lead.phone_hash)
    if rows:
        connection.execute(_table.insert(), [{"key": k, "lead_id": i} for k, i in rows])


def _delete(connection, rows: list[tuple[int, int]]) -> None:
    if rows:
        connection.execute(
            _table.delete().where(_table.c.key == sa.bindparam("k"),
                                  _table.c.lead_id == sa.bindparam("i")),
            [{"k": k, "i": i} for k, i in rows])


@sa.event.listens_for(Lead, "after_update")
def _lead_updated(mapper, connection, lead: Lead) -> None:
    state = sa.inspect(lead)
    email, phone = state.attrs.email_hash.history, state.attrs.phone_hash.history
    if not (email.has_changes() or phone.has_changes()):
        return
    old_email = email.deleted[0] if email.deleted else lead.email_hash
    old_phone = phone.deleted[0] if phone.deleted else lead.phone_hash
    _delete(connection, keys_of(lead.id, old_email, old_phone))
    _lead_inserted(mapper, connection, lead)


@sa.event.listens_for(Lead, "after_delete")
def _lead_deleted(mapper, connection, lead: Lead) -> None:
    _delete(connection, keys_of(lead.id, lead.email_hash, lead.phone_hash))
