"""A person's opt-out (SPEC §14), operations (flush; callers commit).

How a person proves the contact is theirs -- the exchange sends no SMS, so:

- By email: the public page takes the address and emails it a one-time link (256
  random bits; only their SHA-256 is stored; it works once, for OPT_OUT_LINK_HOURS,
  and request logs show it redacted, as password reset links). Following it opts
  the address out -- and, through the leads that carry it, the phones stored with it.
- By phone: every lead a buyer receives carries an opt-out code for that sale
  (`opt_out.code` in the webhook and HTTP POST, on the lead's page), and buyers are
  asked to put the code and the /opt-out address in the messages they send (the
  "reply STOP" of a text). A person who gives their number and that code has shown
  they got a message about that number: the number is opted out at once. The code is
  an HMAC of the sale id with the app's secret, so nothing is stored to guess from,
  and a code only opts out the number its sale was for. A person with neither an
  email nor a code can ask the buyer who called them, who must honour it themselves.

Every answer is the same whether or not the person is in the database: the email
is sent to whoever asks (it says what happens if we hold nothing on them), and a
phone with a wrong code gets the same sentence as one with the right code.

Once confirmed, the person is suppressed (app.services.privacy: their leads delisted,
uploads of them refused) and every buyer who received them is told -- an
OptOutNotice per sale, a signed `lead.opted_out` webhook (to orders taking our JSON;
a CRM receiving its own format is told in the app and by email only, as erasures
are) and a notification -- and must acknowledge within OPT_OUT_BUSINESS_DAYS
business days (Monday to Friday; public holidays are not known here and count as
business days, so the deadline we show is never later than the law's).
"""
import base64
import hashlib
import hmac
import secrets
from datetime import date, datetime, time, timedelta, timezone
from typing import Optional

import sqlalchemy as sa
from flask import current_app

from app.core import events, figures, mail
from app.errors import ValidationFailed
from app.extensions import db
from app.models import HttpDelivery, Lead, OptOutNotice, OptOutRequest, Order, Sale, User, WebhookDelivery
from app.models.contact_keys import holding
from app.models.types import utcnow
from app.people import notifications
from app.people.notifications import path
from app.services import audit, privacy

OPT_OUT_BUSINESS_DAYS = 10
REASON = "opted out (SPEC §14)"
CODE_LENGTH = 8


def business_deadline(start: datetime, days: int = OPT_OUT_BUSINESS_DAYS) -> datetime:
    """The end (midnight UTC) of the `days`-th business day after `start`'s day:
    Monday to Friday count, weekends do not; holidays are counted as business days."""
    day: date = start.astimezone(timezone.utc).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if day.weekday() < 5:
            counted += 1
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=timezone.utc)


def code(sale_id: int) -> str:
    """The opt-out code of a sale: what a buyer puts in the messages they send."""
    digest = hmac.new(current_app.config["SECRET_KEY"].encode(), f"opt-out:{sale_id}".encode(),
                      hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:CODE_LENGTH]


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def request_by_email(email: str, phone: str = "", country: str = "") -> None:
    """Email the address a one-time link that opts it out (and `phone`, if given,
    with it). Sent whether or not we hold the person: the answer reveals nothing."""
    person = privacy.identify(email=email, phone=phone, country=country)
    now = utcnow()
    secret = secrets.token_urlsafe(32)
    hashes = dict(person.hashes)
    db.session.add(OptOutRequest(
        token_hash=_token_hash(secret), email_hash=hashes.get("email"),
        phone_hash=hashes.get("phone"), created_at=now,
        expires_at=now + timedelta(hours=current_app.config["OPT_OUT_LINK_HOURS"])))
    db.session.flush()
    hours = current_app.config["OPT_OUT_LINK_HOURS"]
    mail.queue(person.email, "Confirm: stop being contacted", "account_link", kind="opt_out",
               title="Confirm that you want to stop being contacted",
               paragraphs=["Someone, probably you, asked LeadX to stop sharing this address "
                           "with the companies that buy leads through it. Follow the link to "
                           "confirm; it works once, for " f"{hours} hours.",
                           "If we hold nothing about you, confirming changes nothing and no "
                           "one is told. If you did not ask, ignore this email."],
               link=mail.public_url(path("main.opt_out_link", token=secret)),
               link_label="Stop contacting me",
               footer="You get this email because this address was typed on the LeadX "
                      "opt-out page.")
    audit.record("privacy.opt_out_requested", actor=None, details={"by": "email"})


def confirm(secret: str, now: Optional[datetime] = None) -> bool:
    """Use an emailed link: True if it worked (once, unexpired), and the person is
    opted out now. One conditional UPDATE: two clicks cannot both use it."""
    now = now or utcnow()
    row = db.session.execute(
        sa.update(OptOutRequest)
        .where(OptOutRequest.token_hash == _token_hash(secret or ""),
               OptOutRequest.confirmed_at.is_(None), OptOutRequest.expires_at > now)
        .values(confirmed_at=now)
        .returning(OptOutRequest.email_hash, OptOutRequest.phone_hash)).first()
    if row is None:
        return False
    hashes = tuple((kind, bytes(value)) for kind, value in (("email", row[0]), ("phone", row[1]))
                   if value)
    opt_out(privacy.Person(None, None, hashes), now)
    return True


