"""Spot-checks end to end on a real database: the plan and its seeded sample, the queue
and the check page (every view of contacts audited), verdicts, and what passing and
failing do to the batch, its leads, its buyers' money and the ledger."""
import random
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from app.core import figures
from app.errors import Conflict
from app.extensions import db
from app.models import (
    AuditEvent, Batch, BatchStatus, Lead, LeadStatus, Notification, Return, ReturnReason,
    ReturnStatus, Role, Sale, SpotCheck, SpotCheckItem, SpotCheckStatus, TrustLevel, Verdict,
)
from app.services import batches, demo_leads, ledger, quality, spotchecks
from app.market import jobs
from app.services.crypto import current_vault
from tests import quality_corpus as corpus
from tests.conftest import csrf_token, log_in, make_user
from tests.ingest_helpers import ingest
from tests.query_count import counted, queries_for
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller


def _batch(seller, rows: int = 40, **kwargs) -> Batch:
    """A clean batch: invented people that look like a real export."""
    rng, now = random.Random(seller.id), datetime.now(timezone.utc)
    batch = ingest(seller, corpus.to_csv([corpus.person(rng, i, now, quirks=False)
                                          for i in range(rows)]), **kwargs)
    quality.assess_batch(batch.id)
    return db.session.get(Batch, batch.id)


def _suspicious(seller, rows: int = 60) -> Batch:
    batch = ingest(seller, demo_leads.suspicious_csv(9, rows, site="farm.example.com"))
    quality.assess_batch(batch.id)
    return db.session.get(Batch, batch.id)


def _post(client, url: str, **data):
    data["csrf_token"] = csrf_token(client, "/admin/quality")
    return client.post(url, data=data)


def _items(check_id: int) -> list[SpotCheckItem]:
    db.session.expire_all()
    return db.session.scalars(sa.select(SpotCheckItem).where(SpotCheckItem.check_id == check_id)
                              .order_by(SpotCheckItem.position)).all()


def _judge_all(client, check_id: int, verdict: str = "genuine") -> None:
    for item in _items(check_id):
        if item.verdict is None:
            response = _post(client, f"/admin/quality/checks/{check_id}/verdicts",
                             item=item.id, verdict=verdict)
            assert response.status_code == 302


def test_starting_a_check_draws_the_planned_sample_from_its_seed(app, admin):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    batch = _batch(seller, rows=300)
    check = spotchecks.start_check(batch, admin, seed=12345)
    db.session.commit()
    plan = spotchecks.plan_for(300, batch.risk_score, TrustLevel.VERIFIED)
    assert (check.lot_size, check.sample_size, check.acceptance_number) == (
        300, plan.sample_size, 0)
    assert check.sample_size == spotchecks.sample_size(300, check.defect_rate_bp,
                                                       check.confidence_bp)
    # Anyone can redraw it: the seed names lot positions, the lot is the batch by row.
    lot = db.session.scalars(sa.select(Lead.id).where(Lead.batch_id == batch.id)
                             .order_by(Lead.row_number, Lead.id)).all()
    drawn = [lot[p] for _, p in zip(range(check.sample_size),
                                    spotchecks.draw_positions(12345, 300))]
    assert [item.lead_id for item in _items(check.id)] == drawn
    assert spotchecks.start_check(batch, admin).id == check.id  # one open check a batch
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "spot_check.started"))
    assert event.details["seed"] == 12345 and event.actor_id == admin.id


def test_queue_ranks_batches_by_risk_and_explains_the_signals(admin_client):
    honest = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    farm = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    clean = _batch(honest)
    bad = _suspicious(farm)
    assert bad.risk_score > clean.risk_score
    page = admin_client.get("/admin/quality").get_data(as_text=True)
    assert page.index(f'data-batch-id="{bad.id}"') < page.index(f'data-batch-id="{clean.id}"')
    assert "Disposable email domains" in page and f"risk {bad.risk_score}" in page
    detail = admin_client.get(f"/admin/quality/batches/{bad.id}").get_data(as_text=True)
    assert "are at throwaway-inbox services" in detail and "Lot size N" in detail
    assert 'data-code="non_name"' in detail


