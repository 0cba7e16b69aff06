"""Differential tests: column-wise validation against validate_row, row for row.

validate_columns may leave a row to validate_row, but a lead it decides must be the
very lead validate_row makes of that row; and it must decide every clean row that
validate_row accepts, or the speed it exists for is gone. Rows are seeded-random
mixes of the values sellers send, the near misses around them and broken text.
"""
import base64
import collections
import io
import json
import random
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from pathlib import Path

import pytest

from app.services.crypto import ContactVault
from app.services.ingest import columns as columns_module
from app.services.ingest import copy_ready
from app.services.ingest.columns import (
    MEMO_SIZE, _iso_date, _numeric_date, consent_times_of, each_distinct, interest_words,
    interests_of, normalise_emails, printable_lines, validate_columns,
)
from app.services.ingest.reader import open_csv
from app.services.ingest.validate import (
    RowContext, _ip, normalise_email, parse_timestamp, validate_row,
)
from app.services.ingest.workers import ACCEPTED_COLUMNS, _accepted_row, validate_chunk

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
CELLS = {
    "first_name": ["Anna", "  Мария ", "O'Brien", "", "Zoë  Ann", "\u200bJosé", "A\x07"],
    "last_name": ["Smith", "ИВАНОВА ", "", "García\tLópez"],
    "email": ["anna@example.com", " Anna.Smith+x@Example.ORG ", "", "bad@", "a@b", "почта@example.com",
              "x..y@example.com", "ok@exa_mple.com", "a@" + "b" * 70 + ".com", "j\ufffd@example.com"],
    "phone": ["+1 212 555 0100", "(212) 734-5678", "8 (916) 123-45-67", "+7 916 123 45 67",
              "", "12345", "+44 20 7946 0958", "07400 123456", "+34 612 345 678", "612345678",
              "0151 2345678", "+49 30 12345678", "n/a", "+1 (123) 456-7890", "001 212 734 5678",
              "79161234567", "+49 30 12"],
    "age": ["", "30", "30 years", "45 лет", "17", "130", "abc", "29.0"],
    "birth_date": ["", "", "1980-05-17", "05/17/1980", "17.05.1980", "2012-01-01", "soon",
                   "2030-01-01", "1980/5/17", "05/06/1980", "5/6/1980 10:00", "1980/05/06"],
    "gender": ["f", "Male", "жен", "", "other", "x"],
    "region": ["", "CA", "US-CA", "California", "Москва", "RU-MOW", "Madrid", "Springfield area",
               "London", "Bayern", "ny"],
    "city": ["", "", "Москва", "Madrid", "Nowhere"],
    "country": ["", "US", "USA", "Россия", "ES", "UK", "Germany", "Atlantis", "de"],
    "marital_status": ["", "married", "в браке", "soltera", "complicated"],
    "employed": ["", "yes", "нет", "self-employed", "maybe"],
    "interests": ["", "travel, cars", "Travel;CARS|travel", "авто", " , ", 'say "hi", a\\b'],
    "consent_at": ["2025-03-01T10:00:00Z", "2025-03-01 10:00:00", "01.03.2025 10:00",
                   "03/01/2025 10:00", "1740823200", "2025/03/01 10:00", "2025-03-01",
                   "2025-03-01T10:00:00+03:00", "", "yesterday", "2027-03-01T10:00:00Z",
                   "31.02.2025 10:00", "2026-12-01T12:04:00Z"],
    "source_url": ["https://blog.example.com/newsletter", "example.org/form", "", "not a url",
                   "ftp://example.com/x", "https://localhost/x"],
    "consent_text": ["", "I agree", "  Согласен   на обработку "],
    "consent": ["yes", "да", "Sí", "1", "true", "no", "нет", "", "maybe"],
    "ip": ["", "203.0.113.7", "2001:db8::1", "999.1.1.1", " 10.0.0.1 "],
    "sub_id": ["", "spring-campaign", "  partner 7 "],
    "postal_code": ["", "90210", "sw1a 1aa", "119019", "!!", "A"],
    "budget": ["", "10k", "n/a"],
    "need": ["", "urgent"],
    "trustedform_cert_url": ["", "https://cert.trustedform.com/" + "a" * 40,
                             "https://cert.trustedform.com/xyz"],
    "jornaya_leadid": ["", "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", "not-a-uuid"],
}


