"""SPEC §3: a seller pauses, resumes, withdraws and re-prices (floor, cap) the unsold
leads of a batch -- against the real matcher, both ways fills are stored, the API,
the seller's pages and the audit log."""
import re

import pytest
import sqlalchemy as sa

from app.core import events
from app.errors import Conflict, NotFound, ValidationFailed
from app.extensions import db
from app.formatting import format_money
from app.market import jobs, settle, snapshot
from app.market.book import Claims, allocate
from app.models import AuditEvent, Batch, BatchStatus, Lead, LeadStatus, Role, TrustLevel
from app.models.types import utcnow
from app.services import batches, ledger, market_stats, trust
from tests.conftest import csrf_token, log_in, make_user
from tests.market_helpers import (
    funded_buyer, live_leads, person, place, recent_sales_at, sales_of, verified_seller,
)


def _match(batch_id: int) -> None:
    jobs.match_batch(batch_id)
    db.session.commit()
    db.session.expire_all()


def _lead(lead_id: int) -> Lead:
    db.session.expire_all()
    return db.session.get(Lead, lead_id)


def _lead_of(batch_id: int) -> Lead:
    db.session.expire_all()
    return db.session.scalar(sa.select(Lead).where(Lead.batch_id == batch_id))


def _entries(batch_id: int) -> list[AuditEvent]:
    return db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.subject_type == "batch", AuditEvent.subject_id == batch_id)
        .order_by(AuditEvent.id)).all()


def test_a_paused_batch_sells_nothing_until_it_is_resumed(app):
    seller = verified_seller()
    leads = live_leads(seller, [person(1), person(2)])
    batch_id = leads[0].batch_id
    order = place(funded_buyer(), 300, 5)
    assert batches.pause(seller, batch_id) == 2
    db.session.commit()
    _match(batch_id)
    jobs.fill_order(order.id)
    jobs.match_leads([lead.id for lead in leads])
    db.session.commit()
    assert sales_of(order) == []
    assert batches.resume(seller, batch_id) == 2
    db.session.commit()  # BatchRelisted: the batch is matched once this commits
    db.session.expire_all()
    assert sorted(s.lead_id for s in sales_of(order)) == sorted(lead.id for lead in leads)
    assert ledger.reconcile().ok


def test_a_withdrawn_lead_is_never_sold_even_after_a_resume(app):
    seller = verified_seller()
    lead = live_leads(seller, [person(1)], cap=3)[0]
    first = place(funded_buyer(), 500, 5)
    _match(lead.batch_id)
    assert len(sales_of(first)) == 1  # 1 of 3 sold; two buyers could still take it
    assert batches.withdraw(seller, lead.batch_id) == 1
    db.session.commit()
    later = place(funded_buyer(), 900, 5)
    _match(lead.batch_id)
    jobs.fill_order(later.id)
    db.session.commit()
    assert batches.resume(seller, lead.batch_id) == 0  # nothing paused: nothing comes back
    db.session.commit()
    jobs.match_open_orders()
    db.session.commit()
    assert sales_of(later) == []
    assert _lead(lead.id).status is LeadStatus.WITHDRAWN and _lead(lead.id).sold_count == 1
    assert [s.price for s in sales_of(first)] == [500]  # the sale made before stands


@pytest.mark.parametrize("change", [batches.pause, batches.withdraw])
def test_a_fill_planned_before_a_pause_or_withdrawal_is_lost_both_ways(app, change):
    """The grouped store and the single fill both re-check the lead's status under lock."""
    seller = verified_seller()
    order = place(funded_buyer(), 300, 5)
    leads = live_leads(seller, [person(1), person(2)])
    now = utcnow()
    candidates = snapshot.load_leads([lead.id for lead in leads])
    plan = allocate(candidates, snapshot.load_book(now), Claims(), now)
    assert len(plan) == 2
    db.session.commit()
    change(seller, leads[0].batch_id)
    db.session.commit()
    lost = jobs.store_plan(plan, settle.Settlement(now))  # a group first
    assert sorted(lost) == sorted(lead.id for lead in leads)
    candidate, slot = plan[0]
    assert not settle.Settlement(now).fill(candidate, slot)  # one by one
    db.session.rollback()
    assert sales_of(order) == []
    assert all(_lead(lead.id).sold_count == 0 for lead in leads)
    if change is batches.pause:  # the same fill goes through once the lead is live again
        with events.muted():
            batches.resume(seller, leads[0].batch_id)
            db.session.commit()
        assert settle.Settlement(now).fill(candidate, slot)
        db.session.commit()
        assert [s.lead_id for s in sales_of(order)] == [candidate.id]
    assert ledger.reconcile().ok


