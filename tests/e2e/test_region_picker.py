"""A buyer picks regions by name in the order builder -- in Russian, in English, or
leaving a typed name in the box -- and the order gets their ISO codes; at desktop and
phone width."""
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.extensions import db
from app.models import Order, Role
from app.services import ledger
from tests.conftest import make_user
from tests.e2e.conftest import log_in_page
from tests.market_helpers import live_leads, person, verified_seller

pytestmark = pytest.mark.browser


def _russian(i: int, region: str) -> dict:
    return person(i, phone=f"+7 912 555 {i:04d}", region=region)


@pytest.mark.parametrize("width", [1366, 390])
def test_regions_are_picked_by_name_and_ordered_by_code(page, width):
    live_leads(verified_seller(), [_russian(1, "Калининград"), _russian(2, "Kaliningrad Oblast"),
                                   _russian(3, "Калининградская обл."), _russian(4, "Москва"),
                                   _russian(5, "Moscow"), person(6)])
    buyer = make_user(Role.BUYER, email="picker@example.com")
    ledger.manual_credit(buyer, 50_000, reason="wire", actor=None)
    db.session.commit()
    page.set_viewport_size({"width": width, "height": 900})
    page.set_extra_http_headers({"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    log_in_page(page, "picker@example.com")
    page.goto("/buyer/orders/new")
    expect(page.locator("#estimate-count")).to_have_text("6")

    search = page.get_by_role("combobox", name="Regions")
    search.fill("калин")
    options = page.get_by_role("listbox")
    option = options.get_by_role("option").first
    expect(option).to_contain_text("Калининградская область")
    expect(option).to_contain_text("RU-KGD")
    box = page.locator(".region-options").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width  # the list fits the screen
    search.press("Enter")
    expect(page.locator(".region-chip")).to_have_text(["Калининградская область"])
    expect(page.locator("#estimate-count")).to_have_text("3")

    search.fill("Moscow")  # English finds the Russian name too
    options.get_by_role("option", name="Москва").first.click()
    expect(page.locator(".region-chip")).to_have_count(2)
    expect(page.locator("#estimate-count")).to_have_text("5")
    assert page.locator("input[name=regions]").input_value() == "RU-KGD, RU-MOW"

    page.get_by_role("button", name="Remove Калининградская область").click()
    expect(page.locator(".region-chip")).to_have_text(["Москва"])
    expect(page.locator("#estimate-count")).to_have_text("2")

    search.fill("Kaliningrad")  # typed, not picked: the server reads the name
    page.get_by_label("Price per lead").fill("1,50")
    page.get_by_label("Quantity").fill("5")
    page.get_by_role("button", name="Place order").click()
    expect(page.locator("#filled")).to_have_text("5 / 5")
    expect(page.get_by_text("Калининградская область, Москва")).to_be_visible()
    order = db.session.scalar(sa.select(Order))
    assert (order.filters["regions"], order.price) == (["RU-KGD", "RU-MOW"], 150)
    assert page.console_errors == []
