"""A buyer sets up delivery by email on the delivery page, on a desktop and on a phone,
and sends a test email: the page shows the message sent and the SMTP server's reply."""
import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role
from app.services import ledger
from tests.conftest import make_user
from tests.e2e.conftest import log_in_page
from tests.market_helpers import place
from tests.smtp_server import bodies

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width", [1366, 390])
def test_email_delivery_is_set_up_and_tested(page, smtp_server, width):
    page.set_viewport_size({"width": width, "height": 900})
    buyer = make_user(Role.BUYER, email=f"mail-buyer-{width}@example.com")
    ledger.manual_credit(buyer, 50_000, reason="wire", actor=None)
    order_id = place(buyer, 500, 10, name="By email").id
    db.session.commit()  # the server must find no transaction of ours open
    log_in_page(page, f"mail-buyer-{width}@example.com")
    page.goto(f"/buyer/orders/{order_id}")
    page.get_by_role("link", name="Delivery settings, test lead and log").click()
    expect(page.get_by_role("button", name="Send a test email")).to_be_disabled()

    page.get_by_label("Also send the leads by email").check()
    page.get_by_label("Addresses").fill("crm@buyer.example, nobody@")
    page.get_by_role("button", name="Save email delivery").click()
    expect(page.locator("#email-delivery")).to_contain_text("nobody@ is not an email address")

    page.get_by_label("Addresses").fill("crm@buyer.example\nteam@buyer.example")
    page.get_by_label("A digest of the leads sold").check()
    page.get_by_label("Digest every").select_option("hourly")
    page.get_by_role("button", name="Save email delivery").click()
    expect(page.get_by_text("Email delivery saved")).to_be_visible()
    expect(page.get_by_label("Addresses")).to_have_value("crm@buyer.example, team@buyer.example")

    page.get_by_role("button", name="Send a test email").click()
    result = page.locator("#email-test-result")
    expect(result).to_contain_text("sent")
    expect(result).to_contain_text("To: crm@buyer.example, team@buyer.example")
    expect(result).to_contain_text(f"Subject: [Test] New lead for order #{order_id} (By email)")
    expect(result).to_contain_text("test.lead@example.com")
    expect(result).to_contain_text("SMTP 250")
    expect(result).to_contain_text("250 Message accepted")
    expect(page.get_by_label("A digest of the leads sold")).to_be_checked()
    [message] = smtp_server.wait_for(1)
    assert "test.lead@example.com" in bodies(message)[0]
    # Nothing runs off the side of a phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # The refused address answered 422 (a form with its errors); nothing else went wrong.
    assert [e for e in page.console_errors if "422" not in e] == []
