"""open_csv: encodings, delimiters and shapes from the wild, and refusals (SPEC §3)."""
import codecs
import hashlib
import io
import os
import pickle
import random
import zipfile

import pytest

from app.services.ingest import reader
from app.services.ingest.reader import FIELD_LIMIT, CsvSource, UnreadableFile, open_csv
from tests.peak_memory import traced_peak

HEADER = "first_name,email,phone,consent_at,source_url"
ROW = "Ivan,ivan@example.com,+79161234567,2024-01-02T10:00:00Z,https://example.com/form"


def read(data: bytes, **options) -> tuple[CsvSource, list[tuple[int, list[str]]]]:
    source = open_csv(io.BytesIO(data), **options)
    return source, list(source.rows())


def refusal(data: bytes, **options) -> UnreadableFile:
    with pytest.raises(UnreadableFile) as caught:
        read(data, **options)
    assert caught.value.status == 422 and caught.value.message
    return caught.value


def test_plain_utf8():
    source, rows = read(f"{HEADER}\n{ROW}\n".encode())
    assert source.encoding == "utf-8"
    assert source.delimiter == ","
    assert source.headers == HEADER.split(",")
    assert source.header_row == 1
    assert rows == [(2, ROW.split(","))]
    assert source.header_map.fields == ("first_name", "email", "phone", "consent_at", "source_url")


def test_utf8_with_bom_has_a_clean_first_header():
    source, rows = read(codecs.BOM_UTF8 + "email;имя\nx@example.com;Иван\n".encode())
    assert source.encoding == "utf-8-sig"
    assert source.headers == ["email", "имя"]
    assert source.delimiter == ";"
    assert rows == [(2, ["x@example.com", "Иван"])]


CYRILLIC = (
    "Имя;Фамилия;Телефон;Почта;Регион;Пол\r\n"
    "Иван;Петров;8 (916) 123-45-67;ivan@mail.ru;Москва;мужской\r\n"
    "Мария;Сидорова;+79031234567;maria@yandex.ru;Санкт-Петербург;женский\r\n"
)


def test_cp1251_cyrillic_is_read_as_cp1251():
    source, rows = read(CYRILLIC.encode("cp1251"))
    assert source.encoding == "cp1251"
    assert source.headers[:3] == ["Имя", "Фамилия", "Телефон"]
    assert rows[1][1][4] == "Санкт-Петербург"
    assert source.header_map.fields == (
        "first_name", "last_name", "phone", "email", "region", "gender")


def test_short_cp1251_file_is_still_cp1251():
    source, rows = read("Телефон;Имя\n89161234567;Ёжик\n".encode("cp1251"))
    assert source.encoding == "cp1251"
    assert rows == [(2, ["89161234567", "Ёжик"])]


def test_latin1_accents():
    text = ("nombre,correo,teléfono,región\n"
            "José,jose@example.es,612345678,Málaga\n"
            "Renée,r@example.fr,+33612345678,Provence-Alpes-Côte d'Azur\n")
    source, rows = read(text.encode("latin-1"))
    assert source.encoding in ("cp1252", "latin_1")
    assert rows[0][1] == ["José", "jose@example.es", "612345678", "Málaga"]
    assert rows[1][1][3] == "Provence-Alpes-Côte d'Azur"


def test_cp1252_specials_decode():
    source, rows = read("name,email,budget\nZoë “Z”,z@example.com,5 000 €\n".encode("cp1252"))
    assert source.encoding == "cp1252"
    assert rows[0][1] == ["Zoë “Z”", "z@example.com", "5 000 €"]


def test_utf8_file_with_a_late_cp1251_row_is_read_as_cp1251():
    """The strict UTF-8 check covers the whole file, not just the sample."""
    ascii_rows = "".join(f"User{i};user{i}@example.com\n" for i in range(5000))
    data = f"name;email\n{ascii_rows}Пётр;petr@example.com\n".encode("cp1251")
    source, rows = read(data)
    assert source.encoding == "cp1251"
    assert rows[-1] == (5002, ["Пётр", "petr@example.com"])


