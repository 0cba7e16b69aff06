"""copy_ready.pack: every packed row is its values as binary COPY fields, one by one,
whatever mix of varied, few-valued and single-valued columns a chunk has."""
import random
from datetime import datetime, timedelta, timezone

from app.core import pgcopy
from app.services.ingest import copy_ready, workers

_EXAMPLES = {
    "int2": lambda rng: rng.randrange(-300, 300), "int4": lambda rng: rng.randrange(10**6),
    "bool": lambda rng: rng.random() < 0.5, "bytea": lambda rng: rng.randbytes(16),
    "text": lambda rng: rng.choice(["", "a", "Согласие", "x" * 40, "😀"]) + str(rng.randrange(9)),
    "timestamptz": lambda rng: datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(
        microseconds=rng.randrange(10**13)),
}


def _straightforward(columns, rows) -> list[tuple]:
    at = columns.index
    return [(row[at("row_number")], row[at("email_hash")], row[at("phone_hash")],
             b"".join(pgcopy.field(copy_ready.KINDS[name], value)
                      for name, value in zip(columns, row)))
            for row in rows]


def test_packed_rows_are_each_value_as_a_field():
    rng = random.Random(3)
    for turn in range(300):
        columns = list(workers.ACCEPTED_COLUMNS)
        if turn % 2:  # any order: a chunk may start with a few-valued column
            rng.shuffle(columns)
        count = rng.randrange(1, 30)
        by_column = []
        for name in columns:
            make = _EXAMPLES[copy_ready.KINDS[name]]
            shape = rng.choice(["varied", "few", "one", "null"])
            if name == "row_number":
                shape = "varied"
            if shape == "varied":
                column = [None if rng.random() < 0.2 else make(rng) for _ in range(count)]
            elif shape == "few":
                choices = [None, make(rng), make(rng)]
                column = [rng.choice(choices) for _ in range(count)]
            else:
                column = [make(rng) if shape == "one" else None] * count
            by_column.append(column)
        rows = list(zip(*by_column))
        assert copy_ready.pack(columns, rows) == _straightforward(columns, rows)
    assert copy_ready.pack(workers.ACCEPTED_COLUMNS, []) == []


def test_a_column_is_each_value_as_a_field():
    """pgcopy.column, by kind, with and without NULLs, one by one or per distinct value:
    each value's pgcopy.field (byte strings of any length too)."""
    rng = random.Random(4)
    examples = {**_EXAMPLES, "int8": lambda rng: rng.randrange(-10**15, 10**15),
                "bytea": lambda rng: rng.randbytes(rng.randrange(0, 90))}
    for kind in pgcopy.KINDS:
        for turn in range(40):
            values = [examples[kind](rng) for _ in range(rng.randrange(0, 25))]
            if turn % 2 and values:
                values[rng.randrange(len(values))] = None
            expected = [pgcopy.field(kind, value) for value in values]
            assert pgcopy.column(kind, values) == expected, kind
            assert pgcopy.column(kind, values, distinct=True) == expected, kind