def test_the_check_page_shows_the_plan_and_contacts_and_every_view_is_audited(admin_client, admin):
    seller = make_user(Role.SELLER)
    batch = _batch(seller, rows=80)
    response = _post(admin_client, f"/admin/quality/batches/{batch.id}/check")
    check = db.session.scalar(sa.select(SpotCheck).where(SpotCheck.batch_id == batch.id))
    assert response.headers["Location"].endswith(f"/admin/quality/checks/{check.id}")
    assert check.plan == "strict" or check.plan == "tightened"  # a new seller's batch
    items = _items(check.id)
    first_email = current_vault().open_contact(items[0].lead.contact_enc)["email"]
    for _ in range(2):
        page = admin_client.get(f"/admin/quality/checks/{check.id}").get_data(as_text=True)
        assert first_email in page
        assert f"{check.sample_size} leads verified" in page and "Acceptance number c" in page
        assert "confidence" in page and str(check.seed) in page
    views = db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "spot_check.contacts_viewed")).all()
    assert len(views) == 2
    assert all(v.actor_id == admin.id and v.subject_id == batch.id for v in views)
    assert views[0].details["lead_ids"] == [item.lead_id for item in items]


def test_an_unreachable_lead_is_replaced_by_the_next_draw(app, admin):
    batch = _batch(make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED), rows=120)
    check = spotchecks.start_check(batch, admin, seed=7)
    db.session.commit()
    before = _items(check.id)
    spotchecks.record_verdict(check, before[0].id, "unreachable", admin)
    db.session.commit()
    after = _items(check.id)
    assert len(after) == check.sample_size + 1
    expected = db.session.scalars(sa.select(Lead.id).where(Lead.batch_id == batch.id)
                                  .order_by(Lead.row_number, Lead.id)).all()
    positions = [p for _, p in zip(range(check.sample_size + 1), spotchecks.draw_positions(7, 120))]
    assert after[-1].lead_id == expected[positions[-1]]
    for item in after[1:]:
        spotchecks.record_verdict(check, item.id, "genuine", admin)
    db.session.commit()
    db.session.refresh(check)
    tally = spotchecks.tally(check)
    assert (tally.verified, tally.unreachable, tally.outcome) == (check.sample_size, 1, "pass")


def test_the_decision_waits_for_the_verdicts_and_then_is_final(app, admin):
    batch = _batch(make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED), rows=30)
    check = spotchecks.start_check(batch, admin)
    db.session.commit()
    with pytest.raises(Conflict):
        spotchecks.decide(check, admin)
    for item in _items(check.id):
        spotchecks.record_verdict(check, item.id, Verdict.GENUINE.value, admin)
    db.session.refresh(check)
    spotchecks.decide(check, admin)
    db.session.commit()
    db.session.refresh(check)
    assert check.status is SpotCheckStatus.PASSED
    with pytest.raises(Conflict):
        spotchecks.record_verdict(check, _items(check.id)[0].id, "fake", admin)
    with pytest.raises(Conflict):
        spotchecks.decide(check, admin)


def test_passing_a_held_batch_lists_it_and_offers_it_to_open_orders(admin_client):
    buyer = funded_buyer()
    order = place(buyer, 300, 5)
    seller = make_user(Role.SELLER)  # new: the batch is held until a check passes
    batch = _batch(seller, rows=40)
    assert batch.status is BatchStatus.HELD and not sales_of(order)
    _post(admin_client, f"/admin/quality/batches/{batch.id}/check")
    check = db.session.scalar(sa.select(SpotCheck).where(SpotCheck.batch_id == batch.id))
    _judge_all(admin_client, check.id)
    page = admin_client.get(f"/admin/quality/checks/{check.id}").get_data(as_text=True)
    assert "Pass batch and list it" in page
    response = _post(admin_client, f"/admin/quality/checks/{check.id}/decide")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Batch, batch.id).status is BatchStatus.LIVE
    statuses = set(db.session.scalars(sa.select(Lead.status).where(Lead.batch_id == batch.id)))
    assert statuses == {LeadStatus.LIVE}
    assert len(sales_of(order)) == 5  # the matcher ran on the newly listed batch
    assert ledger.reconcile().ok
    decided = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "spot_check.decided"))
    assert decided.details["outcome"] == "pass" and decided.details["went_live"] is True