def test_a_new_floor_applies_to_the_next_sale_never_to_past_ones(app):
    seller = verified_seller()
    lead = live_leads(seller, [person(1)], cap=2, floor_price=100)[0]
    first = place(funded_buyer(), 300, 5)
    _match(lead.batch_id)
    assert [s.price for s in sales_of(first)] == [300]
    assert batches.reprice(seller, lead.batch_id, floor_price=400) == 1
    db.session.commit()
    second = place(funded_buyer(), 350, 5)
    jobs.fill_order(second.id)
    db.session.commit()
    assert sales_of(second) == []  # the floor is above its price
    assert [s.price for s in sales_of(first)] == [300]  # the past sale keeps its price
    assert batches.reprice(seller, lead.batch_id, floor_price=200) == 1
    db.session.commit()  # a lower floor: the batch is offered again once this commits
    db.session.expire_all()
    assert [s.price for s in sales_of(second)] == [350]
    assert db.session.get(Batch, lead.batch_id).floor_price == 200
    assert ledger.reconcile().ok


def test_a_new_cap_changes_only_further_sales_and_never_goes_below_the_buyers_a_lead_has(app):
    seller = verified_seller()
    sold, unsold = live_leads(seller, [person(1), person(2, region="US-NY")], cap=3)
    first = place(funded_buyer(), 300, 5, filters={"regions": ["US-CA"]})
    second = place(funded_buyer(), 300, 5, filters={"regions": ["US-CA"]})
    _match(sold.batch_id)
    assert _lead(sold.id).sold_count == 2
    assert batches.reprice(seller, sold.batch_id, cap=1) == 2
    db.session.commit()
    assert (_lead(sold.id).cap, _lead(unsold.id).cap) == (2, 1)  # not below its two buyers
    third = place(funded_buyer(), 300, 5)
    _match(sold.batch_id)
    assert [s.lead_id for s in sales_of(third)] == [unsold.id]  # the sold one is full now
    assert len(sales_of(first)) == len(sales_of(second)) == 1
    # Raising it again: a lead sold keeps what its buyers bought (two at most); a lead
    # with room takes the new cap. Here both have sold, so neither is raised.
    assert batches.reprice(seller, sold.batch_id, cap=5) == 0
    db.session.commit()
    assert (_lead(sold.id).cap, _lead(unsold.id).cap) == (2, 1)


def test_a_lead_never_sold_takes_a_raised_cap(app):
    seller = verified_seller()
    lead = live_leads(seller, [person(1)], cap=1)[0]
    orders = [place(funded_buyer(), 300, 5) for _ in range(3)]
    assert batches.reprice(seller, lead.batch_id, cap=3) == 1
    db.session.commit()
    db.session.expire_all()
    assert _lead(lead.id).cap == 3
    assert [len(sales_of(o)) for o in orders] == [1, 1, 1]  # offered again: a higher cap


def test_a_floor_far_above_recent_prices_needs_confirmation(app):
    seller = verified_seller()
    lead = live_leads(seller, [person(1)])[0]
    assert batches.reprice(seller, lead.batch_id, floor_price=5000) == 1  # no sales to judge by
    db.session.commit()
    recent_sales_at(300)
    assert batches.reprice(seller, lead.batch_id, floor_price=900) == 1  # three times: fine
    db.session.commit()
    with pytest.raises(market_stats.FloorNeedsConfirmation) as refused:
        batches.reprice(seller, lead.batch_id, floor_price=901)
    db.session.rollback()
    # Four sales at $3.00: their median is their 90th percentile, said once.
    assert "paid at most $3.00):" in refused.value.message and "half" not in refused.value.message
    assert _lead(lead.id).floor_price == 900
    assert batches.reprice(seller, lead.batch_id, floor_price=901, confirm=True) == 1
    db.session.commit()
    assert _lead(lead.id).floor_price == 901
    assert _entries(lead.batch_id)[-1].details == {"floor_price": [900, 901], "leads": 1,
                                                   "confirmed": True}


