"""Hostile uploads (issue 13): every one is refused with one clear 4xx message or read
into proper row verdicts, and reading one holds a few MB at most, whatever its size.

Every file is generated here (no binary fixtures). The reader-level corpus runs each
file through open_csv().blocks() and Block.records(), as the pipeline does; a few go
through the real pipeline and the real-time API as well.
"""
import codecs
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.extensions import db
from app.models import BatchStatus, Lead, Role, TrustLevel
from app.services.crypto import current_vault
from app.services.ingest import reports
from app.services.ingest.reader import MAX_COLUMNS, UnreadableFile, open_csv
from tests.conftest import make_user
from tests.ingest_helpers import csv_bytes, ingest, leads, person, rejections
from tests.peak_memory import traced_peak

HEAD = "email,first_name,phone,consent_at,source_url\r\n"
ROW = "ann@example.com,Ann,+14155550100,2026-10-01T12:00:00Z,https://example.com/form\r\n"
MB = 1 << 20


def rows_of(data: bytes) -> list[tuple[int, list[str]]]:
    """The rows as the pipeline reads them: in blocks, parsed again."""
    with open_csv(io.BytesIO(data)) as source:
        return [row for block in source.blocks(50) for row in block.records()]


def refusal(data: bytes) -> UnreadableFile:
    with pytest.raises(UnreadableFile) as caught:
        rows_of(data)
    error = caught.value
    assert error.status == 422 and error.message.endswith(".")
    return error