def _layouts(rng: random.Random):
    """Field orders as uploads map them: some fields missing, one mapped twice, a
    column left unmapped, rows shorter and longer than the header."""
    names = list(CELLS)
    for _ in range(40):
        chosen = rng.sample(names, rng.randint(3, len(names)))
        for must in ("consent_at", "source_url"):
            if must not in chosen and rng.random() < 0.9:
                chosen.append(must)
        if rng.random() < 0.2:
            chosen.insert(rng.randrange(len(chosen)), None)
        if rng.random() < 0.1:
            chosen.append(rng.choice(chosen))
        rng.shuffle(chosen)
        yield tuple(chosen)


def _row(rng: random.Random, fields: tuple) -> list[str]:
    # Mostly the first (good) value, so that many rows pass and their leads are compared.
    cells = [(CELLS[name][0] if rng.random() < 0.75 else rng.choice(CELLS[name])) if name
             else "junk" for name in fields]
    if rng.random() < 0.05:
        cells = cells[: rng.randrange(len(cells) + 1)]
    elif rng.random() < 0.05:
        cells += ["extra"]
    return cells


def _reference(fields, cells, ctx):
    width = len(fields)
    cells = cells if len(cells) >= width else list(cells) + [""] * (width - len(cells))
    return validate_row({name: cells[i] for i, name in enumerate(fields) if name}, ctx)


def _printable(fields, cells) -> bool:
    mapped = dict((name, cells[i] if i < len(cells) else "") for i, name in enumerate(fields)
                  if name)
    joined = "".join(mapped.values())
    return joined.isprintable() and "\ufffd" not in joined


@pytest.mark.parametrize("default_country", ["US", "RU", "GB"])
def test_column_wise_leads_are_validate_rows_leads(default_country):
    rng = random.Random(20261204)
    ctx = RowContext(default_country, NOW)
    decided = accepted = 0
    for fields in _layouts(rng):
        rows = [_row(rng, fields) for _ in range(400)]
        for cells, lead in zip(rows, validate_columns(rows, fields, ctx)):
            reference = _reference(fields, cells, ctx)
            if lead is not None:
                decided += 1
                assert lead == reference.lead, (fields, cells)
            elif reference.accepted and _printable(fields, cells):
                pytest.fail(f"a clean accepted row was left to validate_row: {fields} {cells}")
            accepted += reference.accepted
    assert decided > 1000 and accepted >= decided


@pytest.mark.parametrize("default_country", ["US", "DE"])
def test_the_column_pass_tells_a_failed_rows_verdict_as_validate_row_does(default_country):
    """A row the column pass did not decide: its verdict told there when it has one
    reason, or validate_row's given the pass's answers for it (its email, and its phone
    and consent time as read in its place): either way the verdict validate_row gives
    the row alone, every reason and every sentence alike, wherever the row's own place
    turns out to differ from the one the pass read it in."""
    rng = random.Random(20261206)
    ctx = RowContext(default_country, NOW)
    told, known_used = collections.Counter(), 0
    for fields in _layouts(rng):
        rows = [_row(rng, fields) for _ in range(300)]
        decided = columns_module.decide_columns(rows, fields, ctx)
        assert not decided.known.keys() & decided.rejected.keys()
        assert sorted(decided.known.keys() | decided.rejected.keys()) == [
            i for i, ok in enumerate(decided.ok) if not ok]
        for position in decided.known.keys() | decided.rejected.keys():
            cells = rows[position] + [""] * (len(fields) - len(rows[position]))
            values = {name: cells[i] for i, name in enumerate(fields) if name}
            reference = validate_row(values, ctx)
            if position in decided.rejected:
                assert decided.rejected[position] == reference, values
                told[reference.code] += 1
            else:
                known = decided.known[position]
                assert validate_row(values, ctx, known=known) == reference, values
                known_used += known.phone is not None or known.consent_at is not None
    assert known_used > 500, known_used
    assert set(told) == {"invalid_email", "invalid_phone", "no_contact", "no_consent",
                         "consent_in_future", "implausible_age", "unknown_region"}, told


