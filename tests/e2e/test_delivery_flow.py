"""A buyer connects an order to a CRM-like local endpoint in their own format, sends a
test lead that the CRM rejects, corrects the template and sees it accepted."""
import json

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role
from app.services import ledger
from tests.conftest import make_user
from tests.e2e.conftest import log_in_page
from tests.market_helpers import place
from tests.receiver import Receiver

pytestmark = pytest.mark.browser


def test_http_post_delivery_with_a_template_and_a_test_lead(page):
    buyer = make_user(Role.BUYER, email="crm-buyer@example.com")
    ledger.manual_credit(buyer, 50_000, reason="wire", actor=None)
    order_id = place(buyer, 500, 10, name="CRM test").id
    db.session.commit()  # the server must find no transaction of ours open
    crm = Receiver(body=b'{"status": "rejected", "error": "Phone is required"}')
    try:
        log_in_page(page, "crm-buyer@example.com")
        page.goto(f"/buyer/orders/{order_id}")
        page.get_by_role("link", name="Delivery settings, test lead and log").click()
        page.get_by_label("Delivery URL").fill(crm.url)
        page.get_by_role("button", name="Save address").click()
        expect(page.get_by_text("Delivery URL saved")).to_be_visible()

        page.get_by_label("HTTP POST in your format").check()
        page.get_by_label("Body").select_option("json")
        page.get_by_label("Fields").fill('first = first(full_name)\nemail = email\nsource = "web"')
        page.get_by_label("Headers (optional)").fill("X-Api-Key: key-123")
        page.get_by_label("Accepted when").select_option("json")
        page.get_by_label("Path or pattern", exact=True).fill("$.status")
        page.get_by_label("Value meaning accepted").fill("ok")
        page.get_by_label("Reason path or pattern (optional)").fill("$.error")
        page.get_by_role("button", name="Save format").click()
        expect(page.get_by_text("Delivery format saved")).to_be_visible()
        expect(page.get_by_label("Headers (optional)")).to_have_value("X-Api-Key: ••••••")

        page.get_by_role("button", name="Send a test lead").click()
        result = page.locator("#test-result")
        expect(result).to_contain_text("rejected")
        expect(page.locator("#test-error")).to_have_text(
            "Rejected by your system: Phone is required")
        expect(result).to_contain_text(f"POST {crm.url}")
        expect(result).to_contain_text("X-Api-Key: ••••••")
        expect(result).to_contain_text('"email": "test.lead@example.com"')
        expect(result).to_contain_text('"error": "Phone is required"')
        assert json.loads(crm.requests[-1]["body"])["first"] == "Test"
        assert crm.requests[-1]["headers"]["X-Api-Key"] == "key-123"

        crm.body = b'{"status": "ok"}'
        page.get_by_label("Fields").fill(page.get_by_label("Fields").input_value()
                                         + "\nphone = digits(phone)")
        page.get_by_role("button", name="Save format").click()
        page.get_by_role("button", name="Send a test lead").click()
        expect(page.locator("#test-result")).to_contain_text("accepted")
        expect(page.locator("#test-result")).to_contain_text('"phone": "14155550123"')
        assert json.loads(crm.requests[-1]["body"])["phone"] == "14155550123"
        assert page.console_errors == []
    finally:
        crm.close()
