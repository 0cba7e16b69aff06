"""Issue 15: rejected rows go back in the shape their file came in (encoding, BOM,
delimiter; .xlsx for a workbook), and Excel workbooks upload like CSV files."""
import csv
import io
import json
import zipfile
from datetime import date, datetime, time, timedelta, timezone

import openpyxl
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Rejection, Role, TrustLevel
from app.services.crypto import current_vault
from app.services.ingest import reports
from app.services.ingest.reader import UnreadableFile
from app.services.ingest.sources import open_upload
from app.services.ingest.workbook import TYPES_MARKER, typed_cells
from app.services.privacy import ERASED_TEXT
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
    # Her cells as her sheet typed them: numbers, a date, a boolean; text stays text.
    assert table[1][3:] == ["boris@mail.example.com", 14155550101, "no", typed,
                            "https://x.example.com", 40, 2345]
    assert table[2][:2] == [5, "implausible_age"]
    assert table[2][3:] == ["carl@mail.example.com", "+1 415 555 0102", True, "2026-10-01 09:00",
                            "https://x.example.com", 17, 3456]


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


TYPED_HEADER = ("Email", "Phone", "Consent", "consent_at", "source_url", "Age", "Postcode",
                "Signed on", "Share", "Call at", "Talked", "Memo", "Ref", "Ratio")


