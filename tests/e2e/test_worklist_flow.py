"""A buyer's rep works through an order's delivered leads at desktop and phone width:
pages through them, searches one by email, filters, records an outcome, and sees the
rows arrive with the counter while the order fills (issue 17)."""
import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.market import jobs
from tests.e2e.conftest import log_in_page
from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width", [1366, 390])
def test_work_through_the_delivered_leads(page, width):
    page.set_viewport_size({"width": width, "height": 900})
    seller = verified_seller()
    live_leads(seller, [person(i) for i in range(1, 56)])
    email_address = f"rep{width}@example.com"
    order_id = place(funded_buyer(email=email_address), 100, 60).id
    jobs.fill_order(order_id)
    # Committed with nothing read after: this thread must not hold SQLite's write lock
    # while the server works.
    db.session.commit()

    log_in_page(page, email_address)
    page.goto(f"/buyer/orders/{order_id}")
    rows = page.locator("#leads tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#worklist-summary")).to_have_text("55 leads · page 1 of 2")
    page.get_by_role("button", name="Next").click()
    expect(rows).to_have_count(5)
    page.get_by_role("button", name="Previous").click()
    expect(rows).to_have_count(50)

    # What a rep needs on a phone: the number and address as links, on screen.
    first = rows.first
    phone = first.locator('a[href^="tel:+1415555"]')
    email = first.locator('a[href^="mailto:"]')
    expect(phone).to_be_visible()
    expect(email).to_be_visible()
    line = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)")
    assert email.bounding_box()["height"] < 2 * line  # one line, not a letter per line
    if width == 390:
        assert phone.bounding_box()["x"] + phone.bounding_box()["width"] <= width
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
    else:
        box = first.get_by_role("link", name="Return").bounding_box()
        assert box["x"] + box["width"] <= page.locator("#leads").bounding_box()["x"] + \
            page.locator("#leads").bounding_box()["width"] + 1
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width

    # Search: an exact email (through its keyed hash); the search stays out of URLs.
    urls = []
    page.on("request", lambda request: urls.append(request.url))
    page.get_by_label("Search").fill("person7@mail.example.com")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("person7@mail.example.com")
    assert not [url for url in urls if "person7" in url]

    # An outcome for that lead: nothing is preselected until the rep chooses.
    expect(rows.first.get_by_label("Outcome of sale")).to_have_value("")
    rows.first.get_by_label("Outcome of sale").select_option("converted")
    rows.first.get_by_label("Revenue of sale").fill("12.50")
    rows.first.get_by_role("button", name="Save").click()
    expect(rows.first.locator(".outcome-now")).to_have_text("Saved: converted · $12.50")

    # Filters: the search cleared, only the leads without an outcome yet.
    page.get_by_label("Search").fill("")
    expect(rows).to_have_count(50)
    page.get_by_label("Outcome", exact=True).select_option("none")
    expect(page.locator("#worklist-summary")).to_have_text("54 leads · page 1 of 2")
    page.get_by_label("Outcome", exact=True).select_option("converted")
    expect(rows).to_have_count(1)
    page.get_by_label("Outcome", exact=True).select_option("")

    # Bulk: two leads chosen, one outcome for both.
    rows.nth(1).get_by_label("Choose sale").check()
    rows.nth(2).get_by_label("Choose sale").check()
    expect(page.locator("#chosen-count")).to_have_text("2 chosen")
    page.get_by_label("Outcome for the chosen leads").select_option("bad")
    page.get_by_role("button", name="Set outcome of chosen").click()
    expect(page.locator("#bulk-message")).to_have_text("2 lead(s) marked bad.")
    expect(rows.nth(1).get_by_label("Outcome of sale")).to_have_value("bad")

    # Live: more leads arrive; the counter and the rows move together.
    live_leads(seller, [person(i) for i in range(100, 103)])
    jobs.fill_order(order_id)
    db.session.commit()
    expect(page.locator("#filled")).to_have_text("58 / 60", timeout=10_000)
    expect(page.locator("#worklist-summary")).to_have_text("58 leads · page 1 of 2",
                                                           timeout=10_000)
    expect(page.locator("#leads")).to_contain_text("person102@mail.example.com")
    assert page.console_errors == []
