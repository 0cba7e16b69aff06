"""Suppression, erasure and retention (SPEC §7, issue #6 item 5): after an erasure no
trace of the person's contacts is left in any table, buyers who received them are
told (UI and signed webhook), and uploads of them are refused from then on."""
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from app.errors import ValidationFailed
from app.extensions import db
from app.models import (
    AuditEvent, DeliveryAttempt, ErasureNotice, Lead, LeadStatus, Rejection, Sale,
)
from app.aftersale.delivery import engine
from app.services import ledger, privacy
from app.market import jobs, operations
from app.services.crypto import current_vault
from app.aftersale.delivery.webhook import signature
from tests.conftest import csrf_token, log_in, wait_until
from tests.ingest_helpers import csv_bytes, ingest
from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller
from tests.receiver import Receiver

EMAIL = "Erase.Me@Mail.Example.com"
PHONE = "+1 415 555 0042"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def _every_stored_value() -> list:
    """Every cell of every table, decrypting whatever decrypts."""
    vault, cells = current_vault(), []
    db.session.commit()  # the session must not hold SQLite's lock while this reads
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        try:
                            value = vault.decrypt(bytes(value))
                        except Exception:
                            value = bytes(value).hex()
                    cells.append(value)
    return cells


def _mentions_person(cells) -> list:
    return [c for c in cells if isinstance(c, str) and
            ("erase.me@" in c.lower() or "4155550042" in "".join(ch for ch in c if ch.isdigit()))]


def test_erasure_forgets_the_person_everywhere_and_tells_the_buyers(app, receiver, buyer_client,
                                                                    buyer):
    seller = verified_seller()
    # The person is in a sold lead, in an unsold lead of another batch, and in a
    # rejected row (a bad age next to their contacts).
    leads = live_leads(seller, [person(42, email=EMAIL, phone=PHONE), person(1)])
    ingest(seller, csv_bytes([person(42, email=EMAIL, phone=PHONE, age="7")]))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Rejection)) == 1
    ledger.manual_credit(buyer, 50_000, reason="wire", actor=None)
    order = place(buyer, 900, 5)
    secret = operations.set_webhook(order, receiver.url)
    jobs.fill_order(order.id)
    db.session.commit()
    sale = db.session.scalar(sa.select(Sale).where(Sale.lead_id == leads[0].id))
    assert sale is not None and _mentions_person(_every_stored_value())
    # The webhook's logged request carries the person's contacts too, until the erasure.
    assert wait_until(lambda: db.session.scalar(sa.select(DeliveryAttempt.id)))
    # Seen before the erasure: the dashboard's count is kept until a notice changes it.
    assert 'id="erasure-alert"' not in buyer_client.get("/buyer/").get_data(as_text=True)

    person_id = privacy.identify(email=EMAIL, phone="(415) 555-0042", country="US")
    done = privacy.erase(person_id, reason="GDPR request #7", actor=None)
    db.session.commit()
    assert done.leads == 1 and done.rejections == 1 and done.buyers_told == 1

    assert _mentions_person(_every_stored_value()) == []  # no trace, encrypted or not
    lead = db.session.get(Lead, leads[0].id)
    assert lead.status is LeadStatus.DELISTED and lead.erased_at is not None
    assert db.session.get(Sale, sale.id).price == 900  # sales and the ledger stay
    assert ledger.reconcile().ok

    # The buyer is told: a signed webhook without personal data, and in the UI.
    engine.deliver_sales(done.webhook_sale_ids)
    erased = [r for r in receiver.requests if b'"lead.erased"' in r["body"]]
    assert len(erased) == 1
    body = json.loads(erased[0]["body"])
    assert body["sale_id"] == sale.id and set(body) == {"event", "sale_id", "order_id",
                                                        "lead_id", "erased_at"}
    assert erased[0]["headers"]["X-Signature"] == signature(secret, erased[0]["body"])
    assert 'id="erasure-alert"' in buyer_client.get("/buyer/").get_data(as_text=True)
    token = csrf_token(buyer_client, "/buyer/erasures")
    buyer_client.post("/buyer/erasures", data={"csrf_token": token})
    assert db.session.scalar(sa.select(ErasureNotice.acknowledged_at)) is not None
    assert 'id="erasure-alert"' not in buyer_client.get("/buyer/").get_data(as_text=True)
    leads_page = buyer_client.get(f"/buyer/orders/{order.id}").get_data(as_text=True)
    assert "erased</span>" in leads_page and EMAIL.lower() not in leads_page.lower()

    # Uploads of the person are refused from now on.
    again = ingest(seller, csv_bytes([person(42, email="erase.me@mail.example.com")]),
                   allow_same_file=True)
    assert again.accepted == 0
    codes = db.session.scalars(sa.select(Rejection.code).where(Rejection.batch_id == again.id)).all()
    assert codes == ["suppressed"]