def test_a_column_of_ip_addresses_is_ip_of_each():
    """ips_of finds the plain IPv4 addresses in one pass: every value reads as _ip reads
    it alone (leading zeros, spaces, IPv6, garbage, line breaks and empty cells too)."""
    values = ["203.0.113.7", "10.0.0.1", " 10.0.0.1 ", "010.0.0.1", "256.1.1.1", "1.2.3",
              "1.2.3.4.5", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "::ffff:1.2.3.4", "",
              None, "n/a", "١.٢.٣.٤", "192.0.2.1\n"]
    rng = random.Random(20261206)
    for _ in range(50):
        column = [rng.choice(values) for _ in range(rng.randrange(1, 30))]
        assert columns_module.ips_of(column) == [_ip(value) if value else None
                                                 for value in column], column


def test_a_leads_interests_are_its_own():
    fields = ("email", "consent_at", "source_url", "interests")
    row = ["a@example.com", "2025-03-01T10:00:00Z", "https://example.com/f", "cars"]
    first, second = validate_columns([row, list(row)], fields, RowContext("US", NOW))
    first.interests.append("boats")
    assert second.interests == ["cars"]


def _bench_generator(seed: int):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        from ingest import LeadGenerator
    finally:
        sys.path.pop(0)
    return LeadGenerator(seed)


HEADER_OF_BENCH = ("first_name", "last_name", "email", "phone", "age", "birth_date", "gender",
                   "region", "country", "marital_status", "employed", "interests",
                   "consent_at", "source_url", "consent_text", "ip")


def test_the_benchmark_file_is_decided_column_wise():
    """The benchmark's invented leads (every shape it writes): every accepted row is
    decided here, and each exactly as validate_row decides it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        from ingest import HEADER
    finally:
        sys.path.pop(0)
    assert tuple(HEADER) == HEADER_OF_BENCH
    generator = _bench_generator(7)
    rows = [generator.row(i) for i in range(2, 6002)]
    ctx = RowContext("US", NOW)
    leads = validate_columns(rows, tuple(HEADER), ctx)
    references = [_reference(tuple(HEADER), cells, ctx) for cells in rows]
    assert [lead is not None for lead in leads] == [r.accepted for r in references]
    assert [lead for lead in leads if lead] == [r.lead for r in references if r.accepted]


def _per_row(rows, fields, ctx, vault, storage):
    """validate_chunk's answer made row by row: validate_row, then each lead as
    workers._accepted_row builds it, each rejection with its codes, message, cells as
    the JSON encoder writes them and valid contacts' hashes."""
    accepted, rejected, contacts = [], [], []
    for number, cells in rows:
        verdict = _reference(fields, cells, ctx)
        if verdict.lead is not None:
            accepted.append(_accepted_row(number, verdict.lead, vault, storage))
            continue
        if verdict.email or verdict.phone:
            contacts.append((len(rejected),
                             verdict.email and vault.dedupe_hash("email", verdict.email),
                             verdict.phone and vault.dedupe_hash("phone", verdict.phone)))
        rejected.append((number, verdict.code, ";".join(verdict.codes), verdict.message,
                         json.dumps(cells, ensure_ascii=False)))
    return accepted, rejected, contacts


def _opened(vault, accepted):
    """Accepted rows with their sealed contacts opened (each seal has its own nonce)."""
    at = ACCEPTED_COLUMNS.index("contact_enc")
    return [row[:at] + (vault.open_contact(row[at]),) + row[at + 1:] for row in accepted]


def _fields(data: bytes) -> list:
    """A packed row's binary COPY fields, each its bytes (None for NULL)."""
    fields = []
    while data:
        size = int.from_bytes(data[:4], "big", signed=True)
        fields.append(None if size < 0 else data[4:4 + size])
        data = data[4 + max(size, 0):]
    return fields


def _opened_packed(vault, packed):
    """Packed rows (copy_ready) with their fields split and sealed contacts opened."""
    rows = [row[:3] + tuple(_fields(row[3])) for row in packed]
    return [row[:3] + tuple(_opened(vault, [row[3:]])[0]) for row in rows]