def test_a_held_batch_whose_leads_were_all_withdrawn_waits_for_no_check(admin_client, admin):
    """Nothing of it can go on sale: no admin is sent to call its people, and a check
    started before the seller withdrew them does not tell anyone its leads are on sale."""
    # New sellers: their batches are held until a check passes.
    owner, seller = make_user(Role.SELLER), make_user(Role.SELLER)
    idle, started = _batch(owner, rows=6), _batch(seller, rows=6)
    check = spotchecks.start_check(started, admin)
    db.session.commit()
    assert {idle.id, started.id} <= {b.id for b in spotchecks.queue()}
    batches.withdraw(owner, idle.id)
    batches.pause(seller, started.id)
    batches.withdraw(seller, started.id)
    db.session.commit()

    assert idle.id not in {b.id for b in spotchecks.queue()}
    assert f'data-batch-id="{idle.id}"' not in admin_client.get("/admin/quality").get_data(
        as_text=True)
    page = admin_client.get(f"/admin/quality/batches/{idle.id}").get_data(as_text=True)
    assert 'id="nothing-to-check"' in page and "Start spot-check" not in page
    response = _post(admin_client, f"/admin/quality/batches/{idle.id}/check")
    assert response.status_code == 302 and not db.session.scalar(
        sa.select(SpotCheck).where(SpotCheck.batch_id == idle.id))
    with pytest.raises(Conflict, match="nothing to check"):
        spotchecks.start_check(idle, admin)

    # The open check can still be finished; passing it lists nothing.
    assert "Continue spot-check" in admin_client.get(
        f"/admin/quality/batches/{started.id}").get_data(as_text=True)
    _judge_all(admin_client, check.id)
    response = _post(admin_client, f"/admin/quality/checks/{check.id}/decide",
                     note="all reached")
    db.session.expire_all()
    assert db.session.get(SpotCheck, check.id).status is SpotCheckStatus.PASSED
    assert set(db.session.scalars(sa.select(Lead.status).where(Lead.batch_id == started.id))) \
        == {LeadStatus.WITHDRAWN}
    told = db.session.scalar(sa.select(Notification).where(Notification.user_id == seller.id)
                             .order_by(Notification.id.desc()))
    assert told.title == f"Batch #{started.id} passed its spot-check"
    assert "on sale" not in told.body
    flashed = admin_client.get(f"/admin/quality/checks/{check.id}").get_data(as_text=True)
    assert "passed its spot-check" in flashed and "offered to buyers" not in flashed


def test_failing_a_live_batch_delists_it_and_refunds_every_sale(admin_client):
    buyer = funded_buyer(100_000)
    other_buyer = funded_buyer(100_000)
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    batch = _batch(seller, rows=60, cap=2)
    for who, price, quantity in ((buyer, 400, 12), (other_buyer, 250, 7)):
        order = place(who, price, quantity)
        jobs.fill_order(order.id)
        db.session.commit()
    sold = db.session.scalars(sa.select(Sale).join(Lead).where(Lead.batch_id == batch.id)).all()
    assert len(sold) == 19 and ledger.balance_for(seller).pending > 0
    _post(admin_client, f"/admin/quality/batches/{batch.id}/check")
    check = db.session.scalar(sa.select(SpotCheck).where(SpotCheck.batch_id == batch.id))
    first = _items(check.id)[0]
    _post(admin_client, f"/admin/quality/checks/{check.id}/verdicts", item=first.id,
          verdict="fake")
    page = admin_client.get(f"/admin/quality/checks/{check.id}").get_data(as_text=True)
    assert "Fail batch" in page  # one fake exceeds c = 0: no need to finish the sample
    response = _post(admin_client, f"/admin/quality/checks/{check.id}/decide", note="Farmed leads")
    assert response.status_code == 302
    db.session.expire_all()
    batch = db.session.get(Batch, batch.id)
    assert batch.status is BatchStatus.REJECTED and batch.error_code == "spot_check_failed"
    statuses = set(db.session.scalars(sa.select(Lead.status).where(Lead.batch_id == batch.id)))
    assert statuses == {LeadStatus.DELISTED}
    refunds = db.session.scalars(sa.select(Return)).all()
    assert len(refunds) == 19
    assert {r.reason for r in refunds} == {ReturnReason.FAILED_SPOT_CHECK}
    assert {r.status for r in refunds} == {ReturnStatus.ACCEPTED}
    for who in (buyer, other_buyer):
        balance = ledger.balance_for(who)
        assert balance.available + balance.held == 100_000  # every cent back
    assert ledger.balance_for(seller).pending == 0
    assert ledger.reconcile().ok
    check = db.session.get(SpotCheck, check.id)
    assert check.status is SpotCheckStatus.FAILED and check.sales_returned == 19
    assert check.decision_note == "Farmed leads"
    # Delisted leads are never sold again.
    late = place(funded_buyer(), 500, 5)
    jobs.fill_order(late.id)
    db.session.commit()
    assert not sales_of(late)


