"""One money convention in every CSV the product writes (SPEC §5, issue 16 item 6):
amounts in major units from integer minor units (no float anywhere), the currency in
its own last column, phones that stay text in spreadsheets, formulas defused the same
way in every file."""
import csv
import io
import re
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.market import jobs
from app.models import Sale
from app.services import bank_transfers, ledger
from app.services.exports import (
    NUMBER, PHONE, csv_lines, major_units, major_units_of_average, minor_digits,
)
from tests.conftest import make_user
from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller

ROOT = Path(__file__).resolve().parent.parent


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


# ---------------------------------------------------------------- the helpers

@pytest.mark.parametrize("minor, currency, text", [
    (0, "USD", "0.00"), (5, "USD", "0.05"), (-5, "USD", "-0.05"), (123450, "USD", "1234.50"),
    (-100, "EUR", "-1.00"), (1234, "JPY", "1234"), (-7, "KRW", "-7"), (1, "KWD", "0.001"),
    (12345, "bhd", "12.345"),
    # Far past a float's 15-16 significant digits: exact all the same.
    (10**17 + 1, "USD", "1000000000000000.01"),
])
def test_major_units_are_exact_integer_arithmetic(minor, currency, text):
    assert major_units(minor, currency) == text


def test_major_units_refuse_floats_and_keep_none_empty():
    assert major_units(None, "USD") is None
    for wrong in (1.5, Decimal("1.5"), True, "100"):
        with pytest.raises(TypeError):
            major_units(wrong, "USD")
    assert major_units_of_average(Decimal("211.5"), "USD") == "2.12"  # half up, as pages show
    assert major_units_of_average(None, "USD") is None
    assert (minor_digits("USD"), minor_digits("JPY"), minor_digits("OMR")) == (2, 0, 3)


def test_every_kind_of_cell_is_defused_the_same_way():
    header = ["text", "number", "phone"]
    rows = [["=HYPERLINK(\"http://x\")", "-12.50", "+79541234567"],
            ["+1 plain", "=1+1", "=cmd|' /C calc'!A0"],
            ["@SUM(A1)", "42", "8 (912) 555-01-02"],
            ["\t=tabbed", "", None]]
    lines = list(csv.reader(io.StringIO("".join(
        csv_lines(header, rows, {"number": NUMBER, "phone": PHONE})).lstrip("\ufeff"))))
    assert lines[1] == ["'=HYPERLINK(\"http://x\")", "-12.50", "\t+79541234567"]
    # A "number" or "phone" that is not one is guarded like any text.
    assert lines[2] == ["'+1 plain", "'=1+1", "'=cmd|' /C calc'!A0"]
    assert lines[3] == ["'@SUM(A1)", "42", "8 (912) 555-01-02"]
    assert lines[4] == ["'\t=tabbed", "", ""]
    with pytest.raises(ValueError):
        list(csv_lines(header, rows, {"nope": NUMBER}))


def test_the_phone_cell_is_neither_number_nor_formula_and_reads_back_as_e164():
    line = list(csv.reader(io.StringIO("".join(
        csv_lines(["phone"], [["+79541234567"]], {"phone": PHONE}, bom=False)))))[1][0]
    assert line == "\t+79541234567"
    # What a spreadsheet sees: not a number (Excel's 7.95E+10) and no formula trigger
    # at its start; what a program sees after strip(): E.164 again.
    assert not re.fullmatch(r"[+-]?[0-9.E+]+", line) and line[0] not in "=+-@"
    assert line.strip() == "+79541234567"
    parsed = phonenumbers.parse(line, None)
    assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == "+79541234567"


def test_no_csv_is_written_outside_the_one_writer():
    """Every CSV the product writes goes through exports.csv_lines. Two modules write
    CSV that nobody downloads: demo_leads (the demo sellers' upload files) and the
    ingest workbook reader (a workbook's rows as CSV lines for the upload pipeline)."""
    allowed = {"app/services/exports.py", "app/services/demo_leads.py",
               "app/services/ingest/workbook.py"}
    writers = {str(path.relative_to(ROOT)) for path in (ROOT / "app").rglob("*.py")
               if re.search(r"csv\.(writer|DictWriter)\(", path.read_text())}
    assert writers <= allowed, writers - allowed


