"""PostgreSQL's binary COPY format, packed in plain Python (struct): rows can be made
ready for COPY where the work is spread out (ingest workers, which import no database
driver), and the process that writes them only joins bytes. The server reads binary
values as they are, where COPY's text format has it parse every integer, time and
hex-escaped byte string. Pure functions: no driver, no SQLAlchemy.

A binary COPY stream is SIGNATURE, then per row its field count (2 bytes) and each
field as its length (4 bytes, -1 for NULL) and bytes, then TRAILER. A value's bytes
must be its column type's binary form exactly (an int4 for an integer column, not an
int8), or the server refuses the stream: `kind_of` gives a column's kind.
"""
import struct
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from itertools import repeat
from operator import add, floordiv, sub

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
FIELD_COUNT = struct.Struct(">h")

_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # PostgreSQL's time zero
_MICROSECOND = timedelta(microseconds=1)
_LENGTH = struct.Struct(">i").pack
_NUMBERS = {"int2": (struct.Struct(">ih").pack, 2), "int4": (struct.Struct(">ii").pack, 4),
            "int8": (struct.Struct(">iq").pack, 8)}
_BOOLEANS = {True: b"\x00\x00\x00\x01\x01", False: b"\x00\x00\x00\x01\x00", None: NULL}
KINDS = ("int2", "int4", "int8", "bool", "bytea", "text", "timestamptz")


def _text(value: str) -> bytes:
    data = value.encode()  # the connection's encoding must be UTF-8 (see bulk.copy_binary)
    return _LENGTH(len(data)) + data


def _bytea(value: bytes) -> bytes:
    return _LENGTH(len(value)) + value


def _timestamptz(value: datetime) -> bytes:
    return _NUMBERS["int8"][0](8, (value - _EPOCH) // _MICROSECOND)


def _encoder(kind: str):
    if kind in _NUMBERS:
        pack, size = _NUMBERS[kind]
        return lambda value: pack(size, value)
    if kind == "bool":
        return _BOOLEANS.__getitem__
    return {"bytea": _bytea, "text": _text, "timestamptz": _timestamptz}[kind]


def field(kind: str, value) -> bytes:
    """One value as a field of a row (kind: one of KINDS; text also serves json)."""
    if value is None:
        return NULL
    return _encoder(kind)(value)


def column(kind: str, values: Sequence, distinct: bool = False) -> list[bytes]:
    """Every value of a column as fields; `distinct`: worked out once per distinct
    value (for columns that hold few)."""
    encode = _encoder(kind)
    if distinct:
        known = {value: NULL if value is None else encode(value) for value in set(values)}
        return list(map(known.__getitem__, values))
    # The usual kinds without a Python call per value (encode is one).
    if kind == "bool":
        return list(map(_BOOLEANS.__getitem__, values))
    if None in values:
        return [NULL if value is None else encode(value) for value in values]
    if kind in _NUMBERS:
        pack, size = _NUMBERS[kind]
        return list(map(pack, repeat(size), values))
    if kind == "bytea":
        return list(map(add, map(_LENGTH, map(len, values)), values))
    if kind == "timestamptz":
        return list(map(_NUMBERS["int8"][0], repeat(8), map(
            floordiv, map(sub, values, repeat(_EPOCH)), repeat(_MICROSECOND))))
    return list(map(encode, values))


def rows(kinds: Sequence[str], values: Iterable[Sequence]) -> bytes:
    """A whole COPY stream of these rows (a few at a time: it is built in memory)."""
    count = FIELD_COUNT.pack(len(kinds))
    encoders = [_encoder(kind) for kind in kinds]
    parts = [SIGNATURE]
    for row in values:
        parts.append(count)
        parts += [NULL if value is None else encode(value)
                  for encode, value in zip(encoders, row, strict=True)]
    parts.append(TRAILER)
    return b"".join(parts)
