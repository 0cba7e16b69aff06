"""Issue 15: rejected rows go back in the shape their file came in (encoding, BOM,
delimiter; .xlsx for a workbook), and Excel workbooks upload like CSV files."""
import csv
import io
from datetime import date, datetime, timezone

import openpyxl
import pytest

from app.models import Role, TrustLevel
from app.services.crypto import current_vault
from app.services.ingest import reports
from app.services.ingest.reader import UnreadableFile
from app.services.ingest.sources import open_upload
from tests.conftest import make_user
from tests.ingest_helpers import csv_bytes, ingest, leads, person, rejections
from tests.peak_memory import traced_peak

HEADER = ["Имя", "email", "phone", "consent_at", "source_url"]


@pytest.fixture
def verified_seller(app):
    return make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)


def _download(client, headers, batch):
    response = client.get(f"/api/v1/batches/{batch.id}/rejections", headers=headers)
    assert response.status_code == 200
    return response


@pytest.mark.parametrize("encoding, delimiter, charset, name", [
    ("cp1251", ";", "windows-1251", "Ирина"),
    ("utf-8-sig", ",", "utf-8", "Ирина"),
    ("utf-8", ",", "utf-8", "Ирина"),
    ("latin-1", "\t", None, "José Müller"),
])
def test_rejections_come_back_in_the_files_encoding_and_delimiter_and_upload_again(
        client, seller, api_key_for, encoding, delimiter, charset, name):
    rows = [person(i, first_name=name) for i in range(1, 6)]
    rows[1]["email"] = "broken@"
    rows[3]["phone"], rows[3]["email"] = "12", ""
    header = ["first_name", "email", "phone", "consent_at", "source_url"]
    data = csv_bytes(rows, header=header, delimiter=delimiter, encoding=encoding)
    batch = ingest(seller, data)
    assert rejections(batch) == {3: "invalid_email", 5: "invalid_phone"}

    response = _download(client, api_key_for(seller), batch)
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    if charset:
        assert response.content_type == f"text/csv; charset={charset}"
    text = body.decode(batch.encoding)
    table = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter))
    assert table[0] == ["row", "code", "message", *header]
    assert [line[:2] for line in table[1:]] == [["3", "invalid_email"], ["5", "invalid_phone"]]
    assert table[1][3] == name and table[1][4] == "broken@"
    # The seller's own cells come back byte for byte, in their encoding (a leading + is
    # marked as text for spreadsheets, and taken off again when uploaded).
    original = data.split(b"\r\n")[2].replace(b"+1", b"'+1")
    assert original in body

    # Fixed in place and uploaded again, the same file is read the same way.
    fixed = [line[3:] for line in table[1:]]
    fixed[0][1], fixed[1][1], fixed[1][2] = "fixed@mail.example.com", "new@mail.example.com", ""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerows([table[0], *[line[:3] + row for line, row in zip(table[1:], fixed)]])
    again = ingest(seller, out.getvalue().encode(batch.encoding))
    assert (again.encoding, again.delimiter) == (batch.encoding, delimiter)
    assert (again.accepted, again.rejected) == (2, 0)


