"""Suppression, erasure and retention (SPEC §7, issue #6 item 5): after an erasure no
trace of the person's contacts is left in any table -- delivery emails kept in the
outbox, a digest's log beside other leads, a buyer's refusal quoting them, the page
address they came from, what people wrote about them -- even when it came while a
message was on its way; a message carrying them that is not sent yet never goes out;
buyers who received them are told (UI and signed webhook), and uploads of them are
refused from then on. The outbox's views of a message carrying contacts are audited."""
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

from app.errors import ValidationFailed
from app.extensions import db
from app.models import (
    AuditEvent, ConsentCertificate, DeliveryAttempt, DeliveryStatus, EmailStatus, ErasureNotice,
    Lead, LeadStatus, Notification, NotificationKind, OutgoingEmail, OutgoingEmailLead, Rejection,
    Return, ReturnStatus, Role, Sale, SpotCheckItem, TrustLevel, WebhookDelivery,
)
from app.models.types import utcnow
from app.aftersale.delivery import emailing, engine, http, settings
from app.core import events, mail, mail_jobs
from app.people import companies
from app.services import ledger, privacy, returns, spotchecks
from app.market import jobs, operations
from app.services.crypto import current_vault
from app.aftersale.delivery.webhook import signature
from tests.conftest import csrf_token, log_in, wait_until
from tests.ingest_helpers import csv_bytes, ingest
from tests.market_helpers import funded_buyer, live_leads, person, place, verified_seller
from tests.receiver import Receiver
from tests.test_companies import company, member_of
from tests.test_lead_forms import make_form, send
from tests.smtp_server import bodies

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
    """The cells that carry the person, JSON ones (a notice's data, an audit entry's
    details) as their stored text."""
    texts = [json.dumps(c, ensure_ascii=False) if isinstance(c, (dict, list)) else c
             for c in cells]
    return [c for c in texts if isinstance(c, str) and
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


def _digest_order(buyer, addresses="crm@buyer.example, sales@buyer.example"):
    order = place(buyer, 700, 5)
    settings.use_email(order, addresses=addresses, mode="digest", digest="hourly")
    db.session.commit()
    return order


def _email_deliveries(order) -> list[WebhookDelivery]:
    db.session.expire_all()
    return db.session.scalars(sa.select(WebhookDelivery).where(
        WebhookDelivery.order_id == order.id, WebhookDelivery.channel == "email")
        .order_by(WebhookDelivery.id)).all()


def _send_digest(order) -> int:
    """The order's digest as if its hour had ended."""
    for delivery in _email_deliveries(order):
        delivery.created_at -= timedelta(hours=1)
        delivery.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    return emailing.send_due()


def _audited_views() -> list[AuditEvent]:
    return db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "outbox.contacts_viewed").order_by(AuditEvent.id)).all()