def zip_bomb() -> bytes:
    """An .xlsx-shaped archive that inflates to 1,000 times its size."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (20 * MB))
    return buffer.getvalue()


REFUSED = [
    pytest.param(lambda: b"", "empty_file", id="empty"),
    pytest.param(lambda: codecs.BOM_UTF8, "no_header", id="bom-only"),
    pytest.param(lambda: codecs.BOM_UTF8 + b"\r\n" * 1000, "no_header", id="bom-and-blank-lines"),
    pytest.param(lambda: b",,,,\r\n;;;;\r\n\t\t\r\n" * 2000, "no_header", id="only-delimiters"),
    pytest.param(lambda: ("email," + "x," * 40_000 + "\r\n" + ROW).encode(), "line_too_long",
                 id="very-long-header"),
    pytest.param(lambda: ("email" + ",x" * (MAX_COLUMNS + 1) + "\r\n" + ROW).encode(),
                 "too_many_columns", id="header-of-too-many-columns"),
    pytest.param(lambda: (HEAD + ROW + "a," * 100_000 + "\r\n").encode(), "too_many_columns",
                 id="row-of-too-many-columns"),
    pytest.param(lambda: (HEAD + ROW + 'x@example.com,"' + "y" * (4 * MB) + '"\r\n').encode(),
                 "line_too_long", id="one-huge-quoted-field"),
    pytest.param(lambda: (HEAD + ROW + 'x@example.com,"' + "line\r\n" * 500_000).encode(),
                 "line_too_long", id="quoted-field-over-many-lines"),
    pytest.param(lambda: (HEAD + ROW + '"a\n",' * 100_000 + "\r\n").encode(), "line_too_long",
                 id="record-of-many-multi-line-cells"),
    pytest.param(lambda: (HEAD + ROW).encode() + b"x@example.com,\x00\x00\x00,1,2,3\r\n",
                 "binary_file", id="nul-bytes"),
    pytest.param(lambda: (HEAD + ROW).encode("utf-16")[:-1], "bad_encoding",
                 id="utf16-cut-short"),
    pytest.param(zip_bomb, "binary_file", id="zip-bomb-xlsx-renamed-csv"),
    pytest.param(lambda: b"<html><body><table><tr><td>email</td></tr></table></body></html>",
                 "not_csv", id="html-page"),
    pytest.param(lambda: bytes(range(1, 256)) * 400, "binary_file", id="binary-noise"),
    pytest.param(lambda: HEAD.encode() + "".join(
        f"Jos\u00e9{i}@example.com,Jos\u00e9,,2026-10-01,https://x.example.com\r\n"
        for i in range(50)).encode() + "".join(
        f"Zo\u00eb{i}@example.com,Zo\u00eb,,2026-10-01,https://x.example.com\r\n"
        for i in range(100)).encode("cp1252"), "mixed_encoding", id="mixed-encodings"),
    pytest.param(lambda: codecs.BOM_UTF8 + (HEAD + "x@example.com,Пётр Иванов,,,\r\n" * 20)
                 .encode("cp1251"), "bad_encoding", id="utf8-bom-on-a-cp1251-file"),
]


@pytest.mark.parametrize("build, code", REFUSED)
def test_hostile_files_are_refused_with_one_clear_message(build, code):
    data = build()
    error, peak = traced_peak(lambda: refusal(data))
    assert error.code == code, error.message
    assert peak < 8 * MB, peak  # never more than a few buffers and one bounded row


def test_the_refusal_names_the_row():
    error = refusal((HEAD + ROW * 3 + "a," * 100_000 + "\r\n").encode())
    assert error.details["row"] == 5 and "Row 5 has 100,001 columns" in error.message
    error = refusal((HEAD + ROW + 'x@example.com,"' + "line\r\n" * 500_000).encode())
    assert error.details["row"] == 3 and "quote mark" in error.message


ACCENTED = HEAD + "".join(
    f"jose{i}@example.com,José Ñúñez,,2026-10-01,https://x.example.com\r\n" for i in range(10_000))


READ = [
    pytest.param(lambda: (HEAD + ROW).encode() + b"\r\n" * 200_000 + ROW.encode(),
                 [2, 200_003], id="crlf-blank-line-flood"),
    pytest.param(lambda: (HEAD + ROW).replace("\r\n", "\r").encode() + b"\r" * 200_000
                 + ROW.replace("\r\n", "\r").encode(), [2, 200_003], id="cr-only-line-ends"),
    pytest.param(lambda: (HEAD + ROW).encode() + b"\n" * 1000 + b",,,,\n" * 1000 + ROW.encode(),
                 [2, 2003], id="blank-and-delimiter-only-lines"),
    pytest.param(lambda: HEAD.encode(), [], id="header-only"),
    pytest.param(lambda: (HEAD + ROW).encode("utf-16"), [2], id="utf16-with-bom"),
    pytest.param(lambda: (HEAD + ROW).encode("utf-16-le"), [2], id="utf16-le-without-bom"),
    pytest.param(lambda: (HEAD + ROW + "Пётр@example.com,Пётр,,,").encode() + "ж".encode()[:1],
                 [2, 3], id="multibyte-char-cut-short-at-eof"),
    pytest.param(lambda: (HEAD + ROW * 10 + "x@example.com,Ann\x1b[2J\x07\x08\u202e,,,\r\n")
                 .encode(), list(range(2, 13)), id="control-characters"),
    pytest.param(lambda: (HEAD + ROW + "=cmd|' /C calc'!A0,@SUM(A1),+1+2,-3,=HYPERLINK(\"x\")\r\n")
                 .encode(), [2, 3], id="formula-injection"),
    pytest.param(lambda: ACCENTED.encode()[:-40] + b"\xe9" + ACCENTED.encode()[-40:],
                 list(range(2, 10_002)), id="one-invalid-byte-in-a-big-utf8-file"),
]


@pytest.mark.parametrize("build, numbers", READ)
def test_hostile_files_that_are_still_csv_give_their_rows(build, numbers):
    data = build()
    rows, peak = traced_peak(lambda: rows_of(data))
    assert [number for number, _ in rows] == numbers
    assert peak < 8 * MB, peak


def test_one_invalid_byte_marks_its_row_and_no_other():
    data = ACCENTED.encode()
    bad_row = data.index(b"jose5000@")
    data = data[:bad_row] + b"Jos\xe9" + data[bad_row + 4:]
    with open_csv(io.BytesIO(data)) as source:
        assert source.encoding == "utf-8"
        rows = list(source.rows())
    marked = [number for number, values in rows if "\ufffd" in "".join(values)]
    assert marked == [5002]
    assert all(values[1] == "José Ñúñez" for _, values in rows)


def test_control_characters_and_formulas_are_kept_verbatim_by_the_reader():
    """The reader hands cells over as written; validation cleans them (below)."""
    data = (HEAD + "x@example.com,Ann\x1b[2J\u202e,,,\r\n=cmd|' /C calc'!A0,,,,\r\n").encode()
    assert [values[:2] for _, values in rows_of(data)] == [
        ["x@example.com", "Ann\x1b[2J\u202e"], ["=cmd|' /C calc'!A0", ""]]


# --- memory stays flat with size ------------------------------------------------------


def peak_growth(path: Path) -> dict:
    """tests/peak_memory.py's account of reading `path`, in a fresh process."""
    if not Path("/proc/self/status").exists():
        pytest.skip("the peak RSS is read from Linux's /proc/self/status")
    done = subprocess.run([sys.executable, "-m", "tests.peak_memory", str(path)],
                          cwd=Path(__file__).parent.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ten_megabytes_of_blank_lines_keep_memory_flat(tmp_path):
    path = tmp_path / "blank.csv"
    with open(path, "wb") as out:
        out.write((HEAD + ROW).encode())
        for _ in range(5):
            out.write(b"\r\n" * MB)
        out.write(ROW.encode())
    outcome = peak_growth(path)
    assert (outcome["rows"], outcome["last"], outcome["rows_agree"]) == (2, 5 * MB + 3, True)
    assert outcome["growth"] < 30 * MB, outcome  # ~60 bytes a blank line were kept: 300 MB


def test_fifty_megabytes_of_long_rows_keep_memory_flat(tmp_path):
    """Rows near the limit: a block ends on its character budget, not after 2,000 rows."""
    path = tmp_path / "long.csv"
    long_row = f"x@example.com,{'n' * 100_000},,,{'u' * 100_000}\r\n".encode()
    with open(path, "wb") as out:
        out.write(HEAD.encode())
        for _ in range(270):
            out.write(long_row)
    assert path.stat().st_size > 50 * MB
    outcome = peak_growth(path)
    assert (outcome["rows"], outcome["last"], outcome["rows_agree"]) == (270, 271, True)
    assert outcome["growth"] < 30 * MB, outcome  # one block held the whole file


def test_fifty_megabytes_of_very_wide_rows_are_refused_at_the_first(tmp_path):
    path = tmp_path / "wide.csv"
    wide_row = b"a," * 100_000 + b"\r\n"
    with open(path, "wb") as out:
        out.write(HEAD.encode())
        for _ in range(270):
            out.write(wide_row)
    outcome = peak_growth(path)
    assert (outcome["refused"], outcome["row"]) == ("too_many_columns", 2)
    assert outcome["growth"] < 30 * MB, outcome


def test_a_quote_never_closed_in_a_big_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "quote.csv"
    with open(path, "wb") as out:
        out.write((HEAD + ROW + '"').encode())
        for _ in range(50):
            out.write(ROW.encode() * (MB // len(ROW)))
    with pytest.raises(UnreadableFile) as caught, open_csv(path) as source:
        for _ in source.blocks(2000):
            pass
    assert caught.value.code == "line_too_long" and caught.value.details["row"] == 3
    assert source.bytes_read < 10 * MB


# --- through the real pipeline --------------------------------------------------------


def test_an_invalid_byte_rejects_its_row_and_the_rest_stay_utf8(seller):
    rows = [person(i, first_name=f"José{i}") for i in range(120)]
    data = csv_bytes(rows)
    at = data.index(b"Jos\xc3\xa970,")
    data = data[:at] + b"Jos\xe9" + data[at + 5:]  # row 72: José70 saved as cp1252
    batch = ingest(seller, data)
    assert (batch.encoding, batch.accepted, batch.rejected) == ("utf-8", 119, 1)
    assert rejections(batch) == {72: "bad_encoding"}
    names = {current_vault().open_contact(lead.contact_enc)["first_name"] for lead in leads(batch)}
    assert names == {f"José{i}" for i in range(120) if i != 70}
    report = b"".join(reports.rejections_download(batch).chunks).decode("utf-8")
    assert "Jos\ufffd" in report and "first name" in report


def test_blank_line_flood_through_the_pipeline(seller):
    header, first, second, _ = csv_bytes([person(1), person(2)]).split(b"\r\n")
    data = header + b"\r\n" + first + b"\r\n" * 100_001 + second + b"\r\n"
    batch = ingest(seller, data)
    assert (batch.rows_total, batch.accepted, batch.rows_processed) == (2, 2, 100_003)
    assert [lead.row_number for lead in leads(batch)] == [2, 100_003]


def test_control_characters_never_reach_a_stored_lead(seller):
    dirty = "\x1b[31m\u202eAnn\u200b\x07"
    rows = [person(1, first_name=dirty, region="US\x08-CA")] + [person(i) for i in range(2, 12)]
    lead = leads(ingest(seller, csv_bytes(rows)))[0]
    assert current_vault().open_contact(lead.contact_enc)["first_name"] == "[31mAnn"
    assert lead.region == "US-CA"


def test_formula_cells_come_back_defused_in_the_rejections_file(seller):
    batch = ingest(seller, csv_bytes([person(1, email="=cmd|' /C calc'!A0", first_name="@SUM(A1)")]))
    assert rejections(batch) == {2: "invalid_email"}
    report = b"".join(reports.rejections_download(batch).chunks).decode("utf-8").splitlines()
    assert "'@SUM(A1)" in report[1] and "'=cmd|' /C calc'!A0" in report[1]


def test_header_only_file_is_a_rejected_batch_with_a_reason(seller):
    batch = ingest(seller, csv_bytes([]))
    assert batch.status is BatchStatus.REJECTED
    assert batch.error_message == "The file has no data rows."


def test_a_wide_row_deep_in_the_file_fails_the_batch_and_keeps_nothing(seller):
    data = csv_bytes([person(i) for i in range(120)]) + b"x," * 5000 + b"\r\n"
    batch = ingest(seller, data)
    assert batch.status is BatchStatus.FAILED
    assert batch.error_code == "too_many_columns" and "Row 122" in batch.error_message
    assert leads(batch) == [] and rejections(batch) == {}


# --- real-time leads take the same cleaning -------------------------------------------


LEAD = {"email": "visitor@mail.example.com", "consent_at": "2026-11-01T09:30:00Z",
        "source_url": "https://landing.example.com/offer", "default_country": "US"}


def test_real_time_leads_lose_control_characters(client, api_key_for):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    response = client.post("/api/v1/leads", headers=api_key_for(seller), json=LEAD | {
        "first_name": "\u202eAnn\x1b\x00", "need": "a\u200bcar\x07", "region": "Cal\x0bifornia"})
    assert response.status_code == 201, response.json
    lead = db.session.get(Lead, response.json["id"])
    assert current_vault().open_contact(lead.contact_enc)["first_name"] == "Ann"
    assert (lead.need, lead.region) == ("acar", "US-CA")


def test_real_time_lead_with_text_that_is_not_text_is_a_422_verdict(client, seller, api_key_for):
    headers = api_key_for(seller)
    for name in ("Petr\udcff", "Jos\ufffd"):
        response = client.post("/api/v1/leads", headers=headers, json=LEAD | {"first_name": name})
        assert response.status_code == 422, response.json
        assert response.json["error"]["code"] == "bad_encoding"
        assert "first name" in response.json["error"]["message"]
