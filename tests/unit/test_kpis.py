"""KPI formulas (SPEC §9), the worked case and every division by zero."""
from datetime import date
from decimal import Decimal

import pytest

from app.errors import ValidationFailed
from app.formatting import format_average, format_money, format_rate
from app.services.kpis import DateRange, Kpis


def test_spec_worked_case():
    k = Kpis(leads=50, spend=50 * 600, conversions=11, revenue=0)
    assert k.spend == 30_000
    assert k.cpl == Decimal("600.00")
    assert k.conversion_rate == Decimal("0.2200")
    assert k.cpa == Decimal("2727.27")
    assert k.as_dict() == {"leads": 50, "spend": 30_000, "cpl": 600.0, "conversions": 11,
                           "conversion_rate": 0.22, "cpa": 2727.27, "revenue": 0, "roi": -1.0}


def test_roi_is_margin_less_spend_over_spend():
    assert Kpis(50, 30_000, 11, 45_000).roi == Decimal("0.5000")
    assert Kpis(50, 30_000, 11, 30_000).roi == Decimal("0.0000")
    assert Kpis(3, 1_000, 1, 333).roi == Decimal("-0.6670")


def test_zero_leads_has_no_ratios():
    k = Kpis()
    assert (k.cpl, k.conversion_rate, k.cpa, k.roi) == (None, None, None, None)
    assert k.as_dict() == {"leads": 0, "spend": 0, "cpl": None, "conversions": 0,
                           "conversion_rate": None, "cpa": None, "revenue": 0, "roi": None}


def test_zero_conversions():
    k = Kpis(leads=10, spend=5_000, rated=3)  # three outcomes told, none converted
    assert k.cpl == Decimal("500.00") and k.conversion_rate == Decimal("0.0000")
    assert k.cpa is None and k.roi == Decimal("-1.0000")


def test_no_outcome_told_yet_has_no_roi():
    k = Kpis(leads=10, spend=5_000)  # the revenue is unknown, not zero
    assert k.roi is None and k.as_dict()["roi"] is None
    assert (k + Kpis(leads=1, spend=500, rated=1)).roi == Decimal("-1.0000")


def test_free_leads_have_zero_cpl_and_no_roi():
    k = Kpis(leads=4, spend=0, conversions=1, revenue=1_000)
    assert k.cpl == Decimal("0.00") and k.cpa == Decimal("0.00") and k.roi is None


def test_rounding_is_half_up_to_the_cent():
    assert Kpis(leads=3, spend=1_000).cpl == Decimal("333.33")
    assert Kpis(leads=3, spend=2_000).cpl == Decimal("666.67")
    assert Kpis(leads=8, spend=1, conversions=1).conversion_rate == Decimal("0.1250")


def test_totals_add_counts_not_ratios():
    total = Kpis(10, 1_000, 1, 500) + Kpis(30, 9_000, 9, 20_000)
    assert total == Kpis(40, 10_000, 10, 20_500)
    assert total.cpl == Decimal("250.00") and total.conversion_rate == Decimal("0.2500")


def test_date_range_parsing():
    period = DateRange.parse("2026-01-01", "2026-01-31")
    assert (period.start, period.end) == (date(2026, 1, 1), date(2026, 1, 31))
    assert period.end_before.isoformat() == "2026-02-01T00:00:00+00:00"
    assert DateRange.parse(None, "") == DateRange()
    assert len(DateRange(date(2026, 1, 1), date(2026, 1, 7)).days()) == 7
    with pytest.raises(ValidationFailed):
        DateRange.parse("2026-02-01", "2026-01-01")
    with pytest.raises(ValidationFailed):
        DateRange.parse("yesterday", None)
    with pytest.raises(ValidationFailed):
        DateRange.parse("2020-01-01", "2026-01-01")


def test_display_of_averages_and_rates():
    assert format_average(Decimal("2727.27"), "USD") == "$27.27"
    assert format_average(Decimal("0.5"), "USD") == "$0.01"
    assert format_average(None) == "—"
    assert format_money(30_000, "USD") == "$300.00"
    assert format_rate(Decimal("0.22")) == "22.0%"
    assert format_rate(Decimal("-1")) == "-100.0%"
    assert format_rate(None) == "—"
