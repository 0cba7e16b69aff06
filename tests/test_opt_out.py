"""A person's opt-out (SPEC §14, issue 19 item 3): confirmed by a one-time link to
their email (a real SMTP server) or by the code in a message a buyer sent them; every
buyer who received them is told (a signed `lead.opted_out` webhook to a real HTTP
server, a notification) and must acknowledge within 10 business days; admins see
who is late. Answers never reveal whether the person is in the database."""
import json
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from babel.dates import format_date, format_time

from app.aftersale.delivery import engine
from app.aftersale.delivery.webhook import signature
from app.extensions import db
from app.market import jobs, operations
from app.models import (
    Lead, LeadStatus, Notification, OptOutNotice, OptOutRequest, Sale, SuppressionEntry,
)
from app.models.types import utcnow
from app.formatting import zone_of
from app.people import opt_out
from app.services.delivery import sale_record
from tests.conftest import csrf_token, log_in, wait_until
from tests.market_helpers import funded_buyer, live_leads, person, place, sales_of, verified_seller
from tests.receiver import Receiver
from tests.smtp_server import bodies

EMAIL = "Quiet.Person@Mail.Example.com"
PHONE = "+1 415 555 0042"


@pytest.fixture
def receivers():
    servers = [Receiver(), Receiver()]
    yield servers
    for server in servers:
        server.close()


def _strip_tokens(html: str) -> str:
    return re.sub(r'name="csrf_token"[^>]*>|"X-CSRFToken": "[^"]*"', "", html)


def _ask(client, **fields):
    return client.post("/opt-out", data={"csrf_token": csrf_token(client, "/opt-out"), **fields},
                       follow_redirects=True)


def _sold_to_two_buyers(receivers):
    """The person's lead sold to two buyers, each with a signed webhook."""
    lead = live_leads(verified_seller(), [person(42, email=EMAIL, phone=PHONE), person(1)],
                      cap=2)[0]
    buyers, secrets = [], []
    for server in receivers:
        buyer = funded_buyer()
        order = place(buyer, 700, 5)
        secrets.append(operations.set_webhook(order, server.url))
        jobs.fill_order(order.id)
        buyers.append(buyer)
    db.session.commit()
    sales = db.session.scalars(sa.select(Sale).where(Sale.lead_id == lead.id)
                               .order_by(Sale.id)).all()
    assert len(sales) == 2
    return lead, buyers, secrets, sales


def _mail_to(smtp_server, address: str, count: int = 1):
    """The messages to `address`, once `count` of them arrived (other mail -- the
    buyers' notices -- goes to the same server)."""
    assert wait_until(lambda: len(smtp_server.to(address)) >= count)
    return smtp_server.to(address)


def _link_in(message) -> str:
    text, html = bodies(message)
    [link] = re.findall(r"http://\S+/opt-out/\S+", text)
    assert link in html
    return urlsplit(link).path