# ---------------------------------------------------------------- each export

def _sold(buyer, count=2, price=350, **fields):
    seller = verified_seller()
    leads = live_leads(seller, [person(i, **fields) for i in range(count)])
    order = place(buyer, price, count)
    jobs.match_leads([lead.id for lead in leads])
    db.session.commit()
    return order


def test_leads_export_prices_and_revenue_in_major_units_with_currency(buyer_client, buyer, client,
                                                                   api_key_for):
    ledger.manual_credit(buyer, 100_000, reason="funds", actor=None)
    db.session.commit()
    order = _sold(buyer, first_name="=HYPERLINK(\"http://evil\")")
    sales = [int(r["sale_id"]) for r in _rows(
        buyer_client.get(f"/buyer/orders/{order.id}/leads.csv").get_data(as_text=True))]
    client.post(f"/api/v1/sales/{sales[0]}/outcome", headers=api_key_for(buyer),
                json={"status": "converted", "revenue": 120_050})
    text = buyer_client.get(f"/buyer/orders/{order.id}/leads.csv").get_data(as_text=True)
    rows = _rows(text)
    header = next(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert header[-1] == "currency" and header[:3] == ["sale_id", "sold_at", "price"]
    assert [(r["price"], r["revenue"], r["currency"]) for r in rows] == [
        ("3.50", "1200.50", "USD"), ("3.50", "", "USD")]
    assert all(r["phone"].startswith("\t+1415555") for r in rows)
    assert all(r["first_name"].startswith("'=HYPERLINK") for r in rows)
    # The API's ?format=csv is the same file.
    api = client.get(f"/api/v1/orders/{order.id}/leads?format=csv",
                     headers=api_key_for(buyer)).get_data(as_text=True)
    assert _rows(api) == rows


def test_statement_csv_in_major_units_with_currency(buyer_client, buyer, admin):
    bank_transfers.record_transfer(reference=bank_transfers.reference_for(buyer), amount=250_075,
                                   received_on=date.today(), bank_transaction_id="-SUM(A1)",
                                   actor=admin)
    ledger.manual_debit(buyer, 75, reason="@fee", actor=None)
    db.session.commit()
    rows = _rows(buyer_client.get("/buyer/balance/statement.csv").get_data(as_text=True))
    assert [(r["kind"], r["amount"], r["balance_after"], r["currency"]) for r in rows] == [
        ("manual_debit", "-0.75", "2500.00", "USD"), ("bank_transfer", "2500.75", "2500.75", "USD")]
    assert rows[0]["memo"] == "'@fee" and rows[1]["memo"].startswith("Bank transfer -SUM(A1)")


def test_kpi_csv_in_major_units_with_currency(buyer_client):
    from tests.conftest import log_in

    buyer = funded_buyer()
    _sold(buyer, count=3, price=333)
    client = buyer_client.application.test_client()
    log_in(client, buyer)
    rows = _rows(client.get("/buyer/kpis.csv").get_data(as_text=True))
    assert [(r["spend"], r["cpl"], r["currency"]) for r in rows] == [
        ("9.99", "3.33", "USD"), ("9.99", "3.33", "USD")]
    assert "spend_USD" not in rows[0]


def test_another_currency_uses_its_own_minor_unit(app):
    saved = app.config["CURRENCY"]
    app.config["CURRENCY"] = "JPY"
    try:
        buyer = make_user()
        ledger.manual_credit(buyer, 5_000, reason="yen", actor=None)
        db.session.commit()
        lines = list(csv.reader(io.StringIO("".join(ledger.statement_csv(buyer)).lstrip("\ufeff"))))
    finally:
        app.config["CURRENCY"] = saved
    assert lines[1][4:6] == ["5000", "5000"] and lines[1][-1] == "JPY"


def test_monthly_statement_csv_in_major_units_with_currency(buyer_client, buyer, admin):
    from app.money import statements

    bank_transfers.record_transfer(reference=bank_transfers.reference_for(buyer), amount=250_075,
                                   received_on=date.today(), bank_transaction_id="-SUM(A1)",
                                   actor=admin)
    ledger.manual_debit(buyer, 75, reason="@fee", actor=None)
    db.session.commit()
    month = statements.months_for(buyer)[1]
    rows = _rows(buyer_client.get(f"/buyer/statements/{month.year}-{month.month}.csv")
                 .get_data(as_text=True))
    assert list(rows[0])[-1] == "currency" and {r["currency"] for r in rows} == {"USD"}
    available = [(r["kind"], r["amount"], r["balance"]) for r in rows
                 if r["account"] == "buyer_available"]
    assert available == [("opening", "", "0.00"), ("bank_transfer", "2500.75", "2500.75"),
                         ("manual_debit", "-0.75", "2500.00"), ("closing", "2500.00", "2500.00")]
    memos = [r["description"] for r in rows if r["kind"] in ("bank_transfer", "manual_debit")]
    assert memos[0].startswith("Bank transfer received: Bank transfer -SUM(A1)")
    assert memos[1] == "Debit by the exchange: @fee"  # not at the cell's start: no formula


def test_receipts_and_statements_use_the_currency_minor_unit(app):
    from app.money import pdf, receipts, statements
    from tests.test_receipts import pdf_text

    saved = app.config["CURRENCY"]
    app.config["CURRENCY"] = "JPY"
    try:
        buyer = make_user()
        ledger.manual_credit(buyer, 5_000, reason="yen", actor=None)
        db.session.commit()
        [receipt] = receipts.receipts_for(buyer)
        assert receipt.currency == "JPY" and "5,000 JPY" in pdf_text(pdf.receipt_pdf(receipt))
        month = statements.months_for(buyer)[1]
        lines = list(csv.reader(io.StringIO("".join(statements.statement_csv(
            statements.statement_for(buyer, month))).lstrip("\ufeff"))))
    finally:
        app.config["CURRENCY"] = saved
    assert lines[2][5:] == ["5000", "5000", "JPY"]


def test_the_leads_workbook_keeps_phones_text_and_formulas_inert(buyer_client, buyer):
    """What a buyer working in a spreadsheet downloads: the CSV's columns, the phone a
    text cell with its "+", amounts numbers, a formula in a name only text."""
    from openpyxl import load_workbook

    ledger.manual_credit(buyer, 100_000, reason="funds", actor=None)
    db.session.commit()
    order = _sold(buyer, first_name="=HYPERLINK(\"http://evil\")")
    page = buyer_client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert f'href="/buyer/orders/{order.id}/leads.xlsx" download' in page
    response = buyer_client.get(f"/buyer/orders/{order.id}/leads.xlsx")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(response.data)).active
    header, *rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    csv_header = next(csv.reader(io.StringIO(buyer_client.get(
        f"/buyer/orders/{order.id}/leads.csv").get_data(as_text=True).lstrip("\ufeff"))))
    assert header == csv_header and len(rows) == 2
    by_name = [dict(zip(header, row)) for row in rows]
    assert sorted(r["phone"] for r in by_name) == ["+14155550000", "+14155550001"]
    assert all(r["price"] == 3.5 and r["currency"] == "USD" for r in by_name)
    cells = {c.column_letter: c for c in next(sheet.iter_rows(min_row=2))}
    name_cell = cells[chr(ord("A") + header.index("first_name"))]
    assert name_cell.data_type == "s" and name_cell.value.startswith("=HYPERLINK")
    assert cells[chr(ord("A") + header.index("phone"))].data_type == "s"
    assert buyer_client.get("/buyer/orders/999999/leads.xlsx").status_code == 404


