"""A buyer adds funds by card in the browser: Stripe.js (localstripe's stand-in,
served by the local Stripe server) tokenises the card, the balance shows the money
once the signed webhook arrived; a 3-D Secure card asks the buyer first; a declined
card says so and credits nothing."""
import pytest
from playwright.sync_api import expect

from app.models import Role
from tests.conftest import TEST_PASSWORD, make_user
from tests.e2e.conftest import log_in_page

pytestmark = pytest.mark.browser


def _pay(page, amount: str, number: str) -> None:
    page.get_by_label("Amount (USD)").fill(amount)
    card = page.locator("#card-element")
    card.get_by_placeholder("number").fill(number)
    card.get_by_placeholder("exp_month").fill("12")
    card.get_by_placeholder("exp_year").fill("30")
    card.get_by_placeholder("cvc").fill("123")
    card.get_by_placeholder("postal_code").fill("94107")
    page.get_by_role("button", name="Pay by card").click()


def test_top_up_by_card_in_the_browser(stripe_app, page):
    make_user(Role.BUYER, email="cards@example.com")
    page.goto("/auth/login")
    page.get_by_label("Email").fill("cards@example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Balance").click()
    expect(page.locator("#available")).to_have_text("$0.00")

    _pay(page, "50.00", "4242 4242 4242 4242")  # as people type it, and the README writes it
    expect(page.get_by_text("Stripe accepted your card for $50.00")).to_be_visible()
    # The page polls until Stripe's webhook has credited the balance.
    expect(page.locator("#available")).to_have_text("$50.00", timeout=15_000)
    expect(page.locator("#topups [data-status=succeeded]")).to_have_count(1)

    _pay(page, "25.00", "4000000000003220")  # this card asks for 3-D Secure
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_text("Card authenticated")).to_be_visible()
    expect(page.locator("#available")).to_have_text("$75.00", timeout=15_000)

    _pay(page, "30.00", "4000000000000341")  # declined when charged
    expect(page.locator("#topup-error")).to_contain_text("declined")
    page.reload()
    expect(page.locator("#topups [data-status=failed]")).to_have_count(1)
    expect(page.locator("#available")).to_have_text("$75.00")

    page.get_by_label("Amount to withdraw").fill("10.00")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Withdraw").click()
    expect(page.get_by_text("$10.00 is on its way back to your card")).to_be_visible()
    assert asked and asked[0].startswith("Withdraw this amount")
    expect(page.locator("#available")).to_have_text("$65.00")
    # The declined card's 402 answer is logged by the browser as a failed load; nothing
    # else may fail (localstripe's stand-in once broke Bootstrap and htmx on this page).
    expected = {"Failed to load resource: the server responded with a status of 402 (PAYMENT REQUIRED)"}
    assert [e for e in page.console_errors if e not in expected] == []


def test_a_malformed_card_expiry_is_said_under_the_card_field(stripe_app, page):
    make_user(Role.BUYER, email="expiry@example.com")
    log_in_page(page, "expiry@example.com")
    page.goto("/buyer/balance")
    card = page.locator("#card-element")
    problem = page.locator("#card-element-error")
    page.get_by_label("Amount (USD)").fill("20.00")
    card.get_by_placeholder("number").fill("4242 4242 4242 4242")
    card.get_by_placeholder("cvc").fill("123")
    for month, year, said in (("13", "30", "The expiry month must be 01 to 12."),
                              ("12", "3", "The expiry year is not valid"),
                              ("01", "20", "its expiry year is in the past")):
        card.get_by_placeholder("exp_month").fill(month)
        card.get_by_placeholder("exp_year").fill(year)
        page.get_by_role("button", name="Pay by card").click()
        expect(problem).to_be_visible()
        expect(problem).to_contain_text(said)
        expect(card).to_have_class("form-control is-invalid")
        expect(page.locator("#topup-error")).to_be_hidden()
    card.get_by_placeholder("exp_month").fill("12")
    card.get_by_placeholder("exp_year").fill("2030")  # the year in full is taken too
    page.get_by_role("button", name="Pay by card").click()
    expect(page.get_by_text("Stripe accepted your card for $20.00")).to_be_visible()
    expect(page.locator("#available")).to_have_text("$20.00", timeout=15_000)
    assert page.console_errors == []


def test_a_top_up_left_at_3d_secure_is_finished_or_cancelled_later(stripe_app, page):
    make_user(Role.BUYER, email="later@example.com")
    log_in_page(page, "later@example.com")
    page.goto("/buyer/balance")
    _pay(page, "25.00", "4000000000003220")  # asks for 3-D Secure
    expect(page.get_by_role("button", name="Complete authentication")).to_be_visible()
    page.goto("/buyer/balance")  # the buyer walks away from the bank's step
    row = page.locator("#topups tbody tr").first
    expect(row.locator("[data-status=requires_action]")).to_have_text("Waiting for 3-D Secure")

    row.get_by_role("button", name="Finish paying").click()  # back, later
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_text("Card authenticated")).to_be_visible()
    expect(page.locator("#available")).to_have_text("$25.00", timeout=15_000)

    _pay(page, "40.00", "4000000000003220")
    expect(page.get_by_role("button", name="Complete authentication")).to_be_visible()
    page.goto("/buyer/balance")
    page.locator("#topups tbody tr").first.get_by_role("button", name="Cancel top-up").click()
    expect(page.get_by_text("is cancelled; nothing was charged.")).to_be_visible()
    cancelled = page.locator("#topups tbody tr").first
    expect(cancelled.locator("[data-status=canceled]")).to_have_text("Cancelled")
    expect(cancelled).to_contain_text("Cancelled by you; nothing was charged.")
    expect(cancelled.get_by_role("button")).to_have_count(0)
    expect(page.locator("#available")).to_have_text("$25.00")
    assert page.console_errors == []