@pytest.mark.parametrize("storage", [None, "sqlite", "pgcopy"])
def test_chunks_are_built_as_row_by_row(storage):
    """validate_chunk builds its accepted rows a column at a time: the same rows, in the
    same order, as validate_row's leads give one by one; rejections keep every reason."""
    rng = random.Random(20261205)
    vault = ContactVault(base64.urlsafe_b64encode(bytes(range(32))).decode())
    ctx = RowContext("US", NOW)
    layouts = [tuple(HEADER_OF_BENCH)] + list(_layouts(rng))[:12]
    generator = _bench_generator(11)
    compared = 0
    for fields in layouts:
        if fields == tuple(HEADER_OF_BENCH):
            rows = [(n, generator.row(n)) for n in range(2, 1502)]
        else:
            rows = [(n, _row(rng, fields)) for n in range(2, 302)]
        result = validate_chunk(rows, fields, ctx, vault, storage)
        accepted, rejected, contacts = _per_row(rows, fields, ctx, vault, storage)
        if storage == "pgcopy":  # packed from columns: as the rows would be packed
            assert (_opened_packed(vault, result.accepted)
                    == _opened_packed(vault, copy_ready.pack(ACCEPTED_COLUMNS, accepted)))
        else:
            assert _opened(vault, result.accepted) == _opened(vault, accepted), fields
        assert [(number, code, codes, vault.decrypt(message), vault.decrypt(raw))
                for number, code, codes, message, raw in result.rejected] == rejected
        assert result.rejected_contacts == contacts
        compared += len(accepted)
    assert compared > 2000


def test_an_invalid_phone_reads_the_same_in_a_chunk_as_alone():
    """A number written with its "+" and country code is not read in any default
    country, and its sentence says nothing of one; without the "+" it says which."""
    vault = ContactVault(base64.urlsafe_b64encode(bytes(range(32))).decode())
    fields = ("phone", "consent_at", "source_url", "country")
    rows = [(n, [phone, "2025-03-01T10:00:00Z", "https://example.com/f", country])
            for n, (phone, country) in enumerate([("+49 30 12", ""), ("030 12", ""),
                                                  ("+49 30 12", "ES"), ("+1 212 555 0100", "")],
                                                 start=2)]
    result = validate_chunk(rows, fields, RowContext("DE", NOW), vault, "sqlite")
    messages = [vault.decrypt(message) for _, _, _, message, _ in result.rejected]
    assert messages == [_reference(fields, cells, RowContext("DE", NOW)).message
                        for _, cells in rows[:3]]
    assert messages == [
        "The phone “+49 30 12” is not a valid phone number.",
        "The phone “030 12” is not a valid phone number (numbers without a +country "
        "prefix are read as DE, from the batch's default country).",
        "The phone “+49 30 12” is not a valid phone number."]


def test_a_memo_gives_each_values_answer_and_stays_bounded():
    """each_distinct with a memo: convert's answer for every value, each distinct value
    converted once while the memo holds it; a chunk that would take the memo past
    MEMO_SIZE answers clears it first, so it never keeps more between chunks."""
    calls = []

    def convert(value):
        calls.append(value)
        return value * 2

    known: dict = {}
    assert each_distinct(convert, [1, 2, 1], known) == [2, 4, 2]
    assert each_distinct(convert, [2, 3, 3], known) == [4, 6, 6]
    assert each_distinct(convert, [5, 5, 5], known) == [10, 10, 10]
    assert sorted(calls) == [1, 2, 3, 5] and len(known) == 4
    big = list(range(100, 100 + MEMO_SIZE - 1))
    assert each_distinct(convert, big, known) == [value * 2 for value in big]
    assert len(known) == MEMO_SIZE - 1  # cleared first: 4 + 2047 would be past the size
    calls.clear()
    assert each_distinct(convert, [100, 7], known) == [200, 14] and calls == [7]


def test_bare_iso_dates_read_as_parse_timestamp_reads_them():
    rng = random.Random(5)
    values = ["1980-05-17", "1980-W01-1", "1980-13-01", "1980-02-30", "2000-02-29",
              "1980-05-1x", "1980-0517", "0000-01-01", "9999-12-31"]
    values += ["".join(rng.choice("0123456789-W") for _ in range(10)) for _ in range(5000)]
    for value in (v for v in values if v[4] == "-"):
        stamp = parse_timestamp(value)
        assert _iso_date(value) == (stamp.date() if stamp else None), value


EMAIL_PIECES = ("a", "Z", "0", ".", "..", "_", "%", "+", "-", "--", "@", "@@", " ", "é", "ж",
                "example", "EXAMPLE", "com", "c", "test", "local", "onion", "ru", "xn--p1ai",
                "'", '"', "(", "[", "\t", "\ufffd", "\x00", "l" * 63, "m" * 70)