def test_the_leads_workbook_types_money_and_moments(buyer_client, buyer, client, api_key_for):
    """Prices and revenue are numbers in major units in the currency's format (exact:
    the sheet holds "3.50"), moments Excel dates on the buyer's clock, as the pages show
    them, the zone named in their format; the person's local time on their clock."""
    from openpyxl import load_workbook

    buyer.timezone = "Europe/Moscow"
    ledger.manual_credit(buyer, 100_000, reason="funds", actor=None)
    db.session.commit()
    order = _sold(buyer)
    sales = db.session.scalars(sa.select(Sale).where(Sale.order_id == order.id)
                               .order_by(Sale.id)).all()
    client.post(f"/api/v1/sales/{sales[0].id}/outcome", headers=api_key_for(buyer),
                json={"status": "converted", "revenue": 120_050})
    response = buyer_client.get(f"/buyer/orders/{order.id}/leads.xlsx")
    assert response.status_code == 200
    data = response.get_data()
    sheet = load_workbook(io.BytesIO(data)).active
    header = [cell.value for cell in sheet[1]]
    first, second = (dict(zip(header, row)) for row in sheet.iter_rows(min_row=2))

    def typed(cell):
        return cell.value, cell.data_type, cell.is_date, cell.number_format

    money = '#,##0.00 "USD"'
    assert typed(first["price"]) == (3.5, "n", False, money)
    assert typed(first["revenue"]) == (1200.5, "n", False, money)
    assert second["revenue"].value is None and second["outcome"].value is None
    assert typed(first["sale_id"]) == (sales[0].id, "n", False, "General")
    assert first["age"].data_type == first["score"].data_type == first["lead_id"].data_type == "n"
    assert first["phone"].data_type == "s" and first["phone"].value.startswith("+1415555000")
    assert typed(first["currency"])[:2] == ("USD", "s")

    moscow, on_clock = ZoneInfo("Europe/Moscow"), 'yyyy-mm-dd hh:mm:ss "Europe/Moscow"'
    sold_at = sales[0].created_at.astimezone(moscow).replace(tzinfo=None)
    value, data_type, is_date, number_format = typed(first["sold_at"])
    assert (data_type, is_date, number_format) == ("d", True, on_clock)
    assert abs(value - sold_at) < timedelta(milliseconds=1)  # Excel keeps milliseconds
    # Consent given at 12:00 UTC: 15:00 in Moscow.
    assert typed(first["consent_at"]) == (datetime(2026, 10, 1, 15, 0), "d", True, on_clock)
    # The person's local time (US-CA) on their clock, beside their zone.
    assert first["timezone"].value == "America/Los_Angeles"
    local = sales[0].created_at.astimezone(ZoneInfo("America/Los_Angeles")).replace(tzinfo=None)
    assert first["local_time"].is_date and first["local_time"].number_format == "yyyy-mm-dd hh:mm"
    assert abs(first["local_time"].value - local) < timedelta(milliseconds=1)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "<v>3.50</v>" in archive.read("xl/worksheets/sheet1.xml").decode()


def test_leads_export_carries_the_persons_clock_and_opt_out_code(buyer_client, buyer):
    """SPEC §14: every delivered lead carries the person's time zone (and, with it, the
    code for opting out by phone), in the CSV as in the JSON."""
    from app.people.opt_out import code as opt_out_code

    ledger.manual_credit(buyer, 100_000, reason="funds", actor=None)
    db.session.commit()
    order = _sold(buyer, region="CA")
    rows = _rows(buyer_client.get(f"/buyer/orders/{order.id}/leads.csv").get_data(as_text=True))
    assert len(rows) == 2
    for row in rows:
        assert row["timezone"] == "America/Los_Angeles"
        assert row["local_time"].endswith(("-08:00", "-07:00"))
        assert row["opt_out_code"] == opt_out_code(int(row["sale_id"]))