def test_terms_out_of_bounds_are_refused(app):
    seller = verified_seller()
    batch_id = live_leads(seller, [person(1)])[0].batch_id
    for terms in ({"floor_price": -1}, {"cap": 0}, {"cap": 21}, {"floor_price": 10**14}, {}):
        with pytest.raises(ValidationFailed):
            batches.reprice(seller, batch_id, **terms)
        db.session.rollback()


def test_every_change_is_audited_with_who_what_and_how_many(app):
    seller = verified_seller()
    batch_id = live_leads(seller, [person(1), person(2)], floor_price=100)[0].batch_id
    batches.pause(seller, batch_id)
    batches.resume(seller, batch_id)
    batches.reprice(seller, batch_id, floor_price=150, cap=2)
    batches.reprice(seller, batch_id, floor_price=150, cap=2)  # saved as it was: no entry
    batches.reprice(seller, batch_id, floor_price=150, cap=3)  # the cap alone changed
    batches.withdraw(seller, batch_id)
    db.session.commit()
    entries = _entries(batch_id)
    assert [(e.action, e.actor_id) for e in entries] == [
        ("batch.paused", seller.id), ("batch.resumed", seller.id),
        ("batch.repriced", seller.id), ("batch.repriced", seller.id),
        ("batch.withdrawn", seller.id)]
    assert [e.details for e in entries] == [
        {"leads": 2}, {"leads": 2, "as": "live"},
        {"floor_price": [100, 150], "cap": [1, 2], "leads": 2}, {"cap": [2, 3], "leads": 2},
        {"leads": 2}]
    assert [e.id for e in batches.history(db.session.get(Batch, batch_id))] == [
        e.id for e in reversed(entries)]


def test_a_held_batch_resumes_held_and_a_rejected_one_cannot_be_managed(app):
    seller = make_user(Role.SELLER)  # new: batches wait for a spot-check
    lead = live_leads(seller, [person(1)])[0]
    order = place(funded_buyer(), 300, 5)
    assert _lead(lead.id).status is LeadStatus.HELD
    batches.pause(seller, lead.batch_id)
    batches.resume(seller, lead.batch_id)
    db.session.commit()
    _match(lead.batch_id)
    assert _lead(lead.id).status is LeadStatus.HELD and sales_of(order) == []
    db.session.execute(sa.update(Batch).values(status=BatchStatus.REJECTED))
    db.session.commit()
    for change in (batches.pause, batches.resume, batches.withdraw):
        with pytest.raises(Conflict):
            change(seller, lead.batch_id)
        db.session.rollback()


def test_suspending_a_seller_delists_paused_leads_too(app):
    seller = verified_seller()
    lead = live_leads(seller, [person(1)])[0]
    batches.pause(seller, lead.batch_id)
    assert trust.delist_unsold(seller) == 1
    seller.trust_level = TrustLevel.SUSPENDED
    db.session.commit()
    with pytest.raises(Conflict):
        batches.resume(seller, lead.batch_id)
    db.session.rollback()
    assert _lead(lead.id).status is LeadStatus.DELISTED


def test_only_the_batch_seller_or_an_admin_manages_it(app):
    seller = verified_seller()
    batch_id = live_leads(seller, [person(1)])[0].batch_id
    for stranger in (verified_seller(), make_user(Role.BUYER)):
        with pytest.raises(NotFound):
            batches.pause(stranger, batch_id)
        db.session.rollback()
    assert batches.pause(make_user(Role.ADMIN), batch_id) == 1


# --- the API ---------------------------------------------------------------------------