def test_suppression_delists_and_blocks_sales(app):
    seller = verified_seller()
    leads = live_leads(seller, [person(7), person(8)])
    suppressed = privacy.suppress(privacy.identify(phone="+1 415 555 0007"), reason="asked",
                                  actor=None)
    assert suppressed == 1
    buyer = funded_buyer()
    order = place(buyer, 500, 5)
    jobs.fill_order(order.id)
    db.session.commit()
    sold = db.session.scalars(sa.select(Sale.lead_id)).all()
    assert sold == [leads[1].id]
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "privacy.suppressed"))
    assert event.details["leads_delisted"] == 1 and "415" not in json.dumps(event.details)


def test_identify_needs_a_valid_contact(app):
    for kwargs, code in (({}, "contact_required"), ({"email": "nope"}, "invalid_email"),
                         ({"phone": "12"}, "invalid_phone")):
        with pytest.raises(ValidationFailed) as error:
            privacy.identify(**kwargs)
        assert error.value.code == code


def test_retention_removes_contacts_of_old_unsold_leads_only(app):
    app.config["UNSOLD_RETENTION_DAYS"] = 30
    seller = verified_seller()
    leads = live_leads(seller, [person(1), person(2)])
    buyer = funded_buyer()
    place(buyer, 500, 1)
    jobs.match_leads([leads[0].id])
    db.session.commit()
    assert privacy.purge_unsold() == 0
    assert privacy.purge_unsold(datetime.now(timezone.utc) + timedelta(days=31)) == 1
    kept, purged = db.session.get(Lead, leads[0].id), db.session.get(Lead, leads[1].id)
    vault = current_vault()
    assert vault.open_contact(kept.contact_enc)["email"] == "person1@mail.example.com"
    assert set(vault.open_contact(purged.contact_enc).values()) == {None}
    assert purged.status is LeadStatus.DELISTED


def test_admin_privacy_page_erases_and_suppresses(app, admin_client):
    seller = verified_seller()
    live_leads(seller, [person(3), person(4)])
    token = csrf_token(admin_client, "/admin/privacy")
    response = admin_client.post("/admin/privacy", data={
        "csrf_token": token, "email": "person3@mail.example.com", "reason": "ticket 12",
        "action": "erase"}, follow_redirects=True)
    assert "Erased: 1 lead(s)" in response.get_data(as_text=True)
    response = admin_client.post("/admin/privacy", data={
        "csrf_token": token, "phone": "+1 415 555 0004", "reason": "ticket 13",
        "action": "suppress"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Suppressed: 1 lead(s) delisted" in page and "privacy.erased" in page
    bad = admin_client.post("/admin/privacy", data={"csrf_token": token, "email": "x",
                                                    "reason": "r", "action": "erase"},
                            follow_redirects=True)
    assert "is not a valid email" in bad.get_data(as_text=True)


def test_seller_may_not_see_buyers_erasure_notices(app, seller_client):
    assert seller_client.get("/buyer/erasures").status_code == 403


def test_buyer_without_notices_sees_no_alert(app, client):
    buyer = funded_buyer()
    log_in(client, buyer)
    assert 'id="erasure-alert"' not in client.get("/buyer/").get_data(as_text=True)


def test_erasure_by_email_also_refuses_the_phone_their_leads_carried(app):
    seller = verified_seller()
    live_leads(seller, [person(5, email="only.email@mail.example.com", phone="+1 415 555 0005")])
    privacy.erase(privacy.identify(email="only.email@mail.example.com"), reason="request",
                  actor=None)
    db.session.commit()
    again = ingest(seller, csv_bytes([person(6, email="new.address@mail.example.com",
                                             phone="+1 415 555 0005")]))
    assert again.accepted == 0
    assert db.session.scalar(sa.select(Rejection.code).where(Rejection.batch_id == again.id)) \
        == "suppressed"
