"""Receipts and statements as a buyer finds them (issue 16 item 5): from the balance
page to a receipt and its PDF, and through the month picker to a statement, with the
strict CSP in force (no console errors)."""
from datetime import date

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role
from app.services import bank_transfers
from tests.conftest import make_user
from tests.e2e.test_funding_flow import _log_in

pytestmark = pytest.mark.browser


def test_a_buyer_opens_a_receipt_and_a_monthly_statement(page, admin):
    buyer = make_user(Role.BUYER, display_name="Анна Ferrández")
    transfer = bank_transfers.record_transfer(
        reference=bank_transfers.reference_for(buyer), amount=43_210, received_on=date.today(),
        bank_transaction_id="E2E-DOC-1", actor=admin)
    number, email = f"BT-{transfer.created_at:%Y}-{transfer.id:06d}", buyer.email
    db.session.commit()  # and no more reads: they would lock SQLite against the server

    _log_in(page, email)
    page.goto("/buyer/balance")
    page.locator("#receipts").get_by_role("link", name=number).click()
    expect(page.locator("#receipt-number")).to_have_text(number)
    expect(page.locator("#receipt-amount")).to_have_text("$432.10")
    page.screenshot(path="/tmp/receipt-page.png", full_page=True)
    pdf = page.request.get(page.locator("#receipt-pdf").get_attribute("href"))
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF-")

    page.goto("/buyer/balance")
    page.get_by_role("button", name="Open").click()
    expect(page.locator("#statement-closing")).to_have_text("$432.10")
    expect(page.locator("#account-buyer_available")).to_contain_text("Bank transfer received")
    page.screenshot(path="/tmp/statement-page.png", full_page=True)
    assert page.console_errors == []