def test_email_link_opts_out_once_and_every_buyer_is_told(app, client, smtp_server, receivers):
    lead, buyers, secrets, sales = _sold_to_two_buyers(receivers)
    buyers[1].timezone = "America/New_York"
    db.session.commit()
    known = _ask(client, email=EMAIL.upper()).get_data(as_text=True)
    assert "We have emailed that address a link" in known
    [message] = _mail_to(smtp_server, EMAIL.lower())
    path = _link_in(message)
    stored = db.session.scalar(sa.select(OptOutRequest))
    assert stored.token_hash not in path and stored.confirmed_at is None
    # Following the link confirms nothing (mail scanners follow links); the button does.
    page = client.get(path, follow_redirects=True).get_data(as_text=True)
    assert "Yes, stop contacting me" in page and path not in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OptOutNotice)) == 0
    done = client.post("/opt-out/confirm", data={
        "csrf_token": csrf_token(client, "/opt-out/confirm")}, follow_redirects=True)
    assert "you are opted out" in done.get_data(as_text=True)

    db.session.expire_all()
    assert db.session.get(Lead, lead.id).status is LeadStatus.DELISTED
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SuppressionEntry)) == 2
    notices = db.session.scalars(sa.select(OptOutNotice).order_by(OptOutNotice.sale_id)).all()
    assert [(n.buyer_id, n.sale_id) for n in notices] == [(b.id, s.id)
                                                          for b, s in zip(buyers, sales)]
    told_at = notices[0].created_at
    assert notices[0].due_at == opt_out.business_deadline(told_at)
    for buyer in buyers:
        notice = db.session.scalar(sa.select(Notification).where(Notification.user_id == buyer.id)
                                   .order_by(Notification.id.desc()))
        assert "opted out" in notice.title and EMAIL.lower() not in notice.body.lower()
        # The deadline on the buyer's own clock, as their pages show times.
        due = notices[0].due_at.replace(tzinfo=timezone.utc).astimezone(zone_of(buyer))
        # As the buyer's locale (en_US unless their browser said otherwise) writes it.
        assert f"by {format_date(due, 'medium', locale='en_US')}, " \
               f"{format_time(due, 'short', locale='en_US')} {due:%Z} (10 business days)" \
            in notice.body

    # Each buyer's webhook gets the signed notice, without the person's data.
    engine.deliver_sales([sale.id for sale in sales])
    for server, secret, sale in zip(receivers, secrets, sales):
        [hit] = [r for r in server.requests if b'"lead.opted_out"' in r["body"]]
        assert hit["headers"]["X-Signature"] == signature(secret, hit["body"])
        body = json.loads(hit["body"])
        assert body == {"event": "lead.opted_out", "sale_id": sale.id, "order_id": sale.order_id,
                        "lead_id": lead.id, "opted_out_at": told_at.isoformat(),
                        "acknowledge_by": notices[0].due_at.isoformat()}

    # The link works once.
    client.get(path)
    again = client.post("/opt-out/confirm", data={
        "csrf_token": csrf_token(client, "/opt-out/confirm")}, follow_redirects=True)
    assert "does not work any more" in again.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OptOutNotice)) == 2


def test_answers_are_alike_for_known_and_unknown_people(app, client, smtp_server):
    live_leads(verified_seller(), [person(42, email=EMAIL, phone=PHONE)])
    known = _ask(client, email=EMAIL).get_data(as_text=True)
    unknown = _ask(client, email="nobody.here@example.com").get_data(as_text=True)
    assert _strip_tokens(known) == _strip_tokens(unknown)
    # Both are sent a link: nothing to tell apart.
    assert _mail_to(smtp_server, EMAIL.lower()) and _mail_to(smtp_server, "nobody.here@example.com")
    by_code = _ask(client, phone=PHONE, code="AAAAAAAA").get_data(as_text=True)
    nobody = _ask(client, phone="+1 415 555 0999", code="AAAAAAAA").get_data(as_text=True)
    assert _strip_tokens(by_code) == _strip_tokens(nobody)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SuppressionEntry)) == 0


def test_phone_code_from_a_message_opts_the_number_out(app, client, receivers):
    lead, buyers, _, sales = _sold_to_two_buyers(receivers)
    record = sale_record(sales[0], lead)
    code = record["lead"]["opt_out_code"]
    assert record["lead"]["opt_out_url"].endswith("/opt-out")
    assert len(code) == opt_out.CODE_LENGTH
    # A code of another sale (another number) does nothing.
    other = db.session.scalar(sa.select(Sale).where(Sale.lead_id != lead.id))
    assert other is not None
    answer = _ask(client, phone=PHONE, code=opt_out.code(other.id))
    assert "If the code is one sent to this number" in answer.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OptOutNotice)) == 0
    # Without its country code the number is not guessed: the page asks for it.
    answer = _ask(client, phone="415 555 0042", code=code)
    assert "is not a valid phone number" in answer.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OptOutNotice)) == 0
    _ask(client, phone="+1 (415) 555-0042", code=code.lower())
    db.session.expire_all()
    assert {n.buyer_id for n in db.session.scalars(sa.select(OptOutNotice))} == \
        {buyer.id for buyer in buyers}