def test_utf16_excel_unicode_text():
    source, rows = read("email\tphone\nx@example.com\t+79161234567\n".encode("utf-16"))
    assert source.encoding == "utf-16"
    assert source.delimiter == "\t"
    assert rows == [(2, ["x@example.com", "+79161234567"])]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_each_delimiter(delimiter):
    text = "\n".join(line.replace(",", delimiter) for line in (HEADER, ROW, ROW)) + "\n"
    source, rows = read(text.encode())
    assert source.delimiter == delimiter
    assert [values for _, values in rows] == [ROW.split(",")] * 2


def test_semicolon_file_with_commas_inside_values():
    text = ("name;email;interests\n"
            "Ivan;ivan@example.com;cars, travel, food\nAna;ana@example.com;music\n")
    source, rows = read(text.encode())
    assert source.delimiter == ";"
    assert rows[0][1][2] == "cars, travel, food"


def test_excel_sep_hint_line_sets_the_delimiter_and_is_not_a_row():
    source, rows = read(b"sep=|\r\nemail|phone\r\nx@example.com|+79161234567\r\n")
    assert source.delimiter == "|"
    assert source.headers == ["email", "phone"] and source.header_row == 1
    assert rows == [(2, ["x@example.com", "+79161234567"])]


def test_quoted_fields_with_newlines_count_as_one_row():
    text = ('email,consent_text,phone\r\n'
            'a@example.com,"I agree\r\nto be called,\nand ""emailed""",+79161234567\r\n'
            'b@example.com,plain,+79161234568\r\n')
    _, rows = read(text.encode())
    consent = 'I agree\r\nto be called,\nand "emailed"'
    assert rows[0] == (2, ["a@example.com", consent, "+79161234567"])
    assert rows[1][0] == 3  # a spreadsheet row, not a line number


def test_crlf_leaves_no_carriage_returns():
    _, rows = read(f"{HEADER}\r\n{ROW}\r\n{ROW}".encode())
    assert all("\r" not in value for _, values in rows for value in values)
    assert [number for number, _ in rows] == [2, 3]


def test_old_mac_line_endings():
    _, rows = read(f"{HEADER}\r{ROW}\r".encode())
    assert rows == [(2, ROW.split(","))]


def test_blank_lines_are_skipped_but_counted():
    text = f"\n\n{HEADER}\n{ROW}\n\n,,,,\n   \n{ROW}\n\n"
    source, rows = read(text.encode())
    assert source.header_row == 3
    assert [number for number, _ in rows] == [4, 7, 8]
    assert rows[1][1] == ["   "]  # whitespace is data; validation trims it


def test_extra_and_missing_columns():
    text = f"{HEADER}\n{ROW},extra,more\nIvan,ivan@example.com\n"
    source, rows = read(text.encode())
    picked = [source.header_map.pick(values) for _, values in rows]
    assert picked[0]["source_url"] == "https://example.com/form"
    assert len(picked[0]) == 5
    assert picked[1] == {"first_name": "Ivan", "email": "ivan@example.com", "phone": "",
                         "consent_at": "", "source_url": ""}


def test_excel_apostrophe_is_stripped_from_numbers_only():
    text = ("phone,birth_date,first_name,last_name,age\n"
            "'+79161234567,'1990-05-17,'Neil,O'Neil,'42\n"
            "'8 (916) 123-45-67,1990-05-17,Ann,D'Arcy,'\n")
    _, rows = read(text.encode())
    assert rows[0][1] == ["+79161234567", "1990-05-17", "'Neil", "O'Neil", "42"]
    assert rows[1][1] == ["8 (916) 123-45-67", "1990-05-17", "Ann", "D'Arcy", "'"]