def test_api_pause_resume_withdraw_and_reprice(client, api_key_for):
    seller = verified_seller()
    leads = live_leads(seller, [person(1), person(2)])
    batch_id, headers = leads[0].batch_id, api_key_for(seller)
    order = place(funded_buyer(), 300, 5)
    body = client.post(f"/api/v1/batches/{batch_id}/pause", headers=headers).json
    assert body["listing"] == {"live": 0, "held": 0, "paused": 2, "withdrawn": 0,
                               "delisted": 0, "sold_out": 0}
    body = client.patch(f"/api/v1/batches/{batch_id}", json={"floor_price": 250, "cap": 2},
                        headers=headers).json
    assert (body["floor_price"], body["cap"], body["listing"]["paused"]) == (250, 2, 2)
    body = client.post(f"/api/v1/batches/{batch_id}/resume", headers=headers).json
    assert body["listing"]["sold_out"] == 0 and body["listing"]["live"] == 2  # cap 2: room left
    assert len(sales_of(order)) == 2  # matched after the resume committed
    body = client.post(f"/api/v1/batches/{batch_id}/withdraw", headers=headers).json
    assert body["listing"]["withdrawn"] == 2 and body["listing"]["live"] == 0
    response = client.post(f"/api/v1/batches/{batch_id}/resume", headers=headers)
    assert response.status_code == 200 and response.json["listing"]["withdrawn"] == 2


def test_api_far_above_floor_needs_confirm_and_bounds_are_422(client, api_key_for):
    recent_sales_at(300)
    seller = verified_seller()
    batch_id, headers = live_leads(seller, [person(1)])[0].batch_id, api_key_for(seller)
    url = f"/api/v1/batches/{batch_id}"
    response = client.patch(url, json={"floor_price": 5000}, headers=headers)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "floor_needs_confirmation"
    assert client.get(url, headers=headers).json["floor_price"] == 0
    response = client.patch(url, json={"floor_price": 5000, "confirm": True}, headers=headers)
    assert response.status_code == 200 and response.json["floor_price"] == 5000
    for body in ({"cap": 0}, {"cap": 21}, {"floor_price": -1}, {"floor_price": 2.5}, {}):
        response = client.patch(url, json=body, headers=headers)
        assert response.status_code == 422, body


# --- the seller's pages ---------------------------------------------------------------

def _seller_client(app, seller):
    client = app.test_client()
    log_in(client, seller)
    return client


def test_the_batch_page_pauses_resumes_withdraws_and_shows_the_history(app):
    seller = verified_seller()
    batch_id = live_leads(seller, [person(1), person(2)])[0].batch_id
    client = _seller_client(app, seller)
    page_url = f"/seller/batches/{batch_id}"
    page = client.get(page_url).get_data(as_text=True)
    assert 'id="listing-live">2<' in page and 'id="pause-batch"' in page
    token = csrf_token(client, page_url)
    response = client.post(f"{page_url}/pause", data={"csrf_token": token})
    assert response.status_code == 302
    page = client.get(page_url).get_data(as_text=True)
    assert 'id="listing-paused">2<' in page and 'id="resume-batch"' in page
    assert "Paused 2 unsold leads" in page and 'id="batch-history"' in page
    # The status says so beside "Live", on the page and in the list of batches.
    assert ">Paused</span>" in page
    assert ">Paused</span>" in client.get("/seller/batches").get_data(as_text=True)
    client.post(f"{page_url}/resume", data={"csrf_token": token})
    assert ">Paused</span>" not in client.get("/seller/batches").get_data(as_text=True)
    client.post(f"{page_url}/withdraw", data={"csrf_token": token})
    page = client.get(page_url).get_data(as_text=True)
    assert 'id="listing-withdrawn">2<' in page and 'id="pause-batch"' not in page
    assert ">Withdrawn</span>" in page
    assert ">Withdrawn</span>" in client.get("/seller/").get_data(as_text=True)
    # Nothing is left to re-price or withdraw: the page offers neither.
    assert 'id="batch-terms"' not in page and 'id="withdraw-batch"' not in page
    assert 'id="nothing-to-manage"' in page
    assert [e.action for e in _entries(batch_id)] == [
        "batch.paused", "batch.resumed", "batch.withdrawn"]
    # Every change is on the page at once, newest first, with who made it (the page
    # keeps its history per revision of the seller's figures: each change raises it).
    history = page.split('id="batch-history"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<td class="d-none d-md-table-cell text-break">([^<]*)</td>\s*'
                      r'<td><span class="batch-change">([^<]*)</span>', history)
    assert rows == [(seller.email, "Batch withdrawn"), (seller.email, "Batch resumed"),
                    (seller.email, "Batch paused")]
    # On a phone, who made each change is under its time: no column to scroll to.
    assert history.count(f'd-md-none">{seller.email}</div>') == 3