@pytest.mark.parametrize("start, due", [
    # Monday: ten business days are the next two weeks' Tue..Mon; due at the end of that Monday.
    ("2026-12-07T10:00:00+00:00", "2026-12-22T00:00:00+00:00"),
    # Friday late: the weekend does not count.
    ("2026-12-11T23:30:00+00:00", "2026-12-26T00:00:00+00:00"),
    # Saturday and Sunday count from Monday.
    ("2026-12-12T09:00:00+00:00", "2026-12-26T00:00:00+00:00"),
    ("2026-12-13T09:00:00+00:00", "2026-12-26T00:00:00+00:00"),
    # A time in another zone is the UTC day it falls on.
    ("2026-12-07T20:00:00-08:00", "2026-12-23T00:00:00+00:00"),
])
def test_the_deadline_counts_business_days(start, due):
    assert opt_out.business_deadline(datetime.fromisoformat(start)) == datetime.fromisoformat(due)
    assert datetime.fromisoformat(due).weekday() in (1, 2, 3, 4, 5)


def test_buyers_acknowledge_in_the_app_or_by_api_and_admins_see_the_late(
        app, client, receivers, api_key_for, admin_client):
    lead, buyers, _, sales = _sold_to_two_buyers(receivers)
    first = app.test_client()
    log_in(first, buyers[0])
    # Seen before the opt-out: the dashboard's count is kept until a notice changes it.
    assert 'id="opt-out-alert"' not in first.get("/buyer/").get_data(as_text=True)
    opt_out.opt_out(opt_out.privacy.identify(email=EMAIL), utcnow() - timedelta(days=20))
    db.session.commit()
    overdue = admin_client.get("/admin/opt-outs").get_data(as_text=True)
    assert all(buyer.email in overdue for buyer in buyers)

    assert 'id="opt-out-alert"' in first.get("/buyer/").get_data(as_text=True)
    page = first.get("/buyer/opt-outs").get_data(as_text=True)
    assert "We have stopped contacting them" in page
    # Whom it is about: the person's contacts as delivered, and the sale's journey.
    assert f'href="/buyer/leads/{lead.id}/journey">{sales[0].id}</a>' in page
    assert EMAIL.lower() in page
    first.post("/buyer/opt-outs", data={"csrf_token": csrf_token(first, "/buyer/opt-outs")})
    assert 'id="opt-out-alert"' not in first.get("/buyer/").get_data(as_text=True)

    headers = api_key_for(buyers[1])
    listed = client.get("/api/v1/opt-outs", headers=headers).get_json()
    assert [n["sale_id"] for n in listed] == [sales[1].id] and listed[0]["acknowledged_at"] is None
    answer = client.post("/api/v1/opt-outs/acknowledge", headers=headers,
                         json={"sale_ids": [sales[1].id]})
    assert answer.get_json() == {"acknowledged": 1}
    assert client.post("/api/v1/opt-outs/acknowledge", headers=headers,
                       json={}).get_json() == {"acknowledged": 0}
    db.session.expire_all()
    assert all(n.acknowledged_at for n in db.session.scalars(sa.select(OptOutNotice)))
    overdue = admin_client.get("/admin/opt-outs").get_data(as_text=True)
    # Acknowledged, but late: the page does not call that "in time".
    assert "None overdue" in overdue and "in time" not in overdue


def test_the_link_is_not_logged_and_expires(app, client, smtp_server, caplog):
    caplog.set_level("INFO")
    _ask(client, email=EMAIL)
    path = _link_in(_mail_to(smtp_server, EMAIL.lower())[0])
    secret = path.rsplit("/", 1)[1]
    client.get(path)
    assert secret not in caplog.text
    db.session.execute(sa.update(OptOutRequest).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    expired = client.post("/opt-out/confirm", data={
        "csrf_token": csrf_token(client, "/opt-out/confirm")}, follow_redirects=True)
    assert "does not work any more" in expired.get_data(as_text=True)


def test_a_person_opted_out_is_not_sold_again(app, client):
    live_leads(verified_seller(), [person(42, email=EMAIL, phone=PHONE)])
    opt_out.opt_out(opt_out.privacy.identify(phone=PHONE), datetime.now(timezone.utc))
    db.session.commit()
    order = place(funded_buyer(), 700, 5)
    jobs.fill_order(order.id)
    assert sales_of(order) == []