def test_a_column_of_emails_is_normalise_email_of_each():
    """The whole-column pass never accepts what normalise_email (fast path or the
    library) refuses, nor writes an address differently; on made-up near misses of
    every shape, the bench file's addresses and long or broken columns."""
    rng = random.Random(20261205)
    generator = _bench_generator(13)
    plain = [f"{rng.choice(('ivan', 'a.b', 'x_y', 'K-9'))}{i}@{rng.choice(('mail.ru', 'Ex.CO.uk'))}"
             for i in range(50)]
    columns = [[generator.row(i)[2].strip() for i in range(2, 3002)]]
    for _ in range(300):
        column = []
        for _ in range(rng.randint(1, 60)):
            roll = rng.random()
            if roll < 0.4:
                value = rng.choice(plain)
            elif roll < 0.5:
                value = ""
            else:
                local = "".join(rng.choice(EMAIL_PIECES) for _ in range(rng.randint(0, 5)))
                domain = ".".join("".join(rng.choice(EMAIL_PIECES) for _ in range(
                    rng.randint(1, 3))) for _ in range(rng.randint(1, 4)))
                value = f"{local}@{domain}" if rng.random() < 0.8 else local + domain
            column.append(value)
        if rng.random() < 0.05:
            column.append("a@example.com\nb@example.com")  # a value with a line break
        columns.append(column)
    compared = 0
    for column in columns:
        expected = [normalise_email(value) if value else None for value in column]
        assert normalise_emails(column) == expected, column
        compared += sum(email is not None for email in expected)
    assert compared > 5000


def test_numeric_dates_read_as_parse_timestamp_reads_them():
    """A date _numeric_date reads is parse_timestamp's, day or month first; the rest
    (other shapes, impossible dates, other digits) it leaves to parse_timestamp."""
    rng = random.Random(8)
    values = ["17.05.1980", "05/17/1980", "17/05/1980", "05/06/1980", "1980/05/17",
              "31.02.1980", "29.02.2000", "00.01.1980", "13/13/1980", "17-05-1980",
              "17.05-1980", "1980/5/17", "1980-05-17", "１７.05.1980", "17.05.0000"]
    values += ["".join(rng.choice("0123456789./-") for _ in range(10)) for _ in range(20000)]
    values += [f"{rng.randint(0, 39):02d}{sep}{rng.randint(0, 19):02d}{sep}{rng.randint(1, 2999):04d}"
               for sep in "./-" for _ in range(3000)]
    values += [f"{rng.randint(1, 2999):04d}/{rng.randint(0, 19):02d}/{rng.randint(0, 39):02d}"
               for _ in range(3000)]
    read = 0
    for value in values:
        for month_first in (False, True):
            fast = _numeric_date(value, month_first)
            if fast is not None:
                read += 1
                assert fast == parse_timestamp(value, month_first=month_first).date(), value
    assert read > 5000


def test_printable_lines_vouch_only_for_printable_cells():
    """printable_lines (the workers' cheap check over a block's lines) says yes only
    when every cell the reader gives is printable and readable, whatever the quoting,
    line breaks inside quotes, delimiters and control characters; and it says yes to
    the usual block, or it saves nothing."""
    rng = random.Random(1206)
    pieces = ["Anna", "Мария", "a@example.com", "+7 916 123", "", "x,y", 'say "hi"', "a\nb",
              "a\rb", "a\r\nb", "\x85", "\ufffd", "\u200b", "\t", "\xa0", "'0123", "\u2028"]
    vouched = 0
    for delimiter in (",", ";", "\t"):
        for _ in range(30):
            lines = ["email;phone;consent_at;source_url".replace(";", delimiter)]
            for _ in range(rng.randint(1, 30)):
                cells = []
                for _ in range(4):
                    cell = "".join(rng.choice(pieces) if rng.random() < 0.1 else "Zoë"
                                   for _ in range(rng.randint(0, 3)))
                    if rng.random() < 0.5 or any(c in cell for c in '"\r\n' + delimiter):
                        cell = '"' + cell.replace('"', '""') + '"'
                    cells.append(cell)
                lines.append(delimiter.join(cells))
            data = ("\r\n".join(lines) + rng.choice(("", "\n", "\r\n"))).encode()
            with open_csv(io.BytesIO(data), mapping={}) as source:
                for block in source.blocks(7):
                    if printable_lines(block.lines, block.rows):
                        vouched += 1
                        for _, cells in block.records():
                            assert all(cell.isprintable() and "\ufffd" not in cell
                                       for cell in cells), cells
    assert vouched > 20