def test_erasure_clears_the_delivery_emails_and_the_digest_log_that_carried_the_person(
        app, admin, admin_client):
    assert not app.config["MAIL_SERVER"]  # development: delivery emails kept in the outbox
    leads = live_leads(verified_seller(), [person(1), person(42, email=EMAIL, phone=PHONE),
                                           person(3)])
    order = _digest_order(funded_buyer())
    jobs.match_leads([lead.id for lead in leads])
    assert _send_digest(order) == 3
    copies = db.session.scalars(sa.select(OutgoingEmail).where(OutgoingEmail.kind == "delivery")
                                .order_by(OutgoingEmail.id)).all()
    assert [c.to for c in copies] == ["crm@buyer.example", "sales@buyer.example"]
    assert all(EMAIL.lower() in mail.bodies(c)[0] for c in copies)
    other = mail.store("crm@buyer.example", "New lead", "Lead 1 alone", "<p>Lead 1 alone</p>",
                       status=EmailStatus.KEPT, lead_ids=[leads[0].id])
    db.session.commit()

    done = privacy.erase(privacy.identify(email=EMAIL), reason="DSR-4", actor=None)
    db.session.commit()
    assert done.emails == 2
    assert _mentions_person(_every_stored_value()) == []  # no trace, encrypted or not
    for copy in copies:  # who, when and whether it went stay; the text goes
        db.session.refresh(copy)
        assert mail.bodies(copy) == (privacy.ERASED_TEXT, privacy.ERASED_TEXT)
        assert copy.status is EmailStatus.KEPT and copy.to and copy.subject
    assert db.session.scalars(sa.select(OutgoingEmailLead.email_id)).all() == [other.id]
    assert mail.bodies(other)[0] == "Lead 1 alone"  # a message without the person stays
    # The digest's log for the leads it carried beside the person keeps its outcome.
    deliveries = _email_deliveries(order)
    assert [d.status for d in deliveries] == [DeliveryStatus.DELIVERED] * 3
    kept = db.session.scalars(sa.select(DeliveryAttempt).order_by(DeliveryAttempt.id)).all()
    assert [a.delivery_id for a in kept] == [deliveries[0].id, deliveries[2].id]
    assert {current_vault().decrypt(a.request_enc) for a in kept} == {privacy.ERASED_TEXT}
    assert {current_vault().decrypt(a.reply_enc) for a in kept} == {emailing.KEPT}
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "privacy.erased"))
    assert event.details["emails_cleared"] == 2

    # A cleared message shows no one, so reading it is no view of contacts.
    page = admin_client.get(f"/admin/outbox/{copies[0].id}").get_data(as_text=True)
    assert privacy.ERASED_TEXT.replace("'", "&#39;") in page
    assert _audited_views() == []


def test_the_outbox_audits_reading_a_message_that_carries_contacts(app, admin, admin_client):
    leads = live_leads(verified_seller(), [person(1), person(2)])
    carrying = mail.store("crm@buyer.example", "2 new leads", "two leads", "<p>two leads</p>",
                          status=EmailStatus.KEPT, lead_ids=[leads[1].id, leads[0].id])
    plain = mail.store("buyer@example.com", "Hello", "no contacts", "<p>no contacts</p>",
                       status=EmailStatus.KEPT)
    db.session.commit()
    assert "two leads" in admin_client.get(f"/admin/outbox/{carrying.id}").get_data(as_text=True)
    assert admin_client.get(f"/admin/outbox/{carrying.id}/body.html").get_data(
        as_text=True) == "<p>two leads</p>"
    assert admin_client.get(f"/admin/outbox/{plain.id}").status_code == 200
    assert admin_client.get(f"/admin/outbox/{plain.id}/body.html").status_code == 200
    assert admin_client.get("/admin/outbox").status_code == 200  # subjects only
    lead_ids = sorted(lead.id for lead in leads)
    assert [(e.actor_id, e.subject_type, e.subject_id, e.details, e.ip)
            for e in _audited_views()] == [
        (admin.id, "outgoing_email", carrying.id, {"part": "text", "lead_ids": lead_ids},
         "127.0.0.1"),
        (admin.id, "outgoing_email", carrying.id, {"part": "html", "lead_ids": lead_ids},
         "127.0.0.1")]


def test_every_kept_copy_of_a_delivery_email_names_its_leads(app):
    """One copy per recipient, each linked to the leads it carries, whatever iterable
    the caller gives: an erasure finds every copy."""
    from flask_mailman import EmailMultiAlternatives

    assert not app.config["MAIL_SERVER"]
    leads = live_leads(verified_seller(), [person(1), person(2)])
    message = EmailMultiAlternatives("2 new leads", "two leads",
                                     to=["crm@buyer.example", "sales@buyer.example"])
    message.attach_alternative("<p>two leads</p>", "text/html")
    emailing.send(message, (lead.id for lead in leads))
    copies = db.session.scalars(sa.select(OutgoingEmail.id).where(OutgoingEmail.kind == "delivery")
                                .order_by(OutgoingEmail.id)).all()
    assert len(copies) == 2
    linked = db.session.execute(sa.select(OutgoingEmailLead.email_id, OutgoingEmailLead.lead_id)
                                .order_by(OutgoingEmailLead.email_id, OutgoingEmailLead.lead_id))
    assert linked.all() == [(copy, lead.id) for copy in copies for lead in leads]