def confirm_by_code(phone: str, given_code: str, country: str = "",
                    now: Optional[datetime] = None) -> None:
    """Opt the number out if `given_code` is the code of a sale of it; otherwise
    nothing. Returns nothing either way: the caller answers the same."""
    person = privacy.identify(phone=phone, country=country)
    wanted = (given_code or "").strip().upper().replace(" ", "").replace("-", "")
    if len(wanted) != CODE_LENGTH:
        raise ValidationFailed(f"The code has {CODE_LENGTH} letters and digits.",
                               code="invalid_code", details={"field": "code"})
    phone_hash = dict(person.hashes)["phone"]
    sale_ids = db.session.scalars(sa.select(Sale.id).join(Lead, Lead.id == Sale.lead_id)
                                  .where(holding([("phone", phone_hash)]))).all()
    if any(hmac.compare_digest(code(sale_id), wanted) for sale_id in sale_ids):
        opt_out(person, now or utcnow())


def opt_out(person: privacy.Person, now: datetime) -> int:
    """Suppress the person and tell every buyer who received them; returns how many
    buyers were told. The webhooks go once the caller commits (DeliveryRequested)."""
    person = privacy.with_linked_contacts(person)
    privacy.suppress(person, reason=REASON, actor=None)
    their_leads = holding(person.hashes)
    sales = db.session.execute(
        sa.select(Sale.id, Sale.buyer_id, Sale.order_id,
                  sa.case((HttpDelivery.order_id.is_(None), Order.webhook_url)))
        .join(Lead, Lead.id == Sale.lead_id).join(Order, Order.id == Sale.order_id)
        .outerjoin(HttpDelivery, HttpDelivery.order_id == Order.id)
        .where(their_leads).order_by(Sale.id)).all()
    told_before = set(db.session.scalars(sa.select(OptOutNotice.sale_id).where(
        OptOutNotice.sale_id.in_([sale_id for sale_id, _, _, _ in sales]))))
    due = business_deadline(now)
    told: dict[int, list[tuple[int, int]]] = {}
    webhook_sale_ids = []
    for sale_id, buyer_id, order_id, webhook_url in sales:
        if sale_id in told_before:
            continue
        db.session.add(OptOutNotice(buyer_id=buyer_id, sale_id=sale_id, order_id=order_id,
                                    created_at=now, due_at=due))
        figures.changed(buyer_id)  # the notices their dashboard counts
        if webhook_url:
            db.session.add(WebhookDelivery(sale_id=sale_id, order_id=order_id,
                                           event="lead.opted_out", next_attempt_at=now,
                                           created_at=now))
            webhook_sale_ids.append(sale_id)
        told.setdefault(buyer_id, []).append((sale_id, order_id))
    db.session.flush()
    for buyer_id, theirs in told.items():
        notifications.person_opted_out(buyer_id, theirs, due)
    if webhook_sale_ids:
        events.record(events.DeliveryRequested(tuple(webhook_sale_ids)))
    audit.record("privacy.opted_out", actor=None,
                 details={"kinds": sorted({kind for kind, _ in person.hashes}),
                          "buyers_told": len(told), "sales": len(sales)})
    return len(told)


def notices_for(buyer: User, include_acknowledged: bool = True) -> list[OptOutNotice]:
    query = sa.select(OptOutNotice).where(OptOutNotice.buyer_id == buyer.id)
    if not include_acknowledged:
        query = query.where(OptOutNotice.acknowledged_at.is_(None))
    return db.session.scalars(query.order_by(OptOutNotice.id.desc()).limit(500)).all()


def acknowledge(buyer: User, sale_ids: Optional[list[int]] = None,
                now: Optional[datetime] = None) -> int:
    """The buyer stopped contacting these people (all their open notices: None)."""
    query = sa.update(OptOutNotice).where(OptOutNotice.buyer_id == buyer.id,
                                          OptOutNotice.acknowledged_at.is_(None))
    if sale_ids is not None:
        query = query.where(OptOutNotice.sale_id.in_(sale_ids))
    figures.changed(buyer.id)
    done = db.session.execute(query.values(acknowledged_at=now or utcnow())
                              .execution_options(synchronize_session=False)).rowcount
    if done:
        audit.record("privacy.opt_out_acknowledged", actor=buyer, details={"notices": done})
    return done


def overdue(now: Optional[datetime] = None) -> list[tuple[OptOutNotice, str]]:
    """Notices past their deadline and not acknowledged, oldest first, with the
    buyer's email (the admin's view)."""
    return db.session.execute(
        sa.select(OptOutNotice, User.email).join(User, User.id == OptOutNotice.buyer_id)
        .where(OptOutNotice.acknowledged_at.is_(None), OptOutNotice.due_at <= (now or utcnow()))
        .order_by(OptOutNotice.due_at, OptOutNotice.id).limit(1000)).all()


def notice_of(sale_id: int) -> Optional[OptOutNotice]:
    return db.session.scalar(sa.select(OptOutNotice).where(OptOutNotice.sale_id == sale_id))
