"""A seller answers a return on a phone: the lead is named, and Contest (with its
reason) and Accept are on screen at 390 px as at 1366 px."""
import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.market import jobs
from app.models import ReturnStatus
from app.services import returns
from tests.conftest import TEST_PASSWORD
from tests.e2e.conftest import log_in_page
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller

pytestmark = pytest.mark.browser

# Whether a field's placeholder is shown whole: its text, in the field's font, is no
# wider than the field's inside (times its rows, a textarea wrapping it, less a tenth
# for the ends of lines a wrap leaves empty).
PLACEHOLDER_FITS = """field => {
  const style = getComputedStyle(field);
  const context = document.createElement("canvas").getContext("2d");
  context.font = style.font;
  const inside = field.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const lines = field.tagName === "TEXTAREA" ? field.rows : 1;
  return context.measureText(field.placeholder).width <= inside * lines * (lines > 1 ? 0.9 : 1);
}"""


@pytest.mark.parametrize("width", [1366, 390])
def test_the_seller_contests_a_return_with_a_reason_on_any_screen(page, width):
    seller = verified_seller(email="returns-seller@example.com")
    buyer = funded_buyer(100_000)
    live_leads(seller, [person(i) for i in range(10)])
    order = place(buyer, 1000, 10)
    jobs.fill_order(order.id)
    item = returns.open_return(buyer, sales_of(order)[0].id, "fake", "nobody by that name")
    db.session.commit()
    item_id = item.id
    db.session.commit()  # SQLite: reading the id began a transaction the server would wait on
    page.set_viewport_size({"width": width, "height": 900})
    log_in_page(page, "returns-seller@example.com", TEST_PASSWORD)
    page.goto("/seller/returns")
    card = page.locator(f"#return-{item_id}")
    expect(card).to_contain_text("nobody by that name")
    expect(card).to_contain_text("test.csv")
    contest = card.get_by_role("button", name="Contest")
    accept = card.get_by_role("button", name="Accept")
    for button in (contest, accept):
        box = button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    reason = card.get_by_label(f"Why you contest return #{item_id}")
    assert reason.evaluate("input => input.validity.valueMissing")  # no reason, no contest
    assert reason.evaluate(PLACEHOLDER_FITS), "the reason's placeholder is cut off"
    reason.fill("She signed up twice")
    contest.click()
    expect(page.locator(".alert")).to_contain_text("an administrator will decide")
    db.session.refresh(item)
    assert item.status is ReturnStatus.CONTESTED and item.seller_note == "She signed up twice"
    assert not page.console_errors