def test_verdicts_and_decisions_are_in_the_audit_log(app, admin):
    batch = _batch(make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED), rows=25)
    check = spotchecks.start_check(batch, admin)
    item = _items(check.id)[0]
    spotchecks.record_verdict(check, item.id, "no_consent", admin, note="Says never signed up")
    spotchecks.decide(check, admin)
    db.session.commit()
    actions = [e.action for e in db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action.like("spot_check.%")).order_by(AuditEvent.id))]
    assert actions == ["spot_check.started", "spot_check.verdict", "spot_check.decided"]
    verdict = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "spot_check.verdict"))
    assert verdict.subject_id == item.lead_id and verdict.details["verdict"] == "no_consent"


def test_only_admins_reach_the_spot_check_pages(seller_client):
    assert seller_client.get("/admin/quality").status_code == 403
    assert seller_client.get("/admin/quality/checks/1").status_code == 403


def test_seller_sees_each_batchs_spot_check_state(app):
    seller = verified_seller()
    batch = live_leads(seller, [person(i) for i in range(5)])[0].batch
    client = app.test_client()
    log_in(client, seller)
    assert "none yet" in client.get("/seller/batches").get_data(as_text=True)
    db.session.add(SpotCheck(batch_id=batch.id, status=SpotCheckStatus.FAILED, seed=1,
                             lot_size=5, sample_size=5, acceptance_number=0,
                             defect_rate_bp=500, confidence_bp=9500, plan="standard"))
    figures.changed(seller.id)  # written here, not by the spot-check operations
    db.session.commit()
    assert 'title="Spot-check">check failed<' in client.get("/seller/batches").get_data(as_text=True)


def _htmx(client, url: str, **data):
    """A post as htmx sends it: the CSRF token in a header, HX-Request set."""
    token = csrf_token(client, "/admin/quality")
    return client.post(url, data=data, headers={"HX-Request": "true", "X-CSRFToken": token})


def _views() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "spot_check.contacts_viewed"))


def test_an_htmx_verdict_swaps_the_lead_and_tally_without_auditing_the_page_again(
        admin_client, admin):
    batch = _batch(make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED), rows=120)
    check = spotchecks.start_check(batch, admin, seed=5)
    db.session.commit()
    admin_client.get(f"/admin/quality/checks/{check.id}")
    assert _views() == 1
    first = _items(check.id)[0]
    email = current_vault().open_contact(first.lead.contact_enc)["email"]
    response = _htmx(admin_client, f"/admin/quality/checks/{check.id}/verdicts", item=first.id,
                     verdict="genuine", note="Confirmed she asked for a quote")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<html" not in body  # the changed parts only, not the page
    assert f'id="item-{first.id}" data-verdict="genuine" hx-swap-oob="true"' in body
    assert email in body and "Confirmed she asked for a quote" in body
    assert 'id="tally" hx-swap-oob="true"' in body and f"1 of {check.sample_size} verified" in body
    assert _views() == 1  # re-showing a judged lead is part of the audited verdict
    verdicts = db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "spot_check.verdict")).all()
    assert len(verdicts) == 1 and verdicts[0].subject_id == first.lead_id
    assert verdicts[0].details["note_chars"] == len("Confirmed she asked for a quote")
    assert "Confirmed" not in str(verdicts[0].details)  # the words stay on the item only

    # An unreachable lead is replaced: the new draw's contacts are a new, audited view.
    second = _items(check.id)[1]
    body = _htmx(admin_client, f"/admin/quality/checks/{check.id}/verdicts", item=second.id,
                 verdict="unreachable").get_data(as_text=True)
    replacement = _items(check.id)[-1]
    assert replacement.position == check.sample_size
    assert 'hx-swap-oob="beforeend:#sample"' in body and f'id="item-{replacement.id}"' in body
    view = db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "spot_check.contacts_viewed").order_by(AuditEvent.id.desc())).first()
    assert _views() == 2 and view.details["lead_ids"] == [replacement.lead_id]