def test_a_message_not_sent_yet_never_takes_an_erased_person_out(app, smtp_server):
    leads = live_leads(verified_seller(), [person(1), person(42, email=EMAIL, phone=PHONE)])
    order = _digest_order(funded_buyer())
    jobs.match_leads([lead.id for lead in leads])
    queued = mail.store("desk@buyer.example", "New lead", f"Reach {EMAIL}", f"<p>{EMAIL}</p>",
                        status=EmailStatus.PENDING, lead_ids=[leads[1].id])
    other = mail.store("desk@buyer.example", "Hello", "no one", "<p>no one</p>",
                       status=EmailStatus.PENDING)
    db.session.commit()

    privacy.erase(privacy.identify(phone=PHONE), reason="DSR-5", actor=None)
    db.session.commit()
    assert mail_jobs.send_due() == 1  # the other message only
    assert [m["Subject"] for m in smtp_server.to("desk@buyer.example")] == ["Hello"]
    db.session.refresh(queued)
    assert queued.status is EmailStatus.FAILED and "erased" in queued.last_error
    assert mail_jobs.send(queued.id) is False  # and never later
    assert db.session.get(OutgoingEmail, other.id).status is EmailStatus.SENT

    # The digest that was to carry the person goes without them.
    _send_digest(order)
    [digest] = smtp_server.to("crm@buyer.example, sales@buyer.example")
    text, html = bodies(digest)
    assert person(1)["email"] in text and "erase.me" not in (text + html).lower()
    assert sorted(d.status.value for d in _email_deliveries(order)) == ["delivered", "failed"]
    assert _mentions_person(_every_stored_value()) == []


def test_an_erasure_while_the_message_is_on_its_way_leaves_no_text_logged(
        app, smtp_server, monkeypatch):
    leads = live_leads(verified_seller(), [person(1), person(42, email=EMAIL, phone=PHONE)])
    order = _digest_order(funded_buyer())
    jobs.match_leads([lead.id for lead in leads])
    transmit = mail_jobs.transmit

    def erased_meanwhile(message):  # the admin erases the person during the conversation
        privacy.erase(privacy.identify(email=EMAIL), reason="DSR-6", actor=None)
        db.session.commit()
        return transmit(message)
    monkeypatch.setattr(mail_jobs, "transmit", erased_meanwhile)
    _send_digest(order)
    [digest] = smtp_server.to("crm@buyer.example, sales@buyer.example")
    assert EMAIL.lower() in bodies(digest)[0]  # it had left: the buyer is told of the erasure
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ErasureNotice)) == 1
    logged = db.session.scalars(sa.select(DeliveryAttempt)).all()
    assert len(logged) == 2 and {a.status_code for a in logged} == {250}
    assert {current_vault().decrypt(a.request_enc) for a in logged} == {privacy.ERASED_TEXT}
    assert _mentions_person(_every_stored_value()) == []


def test_an_erasure_before_the_outbox_keeps_the_message_keeps_no_contacts(app, monkeypatch):
    assert not app.config["MAIL_SERVER"]
    leads = live_leads(verified_seller(), [person(1), person(42, email=EMAIL, phone=PHONE)])
    order = _digest_order(funded_buyer())
    jobs.match_leads([lead.id for lead in leads])
    shown = emailing.shown

    def erased_meanwhile(message):  # the admin erases the person as the message is kept
        privacy.erase(privacy.identify(email=EMAIL), reason="DSR-7", actor=None)
        db.session.commit()
        return shown(message)
    monkeypatch.setattr(emailing, "shown", erased_meanwhile)
    _send_digest(order)
    copies = db.session.scalars(sa.select(OutgoingEmail).where(
        OutgoingEmail.kind == "delivery")).all()
    assert len(copies) == 2
    assert {mail.bodies(copy) for copy in copies} == {(privacy.ERASED_TEXT, privacy.ERASED_TEXT)}
    assert db.session.scalars(sa.select(OutgoingEmailLead.email_id)).all() == []
    assert _mentions_person(_every_stored_value()) == []


