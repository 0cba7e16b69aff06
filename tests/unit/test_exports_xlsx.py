"""The streamed Excel writer (app/services/exports.py): each value a cell of its own
type, read back by openpyxl as Excel would show it; dates on Excel's own calendar;
flat memory however many rows."""
import io
import math
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import openpyxl
import pytest
from openpyxl.utils.datetime import to_excel

from app.services.exports import (
    Formatted, currency_format, excel_serial, money_cell, xlsx_chunks,
)
from tests.peak_memory import traced_peak


def _read(header, rows):
    data = b"".join(xlsx_chunks("Sheet <&> \"one\"", header, rows))
    book = openpyxl.load_workbook(io.BytesIO(data))
    return book, book.active


def test_each_value_is_a_cell_of_its_type():
    book, sheet = _read(["a", "b", "c"], [
        ["=SUM(A1)", 12, 2.5], [Decimal("1234.50"), True, False],
        [date(2026, 1, 31), datetime(2026, 11, 3, 14, 5, 30), time(9, 30)],
        [timedelta(hours=30), None, ""],
        [Formatted(Decimal("7.5"), currency_format("USD")), Formatted(date(2026, 1, 31), 14),
         Formatted(46053, "dd.mm.yyyy")],
        [math.nan, date(1899, 12, 31), "x\x01y"],
    ])
    assert book.sheetnames == ['Sheet <&> "one"']
    cells = [[(c.value, c.data_type, c.number_format) for c in row]
             for row in sheet.iter_rows(min_row=2)]
    assert cells[0] == [("=SUM(A1)", "s", "General"), (12, "n", "General"),
                        (2.5, "n", "General")]
    assert cells[1] == [(1234.5, "n", "General"), (True, "b", "General"),
                        (False, "b", "General")]
    assert cells[2] == [(datetime(2026, 1, 31), "d", "yyyy-mm-dd"),
                        (datetime(2026, 11, 3, 14, 5, 30), "d", "yyyy-mm-dd hh:mm:ss"),
                        (time(9, 30), "d", "hh:mm:ss")]
    assert cells[3] == [(timedelta(hours=30), "d", "[h]:mm:ss"), (None, "n", "General"),
                        (None, "n", "General")]
    assert cells[4] == [(7.5, "n", '#,##0.00 "USD"'), (datetime(2026, 1, 31), "d", "mm-dd-yy"),
                        (datetime(2026, 1, 31), "d", "dd.mm.yyyy")]
    # What no cell holds as a number or a date is written as text.
    assert cells[5] == [("nan", "s", "General"), ("1899-12-31", "s", "General"),
                        ("x\ufffdy", "s", "General")]
    assert [c.font.b for c in sheet[1]] == [True] * 3 and not sheet["A2"].font.b


@pytest.mark.parametrize("value", [
    date(1900, 1, 1), date(1900, 2, 28), date(1900, 3, 1), date(2026, 1, 31),
    datetime(2026, 11, 3, 14, 5, 30), datetime(1999, 12, 31, 23, 59, 59, 500000),
    time(0, 0), time(23, 59, 59), timedelta(days=2, hours=3), timedelta(0),
])
def test_dates_count_as_excel_counts_them(value):
    assert excel_serial(value) == pytest.approx(to_excel(value), abs=1e-9)


def test_a_moment_with_a_zone_is_refused_and_money_is_exact():
    with pytest.raises(ValueError):
        excel_serial(datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert money_cell(None, "USD") is None
    assert money_cell(10**17 + 1, "USD") == Formatted(Decimal("1000000000000000.01"),
                                                      '#,##0.00 "USD"')
    assert money_cell(5_000, "JPY") == Formatted(Decimal("5000"), '#,##0 "JPY"')
    assert money_cell(1, "kwd") == Formatted(Decimal("0.001"), '#,##0.000 "KWD"')


def test_columns_are_wide_enough_for_their_dates():
    _, sheet = _read(["id", "when"], [[1, Formatted(datetime(2026, 1, 1), 'yyyy-mm-dd hh:mm:ss '
                                                                        '"Europe/Moscow"')]])
    assert sheet.column_dimensions["A"].width == 8
    assert sheet.column_dimensions["B"].width >= len("2026-01-01 00:00:00 Europe/Moscow")


def test_a_sheet_without_columns_is_still_a_workbook():
    _, sheet = _read([], [])
    assert sheet.max_row == 1 and sheet["A1"].value is None


def test_writing_a_workbook_holds_flat_memory():
    def write(rows: int) -> int:
        typed = ([i, f"person{i}@mail.example.com", "+14155550000", datetime(2026, 1, 1, 12),
                  Formatted(Decimal(i) / 100, currency_format("USD")), i % 2 == 0]
                 for i in range(rows))
        return sum(map(len, xlsx_chunks("Leads", ["id", "email", "phone", "at", "price",
                                                  "even"], typed)))

    (small, peak_small), (large, peak_large) = traced_peak(lambda: write(2_000)), \
        traced_peak(lambda: write(40_000))
    assert large > 10 * small
    assert peak_large < 1.5 * peak_small + (1 << 20), (peak_small, peak_large)
