"""Risk in the API (admins only), assessment after processing and for real-time
batches, trust proposals, and what suspension does to a seller."""
import io
import random
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from app import tasks
from app.core import figures
from app.extensions import db
from app.models import (
    AuditEvent, Batch, BatchStatus, Lead, LeadStatus, Return, ReturnReason, ReturnStatus, Role,
    Sale, SpotCheck, SpotCheckStatus, TrustLevel,
)
from app.services import accounts, demo_leads, quality, trust
from tests import quality_corpus as corpus
from tests.conftest import csrf_token, make_user
from tests.ingest_helpers import ingest
from tests.market_helpers import funded_buyer, place


def _clean_csv(rows: int, seed: int = 1) -> bytes:
    rng, now = random.Random(seed), datetime.now(timezone.utc)
    return corpus.to_csv([corpus.person(rng, i, now, quirks=False) for i in range(rows)])


def _upload(client, headers, data: bytes):
    return client.post("/api/v1/batches", headers=headers, content_type="multipart/form-data",
                       data={"default_country": "US", "floor_price": "0", "cap": "1",
                             "file": (io.BytesIO(data), "leads.csv")})


def test_an_uploaded_batch_is_assessed_once_processed(client, api_key_for):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    response = _upload(client, api_key_for(seller),
                       demo_leads.suspicious_csv(3, 40, site="farm.example.com"))
    assert response.status_code in (201, 202), response.json
    batch = db.session.get(Batch, response.json["id"])
    assert batch.risk_score is not None and batch.risk_score >= 60
    assert [s["code"] for s in batch.risk_signals] == [
        code for code in quality.RULES if code not in quality.FORM_RULES]
    assert batch.risk_leads == 40


def test_admins_see_risk_and_signals_in_the_api_and_sellers_do_not(client, api_key_for):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    farm = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    admin = make_user(Role.ADMIN)
    clean_id = _upload(client, api_key_for(seller), _clean_csv(50)).json["id"]
    bad_id = _upload(client, api_key_for(farm),
                     demo_leads.suspicious_csv(3, 40, site="farm.example.com")).json["id"]
    own = client.get(f"/api/v1/batches/{clean_id}", headers=api_key_for(seller)).json
    assert "risk_score" not in own and "signals" not in own
    body = client.get(f"/api/v1/batches/{bad_id}", headers=api_key_for(admin)).json
    assert body["risk_score"] >= 60 and body["spot_check"] == "not checked"
    by_code = {s["code"]: s for s in body["signals"]}
    assert by_code["disposable_email"]["points"] > 0
    assert by_code["disposable_email"]["sentence"].startswith("40 of 40 email addresses")
    assert {"code", "value", "sentence", "points"} <= set(by_code["non_name"])
    listed = client.get("/api/v1/admin/batches?sort=risk", headers=api_key_for(admin))
    assert listed.status_code == 200
    assert [b["id"] for b in listed.json] == [bad_id, clean_id]
    assert listed.json[0]["risk_score"] >= listed.json[1]["risk_score"]
    newest = client.get("/api/v1/admin/batches?sort=newest&status=live", headers=api_key_for(admin))
    assert [b["id"] for b in newest.json] == [bad_id, clean_id]
    refused = client.get("/api/v1/admin/batches?sort=risk", headers=api_key_for(seller))
    assert refused.status_code == 403 and refused.json["error"]["code"] == "not_an_admin"
    assert client.get("/api/v1/admin/batches?sort=size",
                      headers=api_key_for(admin)).status_code == 422


