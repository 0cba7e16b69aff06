"""Browser tests: the app served by a real WSGI server in a thread, driven by
Debian's chromium through Playwright (its own browser download does not work here)."""
import os
import shutil

import pytest

from app.extensions import db

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"chromium not found at {CHROMIUM} and REQUIRE_BROWSER=1")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    # A page after a submit may wait on work the request does inline in tests (eager
    # jobs: a fill, its emails): on a loaded CI machine 5 s was seen not to be enough.
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    # The test's own session must not hold SQLite's write lock while the server works.
    db.session.commit()
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    yield page
    context.close()


def log_in_page(page, email: str, password: str | None = None) -> None:
    """Log in through the form; for a user with two-factor login (every admin made by
    make_user), also through the code page, with the code their app would show."""
    import sqlalchemy as sa

    from app.models import User
    from tests.conftest import TEST_PASSWORD, totp_code

    page.goto("/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password or TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    if page.url.split("?")[0].endswith("/auth/two-factor"):
        user = db.session.scalar(sa.select(User).where(User.email == email))
        code = totp_code(user)  # commits: the server may write again
        page.get_by_label("Code").fill(code)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
