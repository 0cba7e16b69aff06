"""The whole way of a new buyer in one browser (issue 16, "done when"): sign up,
confirm the address from the email (a real SMTP server on loopback), top up by card
on the local Stripe server, place an order that fills from leads already listed, and
see the notice in the navigation bar and the list."""
import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from app.extensions import db
from tests.conftest import TEST_PASSWORD
from tests.e2e.test_funding_flow import _card
from tests.market_helpers import live_leads, person, verified_seller
from tests.smtp_server import bodies

pytestmark = pytest.mark.browser


def test_sign_up_verify_fund_order_and_be_told(stripe_app, smtp_server, page):
    live_leads(verified_seller(), [person(i) for i in range(3)])
    db.session.commit()

    page.goto("/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Buy leads for my business").check()
    page.get_by_label("Name or company").fill("Closing Journey Ltd")
    page.get_by_label("Email").fill("journey@closing.example.com")
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_label("Repeat password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#verify-banner")).to_be_visible()

    smtp_server.wait_for(1)
    [message] = [m for m in smtp_server.to("journey@closing.example.com")
                 if "Confirm your email" in m["Subject"]]
    [link] = re.findall(r"http://\S+/auth/verify-email/\S+", bodies(message)[0])
    page.goto(urlsplit(link).path)
    expect(page.get_by_text("journey@closing.example.com is confirmed")).to_be_visible()
    expect(page.locator("#verify-banner")).to_have_count(0)

    page.get_by_role("link", name="Balance").click()
    page.get_by_label("Amount (USD)").fill("50.00")
    _card(page.locator("#card-element"), "4242424242424242")
    page.get_by_role("button", name="Pay by card").click()
    expect(page.get_by_text("Stripe accepted your card for $50.00")).to_be_visible()
    expect(page.locator("#available")).to_have_text("$50.00", timeout=15_000)

    page.get_by_role("link", name="New order").first.click()
    expect(page.locator("#estimate-count")).to_have_text("3")
    page.get_by_label("Price per lead").fill("4.00")
    page.get_by_label("Quantity").fill("3")
    page.get_by_label("Order name").fill("First leads")
    page.get_by_role("button", name="Place order").click()
    expect(page.locator("#filled")).to_have_text("3 / 3")
    expect(page.locator("#leads tbody tr")).to_have_count(3)

    # The filled notice is written after the matcher's commit: a later page shows it.
    for _ in range(40):
        if page.locator("#unread-count").count():
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(page.locator("#unread-count")).to_contain_text("1")
    page.locator("#nav-notifications").click()
    notice = page.locator("#notifications li").first
    expect(notice).to_contain_text("First leads")
    expect(notice).to_contain_text("filled")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#available")).to_have_text("$38.00")
    assert page.console_errors == []