def test_formula_looking_cells_are_kept_verbatim():
    cells = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "@SUM(A1)",
             "-2+3", "=1+1"]
    quoted = [f'"{c}"' if "," in c or '"' in c else c
              for c in (cell.replace('"', '""') for cell in cells)]
    text = "first_name,last_name,need,budget,timeframe\n" + ",".join(quoted) + "\n"
    _, rows = read(text.encode())
    assert rows[0][1] == cells


def test_header_only_file_has_no_rows():
    source, rows = read(f"{HEADER}\r\n".encode())
    assert rows == []
    assert "email" in source.header_map.known


def test_zero_byte_file_is_refused():
    assert refusal(b"").code == "empty_file"


def test_only_blank_lines_is_refused():
    assert refusal(b"\r\n\r\n  \n").code == "no_header"


def test_png_is_refused():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + os.urandom(200)
    error = refusal(png)
    assert error.code == "binary_file" and "PNG" in error.message


def test_zip_and_xlsx_are_refused_with_advice():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    error = refusal(buffer.getvalue())
    assert error.code == "binary_file" and "Excel" in error.message


def test_nul_bytes_are_refused():
    assert refusal(b"email,phone\nx@example.com,\x00\x01\x02\n").code == "binary_file"


def test_random_binary_without_nul_is_refused():
    noise = bytes(b for b in os.urandom(20000) if b)
    assert refusal(noise).code == "binary_file"


def test_html_page_is_refused():
    assert refusal(b"<!DOCTYPE html><html><body>email</body></html>").code == "not_csv"


def test_no_known_header_is_refused_with_the_headers_found():
    error = refusal("Kontakt;Notiz\nx@example.com;ja\n".encode())
    assert error.code == "no_header"
    assert error.details["headers"] == ["Kontakt", "Notiz"]


def test_data_without_a_header_is_refused():
    assert refusal(f"{ROW}\n{ROW}\n".encode()).code == "no_header"


def test_the_sellers_mapping_makes_unknown_headers_usable():
    data = "Kontakt;Zustimmung;Seite\nx@example.com;2024-01-02;https://example.com\n".encode()
    source, rows = read(data, mapping={"Kontakt": "email", "Zustimmung": "consent_at", "Seite": ""})
    assert source.delimiter == ";"
    assert source.header_map.fields == ("email", "consent_at", None)
    assert source.header_map.unknown == ()
    assert rows == [(2, ["x@example.com", "2024-01-02", "https://example.com"])]


def test_ten_megabyte_line_is_refused():
    assert refusal(b"a" * (10 << 20)).code == "line_too_long"
    after_header = f"{HEADER}\n".encode() + b"x," * (5 << 20) + b"\n"
    error = refusal(after_header)
    assert error.code == "line_too_long" and error.details["row"] == 2


def test_oversized_cell_is_refused():
    data = f'{HEADER}\n{ROW}\nIvan,"{"y" * (FIELD_LIMIT + 10)}",1,2,3\n'.encode()
    source = open_csv(io.BytesIO(data))
    rows = source.rows()
    assert next(rows)[0] == 2
    with pytest.raises(UnreadableFile) as caught:
        next(rows)
    assert caught.value.code == "line_too_long" and caught.value.details["row"] == 3


def test_content_hash_is_sha256_of_the_bytes():
    data = f"{HEADER}\n{ROW}\n".encode()
    source, _ = read(data)
    assert source.content_hash == hashlib.sha256(data).hexdigest()
    assert source.size == len(data)
    assert read(data)[0].content_hash == source.content_hash
    assert read(data + b"\n")[0].content_hash != source.content_hash


