"""A seller uploads an Excel workbook with a yes/no consent column, maps a column,
reads the report and downloads the rejected rows as a workbook (issue 15)."""
import io
from datetime import datetime

import openpyxl
import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role, TrustLevel
from tests.conftest import TEST_PASSWORD, make_user

pytestmark = pytest.mark.browser


def _workbook(rows: int) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Имя", "Телефон", "Почта для связи", "Согласие", "consent_at", "source_url"])
    for i in range(rows):
        sheet.append(["Ирина", 14155550000 + i, f"irina{i}@mail.example.com",
                      "нет" if i % 10 == 4 else "да", datetime(2026, 10, 1, 12, i % 60),
                      "https://landing.example.com/form"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_workbook_with_a_consent_flag_upload_map_report_download(app, page, tmp_path):
    make_user(Role.SELLER, email="sheet@example.com", trust_level=TrustLevel.VERIFIED)
    db.session.commit()
    upload = tmp_path / "leads.xlsx"
    upload.write_bytes(_workbook(50))

    page.goto("/auth/login")
    page.get_by_label("Email").fill("sheet@example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Upload a batch").click()
    page.get_by_label("CSV file or Excel workbook").set_input_files(str(upload))
    page.get_by_label("Country of numbers without a +prefix").select_option("US")
    page.get_by_role("button", name="Upload and check").click()

    expect(page.get_by_role("heading", name="Check how we read your file")).to_be_visible()
    expect(page.get_by_text("Excel workbook")).to_be_visible()
    consent = page.get_by_label("Field for Согласие")
    expect(consent.locator("option:checked")).to_have_text("Consent given (yes/no)")
    expect(consent.locator("option", has_text="consent text")).to_have_count(1)
    page.get_by_label("Field for Почта для связи").select_option("email")
    page.get_by_role("button", name="Start processing").click()

    expect(page.locator("#accepted")).to_have_text("45", timeout=60_000)
    expect(page.locator("#rejected")).to_have_text("5")
    expect(page.locator("#rejection-counts")).to_contain_text("no_consent")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download rejected rows (Excel)").click()
    download = download_info.value
    assert download.suggested_filename.endswith("-rejections.xlsx")
    data = io.BytesIO(download.path().read_bytes())
    sheet = openpyxl.load_workbook(data).worksheets[0]
    table = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert table[0] == ["row", "code", "message", "Имя", "Телефон", "Почта для связи",
                        "Согласие", "consent_at", "source_url"]
    assert [row[:2] for row in table[1:]] == [[n, "no_consent"] for n in (6, 16, 26, 36, 46)]
    # Her cells as her workbook typed them: the phone a number, the moment a date.
    assert table[1][3:] == ["Ирина", 14155550004, "irina4@mail.example.com", "нет",
                            datetime(2026, 10, 1, 12, 4), "https://landing.example.com/form"]
    row, phone, moment = sheet["A2"], sheet["E2"], sheet["H2"]
    assert (row.data_type, phone.data_type, phone.number_format) == ("n", "n", "General")
    assert moment.is_date and moment.number_format == "yyyy-mm-dd h:mm:ss"  # openpyxl's own
    assert "“нет”" in table[1][2]
    assert page.console_errors == []
