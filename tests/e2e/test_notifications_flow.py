"""A seller is told their batch was processed: the unread count in the navigation
bar, the list, opening the notice, choosing how to hear of it; an admin reads the
same email in the development outbox, HTML in its sandboxed frame (no CSP error)."""
import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role
from tests.conftest import make_user
from tests.e2e.conftest import log_in_page
from tests.ingest_helpers import csv_bytes, ingest
from tests.market_helpers import person, verified_seller

pytestmark = pytest.mark.browser


def _log_in(page, email: str) -> None:
    log_in_page(page, email)


def test_seller_reads_the_notice_and_admin_reads_the_email_in_the_outbox(page):
    seller = verified_seller(email="grower@example.com")
    batch = ingest(seller, csv_bytes([person(i) for i in range(4)]))
    make_user(Role.ADMIN, email="ops@example.com")
    batch_id = batch.id
    db.session.commit()

    _log_in(page, "grower@example.com")
    expect(page.locator("#unread-count")).to_contain_text("1")
    page.locator("#nav-notifications").click()
    notice = page.locator("#notifications li").first
    expect(notice).to_contain_text(f"Batch #{batch_id} processed: 4 accepted, 0 rejected")
    notice.get_by_role("button", name="Open").click()
    expect(page).to_have_url(f"{page.url.split('/seller')[0]}/seller/batches/{batch_id}")
    expect(page.locator("#unread-count")).to_have_count(0)

    page.goto("/notifications/settings")
    page.get_by_label("Batch processed by email").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Your notification settings are saved.")).to_be_visible()
    expect(page.get_by_label("Batch processed by email")).not_to_be_checked()
    expect(page.get_by_label("Batch processed in the app")).to_be_checked()

    page.context.clear_cookies()  # signed out
    _log_in(page, "ops@example.com")
    page.goto("/admin/outbox")
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: the address on one line
    address = page.locator("#outbox tbody tr").first.locator(".d-md-none")
    expect(address).to_have_text("grower@example.com")
    assert address.bounding_box()["height"] < 2 * 21
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("link", name=f"Batch #{batch_id} processed").click()
    frame = page.frame_locator("iframe.email-frame")
    expect(frame.get_by_text(f"Batch #{batch_id} processed: 4 accepted, 0 rejected")).to_be_visible()
    expect(frame.get_by_role("link", name="See the batch")).to_be_visible()

    page.get_by_role("tab", name="Text").click()
    expect(page.locator("#text-body pre")).to_contain_text("4 accepted, 0 rejected")
    assert page.console_errors == []