def test_a_buyers_refusal_that_names_the_person_is_forgotten_with_them(app, receiver):
    """The buyer's CRM answers "Duplicate: <their email>": the delivery's last error, the
    notice that it was rejected and that notice's email quote it until the erasure. The
    notice's email is found by the lead it is about, not by its wording."""
    assert not app.config["MAIL_SERVER"]  # the notice's email is kept in the outbox
    leads = live_leads(verified_seller(), [person(42, email=EMAIL, phone=PHONE)])
    order = place(funded_buyer(), 900, 5)
    operations.set_webhook(order, receiver.url)
    settings.use_http(order, body_format="json", mapping="Email = email", headers="",
                      rule=http.ReplyRule("json", "$.status", "ok", "$.error"))
    db.session.commit()
    receiver.body = json.dumps({"status": "rejected",
                                "error": f"Duplicate: {EMAIL.lower()} exists"}).encode()
    with events.muted():
        jobs.match_leads([lead.id for lead in leads])
    engine.deliver_sales(db.session.scalars(sa.select(Sale.id).order_by(Sale.id)).all())
    db.session.commit()
    said = f"Duplicate: {EMAIL.lower()} exists"
    theirs = db.session.scalar(sa.select(WebhookDelivery))
    assert theirs.status is DeliveryStatus.REJECTED and theirs.last_error == said
    notice = db.session.scalar(sa.select(Notification).where(
        Notification.kind == NotificationKind.DELIVERY_FAILING))
    assert said in notice.body
    told = db.session.scalar(sa.select(OutgoingEmail).where(
        OutgoingEmail.kind == NotificationKind.DELIVERY_FAILING.value))
    assert said in mail.bodies(told)[0]
    assert db.session.scalars(sa.select(OutgoingEmailLead.lead_id).where(
        OutgoingEmailLead.email_id == told.id)).all() == [leads[0].id]

    privacy.erase(privacy.identify(email=EMAIL), reason="DSR-8", actor=None)
    db.session.commit()
    assert _mentions_person(_every_stored_value()) == []
    db.session.expire_all()
    assert theirs.status is DeliveryStatus.REJECTED and theirs.last_refused  # still a refusal
    assert theirs.last_error == privacy.ERASED_TEXT
    assert f"delivery of sale #{theirs.sale_id}: {privacy.ERASED_TEXT}." in notice.body
    assert notice.data["error"] == privacy.ERASED_TEXT
    assert mail.bodies(told) == (privacy.ERASED_TEXT, privacy.ERASED_TEXT)
    assert told.status is EmailStatus.KEPT and told.subject  # who, when and whether stay


def test_the_page_address_that_carried_the_person_loses_its_query(app, client):
    """A form lead's page address, as the visitor's browser gave it, may carry them."""
    seller = verified_seller()
    page = "https://blog.example.com/solar?utm_source=x&email=erase.me%40mail.example.com"
    assert send(client, make_form(seller), email=EMAIL, phone=PHONE, page_url=page,
                referrer=page).status_code == 200
    lead = db.session.scalar(sa.select(Lead))
    assert lead.source_url == page  # and the certificate's page and referrer

    privacy.erase(privacy.identify(email=EMAIL), reason="DSR-9", actor=None)
    db.session.commit()
    cells = _every_stored_value()
    assert _mentions_person(cells + [unquote(c) for c in cells if isinstance(c, str)]) == []
    db.session.expire_all()
    certificate = db.session.scalar(sa.select(ConsentCertificate))
    assert lead.source_url == certificate.page_url == certificate.referrer \
        == "https://blog.example.com/solar"


