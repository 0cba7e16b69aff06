"""Funding as a new buyer finds it (issue 16): sign up, see the bank details and a
personal reference, top up by card on the local Stripe server, save a card for
automatic top-ups; an admin records a bank transfer against the reference and the
buyer sees it credited."""
from datetime import date

import pytest
from playwright.sync_api import expect

from app.models import Role
from app.services import bank_transfers
from tests.conftest import TEST_PASSWORD, make_user
from tests.e2e.conftest import log_in_page

pytestmark = pytest.mark.browser


def _card(frame, number: str) -> None:
    frame.get_by_placeholder("number").fill(number)
    frame.get_by_placeholder("exp_month").fill("12")
    frame.get_by_placeholder("exp_year").fill("30")
    frame.get_by_placeholder("cvc").fill("123")
    frame.get_by_placeholder("postal_code").fill("94107")


def _log_in(page, email: str) -> None:
    log_in_page(page, email)


def test_a_new_buyer_funds_the_account_by_card_and_by_bank(stripe_app, page, browser, live_server):
    page.goto("/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Buy leads for my business").check()
    page.get_by_label("Name or company").fill("Fresh Funding Ltd")
    page.get_by_label("Email").fill("fresh@funding.example.com")
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_label("Repeat password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Buyer dashboard")).to_be_visible()
    page.get_by_role("link", name="Balance").click()
    expect(page.locator("#available")).to_have_text("$0.00")

    # Bank details and the buyer's own reference.
    reference = page.locator("#bank-reference").inner_text()
    assert bank_transfers.parse_reference(reference)
    expect(page.locator("#bank-iban")).to_have_text("GB33BUKB20201555555555")

    # A card top-up, credited by Stripe's webhook.
    page.get_by_label("Amount (USD)").fill("80.00")
    _card(page.locator("#card-element"), "4242424242424242")
    page.get_by_role("button", name="Pay by card").click()
    expect(page.get_by_text("Stripe accepted your card for $80.00")).to_be_visible()
    expect(page.locator("#available")).to_have_text("$80.00", timeout=15_000)
    # Once credited the page is reloaded: what may go back to the card and the
    # statement moved with the balance.
    expect(page.locator("p", has_text="Goes back to the cards")).to_contain_text(
        "Up to $80.00 now")

    # A card saved for automatic top-ups (a SetupIntent confirmed by Stripe.js).
    page.get_by_label("When my balance falls below").fill("50.00")
    page.get_by_label("Add", exact=True).fill("100.00")
    _card(page.locator("#auto-card-element"), "4242424242424242")
    page.get_by_role("button", name="Save card and turn on").click()
    expect(page.get_by_text("Automatic top-up is on: when your balance falls below $50.00")).to_be_visible()
    expect(page.locator("#auto-topup-state")).to_contain_text("4242")

    # An admin records the buyer's bank transfer against the reference.
    make_user(Role.ADMIN, email="money@funding.example.com")
    admin = browser.new_context(base_url=live_server).new_page()
    _log_in(admin, "money@funding.example.com")
    admin.goto("/admin/money/bank-transfers")
    admin.get_by_label("Buyer's reference").fill(reference.lower().replace("-", " "))
    admin.get_by_label("Amount received").fill("1,000.00")
    admin.get_by_label("Received on").fill(date.today().isoformat())
    admin.get_by_label("Bank's transaction id").fill("STATEMENT-2026-12-001")
    admin.get_by_role("button", name="Credit the buyer").click()
    expect(admin.get_by_text("Credited $1,000.00 to fresh@funding.example.com")).to_be_visible()
    # The same bank line again is refused.
    admin.get_by_label("Buyer's reference").fill(reference)
    admin.get_by_label("Amount received").fill("1,000.00")
    admin.get_by_label("Bank's transaction id").fill("STATEMENT-2026-12-001")
    admin.get_by_role("button", name="Credit the buyer").click()
    expect(admin.get_by_text("was already recorded")).to_be_visible()

    page.reload()
    expect(page.locator("#available")).to_have_text("$1,080.00")
    expect(page.locator("#bank-transfers")).to_contain_text("STATEMENT-2026-12-001")
    assert page.console_errors == []
