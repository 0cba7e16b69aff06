"""A buyer records an outcome on a delivered lead, then compares orders on the KPI
page: the table, and the Chart.js charts drawn from the page's data (no inline script)."""
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role, Sale
from app.services import ledger
from app.market import jobs
from tests.conftest import TEST_PASSWORD, make_user
from tests.market_helpers import live_leads, person, place, verified_seller

pytestmark = pytest.mark.browser

CANVASES = ("chart-daily", "chart-regions", "chart-cpl", "chart-cr")


def test_mark_an_outcome_then_compare_orders_with_charts(page):
    seller = verified_seller()
    live_leads(seller, [person(i, region="US-CA" if i % 3 else "US-NY") for i in range(9)])
    buyer = make_user(Role.BUYER, email="marketer@example.com")
    ledger.manual_credit(buyer, 50_000, reason="wire", actor=None)
    db.session.commit()
    first = place(buyer, 400, 3, name="Landing A")
    jobs.fill_order(first.id)
    second = place(buyer, 200, 6, name="Landing B")
    jobs.fill_order(second.id)
    db.session.commit()
    first_id, second_id = first.id, second.id
    sale_id = db.session.scalar(sa.select(sa.func.min(Sale.id)).where(Sale.order_id == first_id))
    db.session.commit()  # hold no SQLite write lock while the server works

    page.goto("/auth/login")
    page.get_by_label("Email").fill("marketer@example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"/buyer/orders/{first_id}")
    row = page.locator(f"#sale-{sale_id}")
    row.get_by_label(f"Outcome of sale {sale_id}").select_option("converted")
    row.get_by_label(f"Revenue of sale {sale_id}").fill("30.00")
    row.get_by_role("button", name="Save").click()
    expect(row.locator(".outcome-now")).to_have_text("Saved: converted · $30.00")

    page.get_by_role("link", name="KPIs").first.click()
    first_row = page.locator(f'#kpi-table tr[data-order-id="{first_id}"] td.num')
    expect(first_row).to_have_text(["3", "$12.00", "$4.00", "1", "33.3%", "$12.00", "$30.00",
                                    "150.0%"])
    expect(page.locator("#kpi-total td.num").first).to_have_text("9")
    page.wait_for_function(
        "ids => ids.every(id => window.Chart && window.Chart.getChart(document.getElementById(id)))",
        arg=list(CANVASES))
    drawn = page.evaluate("""ids => ids.map(id => {
        const chart = window.Chart.getChart(document.getElementById(id));
        return {labels: chart.data.labels, data: chart.data.datasets.map(d => d.data),
                width: chart.width, height: chart.height};
    })""", list(CANVASES))
    daily, regions, cpl, cr = drawn
    assert all(chart["width"] > 100 and chart["height"] > 100 for chart in drawn)
    assert sum(daily["data"][0]) == 9 and sum(daily["data"][1]) == 2_400
    assert cpl["labels"] == [f"#{second_id} Landing B", f"#{first_id} Landing A"]
    assert cpl["data"] == [[200, 400]] and cr["data"] == [[0, pytest.approx(0.3333)]]
    assert sorted(regions["labels"]) == ["California", "New York"]  # by name, not ISO code
    assert page.console_errors == []  # a CSP violation would show here


def test_empty_charts_have_distinct_readable_ticks(page):
    """A buyer with nothing bought yet: every axis reads as a scale, not "$0.01" repeated."""
    make_user(Role.BUYER, email="newcomer@example.com")
    db.session.commit()
    page.goto("/auth/login")
    page.get_by_label("Email").fill("newcomer@example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto("/buyer/kpis")
    for canvas, axis in (("chart-daily", "spend"), ("chart-regions", "y"), ("chart-cpl", "y"),
                         ("chart-cr", "y")):
        labels = page.evaluate(
            "([id, axis]) => Chart.getChart(id).scales[axis].ticks.map(t => t.label)",
            [canvas, axis])
        assert len(labels) >= 3 and len(set(labels)) == len(labels), (canvas, labels)
    money = page.evaluate("Chart.getChart('chart-cpl').scales.y.ticks.map(t => t.label)")
    assert money[0] == "$0.00" and money[-1] == "$1.00"
    assert page.console_errors == []
