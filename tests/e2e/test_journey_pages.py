"""A lead's journey in the browser (templates/aftersale/journey.html): its seller
reads that it sold out to its cap (not "live"), and a buyer opens a delivery's request
and reply under their own headings and goes back to the order the lead was bought for."""
import pytest
from playwright.sync_api import expect

from app.extensions import db
from tests.e2e.conftest import log_in_page
from tests.test_journeys import crm, world  # noqa: F401  (fixtures: a lead of cap 2, sold twice)

pytestmark = pytest.mark.browser


def test_the_seller_reads_sold_out_and_the_buyer_the_request_and_reply(
        page, world, crm):  # noqa: F811
    lead_id, order_id = world["lead_id"], world["order_a"]
    seller, buyer = world["seller"].email, world["buyer_a"].email
    db.session.commit()  # the server must find no transaction of ours open
    log_in_page(page, seller)
    page.goto(f"/seller/leads/{lead_id}/journey")
    verdict = page.locator('[data-kind="verdict"]')
    expect(verdict.locator(".lead-status")).to_have_text("Sold out")
    expect(verdict).to_contain_text("sold to 2 of at most 2 buyers")
    expect(page.locator(".order-back")).to_have_count(0)

    page.context.clear_cookies()
    log_in_page(page, buyer)
    page.goto(f"/buyer/leads/{lead_id}/journey")
    attempt = page.locator('[data-kind="delivery_attempt"]')
    attempt.get_by_text("Request and reply").click()
    expect(attempt.get_by_role("heading", name="Request")).to_be_visible()
    expect(attempt.get_by_role("heading", name="Reply")).to_be_visible()
    expect(attempt.locator("pre.wire").first).to_contain_text(f"POST {crm.url}")
    expect(attempt.locator("pre.wire").last).to_have_text('{"ok": true}')
    page.get_by_role("link", name=f"← Back to order #{order_id}").click()
    expect(page).to_have_url(f"{page.url.split('/buyer/')[0]}/buyer/orders/{order_id}")
    assert not page.console_errors