def test_what_people_wrote_about_the_person_goes_and_the_decisions_stay(app, admin):
    seller = company(Role.SELLER, "Lead Farm", trust_level=TrustLevel.VERIFIED)
    sam = member_of(seller, "sam@leadfarm.example")
    [lead] = live_leads(seller, [person(42, email=EMAIL, phone=PHONE)])
    buyer = funded_buyer()
    place(buyer, 900, 1)
    with events.muted():
        jobs.match_leads([lead.id])
    sale = db.session.scalar(sa.select(Sale))
    item = returns.open_return(buyer, sale.id, "wrong_number", note=f"{PHONE} is someone else")
    returns.seller_respond(seller, item.id, False, note=f"{EMAIL} confirmed by email")
    returns.admin_decide(admin, item.id, False, note=f"Checked with {EMAIL}")
    check = spotchecks.start_check(lead.batch, admin, seed=1)
    [sampled] = db.session.scalars(sa.select(SpotCheckItem)).all()
    spotchecks.record_verdict(check, sampled.id, "genuine", admin, note=f"Spoke to {PHONE}")
    db.session.commit()

    # Both sides were told the admin's decision, quoting it, in the app and by email;
    # the seller's member too, who has left the company since.
    companies.remove(seller, sam.id, actor=seller)
    db.session.commit()
    told = db.session.scalars(sa.select(Notification).where(
        Notification.kind == NotificationKind.RETURN_DECIDED)).all()
    assert len(told) == 3 and all(EMAIL in notice.body for notice in told)
    assert sam.id in {notice.user_id for notice in told}
    assert _mentions_person(_every_stored_value())

    privacy.erase(privacy.identify(email=EMAIL), reason="DSR-10", actor=None)
    db.session.commit()
    assert _mentions_person(_every_stored_value()) == []  # nor in notices, emails, audit
    db.session.expire_all()
    assert {notice.body for notice in told} == {
        f"An administrator decided it: {privacy.ERASED_TEXT}"}
    assert [mail.bodies(email) for email in db.session.scalars(sa.select(OutgoingEmail).where(
        OutgoingEmail.kind == NotificationKind.RETURN_DECIDED.value))] == \
        [(privacy.ERASED_TEXT, privacy.ERASED_TEXT)] * 3
    decided = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "return.decided"))
    assert decided.details["note_chars"] == len(f"Checked with {EMAIL}")
    item, sampled = db.session.get(Return, item.id), db.session.get(SpotCheckItem, sampled.id)
    assert (item.note, item.seller_note, item.decision_note, sampled.note) == \
        (privacy.ERASED_TEXT,) * 4
    assert item.status is ReturnStatus.REJECTED and item.decided_by == "admin"
    assert sampled.verdict.value == "genuine"


def test_a_failed_spot_checks_notice_forgets_the_note_on_the_person(app, admin):
    """The seller is told which sampled leads failed, each with the admin's note: the
    note on the person goes from the notice, its email and the audit log; the others stay."""
    seller = verified_seller()
    leads = live_leads(seller, [person(42, email=EMAIL, phone=PHONE), person(1)])
    check = spotchecks.start_check(leads[0].batch, admin, seed=1)
    items = {item.lead_id: item for item in db.session.scalars(sa.select(SpotCheckItem))}
    assert set(items) == {lead.id for lead in leads}  # a lot this small is checked whole
    spotchecks.record_verdict(check, items[leads[0].id].id, "fake", admin,
                              note=f"Nobody at {PHONE}")
    spotchecks.record_verdict(check, items[leads[1].id].id, "no_consent", admin,
                              note="Says she never asked")
    assert spotchecks.decide(check, admin).outcome == "fail"
    db.session.commit()
    notice = db.session.scalar(sa.select(Notification).where(
        Notification.kind == NotificationKind.SPOT_CHECK_DECIDED))
    assert any(PHONE in line for line in notice.data["items"])
    assert _mentions_person(_every_stored_value())

    privacy.erase(privacy.identify(phone=PHONE), reason="DSR-11", actor=None)
    db.session.commit()
    assert _mentions_person(_every_stored_value()) == []
    db.session.expire_all()
    assert notice.data["items"] == [
        f"Lead #{leads[0].id} (row {leads[0].row_number}): fake ({privacy.ERASED_TEXT})",
        f"Lead #{leads[1].id} (row {leads[1].row_number}): no consent (Says she never asked)"]
    assert notice.data["outcome"] == "fail" and notice.title.endswith("failed its spot-check")
    [told] = db.session.scalars(sa.select(OutgoingEmail).where(
        OutgoingEmail.kind == NotificationKind.SPOT_CHECK_DECIDED.value)).all()
    assert mail.bodies(told) == (privacy.ERASED_TEXT, privacy.ERASED_TEXT)