def test_a_column_of_interests_is_interest_words_of_each(monkeypatch):
    """interests_of (the distinct values lower-cased and split in one pass) gives
    interest_words of every value: separators with spaces around them or none, words
    with inner spaces, letters whose lower case depends on their neighbours (final
    sigma) or grows (İ), and the uneven spaces and line breaks it leaves to it."""
    one_by_one = []
    monkeypatch.setattr(columns_module, "interest_words",
                        lambda raw: one_by_one.append(raw) or interest_words(raw))
    rng = random.Random(1207)
    pieces = ["travel", "Cars", "real estate", "REAL  ESTATE", "путешествия", "İstanbul",
              "ΟΔΟΣ", "a\tb", " x ", "", "x\u00a0y", "\n", "a\nb", ",", ";", "|", " , ", ", ",
              " ;", "| ", "Reisen"]
    in_one_pass = 0
    for _ in range(3000):
        column = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))
                  for _ in range(rng.randint(1, 30))]
        if rng.random() < 0.3:
            column.append(None)
        if rng.random() < 0.5:
            column = [value and " ".join(value.split()) for value in column]
        asked = len(one_by_one)
        assert interests_of(column) == each_distinct(interest_words, column), column
        in_one_pass += len(one_by_one) == asked
    assert in_one_pass > 1000


def _consent_time(rng: random.Random) -> str:
    """A consent time as exports write it, or a near miss of one."""
    y, mo, d = rng.choice((2025, 2024, 1, 9999, 0)), rng.randint(0, 13), rng.randint(0, 32)
    h, mi, sec = rng.choice((0, 9, 12, 23, 24, 25)), rng.choice((0, 5, 59, 60)), rng.randint(0, 61)
    clock = rng.choice((f" {h:02d}:{mi:02d}", f" {h:02d}:{mi:02d}:{sec:02d}", "", f" {h}:{mi:02d}",
                        f"T{h:02d}:{mi:02d}", f",{h:02d}:{mi:02d}", f"  {h:02d}:{mi:02d}",
                        f" {h:02d}{mi:02d}Z", f" {h:02d}:{mi:02d}Z", f" {h:02d}:{mi:02d}+0300",
                        f" {h:02d}:{mi:02d}:{sec:02d}.5", f" {h:02d}.{mi:02d}"))
    shape = rng.random()
    if shape < 0.3:
        text = f"{d:02d}{rng.choice('.-/.')}{mo:02d}{rng.choice('.-/')}{y:04d}{clock}"
    elif shape < 0.5:
        text = f"{y:04d}/{mo:02d}/{d:02d}{clock}"
    elif shape < 0.7:
        text = f"{y:04d}-{mo:02d}-{d:02d}{clock}{rng.choice(('', 'Z', '+03:00', '-05:00'))}"
    elif shape < 0.8:
        text = f"{d}.{mo}.{y}{clock}"
    elif shape < 0.9:
        text = str(rng.randint(10**8, 2 * 10**9))
    else:
        text = rng.choice(("", "n/a", "yesterday", "１７.05.2025 10:00", "2025-03-01\n10:00",
                           "１７４０８２３２００", "174082320O", "17.05.2025 10:00 ", "2025/5/17 10:00"))
    return text.strip()


def test_a_column_of_consent_times_is_parse_timestamp_of_each():
    """consent_times_of (the usual numeric shapes rewritten as ISO in one pass) reads
    each value as parse_timestamp does, on the row's clock, the near misses too."""
    rng = random.Random(1208)
    zones = (timezone.utc, ZoneInfo("America/New_York"), ZoneInfo("Europe/Moscow"),
             ZoneInfo("Pacific/Kiritimati"))
    read = 0
    for _ in range(400):
        values = [_consent_time(rng) for _ in range(rng.randint(1, 60))]
        month_firsts = [rng.random() < 0.3 for _ in values]
        clocks = [rng.choice(zones) for _ in values]
        expected = [parse_timestamp(value, month_first=month_first, zone=zone) if value else None
                    for value, month_first, zone in zip(values, month_firsts, clocks)]
        got = consent_times_of(values, month_firsts, clocks)
        assert got == expected, values
        assert [when and when.tzinfo for when in got] == [
            when and when.tzinfo for when in expected]
        read += sum(when is not None for when in got)
    assert read > 3000
