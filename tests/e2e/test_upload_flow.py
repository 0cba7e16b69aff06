"""A seller uploads a messy file, maps a column, watches progress, reads the report
and downloads the rejected rows."""
import csv
import io
import threading

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role
from app.services.ingest import workers
from tests.conftest import TEST_PASSWORD, make_user
from tests.e2e.conftest import log_in_page
from tests.ingest_helpers import person

pytestmark = pytest.mark.browser


def _messy_file(rows: int) -> bytes:
    """Windows-1251, semicolons, a column we do not know, a few bad rows."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Имя", "Телефон", "Почта для связи", "Регион", "consent_at", "source_url"])
    for i in range(rows):
        p = person(i)
        email = "нет" if i % 10 == 3 else p["email"]
        writer.writerow(["Ирина", p["phone"], email, "Москва", p["consent_at"], p["source_url"]])
    return out.getvalue().encode("cp1251")


def test_upload_map_progress_report_download(app, page, tmp_path, monkeypatch):
    # Processing pauses after its first chunk until the test has seen the progress bar,
    # so the check does not depend on how fast this machine is.
    # It waits before validating the next chunk: between chunks it holds nothing, while
    # a wait inside storing would hold SQLite's write lock and stall the pages.
    progress_seen = threading.Event()
    real_validated = workers._validated
    chunks_seen = []

    def validated_after_progress_was_seen(block, *args):
        if chunks_seen:
            progress_seen.wait(timeout=30)
        chunks_seen.append(block)
        return real_validated(block, *args)

    monkeypatch.setattr(workers, "_validated", validated_after_progress_was_seen)
    make_user(Role.SELLER, email="blog@example.com")
    db.session.commit()
    upload = tmp_path / "export.csv"
    upload.write_bytes(_messy_file(1500))
    app.config["TASK_MODE"] = "thread"  # processing runs beside the web request, as in production
    try:
        page.goto("/auth/login")
        page.get_by_label("Email").fill("blog@example.com")
        page.get_by_label("Password").fill(TEST_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("link", name="Upload a batch").click()
        page.get_by_label("CSV file").set_input_files(str(upload))
        page.get_by_label("Country of numbers without a +prefix").select_option("US")
        page.get_by_label("Floor price per lead").fill("2.50")
        page.get_by_role("button", name="Upload and check").click()

        expect(page.get_by_role("heading", name="Check how we read your file")).to_be_visible()
        expect(page.get_by_text("Windows-1251 (Cyrillic)")).to_be_visible()
        page.get_by_label("Field for Почта для связи").select_option("email")
        page.get_by_role("button", name="Start processing").click()

        expect(page.get_by_text("Checking rows")).to_be_visible()  # the live progress bar
        expect(page.locator("#batch-progress")).not_to_have_attribute("value", "0")
        progress_seen.set()
        expect(page.locator("#accepted")).to_have_text("1,350", timeout=60_000)
        expect(page.locator("#rejected")).to_have_text("150")
        expect(page.locator("#rejection-counts")).to_contain_text("invalid_email")

        with page.expect_download() as download_info:
            page.get_by_role("link", name="Download rejected rows (CSV)").click()
        # Back in the file's own shape: Windows-1251, semicolons.
        lines = download_info.value.path().read_text(encoding="cp1251").splitlines()
        assert lines[0] == "row;code;message;Имя;Телефон;Почта для связи;Регион;consent_at;source_url"
        assert len(lines) == 151 and lines[1].startswith("5;invalid_email;")
        assert page.console_errors == []
    finally:
        app.config["TASK_MODE"] = "eager"


def test_the_mapping_shows_whole_field_names_and_keeps_long_values_on_the_page(app, page, tmp_path):
    """The closed select shows the longest field name whole (the seller checks exactly
    that), and a long value (a URL) wraps rather than pushing the table off the page."""
    make_user(Role.SELLER, email="wide@example.com")
    db.session.commit()
    header = ["Имя", "Телефон", "Почта", "Согласие", "consent_at", "Страница", "sub_id", "Заметка"]
    long_url = "https://blog.example.com/" + "landing-page-with-a-very-long-path/" * 4 + "form"
    rows = [["Ирина", person(i)["phone"], person(i)["email"], "да", person(i)["consent_at"],
             long_url, "spring-campaign", "звонить после 18"] for i in range(5)]
    upload = tmp_path / "export.csv"
    upload.write_text("\r\n".join(";".join(row) for row in [header, *rows]), encoding="utf-8")
    log_in_page(page, "wide@example.com")
    page.get_by_role("link", name="Upload a batch").click()
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("heading", name="Check how we read your file")).to_be_visible()

    for width in (1280, 400):
        page.set_viewport_size({"width": width, "height": 900})
        layout = page.evaluate("""() => {
          const measure = document.createElement("canvas").getContext("2d");
          const cut = [...document.querySelectorAll("form table select")].filter((select) => {
            const style = getComputedStyle(select);
            measure.font = style.font;
            const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return [...select.options].some((o) => measure.measureText(o.text).width > room + 1);
          }).map((select) => select.name);
          const table = document.querySelector("form table");
          return {cut, table: table.scrollWidth, room: table.parentElement.clientWidth};
        }""")
        assert layout["cut"] == [], (width, layout)
        assert layout["table"] <= layout["room"], (width, layout)
    assert page.console_errors == []


@pytest.mark.parametrize("width", [800, 1000, 1200, 1366])
def test_the_menu_fits_its_line_with_a_long_name(app, page, width):
    make_user(Role.SELLER, email="longname@example.com",
              display_name="Общество с ограниченной ответственностью «Лидогенерация»")
    db.session.commit()
    page.set_viewport_size({"width": width, "height": 800})
    log_in_page(page, "longname@example.com")
    page.wait_for_url("**/seller/**")
    overflow = page.evaluate("""() => {
      const nav = document.querySelector("nav.navbar .container");
      return {page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
              nav: nav.scrollWidth - nav.clientWidth,
              height: document.querySelector("nav.navbar").offsetHeight};
    }""")
    assert overflow["page"] <= 0 and overflow["nav"] <= 0, overflow
    assert overflow["height"] < 80, overflow  # one line (or the collapsed menu's button)
    assert page.console_errors == []
