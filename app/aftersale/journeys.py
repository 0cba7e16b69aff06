"""Queries: a lead's journey (SPEC §12), the steps it went through in time order as
`[{at, kind, ...}]` -- received, verdict, spot-check, each sale, each delivery attempt,
returns, outcome -- as the person asking may see it.

Each party sees its part: the lead's seller sees how it came in, its verdict and
spot-check, its sales (earnings, never the buyer) and their returns; a buyer sees
when it came in and its consent, and of the sales only their own with its deliveries,
return and outcome; admins see every step, but the logged requests and replies (which
carry the person's contacts) stay with the buyer, as contacts stay behind audited
views for admins (SPEC §7). Live bids (ping/post): the seller sees that the lead was
pinged and its price, a buyer only their own bids, admins every order's answer. Five
statements, however many steps."""
from datetime import timedelta
from typing import Any, Optional

import sqlalchemy as sa

from app.errors import NotFound
from app.extensions import db
from app.market import rules
from app.models import (
    Batch, BatchSource, BatchStatus, ConsentCertificate, DeliveryAttempt, Lead, Order, Ping,
    PingBid, Return, Sale, SaleOutcome, SpotCheck, SpotCheckItem, SpotCheckStatus, User,
    WebhookDelivery,
)
from app.people.membership import account_of
from app.services import ledger
from app.services.crypto import current_vault

REPLY_SHOWN = 300  # characters of a logged reply in a step

Step = dict[str, Any]


def _received(lead: Lead, batch: Batch, seller_view: bool, certificate: Optional[str]) -> Step:
    step = {"at": lead.created_at, "kind": "received", "sub_id": lead.sub_id,
            "consent_at": lead.consent_at,
            "certificate": certificate,
            "trustedform_cert_url": lead.trustedform_cert_url,
            "jornaya_leadid": lead.jornaya_leadid}
    if seller_view:
        step["how"] = "api" if batch.source is BatchSource.API else "upload"
        step["batch_id"] = batch.id
        if batch.source is BatchSource.UPLOAD:
            step.update(file=batch.filename, row=lead.row_number)
    return step


def _verdict(lead: Lead, batch: Batch) -> Step:
    return {"at": lead.created_at, "kind": "verdict", "accepted": True,
            "cross_seller_duplicate": lead.cross_seller_duplicate,
            "held": batch.status is BatchStatus.HELD,
            "status": rules.offer_status(lead.status.value, lead.sold_count, lead.cap),
            "sold": lead.sold_count, "cap": lead.cap}


def _spot_checks(lead: Lead) -> list[Step]:
    rows = db.session.execute(
        sa.select(SpotCheck, SpotCheckItem).outerjoin(SpotCheckItem, sa.and_(
            SpotCheckItem.check_id == SpotCheck.id, SpotCheckItem.lead_id == lead.id))
        .where(SpotCheck.batch_id == lead.batch_id).order_by(SpotCheck.id)).all()
    steps = []
    for check, item in rows:
        if item is not None and item.decided_at is not None:
            steps.append({"at": item.decided_at, "kind": "spot_check_sampled",
                          "verdict": item.verdict.value, "note": item.note})
        if check.status is not SpotCheckStatus.OPEN and check.decided_at is not None:
            steps.append({"at": check.decided_at, "kind": "spot_check",
                          "result": check.status.value, "note": check.decision_note,
                          "sales_returned": check.sales_returned})
    return steps


def _sale_steps(sale: Sale, order_name: str, buyer_email: str, item: Optional[Return],
                outcome: Optional[SaleOutcome], view: str) -> list[Step]:
    sale_step: Step = {"at": sale.created_at, "kind": "sale", "sale_id": sale.id}
    if view == "seller":
        sale_step["earnings"] = sale.seller_share
    else:
        sale_step.update(order_id=sale.order_id, order_name=order_name, price=sale.price)
    if view == "admin":
        sale_step.update(buyer=buyer_email, earnings=sale.seller_share)
    steps = [sale_step]
    if item is not None:
        steps.append({"at": item.created_at, "kind": "return_opened", "sale_id": sale.id,
                      "reason": item.reason.value, "note": item.note,
                      "status": item.status.value, "seller_note": item.seller_note})
        if item.decided_at is not None:
            steps.append({"at": item.decided_at, "kind": "return_decided", "sale_id": sale.id,
                          "accepted": item.refunds,
                          "decided_by": item.decided_by, "note": item.decision_note,
                          "refund": item.refund})
    if outcome is not None and view != "seller":
        steps.append({"at": outcome.updated_at, "kind": "outcome", "sale_id": sale.id,
                      "status": outcome.status.value, "revenue": outcome.revenue})
    return steps


