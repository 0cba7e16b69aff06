"""A newcomer signs up, sees the dashboard, logs out and back in; roles are enforced."""
import re

import pytest
from playwright.sync_api import expect

from app.extensions import db
from app.models import Role
from tests.conftest import TEST_PASSWORD, make_user

pytestmark = pytest.mark.browser


def test_buyer_signs_up_logs_out_and_logs_in(page):
    page.goto("/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Buy leads for my business").check()
    page.get_by_label("Name or company").fill("Acme Insurance")
    page.get_by_label("Email").fill("owner@acme.example.com")
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_label("Repeat password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Buyer dashboard")).to_be_visible()
    expect(page.locator("#available")).to_have_text("$0.00")

    page.wait_for_load_state()  # Bootstrap's dropdown below: its deferred script ran
    page.get_by_role("button", name="Acme Insurance").click()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You are logged out.")).to_be_visible()

    page.get_by_label("Email").fill("owner@acme.example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buyer dashboard")).to_be_visible()
    assert page.console_errors == []  # e.g. a CSP violation would show here


def test_seller_cannot_open_buyer_pages(page):
    make_user(Role.SELLER, email="blog@example.com")
    db.session.commit()  # and touch no model afterwards: SQLite's lock would stay with us
    page.goto("/auth/login")
    page.get_by_label("Email").fill("blog@example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Seller dashboard")).to_be_visible()
    response = page.goto("/buyer/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="This page is not for your account")).to_be_visible()


def test_menu_collapses_on_a_phone(page):
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto("/auth/login")
    expect(page.get_by_role("link", name="Sign up")).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("link", name="Sign up")).to_be_visible()
    assert page.console_errors == []


def test_api_docs_render_from_local_assets(page):
    page.goto("/api/docs")
    expect(page.get_by_text("Lead exchange API").first).to_be_visible(timeout=15_000)
    expect(page.get_by_text("/api/v1/balance").first).to_be_visible()
    assert [e for e in page.console_errors if "Content Security Policy" in e] == []


def test_sign_up_verify_from_the_email_then_sign_in(page, smtp_server):
    """The verification email reaches a real SMTP server; its link, followed in the
    browser, lifts the banner and the restrictions."""
    import re
    from urllib.parse import urlsplit

    from tests.smtp_server import bodies

    page.goto("/auth/signup")
    page.get_by_label("Buy leads for my business").check()
    page.get_by_label("Name or company").fill("Acme Verify")
    page.get_by_label("Email").fill("verify@acme.example.com")
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_label("Repeat password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#verify-banner")).to_be_visible()

    [message] = smtp_server.wait_for(1)
    text, _ = bodies(message)
    [link] = re.findall(r"http://\S+/auth/verify-email/\S+", text)
    page.goto(urlsplit(link).path)
    expect(page.get_by_text("verify@acme.example.com is confirmed")).to_be_visible()
    expect(page.locator("#verify-banner")).to_have_count(0)

    page.get_by_role("button", name="Acme Verify").click()  # the account menu
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Email").fill("verify@acme.example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buyer dashboard")).to_be_visible()
    expect(page.locator("#verify-banner")).to_have_count(0)
    assert page.console_errors == []


def test_forgotten_password_reset_from_the_email(page, smtp_server):
    import re
    from urllib.parse import urlsplit

    from tests.smtp_server import bodies

    make_user(Role.BUYER, email="forgot@example.com")
    db.session.commit()
    page.goto("/auth/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("forgot@example.com")
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_text("If an account uses this address")).to_be_visible()
    [message] = smtp_server.wait_for(1)
    [link] = re.findall(r"http://\S+/auth/reset-password/\S+", bodies(message)[0])
    page.goto(urlsplit(link).path)
    assert urlsplit(page.url).path == "/auth/reset-password/new"  # the secret left the address
    page.get_by_label("New password", exact=True).fill("my new passphrase")
    page.get_by_label("Repeat new password").fill("my new passphrase")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_text("Log in with the new password")).to_be_visible()
    page.get_by_label("Email").fill("forgot@example.com")
    page.get_by_label("Password").fill("my new passphrase")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buyer dashboard")).to_be_visible()
    assert page.console_errors == []


def test_an_admin_enrols_in_two_factor_login_at_the_first_login(page):
    import pyotp

    make_user(Role.ADMIN, email="newadmin@example.com", two_factor=False)
    db.session.commit()
    page.goto("/auth/login")
    page.get_by_label("Email").fill("newadmin@example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Two-factor login")).to_be_visible()
    page.goto("/admin/")  # nothing else is open
    expect(page.get_by_role("heading", name="Two-factor login")).to_be_visible()
    page.get_by_role("button", name="Set up two-factor login").click()
    expect(page.locator("#totp-qr")).to_be_visible()  # the SVG, allowed by the CSP
    assert page.locator("#totp-qr").evaluate("img => img.naturalWidth") > 0
    seed = page.locator("#totp-secret").inner_text()
    page.get_by_label("Code").fill(pyotp.TOTP(seed).now())
    page.get_by_role("button", name="Turn on two-factor login").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="I have saved them").click()
    expect(page).to_have_url(re.compile(r"/admin/"))
    assert page.console_errors == []


def test_sign_up_keeps_the_browsers_time_zone_which_the_account_page_changes(browser, live_server):
    db.session.commit()
    context = browser.new_context(base_url=live_server, timezone_id="America/Chicago")
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/auth/signup")
    page.get_by_label("Sell the leads I collect").check()
    page.get_by_label("Name or company").fill("Prairie Blog")
    page.get_by_label("Email").fill("prairie@example.com")
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_label("Repeat password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#verify-banner")).to_be_visible()
    page.wait_for_load_state()  # the menu is Bootstrap's dropdown: its deferred script ran
    page.get_by_role("button", name="Prairie Blog").click()
    page.get_by_role("link", name="Your account").click()
    expect(page.get_by_label("Time zone")).to_have_value("America/Chicago")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    assert errors == []
    context.close()