def test_the_batch_page_asks_to_confirm_a_floor_far_above_recent_prices(app):
    recent_sales_at(300)
    seller = verified_seller()
    batch_id = live_leads(seller, [person(1)])[0].batch_id
    client = _seller_client(app, seller)
    page_url = f"/seller/batches/{batch_id}"
    form = {"csrf_token": csrf_token(client, page_url), "floor_price": "50.00", "cap": "2"}
    response = client.post(f"{page_url}/terms", data=form)
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert 'id="floor-warning"' in page and 'name="confirm"' in page
    # Sent to the form's own place on the page, the warning is in view, not 1,500px down.
    assert f'action="{page_url}/terms#batch-terms"' in page
    assert db.session.get(Batch, batch_id).floor_price == 0
    response = client.post(f"{page_url}/terms", data=form | {"confirm": "y"})
    assert response.status_code == 302
    db.session.expire_all()
    assert (db.session.get(Batch, batch_id).floor_price, _lead_of(batch_id).cap) == (5000, 2)
    page = client.get(page_url).get_data(as_text=True)
    assert "$0.00 → $50.00" in page and "confirmed" in page
    response = client.post(f"{page_url}/terms", data=form | {"cap": "0"})
    assert response.status_code == 422


def test_a_paused_real_time_batch_is_not_called_paused_as_new_posts_are_on_offer(
        client, api_key_for):
    seller = verified_seller()
    headers = api_key_for(seller)

    def post(n: int) -> int:
        return client.post("/api/v1/leads", headers=headers, json={
            "email": f"rt{n}@mail.example.com", "consent_at": "2026-11-01T09:30:00Z",
            "source_url": "https://x.example.com", "default_country": "US"}).json["id"]

    batch_id = _lead(post(1)).batch_id
    assert batches.pause(seller, batch_id) == 1
    db.session.commit()
    assert _lead(post(2)).batch_id == batch_id  # the day's batch, on offer again
    assert batches.offer_states([batch_id]) == {}
    upload_id = live_leads(seller, [person(3)])[0].batch_id
    batches.pause(seller, upload_id)
    assert batches.offer_states([batch_id, upload_id]) == {upload_id: "paused"}


def test_a_real_time_batch_is_repriced_against_the_terms_its_leads_carry(client, api_key_for):
    """Each real-time lead keeps its post's floor: lowering the floor to the first lead's
    (the batch's own) still lowers a later lead's, and the batch is offered again."""
    seller = verified_seller()
    headers = api_key_for(seller)
    posted = [client.post("/api/v1/leads", headers=headers, json={
        "email": f"rt{floor}@mail.example.com", "consent_at": "2026-11-01T09:30:00Z",
        "source_url": "https://x.example.com", "default_country": "US",
        "floor_price": floor, "cap": 1}).json["id"] for floor in (300, 500)]
    batch = db.session.get(Batch, _lead(posted[0]).batch_id)
    assert batch.terms_per_lead and _lead(posted[1]).batch_id == batch.id
    assert batches.lead_terms(batch) == batches.LeadTerms(300, 500, 1, 1)
    order = place(funded_buyer(), 450, 5)
    jobs.fill_order(order.id)
    db.session.commit()
    assert [s.lead_id for s in sales_of(order)] == [posted[0]]  # 500 is above its price

    assert batches.reprice(seller, batch.id, floor_price=300) == 1  # the unsold one
    db.session.commit()  # a lower floor for a lead: the batch is offered again
    db.session.expire_all()
    assert sorted(s.lead_id for s in sales_of(order)) == posted
    assert _entries(batch.id)[-1].details == {"floor_price": [[300, 500], 300], "leads": 1}
    page = _seller_client(client.application, seller).get(f"/seller/batches/{batch.id}")
    assert f"floor {format_money(300)} to {format_money(500)} → {format_money(300)}" in \
        page.get_data(as_text=True)