def _workbook(rows: list[list], header=("Email", "Phone", "Согласие", "Дата согласия", "URL",
                                        "Age", "Postcode")) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(list(header))
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_an_excel_workbook_is_read_as_the_seller_sees_it(seller, client, api_key_for):
    typed = datetime(2026, 10, 1, 12, 30)
    data = _workbook([
        ["anna@mail.example.com", 14155550100, "yes", typed, "https://x.example.com", 35.0, 1234],
        [None],  # a blank row is counted, not read
        ["boris@mail.example.com", 14155550101, "no", typed, "https://x.example.com", 40, 2345],
        ["carl@mail.example.com", "+1 415 555 0102", True, "2026-10-01 09:00",
         "https://x.example.com", 17, 3456],
    ])
    batch = ingest(seller, data)
    assert (batch.file_format, batch.encoding, batch.delimiter) == ("xlsx", None, None)
    assert (batch.rows_total, batch.accepted) == (3, 1)
    assert rejections(batch) == {4: "no_consent", 5: "implausible_age"}
    [lead] = leads(batch)
    assert current_vault().open_contact(lead.contact_enc)["phone"] == "+14155550100"
    assert lead.age == 35
    assert lead.consent_at.replace(tzinfo=timezone.utc).hour == 17  # 12:30 US Central time

    response = _download(client, api_key_for(seller), batch)
    assert response.content_type.startswith("application/vnd.openxmlformats")
    assert 'filename="batch-%d-rejections.xlsx"' % batch.id in response.headers[
        "Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(response.get_data()), read_only=True).worksheets[0]
    table = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert table[0] == ["row", "code", "message", "Email", "Phone", "Согласие", "Дата согласия",
                        "URL", "Age", "Postcode"]
    assert table[1][:2] == [4, "no_consent"]
    assert table[1][3:] == ["boris@mail.example.com", "14155550101", "no", "2026-10-01 12:30:00",
                            "https://x.example.com", "40", "2345"]
    assert table[2][:2] == [5, "implausible_age"] and table[2][5] == "TRUE"


def test_excel_typed_cells_are_written_as_shown():
    data = _workbook([["a@mail.example.com", 79161234567, "да", date(2026, 1, 31),
                       "x.example.com", 0.1 + 0.2, 123]])
    book = openpyxl.load_workbook(io.BytesIO(data))
    book.active["G2"].number_format = "00000"
    buffer = io.BytesIO()
    book.save(buffer)
    with open_upload(io.BytesIO(buffer.getvalue())) as source:
        assert source.header_map.fields[:3] == ("email", "phone", "consent")
        [(number, values)] = list(source.rows())
    assert number == 2
    assert values == ["a@mail.example.com", "79161234567", "да", "2026-01-31", "x.example.com",
                      "0.3", "00123"]


def _bulk_workbook(rows: int) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["email", "phone", "consent", "consent_at", "source_url", "age"])
    when = datetime(2026, 10, 1, 12, 0)
    for i in range(rows):
        sheet.append([f"p{i % 50}@mail.example.com", 14155550000 + i, "yes", when,
                      "https://x.example.com", 20 + i % 50])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_reading_a_workbook_holds_flat_memory():
    def read(data: bytes) -> int:
        with open_upload(io.BytesIO(data)) as source:
            return sum(block.rows for block in source.blocks(2000))

    small, large = _bulk_workbook(2_000), _bulk_workbook(40_000)
    (rows_small, peak_small), (rows_large, peak_large) = traced_peak(lambda: read(small)), \
        traced_peak(lambda: read(large))
    assert (rows_small, rows_large) == (2_000, 40_000)
    assert peak_large < 1.5 * peak_small + (1 << 20), (peak_small, peak_large)


def _zip(members: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("data, fragment", [
    (_zip({"notes.txt": b"hello"}), "ZIP archive"),
    (_zip({"xl/workbook.xml": b"<workbook/>", "xl/worksheets/sheet1.xml": b"\0" * (80 << 20)}),
     "inflates"),
    (_zip({"xl/workbook.xml": b"not xml"}), "cannot be read"),
    (b"PK\x03\x04" + b"\0" * 100, "damaged"),
])
def test_a_bad_workbook_is_refused_with_one_clear_message(data, fragment):
    with pytest.raises(UnreadableFile) as caught:
        with open_upload(io.BytesIO(data)) as source:
            list(source.rows())
    assert caught.value.code == "binary_file" and fragment in caught.value.message


def test_an_empty_or_headerless_workbook_is_refused():
    for data in (_workbook([], header=()), _workbook([["x", "y"]], header=("foo", "bar"))):
        with pytest.raises(UnreadableFile) as caught:
            open_upload(io.BytesIO(data))
        assert caught.value.code == "no_header"


def test_sentences_in_an_encoding_without_curly_quotes_fall_back_to_plain_ones(seller):
    data = csv_bytes([person(1, email="broken@", first_name="José")], encoding="latin-1")
    batch = ingest(seller, data)
    batch.encoding = "latin_1"  # ISO-8859-1 has no “ ” …
    text = b"".join(reports.rejections_download(batch).chunks).decode("latin-1")
    assert 'The email "broken@" is not a valid email address.' in text and "José" in text