def _typed_workbook() -> bytes:
    """Cells as Excel types them, each in the number format a seller gives it."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(TYPED_HEADER)
    when = datetime(2026, 9, 3, 14, 5)
    sheet.append(["broken@", 14155550101, True, when, "https://x.example.com", 40, 123,
                  date(2026, 1, 31), 0.125, time(9, 30), timedelta(hours=30), "2026-11-03",
                  "0123", 0.1 + 0.2])
    sheet.append(["ok@mail.example.com", 14155550102, True, when, "https://x.example.com", 41,
                  456])
    sheet.append(["short@", 14155550103, False, when, "https://x.example.com"])  # no more cells
    for row in sheet.iter_rows(min_row=2):
        row[3].number_format = "dd.mm.yyyy hh:mm"
        row[6].number_format = "00000"
    sheet["H2"].number_format = "mm-dd-yy"  # built-in 14: the reader's short date
    sheet["I2"].number_format = "0.00%"
    sheet["J2"].number_format = "h:mm"
    sheet["K2"].number_format = "[h]:mm:ss"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_rejected_rows_of_a_workbook_come_back_in_the_cell_types_of_the_sellers_sheet(
        seller, client, api_key_for):
    """A seller's rejected rows open as her own sheet showed them: a date a date in its
    format, a number a number, a boolean a boolean, text text; fixed, they upload again."""
    batch = ingest(seller, _typed_workbook())
    assert rejections(batch) == {2: "invalid_email", 4: "invalid_email"}
    [lead] = leads(batch)
    assert (lead.age, lead.postal_code) == (41, "00456")  # validation read text, as before

    data = _download(client, api_key_for(seller), batch).get_data()
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book.active
    assert [c.value for c in sheet[1]] == ["row", "code", "message", *TYPED_HEADER]
    assert all(c.font.b for c in sheet[1])
    first = dict(zip(["row", "code", "message", *TYPED_HEADER], sheet[2]))

    def cell(name):
        found = first[name]
        return found.value, found.data_type, found.is_date, found.number_format

    assert cell("row") == (2, "n", False, "General")
    assert cell("code") == ("invalid_email", "s", False, "General")
    assert first["message"].data_type == "s" and "broken@" in first["message"].value
    assert cell("Email") == ("broken@", "s", False, "General")
    assert cell("Phone") == (14155550101, "n", False, "General")
    assert cell("Consent") == (True, "b", False, "General")
    assert cell("consent_at") == (datetime(2026, 9, 3, 14, 5), "d", True, "dd.mm.yyyy hh:mm")
    assert cell("Age") == (40, "n", False, "General")
    assert cell("Postcode") == (123, "n", False, "00000")
    assert cell("Signed on") == (datetime(2026, 1, 31), "d", True, "mm-dd-yy")
    assert cell("Share") == (0.125, "n", False, "0.00%")
    assert cell("Call at") == (time(9, 30), "d", True, "h:mm")
    assert cell("Talked") == (timedelta(hours=30), "d", True, "[h]:mm:ss")
    # Text that looks like a date or a number is text in her sheet, and stays so.
    assert cell("Memo") == ("2026-11-03", "s", False, "General")
    assert cell("Ref") == ("0123", "s", False, "General")
    assert cell("Ratio") == (0.3, "n", False, "General")  # as Excel shows it, 15 digits
    # The short row: her cells typed, nothing after them (no trace of the types cell).
    short = [c.value for c in sheet[3]]
    assert short[3:8] == ["short@", 14155550103, False, datetime(2026, 9, 3, 14, 5),
                          "https://x.example.com"]
    assert short[8:] == [None] * (len(short) - 8) and sheet.max_column == 3 + len(TYPED_HEADER)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        styles = archive.read("xl/styles.xml").decode()
        cells = archive.read("xl/worksheets/sheet1.xml").decode()
    assert 't="d"' not in cells  # dates are Excel's serial numbers, as Excel writes them
    # Excel's own short date keeps its built-in id, so it shows in the reader's locale.
    assert 'numFmtId="14"' in styles and "mm-dd-yy" not in styles
    widths = {key: dim.width for key, dim in sheet.column_dimensions.items()}
    assert widths["G"] >= len("03.09.2026 14:05")  # wide enough not to show "####"

    # Fixed in her spreadsheet and uploaded again, the rows read as they did.
    for row in (2, 3):
        sheet.cell(row, 4).value = sheet.cell(row, 4).value.replace("@", "@mail.example.com")
    buffer = io.BytesIO()
    book.save(buffer)
    again = ingest(seller, buffer.getvalue())
    assert rejections(again) == {3: "no_consent"}  # her FALSE is still a no
    [fixed] = leads(again)
    assert (fixed.consent_at, fixed.postal_code, fixed.age) == (lead.consent_at, "00123", 40)


def test_rejected_rows_stored_without_types_or_erased_still_download(seller, client,
                                                                      api_key_for):
    """Rows stored before the types cell existed come back as the text they were; a row
    whose person was erased keeps its number and reasons, and no cells."""
    batch = ingest(seller, _typed_workbook())
    vault = current_vault()
    stored = {r.row_number: r for r in db.session.scalars(
        sa.select(Rejection).where(Rejection.batch_id == batch.id))}
    stored[2].raw_enc = vault.encrypt(json.dumps(["broken@", "14155550101", "TRUE"]))
    stored[4].raw_enc = stored[4].message_enc = vault.encrypt(ERASED_TEXT)
    db.session.commit()

    data = _download(client, api_key_for(seller), batch).get_data()
    rows = [[c.value for c in row] for row in openpyxl.load_workbook(io.BytesIO(data)).active]
    assert rows[1] == [2, "invalid_email", rows[1][2], "broken@", "14155550101", "TRUE",
                       *[None] * (len(rows[1]) - 6)]
    assert rows[2][:3] == [4, "invalid_email;no_consent", ERASED_TEXT] and set(rows[2][3:]) <= {None}


def test_a_cell_of_the_sellers_that_looks_like_a_types_cell_is_her_text():
    marker = TYPES_MARKER + "1n"
    assert typed_cells(["a", "5", marker], width=3) == ["a", "5", marker]  # in her columns
    assert typed_cells(["a", "5", marker], width=1) == ["a", 5]
    for odd in (TYPES_MARKER + "9n", TYPES_MARKER + "1x", TYPES_MARKER + "1n, 2b", marker + " "):
        assert typed_cells(["a", "5", odd], width=1) == ["a", "5", odd]
    # A cell not as Excel wrote it is left as text, the others typed.
    assert typed_cells(["maybe", "7", TYPES_MARKER + "0b 1n"], width=2) == ["maybe", 7]


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