def test_a_bulk_verdict_is_one_action_with_one_audit_entry(admin_client, admin):
    batch = _batch(make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED), rows=60)
    check = spotchecks.start_check(batch, admin)
    db.session.commit()
    items = _items(check.id)
    chosen = [item.id for item in items[:3]]
    response = _htmx(admin_client, f"/admin/quality/checks/{check.id}/verdicts", item=chosen,
                     verdict="genuine")
    body = response.get_data(as_text=True)
    assert "3 sampled leads marked genuine." in body
    assert all(f'id="item-{i}" data-verdict="genuine"' in body for i in chosen)
    assert [item.verdict for item in _items(check.id)[:4]] == [Verdict.GENUINE] * 3 + [None]
    entries = db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "spot_check.verdict")).all()
    assert len(entries) == 1 and entries[0].subject_type == "batch"
    assert entries[0].details["lead_ids"] == [item.lead_id for item in items[:3]]
    # Nothing selected, or a lead of another check: refused, nothing changes.
    nothing = _htmx(admin_client, f"/admin/quality/checks/{check.id}/verdicts", verdict="fake")
    assert nothing.status_code == 200 and "Select at least one sampled lead." in nothing.get_data(
        as_text=True)
    other = spotchecks.start_check(_batch(make_user(Role.SELLER), rows=30), admin)
    db.session.commit()
    stranger = _items(other.id)[0].id
    refused = _htmx(admin_client, f"/admin/quality/checks/{check.id}/verdicts",
                    item=[items[4].id, stranger], verdict="fake")
    assert "No such lead in this sample." in refused.get_data(as_text=True)
    assert _items(check.id)[4].verdict is None and _items(other.id)[0].verdict is None


def test_passing_by_htmx_updates_the_page_in_place(admin_client, admin):
    batch = _batch(make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED), rows=40)
    check = spotchecks.start_check(batch, admin)
    db.session.commit()
    items = _items(check.id)
    _htmx(admin_client, f"/admin/quality/checks/{check.id}/verdicts",
          item=[item.id for item in items], verdict="genuine")
    body = _htmx(admin_client, f"/admin/quality/checks/{check.id}/decide").get_data(as_text=True)
    assert f"Batch #{batch.id} passed its spot-check." in body
    assert 'id="check-status" hx-swap-oob="true">Passed<' in body
    assert '<div id="bulk" hx-swap-oob="true"></div>' in body
    assert all(f'<span id="pick-{item.id}" hx-swap-oob="true"></span>' in body for item in items)
    assert _views() == 0  # deciding shows no contacts
    db.session.expire_all()
    assert db.session.get(SpotCheck, check.id).status is SpotCheckStatus.PASSED


def test_the_check_page_runs_the_same_queries_however_large_the_sample(admin_client, admin):
    small = spotchecks.start_check(_batch(make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED),
                                          rows=12), admin)
    large = spotchecks.start_check(_batch(make_user(Role.SELLER), rows=400), admin)
    db.session.commit()
    assert large.sample_size > 5 * small.sample_size
    assert (queries_for(admin_client, f"/admin/quality/checks/{large.id}")
            == queries_for(admin_client, f"/admin/quality/checks/{small.id}"))


def test_a_bulk_verdict_runs_the_same_queries_however_many_leads_it_judges(admin_client, admin):
    check = spotchecks.start_check(_batch(make_user(Role.SELLER), rows=400), admin)
    db.session.commit()
    ids = [item.id for item in _items(check.id)]
    url = f"/admin/quality/checks/{check.id}/verdicts"
    _htmx(admin_client, url, item=ids[0], verdict="genuine")  # warm
    counts = []
    for chosen in (ids[1:3], ids[3:60]):
        with counted() as statements:
            _htmx(admin_client, url, item=chosen, verdict="genuine")
        counts.append(len(statements))
    assert counts[0] == counts[1]