def _attempts(sale_ids: list[int], with_contents: bool) -> list[Step]:
    rows = db.session.execute(
        sa.select(DeliveryAttempt, WebhookDelivery.sale_id, WebhookDelivery.event)
        .join(WebhookDelivery, WebhookDelivery.id == DeliveryAttempt.delivery_id)
        .where(WebhookDelivery.sale_id.in_(sale_ids)).order_by(DeliveryAttempt.id)).all()
    vault = current_vault()
    steps = []
    for attempt, sale_id, event in rows:
        step = {"at": attempt.at, "kind": "delivery_attempt", "sale_id": sale_id,
                "event": event, "method": attempt.method,
                "milliseconds": attempt.milliseconds, "status_code": attempt.status_code,
                "delivered": attempt.error is None, "refused": attempt.refused,
                "error": attempt.error}
        request = vault.decrypt(attempt.request_enc)
        if with_contents:
            reply = vault.decrypt(attempt.reply_enc) if attempt.reply_enc else None
            step.update(request=request, reply=reply and reply[:REPLY_SHOWN])
        else:  # where it went, not what it carried
            step["request"] = request.partition("\n")[0]
        steps.append(step)
    return steps


def _pings(lead: Lead, view: str, account_id: int) -> list[Step]:
    """The lead's pings (seller, admins) and the answers (admins all, a buyer theirs).
    The seller sees a ping's price as its answer told them: their share of it."""
    rows = db.session.execute(
        sa.select(Ping, PingBid).outerjoin(PingBid, PingBid.ping_id == Ping.id)
        .where(Ping.lead_id == lead.id).order_by(Ping.id, PingBid.id)).all()
    steps, asked = [], {}
    for ping, bid in rows:
        if view != "buyer" and ping.id not in asked:
            asked[ping.id] = sum(b is not None and b.outcome != "fixed"
                                 for p, b in rows if p.id == ping.id)
            price = ping.price
            if view == "seller" and price is not None:
                price = ledger.seller_share(price, db.session.get(User, lead.seller_id))
            steps.append({"at": ping.created_at, "kind": "ping", "price": price,
                          "asked": asked[ping.id], "deadline_ms": ping.deadline_ms,
                          "answered_ms": ping.answered_ms})
        if bid is None or view == "seller" or (view == "buyer" and bid.buyer_id != account_id):
            continue
        steps.append({"at": ping.created_at + timedelta(milliseconds=bid.milliseconds or 0),
                      "kind": "bid", "order_id": bid.order_id, "outcome": bid.outcome,
                      "amount": bid.amount, "milliseconds": bid.milliseconds,
                      "won": bid.won, "error": bid.detail})
    return steps


def journey(viewer: User, lead_id: int) -> list[Step]:
    """The lead's steps as `viewer` (a person; they act for their account) may see
    them, oldest first; NotFound for a lead that is none of theirs."""
    account = account_of(viewer)
    found = db.session.execute(
        sa.select(Lead, Batch, ConsentCertificate.public_id).join(Batch, Batch.id == Lead.batch_id)
        .outerjoin(ConsentCertificate, ConsentCertificate.lead_id == Lead.id)
        .where(Lead.id == lead_id)).first()
    if found is None:
        raise NotFound("No such lead.")
    lead, batch, certificate = found
    view = ("admin" if viewer.is_admin else
            "seller" if lead.seller_id == account.id else "buyer")
    sales = (sa.select(Sale, Order.name, User.email, Return, SaleOutcome)
             .join(Order, Order.id == Sale.order_id).join(User, User.id == Sale.buyer_id)
             .outerjoin(Return, Return.sale_id == Sale.id)
             .outerjoin(SaleOutcome, SaleOutcome.sale_id == Sale.id)
             .where(Sale.lead_id == lead.id).order_by(Sale.id))
    if view == "buyer":
        sales = sales.where(Sale.buyer_id == account.id)
    rows = db.session.execute(sales).all()
    if view == "buyer" and not rows:
        raise NotFound("No such lead.")
    steps = [_received(lead, batch, view != "buyer", certificate),
             *_pings(lead, view, account.id)]
    if view != "buyer":
        steps += [_verdict(lead, batch), *_spot_checks(lead)]
    for sale, order_name, buyer_email, item, outcome in rows:
        steps += _sale_steps(sale, order_name, buyer_email, item, outcome, view)
    if view != "seller" and rows:
        steps += _attempts([row[0].id for row in rows], with_contents=view == "buyer")
    # Stable: steps of the same moment keep the order they were built in.
    return sorted(steps, key=lambda step: step["at"])