def test_real_time_batches_are_assessed_again_when_they_grow(client, api_key_for):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    headers = api_key_for(seller)
    consent = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i in range(3):
        lead = {"email": f"visitor{i}@mailinator.com", "phone": f"+1 415 555 01{i:02d}",
                "first_name": "Asdfg", "consent_at": consent, "region": "US-CA",
                "source_url": "https://landing.example.com/offer", "default_country": "US",
                "floor_price": 0, "cap": 1}
        assert client.post("/api/v1/leads", headers=headers, json=lead).status_code == 201
    assert tasks.assess_realtime_batches.run() == 1
    batch = db.session.scalar(sa.select(Batch))
    assert batch.risk_leads == 3 and batch.risk_score > 0
    assert tasks.assess_realtime_batches.run() == 0  # unchanged since


def _decided_check(batch: Batch, status: SpotCheckStatus) -> None:
    db.session.add(SpotCheck(batch_id=batch.id, status=status, seed=1, lot_size=batch.accepted,
                             sample_size=min(10, batch.accepted), acceptance_number=0,
                             defect_rate_bp=500, confidence_bp=9500, plan="standard",
                             decided_at=datetime.now(timezone.utc)))
    figures.changed(batch.seller_id)  # written here, not by the spot-check operations
    db.session.commit()


def test_trust_proposal_from_the_record(app):
    seller = make_user(Role.SELLER)
    first = ingest(seller, _clean_csv(150, seed=1))
    second = ingest(seller, _clean_csv(150, seed=2))
    proposal = trust.propose(seller)
    assert proposal.level is TrustLevel.NEW
    assert {f.name: f.verdict for f in proposal.factors}["Spot-checks"] == "neutral"
    # The same thin but clean record does not propose taking verification away.
    seller.trust_level = TrustLevel.VERIFIED
    assert trust.propose(seller).level is TrustLevel.VERIFIED
    seller.trust_level = TrustLevel.NEW
    _decided_check(first, SpotCheckStatus.PASSED)
    _decided_check(second, SpotCheckStatus.PASSED)
    proposal = trust.propose(seller)
    assert proposal.level is TrustLevel.VERIFIED, proposal.summary
    factors = {f.name: f for f in proposal.factors}
    assert factors["Acceptance rate"].verdict == "good"
    assert factors["Conversion feedback"].verdict == "neutral"
    _decided_check(first, SpotCheckStatus.FAILED)
    assert trust.propose(seller).level is TrustLevel.NEW
    _decided_check(second, SpotCheckStatus.FAILED)
    assert trust.propose(seller).level is TrustLevel.SUSPENDED


def test_a_high_return_rate_proposes_suspension(app):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    batch = ingest(seller, _clean_csv(60))
    buyer = funded_buyer()
    order = place(buyer, 200, 40)
    from app.market import jobs

    jobs.fill_order(order.id)
    db.session.commit()
    sales = db.session.scalars(sa.select(Sale).order_by(Sale.id)).all()
    assert len(sales) == 40 and sales[0].lead.batch_id == batch.id
    for sale in sales[:11]:  # 27.5% returned and accepted
        db.session.add(Return(sale_id=sale.id, order_id=order.id, buyer_id=buyer.id,
                              seller_id=seller.id, reason=ReturnReason.FAKE,
                              status=ReturnStatus.ACCEPTED))
    figures.changed(seller.id, buyer.id)  # written here, not by the returns operations
    db.session.commit()
    proposal = trust.propose(seller)
    assert proposal.record.returns_accepted == 11 and proposal.record.sales == 40
    assert proposal.level is TrustLevel.SUSPENDED


def test_the_admin_seller_page_shows_the_proposal_and_its_reasons(admin_client):
    seller = make_user(Role.SELLER)
    page = admin_client.get(f"/admin/users/{seller.id}").get_data(as_text=True)
    assert 'id="trust-proposal"' in page and "Proposed trust level" in page
    assert "Conversion feedback" in page and "too few to judge" in page


