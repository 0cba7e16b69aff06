"""Notifications (SPEC §13): each kind raised by the operation where it happens, stored
with it and emailed after commit to a real SMTP server on loopback (aiosmtpd); no
contact data in either; the list, unread count, mark read, settings and the API."""
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from babel.dates import format_date, format_time

from app.core import mail_jobs
from app.extensions import db
from app.market import jobs, operations
from app.models import (
    AccountKind, LinkPurpose, Notification, NotificationKind, OutgoingEmail, Role, Sale,
    SpotCheckItem, TrustLevel, Verdict,
)
from app.people import account_links, companies, notifications
from app.aftersale.delivery import engine
from app.services import ledger, payments, privacy, returns, spotchecks
from tests.conftest import csrf_token, log_in, make_user
from tests.ingest_helpers import csv_bytes, ingest
from tests.query_count import counted
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller
from tests.receiver import Receiver
from tests.smtp_server import bodies

Kind = NotificationKind


def _notices(user, kind: Kind | None = None) -> list[Notification]:
    db.session.expire_all()
    query = sa.select(Notification).where(Notification.user_id == user.id)
    if kind is not None:
        query = query.where(Notification.kind == kind)
    return list(db.session.scalars(query.order_by(Notification.id)))


def _email_to(smtp_server, user, count: int = 1):
    """The one email `user` received (after waiting for `count` in all to arrive)."""
    smtp_server.wait_for(count)
    [message] = smtp_server.to(user.email)
    return message


def _no_contacts(*texts: str, people=range(100)) -> None:
    """No invented person's email or phone in any of the texts."""
    for text in texts:
        lowered = text.lower()
        for i in people:
            assert f"person{i}@mail.example.com" not in lowered
            assert f"555 {i:04d}" not in text and f"555{i:04d}" not in text


def _market(count: int = 10, price: int = 1000, quantity: int | None = None, **order_kwargs):
    seller = verified_seller()
    buyer = funded_buyer(100_000)
    live_leads(seller, [person(i) for i in range(count)])
    order = place(buyer, price, quantity or count, **order_kwargs)
    jobs.fill_order(order.id)
    db.session.commit()
    return seller, buyer, order, sales_of(order)


# One test per kind ----------------------------------------------------------------

def test_batch_processed_tells_the_seller_the_counts(app, smtp_server):
    seller = verified_seller()
    rows = [person(i) for i in range(5)] + [person(7, email="", phone="")]
    batch = ingest(seller, csv_bytes(rows))
    [notice] = _notices(seller, Kind.BATCH_PROCESSED)
    assert notice.title == f"Batch #{batch.id} processed: 5 accepted, 1 rejected"
    assert notice.data == {"batch_id": batch.id, "status": "live", "rows_total": 6,
                           "accepted": 5, "rejected": 1, "items": []}
    assert "on sale" in notice.body and notice.link == f"/seller/batches/{batch.id}"
    message = _email_to(smtp_server, seller)
    assert message["Subject"] == notice.title
    text, html = bodies(message)
    assert "6 rows, 5 accepted, 1 rejected" in text
    assert f"http://127.0.0.1:5000/seller/batches/{batch.id}" in text and "5 accepted" in html
    _no_contacts(text, html, notice.body)


def test_a_batch_that_could_not_be_processed_says_why(app, smtp_server):
    import io

    from app.core import events
    from app.services.ingest import pipeline

    seller = verified_seller()
    token = pipeline.stage_upload(seller, io.BytesIO(csv_bytes([person(1)])))
    with events.muted():
        batch = pipeline.create_batch(seller, token, "gone.csv",
                                      pipeline.check_terms("US", 0, 1))
        db.session.commit()
    pipeline.upload_path(batch).unlink()
    pipeline.process_batch(batch.id)
    [notice] = _notices(seller, Kind.BATCH_PROCESSED)
    assert notice.title == f"Batch #{batch.id} could not be processed"
    assert "no longer on the server" in notice.body and notice.data["status"] == "failed"
    assert _email_to(smtp_server, seller)["Subject"] == notice.title


