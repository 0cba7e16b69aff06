"""Accepted rows as the ingest workers hand them over for PostgreSQL: each row's values
already as fields of a binary COPY row (app.core.pgcopy), beside the three values the
storing process reads (the row number and the two contact hashes).

The storing process is the one serial step of an upload: with the rows as bytes it
unpickles four objects a row instead of one per column, and it writes a lead by
joining its id, its cross-seller flag and the batch's own columns around those bytes
(`leads_stream`), where the driver would format every value. The server reads binary
values as they are, where COPY's text format parses each number, time and hex-escaped
byte string. Pure functions: the workers import no Flask and no SQLAlchemy.
"""
import struct
from collections.abc import Sequence
from itertools import repeat

from app.core import pgcopy

# The binary kind of each column a worker fills (workers.ACCEPTED_COLUMNS); the tests
# hold it to the leads table's types (bulk.kind_of), as the server would refuse a
# stream whose field has another type's size.
KINDS = {
    "row_number": "int4", "contact_enc": "bytea", "email_hash": "bytea", "phone_hash": "bytea",
    "has_email": "bool", "has_phone": "bool", "age": "int2", "gender": "text", "region": "text",
    "country": "text", "marital_status": "text", "employed": "text", "interests": "text",
    "budget": "text", "authority": "text", "need": "text", "timeframe": "text",
    "consent_at": "timestamptz", "source_url": "text", "consent_text": "text",
    "score_base": "int2", "sub_id": "text", "city": "text", "postal_code": "text",
    "trustedform_cert_url": "text", "jornaya_leadid": "text",
}
# Columns whose values nearly all differ: packed one by one; the others once per
# distinct value of the chunk.
_UNIQUE = {"row_number", "contact_enc", "email_hash", "phone_hash", "consent_at"}
# A packed row: (row number, email hash, phone hash, its fields as bytes).
EMAIL_HASH, PHONE_HASH, FIELDS = 1, 2, 3


def pack(columns: Sequence[str], rows: list[tuple]) -> list[tuple]:
    """Rows of `columns` (datetimes for times, JSON text for JSON) as packed rows."""
    return pack_columns(columns, list(zip(*rows))) if rows else []


def pack_columns(columns: Sequence[str], values: Sequence[Sequence]) -> list[tuple]:
    """The rows whose values are `values`, one sequence a column of `columns`, as
    packed rows: a worker builds its rows a column at a time (workers.py), so they are
    packed without being made rows first."""
    if not values or not len(values[0]):
        return []
    # Each row's fields, a column at a time; a run of columns that hold one value in
    # every row (the columns a file does not have) as one field of their joined bytes.
    fields: list = []
    same: list[bytes] = []
    for name, column in zip(columns, values, strict=True):
        if name not in _UNIQUE and column[0] is column[-1] and (
                column.count(column[0]) == len(column)):
            same.append(pgcopy.field(KINDS[name], column[0]))
            continue
        if same:
            fields.append(repeat(b"".join(same)))
            same = []
        fields.append(pgcopy.column(KINDS[name], column, distinct=name not in _UNIQUE))
    if same:
        fields.append(repeat(b"".join(same)))
    at = columns.index
    return list(zip(values[at("row_number")], values[at("email_hash")],
                    values[at("phone_hash")], map(b"".join, zip(*fields))))


_ID_FIRST = struct.Struct(">hiq")  # a row's field count, then its id (int8) as a field
_CROSS = {True: pgcopy.field("bool", True), False: pgcopy.field("bool", False)}


def leads_columns(columns: Sequence[str], constants: Sequence[str]) -> tuple[str, ...]:
    """The COPY column list of `leads_stream`."""
    return ("id", *columns, "cross_seller_duplicate", *constants)


def leads_stream(leads: list[tuple], field_count: int, tail: bytes) -> bytes:
    """A COPY stream of leads (leads_columns): each a packed row plus its cross-seller
    flag and id, `tail` the batch's own columns as fields, the same for every lead."""
    head, cross = _ID_FIRST.pack, _CROSS
    parts = [pgcopy.SIGNATURE]
    for _, _, _, fields, is_cross, lead_id in leads:
        parts += (head(field_count, 8, lead_id), fields, cross[is_cross], tail)
    parts.append(pgcopy.TRAILER)
    return b"".join(parts)
