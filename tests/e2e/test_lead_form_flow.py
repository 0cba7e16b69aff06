"""A blogger builds a hosted lead form, embeds it in a static page served from another
origin, a visitor types some fields and pastes others, and the buyer of the lead opens
its consent certificate, which records what was typed and what was pasted (issue 19)."""
import functools
import http.server
import threading

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.extensions import db
from app.models import ConsentCertificate, Lead, LeadForm, Order
from tests.e2e.conftest import log_in_page
from tests.market_helpers import funded_buyer, place, sales_of, verified_seller

pytestmark = pytest.mark.browser

BLOG_POST = """<!doctype html>
<html><head><meta charset="utf-8"><title>Going solar: my first year</title></head>
<body><h1>Going solar: my first year</h1>
<p>Want a quote for your own roof? Leave your details below.</p>
{snippet}
</body></html>
"""


@pytest.fixture
def blog(tmp_path):
    """A real static site on its own port: another origin than the exchange."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_blogger_embeds_a_form_and_the_certificate_records_typed_and_pasted(
        page, browser, live_server, blog):
    seller_id = verified_seller(email="blogger@example.com").id
    order_id = place(funded_buyer(email="solar-buyer@example.com"), 900, 3).id
    # Committed with nothing read after: this thread must not hold SQLite's write lock
    # while the server works.
    db.session.commit()

    # The blogger builds the form.
    log_in_page(page, "blogger@example.com")
    page.get_by_role("link", name="Forms").click()
    page.get_by_role("link", name="New form").first.click()
    page.get_by_label("Title of the form").fill("Solar quotes")
    page.get_by_label("Phone", exact=True).check()
    page.get_by_label("Phone required").check()
    page.get_by_label("Kinds of buyer who may contact them").fill("Solar installers in your state")
    page.get_by_label("Thank-you message").fill("Thanks! An installer will call you.")
    page.get_by_role("button", name="Create form").click()
    expect(page.get_by_text("Form saved.")).to_be_visible()
    snippet = page.locator("#form-snippet").input_value()
    assert "leadx-embed.js" in snippet and "data-leadx-form=" in snippet

    # ... and puts it on a post of their static blog.
    folder, blog_origin = blog
    (folder / "solar.html").write_text(BLOG_POST.format(snippet=snippet), encoding="utf-8")

    # A visitor reads the post and fills the form: types, pastes, types.
    visitor = browser.new_context(viewport={"width": 390, "height": 844})
    visitor.grant_permissions(["clipboard-read", "clipboard-write"])
    reader = visitor.new_page()
    errors = []
    reader.on("pageerror", lambda exc: errors.append(str(exc)))
    asked = []
    reader.on("request", lambda request: asked.append(request.url))
    reader.goto(f"{blog_origin}/solar.html?utm_source=newsletter&email=ada@mail.example.com")
    form = reader.frame_locator("iframe[title='Sign-up form']")
    expect(form.get_by_role("textbox", name="Email", exact=True)).to_be_visible()
    form.get_by_role("textbox", name="First name", exact=True).press_sequentially("Ada", delay=30)
    reader.evaluate("navigator.clipboard.writeText('Ada.Sunny@Mail.example.com')")
    form.get_by_role("textbox", name="Email", exact=True).click()
    reader.keyboard.press("Control+V")
    expect(form.get_by_role("textbox", name="Email", exact=True)).to_have_value("Ada.Sunny@Mail.example.com")
    # A mistake first: the form says what is wrong, next to the field.
    form.get_by_role("textbox", name="Phone", exact=True).press_sequentially("12", delay=30)
    form.locator("#lx-consent").check()
    form.get_by_role("button", name="Send").click()
    expect(form.locator("#lx-phone-error")).to_contain_text("is not a phone number we can use")
    form.get_by_role("textbox", name="Phone", exact=True).fill("")
    form.get_by_role("textbox", name="Phone", exact=True).press_sequentially("(415) 555-2671", delay=20)
    form.locator("#lx-consent").check()
    form.get_by_role("button", name="Send").click()
    expect(form.get_by_text("Thanks! An installer will call you.")).to_be_visible()
    assert not errors
    # The blog's own query (with an address in it) never reached the exchange's URLs.
    assert [url for url in asked if url.startswith(live_server) and "/f/" in url]
    assert not [url for url in asked if url.startswith(live_server) and "ada" in url.lower()]
    visitor.close()

    db.session.rollback()
    lead = db.session.scalar(sa.select(Lead))
    certificate = db.session.scalar(sa.select(ConsentCertificate))
    form_row = db.session.scalar(sa.select(LeadForm))
    assert certificate.lead_id == lead.id and lead.seller_id == seller_id
    assert certificate.inputs == {"first_name": "typed", "email": "pasted", "phone": "typed"}
    # The page, without its query: it may hold a visitor's details and would be logged.
    assert certificate.page_url == f"{blog_origin}/solar.html"
    assert certificate.time_on_page_ms > 300 and certificate.served_ms > 300
    assert certificate.version.form_id == form_row.id
    [sale] = sales_of(db.session.get(Order, order_id))
    assert sale.lead_id == lead.id
    db.session.commit()

    # The buyer finds the lead in the work list and opens its certificate.
    page.context.clear_cookies()
    log_in_page(page, "solar-buyer@example.com")
    page.goto(f"/buyer/orders/{order_id}")
    row = page.locator("#leads tbody tr").first
    expect(row).to_contain_text("ada.sunny@mail.example.com")
    row.get_by_role("link", name="Certificate").click()
    expect(page.get_by_role("heading", name="Consent certificate")).to_be_visible()
    expect(page.locator(".inputs li[data-field='email']")).to_have_text("email: pasted")
    expect(page.locator(".inputs li[data-field='phone']")).to_have_text("phone: typed")
    expect(page.locator(".hash-match")).to_contain_text("matches the email and phone delivered")
    expect(page.locator(".consent-text")).to_contain_text("companies named below")
    expect(page.locator("dl.certificate")).to_contain_text(f"{blog_origin}/solar.html")
    expect(page.locator("dl.certificate")).not_to_contain_text("utm_source")


def test_a_blogger_names_a_buyer_and_the_builder_shows_the_choice_it_needs(page, live_server):
    verified_seller(email="namer@example.com")
    acme = funded_buyer(email="acme@example.com", display_name="Acme Insurance")
    acme.named_on_forms = True
    db.session.commit()

    log_in_page(page, "namer@example.com")
    page.goto(f"{live_server}/seller/forms/new")
    kinds = page.get_by_label("Kinds of buyer who may contact them")
    expect(kinds).to_be_visible()
    expect(page.get_by_label("Acme Insurance")).to_be_hidden()
    page.get_by_label("Buyers I name: only they may buy its leads").check()
    expect(kinds).to_be_hidden()
    page.get_by_label("Acme Insurance").check()
    page.get_by_label("Title of the form").fill("Insurance quotes")
    page.get_by_role("button", name="Create form").click()
    expect(page.get_by_text("Form saved.")).to_be_visible()
    expect(page.get_by_label("Acme Insurance")).to_be_checked()
    expect(kinds).to_be_hidden()
    form = db.session.scalar(sa.select(LeadForm).where(LeadForm.name == "Insurance quotes"))
    assert form.current.named_buyer_ids == (acme.id,)