def test_a_held_batch_says_it_waits_for_a_spot_check(app, smtp_server):
    seller = make_user(Role.SELLER)  # new: batches wait
    ingest(seller, csv_bytes([person(i) for i in range(3)]))
    [notice] = _notices(seller, Kind.BATCH_PROCESSED)
    assert "wait for an admin's spot-check" in notice.body
    assert "spot-check" in bodies(_email_to(smtp_server, seller))[0]


def test_failed_spot_check_lists_the_failing_leads_and_the_note_and_refunds_buyers(
        app, admin, smtp_server):
    seller, buyer, order, sales = _market(count=20, price=500, quantity=5)
    batch_id = db.session.get(Sale, sales[0].id).lead.batch_id
    check = spotchecks.start_check(db.session.get(type(sales[0].lead.batch), batch_id), admin)
    db.session.commit()
    first = db.session.scalars(sa.select(SpotCheckItem).where(SpotCheckItem.check_id == check.id)
                               .order_by(SpotCheckItem.position)).first()
    spotchecks.record_verdict(check, first.id, "fake", admin)
    smtp_server.clear()
    spotchecks.decide(check, admin, note="Numbers belong to nobody")
    db.session.commit()

    [notice] = _notices(seller, Kind.SPOT_CHECK_DECIDED)
    assert notice.title == f"Batch #{batch_id} failed its spot-check"
    assert "The admin's note: Numbers belong to nobody" in notice.body
    assert "5 sales of it returned and refunded" in notice.body
    assert notice.data["items"] == [f"Lead #{first.lead_id} (row {first.lead.row_number}): fake"]
    assert notice.data["failing_lead_ids"] == [first.lead_id]
    text, html = bodies(_email_to(smtp_server, seller, count=2))
    assert "Numbers belong to nobody" in text and f"Lead #{first.lead_id}" in html
    # Each buyer hears once of all its refunds, not once per sale.
    [refund] = _notices(buyer, Kind.RETURN_DECIDED)
    assert refund.title == "5 leads refunded: $25.00 back on your balance"
    assert len(refund.data["items"]) == 5
    buyer_text, buyer_html = bodies(_email_to(smtp_server, buyer, count=2))
    assert "failed its authenticity spot-check" in buyer_text
    _no_contacts(text, html, buyer_text, buyer_html, notice.body, refund.body)


def test_passed_spot_check_tells_the_seller_their_leads_are_on_sale(app, admin, smtp_server):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.NEW)
    batch = ingest(seller, csv_bytes([person(i) for i in range(3)]))
    check = spotchecks.start_check(batch, admin)
    db.session.commit()
    for item in check.items:
        spotchecks.record_verdict(check, item.id, Verdict.GENUINE.value, admin)
    smtp_server.clear()
    spotchecks.decide(check, admin)
    db.session.commit()
    [notice] = _notices(seller, Kind.SPOT_CHECK_DECIDED)
    assert notice.title == f"Batch #{batch.id} passed its spot-check"
    assert "on sale now" in notice.body and notice.data["items"] == []
    assert _email_to(smtp_server, seller)["Subject"] == notice.title


