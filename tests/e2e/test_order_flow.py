"""A buyer composes an order watching the live supply estimate, places it, sees it
fill, exports the leads and cancels the rest."""
import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role
from app.services import ledger
from tests.conftest import TEST_PASSWORD, make_user
from tests.market_helpers import live_leads, person, verified_seller

pytestmark = pytest.mark.browser


def test_compose_place_fill_export_cancel(page):
    seller = verified_seller()
    live_leads(seller, [person(i, gender="f" if i % 2 else "m") for i in range(10)])
    buyer = make_user(Role.BUYER, email="shop@example.com")
    ledger.manual_credit(buyer, 50_000, reason="wire", actor=None)
    db.session.commit()

    page.goto("/auth/login")
    page.get_by_label("Email").fill("shop@example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="New order").first.click()

    expect(page.locator("#estimate-count")).to_have_text("10")  # loaded with the page
    page.get_by_label("Female", exact=True).check()
    expect(page.locator("#estimate-count")).to_have_text("5")  # recounted live
    page.get_by_label("Age from").fill("70")
    expect(page.locator("#estimate-count")).to_have_text("0")
    page.get_by_label("Age from").fill("")
    expect(page.locator("#estimate-count")).to_have_text("5")

    page.get_by_label("Price per lead").fill("4.00")
    page.get_by_label("Quantity").fill("8")
    page.get_by_label("Order name").fill("Browser test")
    page.get_by_role("button", name="Place order").click()

    expect(page.locator("#filled")).to_have_text("5 / 8")
    expect(page.locator("#spent")).to_have_text("$20.00")
    expect(page.locator("#leads tbody tr")).to_have_count(5)
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    lines = download_info.value.path().read_text(encoding="utf-8-sig").splitlines()
    assert len(lines) == 6 and lines[0].startswith("sale_id,sold_at,price")

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Cancel order").click()
    expect(page.locator("#filled")).to_have_text("5 / 8")  # not cancelled: the buyer said no
    assert asked and asked[0].startswith("Cancel this order?")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel order").click()
    expect(page.get_by_text("$12.00 released to your balance")).to_be_visible()
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#available")).to_have_text("$480.00")
    assert page.console_errors == []


def test_an_hourly_cap_and_a_dearer_window_fill_as_promised(page):
    """The buyer's journey of issue 14: an order with an hourly cap and a window open
    now at a higher price takes two leads at the window's price, says why it waits,
    shows each cap's use, and the estimate said so before it was placed."""
    from datetime import datetime, timezone

    live_leads(verified_seller(), [person(i) for i in range(6)])
    buyer = make_user(Role.BUYER, email="hours@example.com")
    ledger.manual_credit(buyer, 50_000, reason="wire", actor=None)
    db.session.commit()
    page.goto("/auth/login")
    page.get_by_label("Email").fill("hours@example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="New order").first.click()

    now = datetime.now(timezone.utc)
    page.get_by_label("Price per lead", exact=True).fill("3.00")
    page.get_by_label("Quantity").fill("6")
    page.get_by_label("Time zone").fill("UTC")
    page.get_by_label("Leads per hour").fill("2")
    window = page.locator(".schedule-window").first
    window.get_by_label(now.strftime("%a")).check()
    window.get_by_label("From").fill(f"{now.hour:02d}:00")
    window.get_by_label("Until").fill(f"{(now.hour + 1) % 24:02d}:00")
    window.get_by_label("Price in this window").fill("4.50")
    expect(page.locator("#estimate-schedule")).to_contain_text("bought at $4.50")
    page.get_by_role("button", name="Place order").click()

    expect(page.locator("#filled")).to_have_text("2 / 6")
    expect(page.locator("#spent")).to_have_text("$9.00")
    expect(page.locator("#price-now")).to_have_text("$4.50")
    expect(page.locator("#delivery-state")).to_contain_text(
        "the lead cap for this hour is reached")
    expect(page.locator("#cap-use")).to_contain_text("2 of 2")
    assert page.console_errors == []
