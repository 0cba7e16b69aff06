"""An admin finds a farmed batch at the top of the spot-check queue, samples it,
marks a lead fake and fails the batch: its leads are withdrawn and its buyers refunded."""
import random
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.extensions import db
from app.models import AuditEvent, Batch, BatchStatus, Lead, LeadStatus, Role, Sale
from app.services import demo_leads, ledger, quality
from app.market import jobs
from tests import quality_corpus as corpus
from tests.conftest import make_user
from tests.e2e.conftest import log_in_page
from tests.ingest_helpers import ingest
from tests.market_helpers import funded_buyer, place, verified_seller

pytestmark = pytest.mark.browser


def test_admin_fails_the_riskiest_batch_from_the_queue(page):
    rng, now = random.Random(3), datetime.now(timezone.utc)
    honest = ingest(verified_seller(), corpus.to_csv(
        [corpus.person(rng, i, now, quirks=False) for i in range(60)]))
    farm = ingest(verified_seller(), demo_leads.suspicious_csv(5, 40, site="farm.example.com"))
    for batch in (honest, farm):
        quality.assess_batch(batch.id)
    buyer = funded_buyer(100_000)
    order = place(buyer, 300, 30, filters={"regions": ["US-CA"]})
    jobs.fill_order(order.id)
    db.session.commit()
    farmed_sales = db.session.scalar(sa.select(sa.func.count()).select_from(Sale).join(Lead)
                                     .where(Lead.batch_id == farm.id))
    assert farmed_sales > 0
    make_user(Role.ADMIN, email="ops@example.com")
    farm_id, honest_id = farm.id, honest.id
    db.session.commit()  # no transaction of the test may hold SQLite's lock from here on

    log_in_page(page, "ops@example.com")
    page.get_by_role("link", name="Spot-checks").click()
    top = page.locator("#quality-queue tbody tr").first
    expect(top).to_have_attribute("data-batch-id", str(farm_id))
    expect(top).to_contain_text("Disposable email domains")
    top.get_by_role("link", name="Review").click()
    expect(page.locator("#signals")).to_contain_text("throwaway-inbox services")
    page.get_by_role("button", name="Start spot-check").click()

    first = page.locator("[id^=item-]").first
    expect(first).to_contain_text("@")  # the sampled lead's contacts are shown
    first.get_by_role("button", name="Fake").click()
    expect(page.locator("#tally")).to_contain_text("more than the acceptance number 0")
    page.get_by_label("Note (optional)").fill("Nobody at these numbers knows the offer")
    page.get_by_role("button", name="Fail batch").click()
    expect(page.get_by_text(f"{farmed_sales} sales returned and refunded")).to_be_visible()
    expect(page.locator("#check-status")).to_have_text("Failed")
    page.get_by_role("link", name="Spot-checks").click()
    expect(page.locator(f'#quality-queue tr[data-batch-id="{farm_id}"]')).to_have_count(0)

    db.session.expire_all()
    assert db.session.get(Batch, farm_id).status is BatchStatus.REJECTED
    assert set(db.session.scalars(sa.select(Lead.status).where(Lead.batch_id == farm_id))) == {
        LeadStatus.DELISTED}
    balance = ledger.balance_for(buyer)
    kept = db.session.scalar(sa.select(sa.func.count()).select_from(Sale).join(Lead)
                             .where(Lead.batch_id == honest_id))
    assert balance.available + balance.held == 100_000 - kept * 300
    assert ledger.reconcile().ok
    assert page.console_errors == []


def test_admin_judges_a_sample_in_place_and_in_bulk_at_desktop_width(page):
    """Verdicts swap in without a reload (a marker set in the page survives), a bulk
    verdict judges every selected lead at once, and the batch passes in place."""
    rng, now = random.Random(5), datetime.now(timezone.utc)
    batch = ingest(make_user(Role.SELLER), corpus.to_csv(  # a new seller's batch is held
        [corpus.person(rng, i, now, quirks=False) for i in range(80)]))
    quality.assess_batch(batch.id)
    make_user(Role.ADMIN, email="ops@example.com")
    batch_id = batch.id
    db.session.commit()

    page.set_viewport_size({"width": 1366, "height": 900})
    log_in_page(page, "ops@example.com")
    page.goto(f"/admin/quality/batches/{batch_id}")
    page.get_by_role("button", name="Start spot-check").click()
    items = page.locator("#sample .sample-item")
    expect(items.first).to_contain_text("@")
    sample = items.count()
    expect(page.locator("#batch-status")).to_have_text("Held for a spot-check")
    page.evaluate("window.notReloaded = true")

    first, second = items.nth(0), items.nth(1)
    first.get_by_role("button", name="Genuine").click()
    expect(first).to_have_attribute("data-verdict", "genuine")
    expect(page.locator("#tally")).to_contain_text(f"1 of {sample} verified")
    second.get_by_role("button", name="Unreachable").click()
    expect(second).to_have_attribute("data-verdict", "unreachable")
    expect(items).to_have_count(sample + 1)  # the replacement draw is appended
    expect(page.locator("#check-message")).to_contain_text("1 more drawn to replace")

    page.get_by_label("Select all to do").check()
    expect(page.locator("#picked-count")).to_have_text(f"{sample - 1} selected")
    page.get_by_label("Verdict for the selected leads").select_option("genuine")
    page.get_by_role("button", name="Apply to selected").click()
    expect(page.locator("#check-message")).to_contain_text(f"{sample - 1} sampled leads marked genuine")
    expect(page.locator('#sample .sample-item[data-verdict="genuine"]')).to_have_count(sample)
    expect(page.locator("#picked-count")).to_have_text("0 selected")
    expect(page.locator("#tally")).to_contain_text(f"{sample} of {sample} verified")

    page.get_by_role("button", name="Pass batch").click()
    expect(page.locator("#check-status")).to_have_text("Passed")
    expect(page.locator("#batch-status")).to_have_text("Live")
    expect(page.locator("#check-message")).to_contain_text(f"Batch #{batch_id} passed")
    expect(page.locator("#sample .sample-item form")).to_have_count(0)
    expect(page.locator(".sample-pick")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True
    views = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "spot_check.contacts_viewed"))
    assert views == 2  # the page, then the replacement's contacts: not once per verdict
    assert page.console_errors == []


def test_the_queue_fits_a_phone(page):
    """At 390 px the queue's action and risk sat off-screen to the right of a
    sideways-scrolling table: each row's batch, seller, risk and Review now fit."""
    farm = ingest(verified_seller(), demo_leads.suspicious_csv(5, 40, site="farm.example.com"))
    quality.assess_batch(farm.id)
    make_user(Role.ADMIN, email="ops@example.com")
    db.session.commit()
    page.set_viewport_size({"width": 390, "height": 844})
    log_in_page(page, "ops@example.com")
    page.goto("/admin/quality")
    row = page.locator("#quality-queue tbody tr").first
    for part in (row.get_by_role("link", name="Review"), row.get_by_text("risk")):
        expect(part).to_be_visible()
        box = part.bounding_box()
        assert box["x"] + box["width"] <= 390, box
    assert page.evaluate("document.querySelector('#quality-queue').parentElement.scrollWidth"
                         " <= document.querySelector('#quality-queue').parentElement.clientWidth")