def test_the_trust_form_starts_at_the_current_level_with_the_proposal_beside_it(
        admin_client):
    """Saving without looking must not change the level: the form starts at the current
    one (a suspended seller without a record is proposed 'New': saving as the form
    came would lift the suspension)."""
    seller = make_user(Role.SELLER, trust_level=TrustLevel.SUSPENDED)
    assert trust.propose(seller).level is TrustLevel.NEW
    page = admin_client.get(f"/admin/users/{seller.id}").get_data(as_text=True)
    form = page.split('id="trust-form"', 1)[1].split("</form>", 1)[0]
    assert '<option selected value="suspended">' in form
    assert '<option selected value="new">' not in form
    assert "Now <strong>Suspended</strong>; proposed <strong>New</strong>" in form


def test_suspending_a_seller_delists_unsold_leads_and_stops_uploads(admin_client, client,
                                                                     api_key_for, admin):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    headers = api_key_for(seller)
    batch = ingest(seller, _clean_csv(30))
    buyer = funded_buyer()
    order = place(buyer, 200, 4)
    from app.market import jobs

    jobs.fill_order(order.id)
    db.session.commit()
    response = admin_client.post(f"/admin/users/{seller.id}/trust", data={
        "level": "suspended", "reason": "Failed two spot-checks",
        "csrf_token": csrf_token(admin_client, f"/admin/users/{seller.id}")})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(type(seller), seller.id).trust_level is TrustLevel.SUSPENDED
    statuses = dict(db.session.execute(sa.select(Lead.status, sa.func.count())
                                       .where(Lead.batch_id == batch.id).group_by(Lead.status)).all())
    assert statuses == {LeadStatus.DELISTED: 30}  # sold ones stay sold; none is offered again
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Sale)) == 4
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "seller.trust_changed"))
    assert event.details["leads_delisted"] == 30 and event.actor_id == admin.id
    # The API refuses uploads and real-time leads ...
    refused = _upload(client, headers, _clean_csv(5, seed=9))
    assert refused.status_code == 403 and refused.json["error"]["code"] == "seller_suspended"
    lead = client.post("/api/v1/leads", headers=headers, json={
        "email": "x@mail.example.com", "consent_at": "2026-11-01T09:30:00Z",
        "source_url": "https://landing.example.com/offer", "default_country": "US"})
    assert lead.status_code == 403 and lead.json["error"]["code"] == "seller_suspended"
    # ... and so does the web upload form.
    from tests.conftest import log_in

    web = client.application.test_client()
    log_in(web, seller)
    page = web.post("/seller/batches/new", content_type="multipart/form-data", data={
        "default_country": "US", "floor_price": "1.50", "cap": "1",
        "csrf_token": csrf_token(web, "/seller/batches/new"),
        "file": (io.BytesIO(_clean_csv(5, seed=9)), "export.csv")}).get_data(as_text=True)
    assert "Your account is suspended" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 1
    assert db.session.get(Batch, batch.id).status is BatchStatus.LIVE
    # The pages say so before a file is chosen: no Upload button or form, the reason
    # instead (the menu's Upload leads to the page that says it)
    for path in ("/seller/", "/seller/batches", "/seller/batches/new"):
        page = web.get(path).get_data(as_text=True)
        assert 'class="btn btn-primary" href="/seller/batches/new"' not in page, path
        assert 'id="upload-refused"' in page and "uploads are paused" in page, path
    assert 'type="file"' not in web.get("/seller/batches/new").get_data(as_text=True)