def test_path_and_unseekable_stream_give_the_same_rows(tmp_path):
    data = CYRILLIC.encode("cp1251")
    path = tmp_path / "leads.csv"
    path.write_bytes(data)

    class Pipe(io.RawIOBase):
        def __init__(self):
            self._inner = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self._inner.read(min(len(buffer), 7))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    with open_csv(path) as from_path:
        expected = list(from_path.rows())
    from_pipe = open_csv(io.BufferedReader(Pipe()))
    assert list(from_pipe.rows()) == expected
    assert from_pipe.content_hash == hashlib.sha256(data).hexdigest()


def test_callers_stream_stays_open_and_is_read_from_its_position():
    stream = io.BytesIO(b"IGNORED" + f"{HEADER}\n{ROW}\n".encode())
    stream.seek(len(b"IGNORED"))
    source = open_csv(stream)
    assert list(source.rows())[0][1] == ROW.split(",")
    assert not stream.closed
    assert source.bytes_read == source.size


def test_rows_stream_with_flat_memory():
    data = (f"{HEADER}\r\n" + f"{ROW}\r\n" * 150_000).encode()  # ~14 MB
    stream = io.BytesIO(data)
    count, peak = traced_peak(lambda: sum(1 for _ in open_csv(stream).rows()))
    assert count == 150_000
    assert peak < 8 << 20, peak  # buffers only, whatever the file size