def _written(moment, zone: str, locale: str) -> str:
    """A moment as the reader's locale writes a date and a time: "Dec 9, 2026, 8:42 AM"
    (en_US), "9 дек. 2026 г., 08:42" (ru_RU)."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{format_date(local, 'medium', locale=locale)}, {format_time(local, 'short', locale=locale)}"


def test_a_return_to_answer_tells_the_seller_the_time_left(app, smtp_server):
    seller, buyer, order, sales = _market()
    seller.timezone = "Asia/Tokyo"
    smtp_server.clear()
    item = returns.open_return(buyer, sales[0].id, "wrong_number",
                               note="person0@mail.example.com never answers")
    db.session.commit()
    [notice] = _notices(seller, Kind.RETURN_TO_ANSWER)
    assert notice.title == f"Return of sale #{sales[0].id} to answer within 3 days"
    # On the seller's own clock, as every page shows them times.
    assert f"(by {_written(item.seller_deadline, 'Asia/Tokyo', 'en_US')} JST)" in notice.body
    assert "the return is accepted and the sale reversed" in notice.body
    assert notice.data["seller_deadline"] == item.seller_deadline.isoformat()
    text, html = bodies(_email_to(smtp_server, seller))
    assert "within 3 days" in text and "Answer the return" in html
    _no_contacts(text, html, notice.body)  # the buyer's note is not repeated
    client = app.test_client()
    log_in(client, seller)
    assert "Time left now: 2 days 23 hours" in client.get("/notifications/").get_data(as_text=True)


def test_each_person_of_a_company_reads_a_deadline_on_their_own_clock(app, smtp_server):
    seller, buyer, order, sales = _market()
    seller.timezone = "Europe/Madrid"
    companies.name_company(seller, "Two Zones S.L.")
    invitee = companies.invite(seller, "tokyo@example.com", actor=seller)
    member = companies.accept(account_links.issue(invitee, LinkPurpose.INVITATION),
                              "a member's own passphrase")
    member.timezone, member.locale = "Asia/Tokyo", "ru_RU"
    db.session.commit()
    smtp_server.clear()
    item = returns.open_return(buyer, sales[0].id, "wrong_number")
    db.session.commit()
    deadline = item.seller_deadline
    for reader, zone, abbreviation, locale in ((seller, "Europe/Madrid", "CET", "en_US"),
                                               (member, "Asia/Tokyo", "JST", "ru_RU")):
        [notice] = _notices(reader, Kind.RETURN_TO_ANSWER)
        there = f"{_written(deadline, zone, locale)} {abbreviation}"
        assert f"(by {there})" in notice.body and "UTC" not in notice.body
        smtp_server.wait_for(2)
        [message] = [m for m in smtp_server.to(reader.email) if m["Subject"] == notice.title]
        text, html = bodies(message)
        assert there in text and there in html


def test_time_left_reads_as_a_person_would_say_it():
    assert notifications.time_left(timedelta(days=2, hours=23, minutes=59)) == "2 days 23 hours"
    assert notifications.time_left(timedelta(hours=5, minutes=1)) == "5 hours 1 minute"
    assert notifications.time_left(timedelta(minutes=12)) == "12 minutes"
    assert notifications.time_left(timedelta(seconds=-5)) == "less than a minute"


def test_a_decided_return_tells_the_buyer_and_the_seller_unless_they_decided(
        app, admin, smtp_server):
    seller, buyer, order, sales = _market()
    accepted = returns.open_return(buyer, sales[0].id, "wrong_number")
    contested = returns.open_return(buyer, sales[1].id, "fake")
    db.session.commit()
    smtp_server.clear()
    returns.seller_respond(seller, accepted.id, accept=True)
    db.session.commit()
    [notice] = _notices(buyer, Kind.RETURN_DECIDED)
    assert notice.title == f"Return of sale #{sales[0].id} accepted: $10.00 refunded"
    assert notice.body == "The seller accepted it." and notice.data["refund"] == 1000
    assert _email_to(smtp_server, buyer)["Subject"] == notice.title
    assert _notices(seller, Kind.RETURN_DECIDED) == []  # they decided it themselves

    returns.seller_respond(seller, contested.id, accept=False, note="They agreed on the phone")
    db.session.commit()
    [waiting] = _notices(admin, Kind.RETURN_CONTESTED)  # every admin may decide it
    assert waiting.title == f"Return of sale #{sales[1].id} contested: it waits for your decision"
    assert "“Fake person”" in waiting.body and waiting.link == "/admin/returns"
    assert _email_to(smtp_server, admin, count=2)["Subject"] == waiting.title
    returns.admin_decide(admin, contested.id, False, note="The recording shows consent")
    db.session.commit()
    assert _notices(buyer, Kind.RETURN_DECIDED)[-1].title == \
        f"Return of sale #{sales[1].id} rejected"
    [seller_notice] = _notices(seller, Kind.RETURN_DECIDED)
    assert seller_notice.title == f"Return of sale #{sales[1].id} rejected: the sale stands"
    assert "An administrator decided it: The recording shows consent" in seller_notice.body
    smtp_server.wait_for(4)
    assert [m["Subject"] for m in smtp_server.to(seller.email)] == [seller_notice.title]


def test_a_return_answered_no_longer_shows_the_time_to_answer(app, admin, smtp_server):
    """Once the seller answered (or the return was decided), the notice that asked
    for an answer says how it stands, not a deadline that no longer applies."""
    seller, buyer, order, sales = _market()
    contested = returns.open_return(buyer, sales[0].id, "fake")
    accepted = returns.open_return(buyer, sales[1].id, "wrong_number")
    db.session.commit()
    client = app.test_client()
    log_in(client, seller)
    assert client.get("/notifications/").get_data(as_text=True).count("Time left now") == 2
    returns.seller_respond(seller, contested.id, accept=False, note="They agreed on the phone")
    returns.seller_respond(seller, accepted.id, accept=True)
    db.session.commit()
    page = client.get("/notifications/").get_data(as_text=True)
    assert "Time left now" not in page and "within 3 days" not in page
    assert f"Return of sale #{sales[0].id}: contested, an administrator decides" in page
    assert f"Return of sale #{sales[1].id}: accepted, the sale is reversed" in page
    returns.admin_decide(admin, contested.id, False, note="The recording shows consent")
    db.session.commit()
    [first, _] = _notices(seller, Kind.RETURN_TO_ANSWER)
    assert first.title == f"Return of sale #{sales[0].id}: rejected, the sale stands"
    assert "seller_deadline" not in first.data and "Accept or contest" not in first.body
    assert "“Fake person”" in first.body  # what was returned, and why, stays


def test_a_return_to_answer_pulled_with_its_batch_drops_its_deadline(app, smtp_server):
    seller, buyer, order, sales = _market()
    returns.open_return(buyer, sales[0].id, "fake")
    db.session.commit()
    returns.return_batch_sales(sales[0].lead.batch_id, actor=None)  # a failed spot-check
    db.session.commit()
    [notice] = _notices(seller, Kind.RETURN_TO_ANSWER)
    assert notice.title == f"Return of sale #{sales[0].id}: accepted, the sale is reversed"
    assert "seller_deadline" not in notice.data


def test_a_filled_order_tells_the_buyer(app, smtp_server):
    seller, buyer, order, sales = _market(count=6, price=700, quantity=4)
    assert len(sales) == 4
    [notice] = _notices(buyer, Kind.ORDER_FILLED)
    assert notice.title == f"Order #{order.id} filled: 4 leads"
    assert "4 of 4 leads delivered for $28.00" in notice.body
    assert notice.data["reason"] == "filled" and notice.link == f"/buyer/orders/{order.id}"
    message = _email_to(smtp_server, buyer)
    assert message["Subject"] == notice.title
    _no_contacts(*bodies(message))


def test_an_order_filled_by_a_group_of_fills_tells_the_buyer(app, smtp_server):
    """A batch going live is matched in groups (app.market.grouped), which close the
    orders they fill in the same transaction."""
    buyer, other = funded_buyer(100_000), funded_buyer(100_000)
    order = place(buyer, 800, 3)
    open_order = place(other, 500, 50)
    leads = live_leads(verified_seller(), [person(i) for i in range(12)])
    jobs.match_batch(leads[0].batch_id)
    db.session.commit()
    assert len(sales_of(order)) == 3 and len(sales_of(open_order)) == 9
    [notice] = _notices(buyer, Kind.ORDER_FILLED)
    assert notice.title == f"Order #{order.id} filled: 3 leads"
    assert _notices(other, Kind.ORDER_FILLED) == []
    assert _email_to(smtp_server, buyer)["Subject"] == notice.title


def test_an_order_that_reaches_its_budget_says_so(app, smtp_server):
    seller, buyer, order, sales = _market(count=6, price=700, quantity=5, budget=2100)
    assert len(sales) == 3
    [notice] = _notices(buyer, Kind.ORDER_FILLED)
    assert notice.title == f"Order #{order.id} reached its budget: 3 of 5 leads"
    assert notice.data["reason"] == "budget"
    assert "budget" in bodies(_email_to(smtp_server, buyer))[0]


def test_an_order_that_uses_up_a_cap_of_its_period_says_until_when(app, smtp_server):
    seller, buyer, order, sales = _market(count=6, price=700, quantity=5, caps={"day": 2})
    assert len(sales) == 2
    [notice] = _notices(buyer, Kind.ORDER_FILLED)
    assert notice.title == f"Order #{order.id} reached its daily cap: 2 of 2 leads today"
    assert "again when the next day starts (UTC time)" in notice.body
    assert notice.data["reason"] == "cap" and notice.data["period"] == "day"
    jobs.fill_order(order.id)  # matched again in the same day: told once
    db.session.commit()
    assert len(_notices(buyer, Kind.ORDER_FILLED)) == 1
    assert _email_to(smtp_server, buyer)["Subject"] == notice.title


def test_a_spend_cap_used_up_is_told_too(app, smtp_server):
    seller, buyer, order, sales = _market(count=6, price=700, quantity=5,
                                          spend_caps={"week": 1500})
    assert len(sales) == 2
    [notice] = _notices(buyer, Kind.ORDER_FILLED)
    # $14.00 spent: the next $7.00 lead would pass $15.00 -- said so, not "$15.00 of spend"
    assert notice.title == (f"Order #{order.id} reached its weekly spend cap: "
                            "$14.00 of $15.00 spent this week")
    assert "the next lead would exceed it" in notice.body
    # Filed as a cap, not as "Order filled", in the email's kind (the outbox lists it)
    [email] = db.session.scalars(sa.select(OutgoingEmail).where(
        OutgoingEmail.user_id == buyer.id))
    assert email.kind == "order_capped"


def test_balance_below_the_buyers_threshold_tells_them_once(app, smtp_server):
    buyer = funded_buyer(100_000)
    notifications.set_low_balance_threshold(buyer, 50_000)
    db.session.commit()
    place(buyer, 1000, 40)  # holds 40,000: 60,000 left, above the threshold
    assert _notices(buyer, Kind.LOW_BALANCE) == []
    place(buyer, 1000, 20)  # 40,000 left: below
    place(buyer, 1000, 10)  # still below: no second notice for the same fall
    [notice] = _notices(buyer, Kind.LOW_BALANCE)
    assert notice.title == "Your available balance is $400.00, below $500.00"
    assert notice.data == {"available": 40_000, "threshold": 50_000, "items": []}
    assert mail_jobs.send_due() == 1  # `place` mutes events: the test runs the job
    message = _email_to(smtp_server, buyer)
    assert message["Subject"] == notice.title and "Add funds" in bodies(message)[1]


def test_a_threshold_set_above_the_balance_tells_at_once_and_once(app, smtp_server):
    """Setting the threshold is a crossing too: a buyer who sets it above what they
    have hears of it on saving, not never (the balance will not fall past it again)."""
    buyer = funded_buyer(47_700)
    client = app.test_client()
    log_in(client, buyer)
    page = client.get("/notifications/settings").get_data(as_text=True)
    assert "at once if it already is" in page  # when it fires, said where it is set
    data = {"csrf_token": csrf_token(client, "/notifications/settings"),
            "threshold": "1000.00"}
    for kind in notifications.kinds_for(Role.BUYER):
        data[f"{kind.value}_in_app"] = "y"
    assert client.post("/notifications/settings", data=data).status_code == 302
    [notice] = _notices(buyer, Kind.LOW_BALANCE)
    assert notice.title == "Your available balance is $477.00, below $1,000.00"
    client.post("/notifications/settings", data=data)  # saved again: nothing new
    notifications.mark_all_read(buyer)
    db.session.commit()
    place(buyer, 500, 1)  # lower still, but it was below already: no second notice
    data["threshold"] = "100.00"  # now above the threshold: quiet
    client.post("/notifications/settings", data=data)
    assert len(_notices(buyer, Kind.LOW_BALANCE)) == 1


def test_webhook_deliveries_failing_after_every_retry_tell_the_buyer_once(app, smtp_server):
    down = Receiver(status=503)
    try:
        seller = verified_seller()
        buyer = funded_buyer()
        live_leads(seller, [person(i) for i in range(2)])
        order = place(buyer, 700, 2)
        operations.set_webhook(order, down.url)
        db.session.commit()
        jobs.fill_order(order.id)
        db.session.commit()  # each sale's delivery is tried once, and fails
        from app.models import WebhookDelivery

        deliveries = db.session.scalars(sa.select(WebhookDelivery.id)).all()
        assert len(deliveries) == 2
        smtp_server.clear()
        for delivery_id in deliveries:
            for _ in range(len(engine.RETRY_DELAYS)):
                engine.deliver(delivery_id)
        [notice] = _notices(buyer, Kind.DELIVERY_FAILING)  # one per order while unread
        assert notice.title == f"Leads of order #{order.id} could not be delivered to your system"
        assert "HTTP 503" in notice.body and notice.subject == f"order:{order.id}"
        message = _email_to(smtp_server, buyer)
        assert message["Subject"] == notice.title
        _no_contacts(*bodies(message))
    finally:
        down.close()


def test_a_payout_sent_tells_the_seller(stripe_app, seller, smtp_server):
    seller.stripe_account_id, seller.payouts_enabled = "acct_sim_n", True
    db.session.commit()
    buyer = funded_buyer()
    ledger.post("test_sale", [
        ledger.Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), -5000),
        ledger.Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), 5000)])
    db.session.commit()
    [payout] = payments.run_payouts(date.today())
    [notice] = _notices(seller, Kind.PAYOUT_SENT)
    assert notice.title == "Payout of $50.00 sent"
    assert f"Payout #{payout.id}" in notice.body and "acct_sim_n" in notice.body
    assert _email_to(smtp_server, seller)["Subject"] == notice.title


def test_an_erased_person_tells_the_buyers_who_hold_them_without_their_contacts(
        app, smtp_server):
    seller = verified_seller()
    live_leads(seller, [person(42), person(1)])
    holder, other = funded_buyer(), funded_buyer()
    order = place(holder, 900, 2)
    jobs.fill_order(order.id)
    db.session.commit()
    sale = min(sales_of(order), key=lambda s: s.lead.row_number)  # person 42, the first row
    smtp_server.clear()
    privacy.erase(privacy.identify(email="person42@mail.example.com"), reason="GDPR",
                  actor=None)
    db.session.commit()
    [notice] = _notices(holder, Kind.PERSON_ERASED)
    assert notice.data["items"] == [f"Sale #{sale.id} of order #{order.id}"]
    assert notice.link == "/buyer/erasures"
    assert _notices(other, Kind.PERSON_ERASED) == []
    text, html = bodies(_email_to(smtp_server, holder))
    assert f"Sale #{sale.id} of order #{order.id}" in text
    _no_contacts(text, html, notice.body, notice.title, people=[42])


# Choices ----------------------------------------------------------------------------

def test_each_kind_is_switchable_in_the_app_and_by_email(app, smtp_server):
    seller = verified_seller()
    notifications.choose(seller, {Kind.BATCH_PROCESSED: (True, False)})
    db.session.commit()
    ingest(seller, csv_bytes([person(1)]))
    assert len(_notices(seller, Kind.BATCH_PROCESSED)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutgoingEmail)) == 0

    notifications.choose(seller, {Kind.BATCH_PROCESSED: (False, True)})
    db.session.commit()
    ingest(seller, csv_bytes([person(2)]))
    assert len(_notices(seller, Kind.BATCH_PROCESSED)) == 1  # no new one in the app
    assert _email_to(smtp_server, seller)["Subject"].startswith("Batch #")

    notifications.choose(seller, {Kind.BATCH_PROCESSED: (False, False)})
    db.session.commit()
    ingest(seller, csv_bytes([person(3)]))
    assert len(_notices(seller, Kind.BATCH_PROCESSED)) == 1
    assert len(smtp_server.messages) == 1


def test_the_settings_page_saves_choices_and_the_threshold(app, buyer_client, buyer):
    page = buyer_client.get("/notifications/settings").get_data(as_text=True)
    assert "Balance low" in page and "Order filled" in page
    assert "Batch processed" not in page  # a seller's kind
    data = {"csrf_token": csrf_token(buyer_client, "/notifications/settings"),
            "threshold": "250.50"}
    for kind in notifications.kinds_for(Role.BUYER):
        data[f"{kind.value}_in_app"] = "y"
        if kind is not Kind.ORDER_FILLED:
            data[f"{kind.value}_email"] = "y"
    response = buyer_client.post("/notifications/settings", data=data)
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(type(buyer), buyer.id).low_balance_threshold == 25_050
    from app.people.notification_queries import choices_for

    choices = choices_for(db.session.get(type(buyer), buyer.id))
    assert choices[Kind.ORDER_FILLED] == (True, False)
    assert choices[Kind.LOW_BALANCE] == (True, True)
    page = buyer_client.get("/notifications/settings").get_data(as_text=True)
    assert 'value="250.50"' in page
    data["threshold"] = "a lot"
    assert "is not an amount" in buyer_client.post("/notifications/settings", data=data) \
        .get_data(as_text=True)


# The list, the unread count, marking read, the API ------------------------------------

def _notice(user, title: str) -> Notification:
    notice = notifications.notify(user.id, Kind.RETURN_DECIDED, title,
                                  link=notifications.path("buyer.return_list"))
    db.session.commit()
    return notice


@pytest.mark.parametrize("role", ["seller", "buyer", "admin"])
def test_every_role_sees_the_list_and_the_unread_count(app, client, role):
    user = make_user(Role(role))
    log_in(client, user)
    page = client.get("/notifications/").get_data(as_text=True)
    assert 'id="nav-notifications"' in page and 'id="unread-count"' not in page
    db.session.add(Notification(user_id=user.id, kind=Kind.RETURN_DECIDED, title="Hello there"))
    db.session.commit()
    page = client.get("/notifications/").get_data(as_text=True)
    assert "Hello there" in page and 'id="unread-count">1<' in page


def test_a_page_reads_the_user_and_the_unread_count_in_one_query(app, buyer_client, buyer):
    _notice(buyer, "Unread")
    buyer_client.get("/buyer/orders")
    with counted() as statements:
        page = buyer_client.get("/buyer/orders").get_data(as_text=True)
    assert 'id="unread-count">1<' in page
    reading = [s for s in statements if "FROM notifications" in s]
    assert len(reading) == 1 and "FROM users" in reading[0], statements


def test_opening_marks_read_and_mark_all_read(app, buyer_client, buyer):
    first, second, third = (_notice(buyer, f"Notice {i}") for i in range(3))
    token = csrf_token(buyer_client, "/notifications/")
    response = buyer_client.post(f"/notifications/{first.id}/open", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/buyer/returns"
    page = buyer_client.get("/notifications/").get_data(as_text=True)
    assert 'id="unread-count">2<' in page
    buyer_client.post(f"/notifications/{second.id}/read", data={"csrf_token": token})
    assert 'id="unread-count">1<' in buyer_client.get("/notifications/").get_data(as_text=True)
    buyer_client.post("/notifications/read-all", data={"csrf_token": token})
    assert 'id="unread-count"' not in buyer_client.get("/notifications/").get_data(as_text=True)
    assert all(n.is_read for n in _notices(buyer))


def test_nobody_marks_anothers_notifications(app, buyer_client, buyer):
    other = make_user(Role.BUYER)
    theirs = _notice(other, "Not yours")
    token = csrf_token(buyer_client, "/notifications/")
    assert buyer_client.post(f"/notifications/{theirs.id}/read",
                             data={"csrf_token": token}).status_code == 404
    assert buyer_client.post(f"/notifications/{theirs.id}/open",
                             data={"csrf_token": token}).status_code == 404
    assert "Not yours" not in buyer_client.get("/notifications/").get_data(as_text=True)
    assert not _notices(other)[0].is_read


def test_api_lists_the_callers_notifications_newest_first_with_read(app, client, api_key_for):
    buyer, other = make_user(Role.BUYER), make_user(Role.BUYER)
    first, second = _notice(buyer, "First"), _notice(buyer, "Second")
    _notice(other, "Someone else's")
    notifications.mark_read(buyer, first.id)
    db.session.commit()
    headers = api_key_for(buyer)
    response = client.get("/api/v1/notifications", headers=headers)
    assert response.status_code == 200
    assert [(n["title"], n["read"]) for n in response.json] == [("Second", False), ("First", True)]
    assert response.json[0]["kind"] == "return_decided"
    assert response.json[0]["link"] == "http://127.0.0.1:5000/buyer/returns"
    unread = client.get("/api/v1/notifications?unread=true", headers=headers).json
    assert [n["id"] for n in unread] == [second.id]
    assert client.get("/api/v1/notifications?limit=0", headers=headers).status_code == 422
    assert client.get("/api/v1/notifications").status_code == 401
