"""National do-not-call lists (SPEC §14, issue 19 item 4): loaded by an admin (page
and API) as keyed hashes; phone leads on them are flagged at ingest -- batch and real
time -- and when a list is loaded, and never sold for phone contact: a lead with an
email too is sold as an email lead without its number, one with only the number is
delisted."""
import io

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.market import jobs
from app.models import DoNotCallEntry, Lead, LeadStatus, Sale
from app.services import do_not_call
from app.services.delivery import sale_record
from tests.conftest import csrf_token, make_user
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller


def _lead(lead_id) -> Lead:
    db.session.expire_all()
    return db.session.get(Lead, lead_id)


def test_a_loaded_list_flags_held_leads_and_keeps_only_hashes(app, admin_client):
    both, phone_only, free = live_leads(verified_seller(), [
        person(1, phone="+1 415 555 0001"),
        person(2, phone="+1 415 555 0002", email=""),
        person(3, phone="+1 415 555 0003")])
    token = csrf_token(admin_client, "/admin/do-not-call")
    page = admin_client.post("/admin/do-not-call", data={
        "csrf_token": token, "country": "US", "phones": "(415) 555-0001\n415 555 0002\nnope"},
        follow_redirects=True).get_data(as_text=True)
    assert "2 numbers added (1 not valid, skipped); 2 leads held already" in page
    assert _lead(both.id).do_not_call and not _lead(both.id).has_phone
    assert _lead(both.id).status is LeadStatus.LIVE
    assert _lead(phone_only.id).status is LeadStatus.DELISTED
    assert not _lead(free.id).do_not_call and _lead(free.id).has_phone
    db.session.commit()  # the session must not hold SQLite's lock while this reads
    with db.engine.connect() as connection:
        stored = connection.execute(sa.select(DoNotCallEntry.__table__)).all()
    assert len(stored) == 2 and all("4155550" not in str(row) for row in stored)

    # Sold as an email lead: never to an order that requires a phone, and without it.
    phone_order = place(funded_buyer(), 900, 5, filters={"require": "phone"})
    any_order = place(funded_buyer(), 500, 5)
    jobs.fill_order(phone_order.id)
    jobs.fill_order(any_order.id)
    assert {s.lead_id for s in sales_of(phone_order)} == {free.id}
    sale = db.session.scalar(sa.select(Sale).where(Sale.lead_id == both.id))
    assert sale.order_id == any_order.id
    record = sale_record(sale, _lead(both.id))["lead"]
    assert record["phone"] is None and record["do_not_call"] is True
    assert record["email"] == "person1@mail.example.com"
    assert phone_only.id not in {s.lead_id for s in sales_of(any_order)}


def test_leads_arriving_later_are_flagged_at_ingest(app, client, api_key_for):
    admin = make_user("admin")
    answer = client.post("/api/v1/admin/do-not-call", headers=api_key_for(admin), data={
        "country": "ES", "file": (io.BytesIO(b"phone\n612 345 678\n"), "dnc.csv")},
        content_type="multipart/form-data")
    assert answer.get_json() == {"added": 1, "invalid": 0, "flagged": 0}
    assert client.get("/api/v1/admin/do-not-call",
                      headers=api_key_for(admin)).get_json() == {"counts": {"ES": 1}}
    [batch_lead] = live_leads(verified_seller(), [person(5, phone="+34 612 345 678",
                                                         region="ES-M")])
    flagged = _lead(batch_lead.id)
    assert flagged.do_not_call and not flagged.has_phone and flagged.status is LeadStatus.LIVE

    seller = verified_seller()
    posted = client.post("/api/v1/leads", headers=api_key_for(seller), json={
        **person(6, phone="+34612345678", region="ES-M", email=""), "default_country": "ES",
        "floor_price": 0, "cap": 1})
    assert posted.status_code == 201, posted.get_json()
    lead = _lead(posted.get_json()["id"])
    assert lead.do_not_call and lead.status is LeadStatus.DELISTED
    buyer = funded_buyer()
    refused = client.post("/api/v1/admin/do-not-call", headers=api_key_for(buyer),
                          json={"country": "ES", "phones": ["+34612345679"]})
    assert refused.status_code == 403
    assert do_not_call.count("ES") == 1


@pytest.mark.parametrize("listed_beyond", [False, True])
def test_a_finished_batch_flags_its_leads_on_the_lists_however_many_numbers_they_hold(
        app, monkeypatch, listed_beyond):
    """At most _INSERT_CHUNK numbers on the lists: the batch's leads holding them are
    found by their contact keys; more: every lead of the batch is read. Either way only
    the listed ones are flagged, each as its contacts allow."""
    if listed_beyond:
        monkeypatch.setattr(do_not_call, "_INSERT_CHUNK", 2)
    do_not_call.load("US", ["415 555 0001", "415 555 0002", "415 555 0009"], make_user("admin"))
    db.session.commit()
    both, phone_only, free, email_only = live_leads(verified_seller(), [
        person(1, phone="+1 415 555 0001"),
        person(2, phone="+1 415 555 0002", email=""),
        person(3, phone="+1 415 555 0003"),
        person(4, phone="")])
    assert _lead(both.id).do_not_call and not _lead(both.id).has_phone
    assert _lead(both.id).status is LeadStatus.LIVE
    assert _lead(phone_only.id).do_not_call and _lead(phone_only.id).status is LeadStatus.DELISTED
    for lead in (free, email_only):
        assert not _lead(lead.id).do_not_call and _lead(lead.id).status is LeadStatus.LIVE
    assert _lead(free.id).has_phone


def test_numbers_taken_off_give_leads_on_offer_their_phone_back(app, admin_client, client,
                                                                 api_key_for):
    both, phone_only, twice = live_leads(verified_seller(), [
        person(1, phone="+1 415 555 0001"),
        person(2, phone="+1 415 555 0002", email=""),
        person(3, phone="+1 415 555 0003")])
    admin = make_user("admin")
    do_not_call.load("US", ["415 555 0001", "415 555 0002", "415 555 0003"], admin)
    do_not_call.load("CA", ["+1 415 555 0003"], admin)  # the same number on a second list
    db.session.commit()
    token = csrf_token(admin_client, "/admin/do-not-call")
    page = admin_client.post("/admin/do-not-call", data={
        "csrf_token": token, "country": "US", "remove": "Take these off the list",
        "phones": "415 555 0001\n415 555 0002\n415 555 0003\n415 555 0009\nnope"},
        follow_redirects=True).get_data(as_text=True)
    assert "3 numbers taken off (1 not valid, skipped); 1 leads on offer have their phone " \
           "back" in page
    assert not _lead(both.id).do_not_call and _lead(both.id).has_phone
    assert _lead(phone_only.id).status is LeadStatus.DELISTED  # delisting is final
    assert _lead(twice.id).do_not_call and not _lead(twice.id).has_phone  # still on CA's
    assert dict(do_not_call.counts()) == {"CA": 1}

    phone_order = place(funded_buyer(), 900, 5, filters={"require": "phone"})
    jobs.fill_order(phone_order.id)
    assert {s.lead_id for s in sales_of(phone_order)} == {both.id}

    answer = client.post("/api/v1/admin/do-not-call/remove", headers=api_key_for(admin),
                         json={"country": "CA", "phones": ["+1 415 555 0003"]})
    assert answer.get_json() == {"removed": 1, "invalid": 0, "restored": 1}
    buyer_headers = api_key_for(funded_buyer())
    refused = client.post("/api/v1/admin/do-not-call/remove", headers=buyer_headers,
                          json={"country": "US", "phones": ["+1 415 555 0001"]})
    assert refused.status_code == 403