def test_cli_trust_decision_suspends_and_delists(app):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    ingest(seller, _clean_csv(10))
    result = app.test_cli_runner().invoke(args=["users", "trust", "--email", seller.email,
                                                "--level", "suspended", "--reason", "fraud"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert set(db.session.scalars(sa.select(Lead.status))) == {LeadStatus.DELISTED}
    assert accounts.user_by_email(seller.email).trust_level is TrustLevel.SUSPENDED


def test_the_demos_suspicious_batch_tops_the_queue_and_was_sold(app):
    from app.services import demo, spotchecks

    demo.load_demo()
    db.session.commit()
    queue = spotchecks.queue()
    farm = accounts.user_by_email(demo.DEMO_SUSPICIOUS_BATCH[0])
    assert queue[0].seller_id == farm.id and queue[0].risk_score >= 60
    assert all(b.risk_score < 30 for b in queue[1:])
    sold = db.session.scalar(sa.select(sa.func.count()).select_from(Sale)
                             .where(Sale.seller_id == farm.id))
    assert sold > 0  # its buyers have something to be refunded


def _rated_sales(seller, converted: int, bad: int, contacted: int = 0):
    """Sell the seller's leads and have the buyer rate them."""
    from app.market import jobs
    from app.models import OutcomeStatus
    from app.services import outcomes
    from tests.market_helpers import live_leads, person

    count = converted + bad + contacted
    live_leads(seller, [person(seller.id * 1000 + i) for i in range(count)])
    buyer = funded_buyer()
    order = place(buyer, 200, count)
    jobs.fill_order(order.id)
    db.session.commit()
    sales = db.session.scalars(sa.select(Sale.id).where(Sale.order_id == order.id)
                               .order_by(Sale.id)).all()
    statuses = ([OutcomeStatus.CONVERTED] * converted + [OutcomeStatus.BAD] * bad
                + [OutcomeStatus.CONTACTED] * contacted)
    outcomes.record_many(buyer, [(sale, status, None) for sale, status in zip(sales, statuses)])
    db.session.commit()


def test_the_trust_proposal_reads_buyers_outcome_feedback(admin_client):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    _rated_sales(seller, converted=2, bad=1)
    factor = {f.name: f for f in trust.propose(seller).factors}["Conversion feedback"]
    assert factor.verdict == "neutral"
    assert factor.sentence == ("2 of 3 rated leads converted (66.7%), 1 bad (33.3%): "
                               "too few to judge (needs 20).")
    page = admin_client.get(f"/admin/users/{seller.id}").get_data(as_text=True)
    assert "2 of 3 rated leads converted" in page and "not recorded yet" not in page

    good = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    _rated_sales(good, converted=5, bad=2, contacted=15)
    factor = {f.name: f for f in trust.propose(good).factors}["Conversion feedback"]
    assert factor.verdict == "good" and "5 of 22 rated leads converted" in factor.sentence


def test_bad_buyer_feedback_keeps_a_seller_from_being_proposed_verified(app):
    seller = make_user(Role.SELLER)
    first = ingest(seller, _clean_csv(150, seed=1))
    second = ingest(seller, _clean_csv(150, seed=2))
    _decided_check(first, SpotCheckStatus.PASSED)
    _decided_check(second, SpotCheckStatus.PASSED)
    assert trust.propose(seller).level is TrustLevel.VERIFIED
    seller.trust_level = TrustLevel.VERIFIED  # its leads sell without waiting for a check
    _rated_sales(seller, converted=1, bad=8, contacted=11)
    proposal = trust.propose(seller)
    factor = {f.name: f for f in proposal.factors}["Conversion feedback"]
    assert factor.verdict == "bad" and "8 bad (40.0%)" in factor.sentence
    assert proposal.level is TrustLevel.NEW


def test_pages_with_the_trust_proposal_run_the_same_queries_however_long_the_record(
        admin_client):
    from tests.query_count import queries_for

    few, many = (make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED) for _ in range(2))
    _rated_sales(few, converted=1, bad=1)
    _rated_sales(many, converted=6, bad=3, contacted=12)
    _rated_sales(many, converted=2, bad=2)
    small = ingest(few, _clean_csv(10, seed=3))
    large = ingest(many, _clean_csv(60, seed=4))
    assert (queries_for(admin_client, f"/admin/users/{many.id}")
            == queries_for(admin_client, f"/admin/users/{few.id}"))
    assert (queries_for(admin_client, f"/admin/quality/batches/{large.id}")
            == queries_for(admin_client, f"/admin/quality/batches/{small.id}"))