AWKWARD = [
    f"\n\n{HEADER}\n{ROW}\n\n,,,,\n   \n{ROW}\n\n",
    ('email,consent_text,phone\r\n'
     'a@example.com,"I agree\r\nto be called,\nand ""emailed""",+79161234567\r\n\r\n'
     'b@example.com,plain,+79161234568\r\n"c@example.com","two\nlines",\'+7916\r\n'),
    f"{HEADER}\r{ROW}\r\r{ROW}",
    f"{HEADER}\r\n{ROW}\r\n{ROW}\n{ROW}\r",  # plain lines, the last ending in \r alone
    "phone,birth_date,first_name,last_name,age\n'+79161234567,'1990-05-17,'Neil,O'Neil,'42\n"
    "'8 (916) 123-45-67,1990-05-17,Ann,D'Arcy,'\n\n\n",
    f"sep=;\n{HEADER.replace(',', ';')}\n" + "\n".join(
        f"Ivan{i};\"i{i}@example.com\";+7916123{i:04d};x;\"y\n{i}\"" for i in range(23)),
]


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_blocks_give_exactly_the_rows(text, size):
    _, rows = read(text.encode())
    for after in (0, rows[len(rows) // 2][0]):
        source = open_csv(io.BytesIO(text.encode()))
        blocks = list(source.blocks(size, after=after))
        assert all(block.rows <= size for block in blocks)
        got = [row for block in blocks for row in block.records()]
        assert got == [row for row in rows if row[0] > after]
        assert [block.last for block in blocks] == [n for n, _ in got][size - 1::size] + (
            [got[-1][0]] if len(got) % size else [])
        for block in blocks:  # one record alone, as a duplicate's rejection quotes it
            assert [(n, block.record(n)) for n, _ in block.records()] == list(block.records())



def _random_csv(rng, delimiter: str) -> str:
    """A header and rows built from the pieces that decide where a record ends."""
    pieces = ["a", "b c", "'+7916", "", " ", '"q"', '"x\ny"', '"x\r\ny"', 'ab"c', '""',
              '"a""b"', '"', '"a"b"', '"""', "é", "\t", delimiter, "'", "\x0c"]
    ends = ["\n", "\r\n", "\r"]
    lines = [delimiter.join(["email", "phone", "consent_text", "first_name"]) + "\n"]
    for _ in range(rng.randint(0, 30)):
        if rng.random() < 0.1:
            lines.append(rng.choice(ends + [delimiter * 3]) + rng.choice(ends))
            continue
        cells = ["".join(rng.choices(pieces, k=rng.randint(0, 3)))
                 for _ in range(rng.randint(1, 6))]
        lines.append(delimiter.join(cells) + rng.choice(ends))
    if rng.random() < 0.5:
        lines[-1] = lines[-1].rstrip("\r\n")
    return "".join(lines)


def test_blocks_read_plain_lines_as_the_csv_reader_does():
    """blocks() takes quote-free lines whole without parsing them; on random files of
    quotes, line breaks, blank and delimiter-only lines it gives what rows() gives."""
    rng = random.Random(20261204)
    for trial in range(400):
        delimiter = (",", ";", "\t", "|")[trial % 4]
        data = _random_csv(rng, delimiter).encode()
        try:
            _, rows = read(data)
        except UnreadableFile:
            continue
        for size in (1, 3, 1000):
            got = [row for block in open_csv(io.BytesIO(data)).blocks(size)
                   for row in block.records()]
            assert got == rows, data


def _messy_csv(rng, delimiter: str, encoding: str) -> bytes:
    """A file of mostly plain rows (quoted cells, doubled quotes, the Excel marker,
    letters of the encoding) with now and then what a plain line is not: blank and
    delimiter-only lines, a quoted line break, a quote mark inside a cell, text after a
    closing quote, a line ending in \r alone, an undecodable byte."""
    letters = "éñüß" if encoding in ("latin_1", "cp1252") else "жёЮЯ"
    if encoding.startswith("utf"):
        letters += "é✓"
    plain = ["ann", "O'Neil", "'+79161234567", "'0123", "42", "", " x ", letters,
             f'"a{delimiter}b"', '"say ""hi"""', '""', '"\'+7916"', "a.b@example.com"]
    odd = ['"two\nlines"', '"x\r\ny"', '5\'11"', '"a"b', '"a"b"c', '"', "\x0c"]
    end = rng.choice(["\n", "\r\n"])
    lines = [delimiter.join(["email", "phone", "consent_text", "first_name"]) + end]
    for _ in range(rng.randint(20, 200)):
        if rng.random() < 0.02:
            lines.append(rng.choice(["", delimiter * 3, '""', f'""{delimiter}""']) + end)
            continue
        cells = [rng.choice(odd if rng.random() < 0.01 else plain)
                 for _ in range(rng.randint(1, 6))]
        lines.append(delimiter.join(cells) + ("\r" if rng.random() < 0.01 else end))
    if rng.random() < 0.3:
        lines[-1] = lines[-1].rstrip("\r\n")
    data = "".join(lines).encode(encoding)
    if encoding == "utf-8" and rng.random() < 0.3:
        at = data.index(b"\n", rng.randrange(len(data) // 2, len(data) - 1) - 1)
        data = data[:at] + b"\xe9" + data[at:]  # a bad byte, read as U+FFFD
    if encoding == "cp1251" and rng.random() < 0.1:
        data = data[:-1] + b"\x98"  # no character in cp1251
    return data


def _outcome(read_rows):
    try:
        return read_rows()
    except UnreadableFile as error:
        return (error.code, error.details.get("row"))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1251", "latin_1", "utf-16"])
def test_blocks_give_what_rows_give_on_messy_files(encoding):
    """Differential: whatever path a stretch of lines takes (whole plain lines cut as
    bytes, or records read one by one), blocks parsed in a worker (after pickling) give
    the rows, numbers, refusals and single records that rows() gives."""
    rng = random.Random(f"20261206{encoding}")
    plain_blocks = 0
    for trial in range(60):
        delimiter = (",", ";", "\t", "|")[trial % 4]
        data = _messy_csv(rng, delimiter, encoding)
        if encoding == "utf-8-sig":
            data = codecs.BOM_UTF8 + data
        # Read in the shape given (short files of a few letters can look like another
        # encoding), as a batch's run reads its file.
        shape = (encoding, delimiter)
        expected = _outcome(lambda: read(data, shape=shape)[1])
        for size, max_bytes, after in ((1, 1 << 20, 0), (7, 300, 0), (1000, 1 << 20, 0),
                                       (5, 200, 31), (50, 4096, 120)):

            def block_records():
                rows = []
                for block in open_csv(io.BytesIO(data), shape=shape).blocks(
                        size, after=after, max_bytes=max_bytes):
                    assert 0 < block.rows <= size
                    block = pickle.loads(pickle.dumps(block))  # as a worker gets it
                    records = block.records()
                    assert [block.record(number) for number, _ in records] == [
                        values for _, values in records]
                    rows += records
                    nonlocal plain_blocks
                    plain_blocks += block.one_line
                return rows

            got = _outcome(block_records)
            if isinstance(expected, list):
                assert got == [row for row in expected if row[0] > after], data
            else:
                assert got == expected, data
    if encoding != "utf-16":  # read through a decoder, record by record
        assert plain_blocks > 100


# --- bounded memory (issue 13) -----------------------------------------------------


def block_rows(data: bytes, size: int = 100, **options) -> list[tuple[int, list[str]]]:
    source = open_csv(io.BytesIO(data))
    return [row for block in source.blocks(size, **options) for row in block.records()]


BLANK_FLOOD = f"{HEADER}\r\n{ROW}\r\n".encode() + b"\r\n" * 300_000 + f"{ROW}\r\n".encode()


def test_a_flood_of_blank_lines_is_counted_not_kept():
    rows, peak = traced_peak(lambda: list(open_csv(io.BytesIO(BLANK_FLOOD)).rows()))
    assert [number for number, _ in rows] == [2, 300_003]
    assert peak < 3 << 20, peak  # buffers only; keeping the blank lines cost ~18 MB
    got, peak = traced_peak(lambda: block_rows(BLANK_FLOOD))
    assert got == rows
    assert peak < 3 << 20, peak


def test_blocks_keep_only_their_rows_and_find_them_by_number():
    data = (f"{HEADER}\n{ROW}\n\n\n,,,,\n\n{ROW}\n\n".encode())
    [block] = open_csv(io.BytesIO(data)).blocks(10)
    assert (block.rows, block.last, block.numbers) == (2, 7, [2, 7])
    assert block.data == f"{ROW}\n{ROW}\n".encode()
    assert block.record(7) == ROW.split(",")
    with pytest.raises(KeyError):
        block.record(4)  # a blank row is in no block


def test_a_block_of_a_file_goes_to_a_worker_without_its_bytes(tmp_path):
    """A file's plain lines are sent as where they lie in it (utf-8-sig: after the
    mark), and read there; a block whose file is gone unpickles all the same (a
    stopped run's queued blocks must not end the worker) and says so when read."""
    path = tmp_path / "upload.csv"
    path.write_bytes(codecs.BOM_UTF8 + f"{HEADER}\n{ROW}\nÉlise,{ROW[5:]}\n".encode())
    with open_csv(str(path)) as source:
        [block] = source.blocks(10)
    sent = pickle.dumps(block)
    assert block.data not in sent
    received = pickle.loads(sent)
    assert received.data is None
    received.read()
    assert received.records() == block.records() == read(path.read_bytes())[1]
    stale = pickle.loads(sent)
    path.write_bytes(b"")
    with pytest.raises(UnreadableFile) as error:
        stale.read()
    assert error.value.code == "file_changed"
    path.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(sent).read()


def test_a_block_of_a_stream_carries_its_bytes():
    [block] = open_csv(io.BytesIO(f"{HEADER}\n{ROW}\n".encode())).blocks(10)
    received = pickle.loads(pickle.dumps(block))
    assert received.data == f"{ROW}\n".encode() and received.span is None


def test_a_block_also_ends_on_its_character_budget():
    data = (f"{HEADER}\n" + f"{ROW}\n" * 100).encode()
    blocks = list(open_csv(io.BytesIO(data)).blocks(1000, max_bytes=len(ROW) * 10))
    assert [block.rows for block in blocks] == [10] * 10
    assert [row for block in blocks for row in block.records()] == read(data)[1]


def test_a_record_over_very_many_lines_is_refused_before_it_fills_memory():
    data = f'{HEADER}\n{ROW}\nIvan,"'.encode() + b"a\r\n" * 2_000_000 + b'",1,2,3\n'
    error, peak = traced_peak(lambda: refusal(data))
    assert error.code == "line_too_long" and error.details["row"] == 3
    assert "quote" in error.message
    assert peak < 4 << 20, peak


def test_a_record_of_many_multi_line_cells_is_refused_before_it_fills_memory():
    data = f"{HEADER}\n".encode() + b'"x\n",' * 1_000_000 + b"\n"
    error, peak = traced_peak(lambda: refusal(data))
    assert error.code == "line_too_long" and error.details["row"] == 2
    assert "quote" in error.message
    assert peak < 4 << 20, peak


def test_a_row_of_very_many_columns_is_refused():
    error = refusal(f"{HEADER}\n{ROW}\n".encode() + b"a," * 20_000 + b"\n")
    assert error.code == "too_many_columns" and error.details["row"] == 3
    assert "Row 3" in error.message
    wide_header = (HEADER + ",x" * 2000 + f"\n{ROW}\n").encode()
    assert refusal(wide_header).code == "too_many_columns"


def test_rows_up_to_the_column_limit_are_read():
    _, rows = read(f"{HEADER}\n{ROW}".encode() + b",x" * 900 + b"\n")
    assert len(rows[0][1]) == 905


@pytest.mark.parametrize("cells", [999, 1000, 1001])
def test_blocks_refuse_a_row_of_too_many_columns_as_rows_do(cells):
    """blocks() counts the delimiters of a line only when it is long enough to reach
    the limit: a line of empty cells at the limit is still read through the csv reader."""
    data = f"{HEADER}\n{ROW}\n".encode() + b"," * (cells - 1) + b"\n" + f"{ROW}\n".encode()
    if cells > 1000:
        with pytest.raises(UnreadableFile) as caught:
            block_rows(data)
        assert caught.value.code == "too_many_columns" and caught.value.details["row"] == 3
        assert refusal(data).code == "too_many_columns"
    else:
        assert block_rows(data) == read(data)[1]


# --- one bad byte is not a different encoding (issue 13) ---------------------------


def test_one_invalid_byte_in_a_utf8_file_keeps_utf8_and_marks_only_that_row():
    good = "".join(f"José{i},jose{i}@example.com\r\n" for i in range(9_999)).encode()
    data = b"name,email\r\n" + good + b"Jos\xe9,bad@example.com\r\n"
    source, rows = read(data)
    assert source.encoding == "utf-8"
    assert all(values[0].startswith("José") for _, values in rows[:-1])
    assert rows[-1] == (10_001, ["Jos\ufffd", "bad@example.com"])


def test_a_few_invalid_bytes_in_a_utf8_file_with_bom():
    data = codecs.BOM_UTF8 + "email;имя\nx@example.com;Иван\ny@example.com;".encode() + \
        b"\xcf\xe5\xf2\xf0\n"
    source, rows = read(data)
    assert source.encoding == "utf-8-sig"
    assert rows[0][1] == ["x@example.com", "Иван"]
    assert "\ufffd" in rows[1][1][1]


def test_mostly_legacy_bytes_with_a_bom_are_still_refused():
    data = codecs.BOM_UTF8 + CYRILLIC.encode("cp1251")
    assert refusal(data).code == "bad_encoding"


def test_a_file_half_utf8_half_cp1252_is_refused_as_mixed():
    utf8 = "".join(f"José{i},jose{i}@example.com\n" for i in range(40)).encode()
    legacy = "".join(f"Zoë{i},zoe{i}@example.com\n" for i in range(60)).encode("cp1252")
    error = refusal(b"name,email\n" + utf8 + legacy)
    assert error.code == "mixed_encoding" and "UTF-8" in error.message


def test_a_multibyte_character_cut_short_at_the_end():
    data = "name,email\nJosé,j@example.com\nИван,i@example.com\nПётр,".encode() + "п".encode()[:1]
    source, rows = read(data)
    assert source.encoding == "utf-8"
    assert rows[:2] == [(2, ["José", "j@example.com"]), (3, ["Иван", "i@example.com"])]
    assert rows[2] == (4, ["Пётр", "\ufffd"])


def test_the_pass_over_the_file_counts_across_chunks_from_where_the_stream_stands():
    """The hash, the valid multi-byte characters and the invalid bytes of a file of
    several chunks, counted from the stream's position: what decides UTF-8, mixed or
    legacy (the hash runs beside the decoding, the characters in a second pass)."""
    utf8 = "".join(f"José Иван {i}\n" for i in range(150_000)).encode()
    legacy = "".join(f"Zoë {i}\n" for i in range(20)).encode("cp1252")
    data = b"name\n" + utf8 + legacy + "€".encode()[:2]  # ends cut short
    assert len(data) > 2 * reader._CHUNK
    prefix = "préfixe, not the file's".encode()
    stream = io.BytesIO(prefix + data)
    stream.seek(len(prefix))
    scan = reader._scan(stream, 4096)
    assert scan.content_hash == hashlib.sha256(data).hexdigest() and scan.size == len(data)
    assert scan.invalid == 20 + 1  # each "ë" of cp1252, and the cut-short euro sign
    assert scan.multibyte == 150_000 * 5
    assert scan.bad_chunk and b"\xeb" in scan.bad_chunk and not scan.nul
    plain = reader._scan(io.BytesIO(b"name\n" + utf8), 4096)
    assert plain.invalid == plain.multibyte == 0  # nothing to weigh them against
    cut = reader._scan(io.BytesIO(b"name\n" + utf8 + "€".encode()[:2]), 4096)
    assert (cut.invalid, cut.multibyte) == (1, 150_000 * 5)


def test_utf16_without_a_bom():
    text = "email\tимя\nx@example.com\tИван\n"
    for encoding in ("utf-16-le", "utf-16-be"):
        source, rows = read(text.encode(encoding))
        assert source.encoding == encoding
        assert rows == [(2, ["x@example.com", "Иван"])]


def test_utf16_cut_short_is_refused():
    data = "email\tphone\nx@example.com\t+79161234567\n".encode("utf-16")[:-1]
    assert refusal(data).code == "bad_encoding"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_blocks_strip_the_excel_marker_as_rows_do(delimiter):
    """A block cleans its records when a cell starts with the marker wherever the cell
    is (first, after the delimiter, quoted) and only then: O'Neil alone is left alone."""
    lines = [["phone", "first_name", "last_name", "age"],
             ["'+79161234567", "Ann", "O'Neil", "42"],
             ["8 916 123-45-67", "Neil", "D'Arcy", "'42"],
             ["+7 916 123 45 67", "Ivan", "'Neil", "\"'0123\""],
             ["+7 916 123 45 68", "Olga", "O'Hara", "30"]]
    text = "\n".join(delimiter.join(cells) for cells in lines) + "\n"
    expected = list(open_csv(io.BytesIO(text.encode())).rows())
    assert [row[1][3] for row in expected] == ["42", "42", "0123", "30"]
    for size in (1, 2, 10):
        got = [row for block in open_csv(io.BytesIO(text.encode())).blocks(size)
               for row in block.records()]
        assert got == expected


@pytest.mark.parametrize("header", ["Метка", "utm_source", "UTM-метка"])
def test_a_sellers_own_tag_column_is_read_as_sub_id(header):
    data = f"email;{header}\nx@example.com;blog-1\n".encode()
    source, _ = read(data)
    assert source.header_map.fields == ("email", "sub_id")
