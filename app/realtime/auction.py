"""Jobs (each owns its commits): real-time leads sold by live bids (SPEC §4 rule 9,
§11, §12).

- `match_lead`: a lead posted by `POST /leads`. When no open order has a bid URL it
  is app.market.jobs.match_leads exactly (whether any order bids is looked up at most
  every PING_CHECK_SECONDS per process); else the bidding orders it may go to are
  asked at once, and it is sold to its best offers.
- `open_ping`: a seller's `POST /pings` -- the attributes offered the same way; the
  best offer is kept as the ping (its price, its orders) for PING_TTL_SECONDS.
- `post`: the full lead for a ping. It must have the pinged attributes
  (`ping_mismatch`); it is stored like any real-time lead and sold at the offered
  prices to the ping's offers, best first, each re-checked by the market's rules at
  post time: if the winner can no longer pay (hold, caps, schedule, paused), the next
  best offer of the ping buys at its own offered price; if none can, the lead is
  stored unsold and stays on offer like any unsold lead.

Nothing is locked while the buyers are asked. Every order's answer is stored with
the ping (PingBid) for the lead's journey."""
import secrets
import threading
import time
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Mapping, Optional

import sqlalchemy as sa
from flask import current_app

from app.aftersale.delivery import webhook
from app.errors import Conflict, DomainError, NotFound
from app.extensions import db
from app.market import bidding, jobs, rules, snapshot
from app.market import realtime as realtime_sales
from app.market.bidding import Answer
from app.market.book import Candidate, Claims
from app.market.settle import Settlement
from app.models import Batch, BatchSource, Lead, Order, Ping, PingBid, Sale, User
from app.models.types import utcnow
from app.services import scoring
from app.services.crypto import current_vault
from app.services.ingest import realtime
from app.services.ingest.pipeline import BatchTerms, check_can_sell
from app.services.ingest.realtime import LeadRejected
from app.services.ingest.validate import PING_DEFAULT, RowContext, validate_row
from app.services.ingest.workers import INTENT_LIMIT


class PingExpired(DomainError):
    code = "ping_expired"
    status = 410


class _BiddersSeen:
    """Whether any open order has a bid URL, looked up at most every `ttl` seconds."""

    def __init__(self):
        self._lock = threading.Lock()
        self._at, self._any = float("-inf"), False

    def any(self, ttl: float) -> bool:
        if time.monotonic() - self._at < ttl:
            return self._any
        # One thread looks it up; the others go on with the last answer meanwhile (all
        # the request threads of a busy process looked it up at once: a statement each).
        if not self._lock.acquire(blocking=ttl <= 0 or self._at == float("-inf")):
            return self._any
        try:
            if time.monotonic() - self._at >= ttl:
                found = db.session.scalar(sa.select(sa.exists().where(
                    Order.bid_url.is_not(None), rules.ORDER_OPEN.sql(Order, None, rules.Ctx()))))
                self._at, self._any = time.monotonic(), bool(found)
            return self._any
        finally:
            self._lock.release()


_bidders_seen = _BiddersSeen()


def sell(seller: User, payload: Mapping[str, Any], terms: BatchTerms) -> dict:
    """A lead of `POST /leads`: its answer (app.market.realtime.lead_created), or
    LeadRejected. Sold with the leads arriving at the same time
    (app.market.realtime) unless some open order bids: then alone, by live bids."""
    if not _bidders_seen.any(current_app.config["PING_CHECK_SECONDS"]):
        return realtime_sales.sell(seller, payload, terms)
    lead = realtime.ingest_lead(seller, payload, terms)
    db.session.commit()
    settlement = match_lead(lead.id)
    db.session.commit()
    return answer(lead, settlement)


def answer(lead: Lead, settlement: Settlement) -> dict:
    """The answer to a lead sold alone (by live bids; POST /leads, /posts)."""
    sales = db.session.scalars(sa.select(Sale).where(Sale.id.in_(settlement.sale_ids))
                               .order_by(Sale.id)).all()
    return realtime_sales.lead_created(lead, lead.cap, [
        {"sale_id": s.id, "price": s.price, "seller_share": s.seller_share} for s in sales])


def match_lead(lead_id: int) -> Settlement:
    """A real-time lead just stored and committed: sold to its best offers."""
    if not _bidders_seen.any(current_app.config["PING_CHECK_SECONDS"]):
        return jobs.match_leads([lead_id])
    stored = db.session.get(Lead, lead_id)
    ping = _new_ping(stored.seller_id, bidding.attributes_of(stored), None,
                     stored.floor_price, stored.cap)
    ping.lead_id, ping.posted_at = lead_id, ping.created_at
    return _sell(ping, lead_id, ask=True)


def open_ping(seller: User, payload: Mapping[str, Any], terms: BatchTerms) -> tuple[Optional[Ping], str]:
    """A seller's ping: its attributes checked like a lead's (without contacts),
    offered to the orders; the ping with its price, or None and the reason."""
    check_can_sell(seller)
    attributes, score_points = _checked_attributes(payload, terms.default_country)
    now = utcnow()
    lead = Candidate(0, seller.id, attributes["age"], attributes["gender"],
                     attributes["region"], attributes["country"], attributes["has_email"],
                     attributes["has_phone"], attributes["marital_status"],
                     attributes["employed"], tuple(attributes["interests"]),
                     datetime.fromisoformat(attributes["consent_at"]), terms.cap, 0,
                     terms.floor_price, score_points + _seller_points(seller.id), ())
    ping = _new_ping(seller.id, attributes, terms.default_country, terms.floor_price,
                     terms.cap)
    plan, answers = _auction(ping, lead, Claims(), now, ask=True)
    if not plan:
        db.session.rollback()
        asked = any(a.outcome != "fixed" for a in answers.values())
        return None, ("no_bid" if asked else "no_buyer")
    _record(ping, plan, answers, now)
    ping.expires_at = now + timedelta(seconds=current_app.config["PING_TTL_SECONDS"])
    db.session.commit()
    return ping, ""


def post(seller: User, ping_id: str, payload: Mapping[str, Any],
         terms_given: Optional[Mapping[str, Any]] = None) -> tuple[Lead, Settlement]:
    """The full lead for a ping: stored, and sold to the ping's offers. Terms the post
    repeats (`terms_given`: default_country, floor_price, cap; None where left out)
    must be the ping's."""
    ping = db.session.scalar(sa.select(Ping).where(Ping.public_id == ping_id,
                                                   Ping.seller_id == seller.id,
                                                   Ping.lead_id.is_(None)).with_for_update())
    if ping is None:
        if db.session.scalar(sa.select(Ping.id).where(Ping.public_id == ping_id,
                                                      Ping.seller_id == seller.id)):
            raise Conflict("This ping was posted already.", code="ping_used")
        raise NotFound("No such ping.", code="not_found")
    if ping.expires_at <= utcnow():
        raise PingExpired(f"The ping's offer ended at {ping.expires_at.isoformat()}; "
                          "ping the lead again.")
    terms = BatchTerms(ping.default_country, ping.floor_price, ping.cap, {},
                       default_from=PING_DEFAULT)
    changed = [name for name, value in (terms_given or {}).items() if value is not None
               and (str(value).strip().upper() if name == "default_country" else value)
               != getattr(ping, name)]
    if changed:
        raise _mismatch(changed)
    lead = realtime.ingest_lead(seller, payload, terms)  # LeadRejected: the row verdict
    changed = bidding.differences(ping.attributes, bidding.attributes_of(lead))
    if changed:
        db.session.rollback()  # the lead is not stored
        raise _mismatch(changed)
    ping.lead_id, ping.posted_at = lead.id, utcnow()
    db.session.commit()
    return lead, _sell(ping, lead.id, ask=False)


def _mismatch(fields: list[str]) -> Conflict:
    return Conflict("The lead does not match the ping: " + ", ".join(fields)
                    + (" differs." if len(fields) == 1 else " differ."),
                    code="ping_mismatch", details={"fields": fields})


def _sell(ping: Ping, lead_id: int, ask: bool) -> Settlement:
    """Sell a stored lead to its best offers: asked now (`ask`), or the ping's. A
    fill lost to another worker is planned again from fresh orders, with the same
    answers."""
    now = utcnow()
    settlement = Settlement(now)
    answers = None if ask else {bid.order_id: Answer(bid.order_id, "bid", bid.amount)
                                for bid in ping.bids if bid.outcome in bidding.OFFERS}
    for _ in range(jobs.PLAN_ROUNDS):
        leads = snapshot.load_leads([lead_id])
        if not leads:
            break
        lead = leads[0]
        claims = snapshot.load_claims(lead.person_hashes)
        if answers is None:
            plan, answers = _auction(ping, lead, claims, now, ask=True)
            if any(answer.outcome != "fixed" for answer in answers.values()):
                _record(ping, plan, answers, now)  # some order was asked for a bid
            db.session.commit()
            settlement.now = utcnow()  # the sale is made once the bids are in
        else:
            plan, _ = _auction(ping, lead, claims, now, ask=False, answers=answers)
        if not plan:
            break
        settlement.preload((), {lead.seller_id})
        db.session.commit()  # hold no lock while planning
        if not jobs.store_plan(plan, settlement):
            break
        answers = {order_id: answer for order_id, answer in answers.items()
                   if answer.outcome in bidding.OFFERS}
    return settlement


def _auction(ping: Ping, lead: Candidate, claims: Claims, now, ask: bool,
             answers: Optional[dict] = None) -> tuple[list, dict]:
    """The lead's plan among fixed prices and bids, and every order's answer. With
    `ask`, the bidding orders it may go to are asked now; else only the orders of
    `answers` (a ping's offers) are offered it, at their offered prices."""
    slots = list(snapshot.load_book(now, None if ask else list(answers)).slots.values())
    # Asking: the orders with a bid URL bid. A ping's post: each offer is a bid.
    query = sa.select(Order).where(Order.id.in_([slot.id for slot in slots]))
    if ask:
        query = query.where(Order.bid_url.is_not(None))
    bidders = {order.id: order for order in db.session.scalars(query)} if slots else {}
    for order in bidders.values():  # as read now, not reloaded after the commit below
        db.session.expunge(order)
    if ask:
        targets = bidding.to_ping(lead, slots, bidders, claims, now)
        db.session.commit()  # nothing held while the buyers answer
        answers = _ask(ping, targets, bidders, lead.score_points, now)
        for slot in slots:
            if slot.id not in bidders:
                answers[slot.id] = Answer(slot.id, "fixed", slot.price)
    plan = bidding.winners(lead, slots, bidders, answers, claims, now)
    return plan, answers


def _ask(ping: Ping, targets: list, bidders: Mapping[int, Order], score_points: int,
         now) -> dict[int, Answer]:
    if not targets:
        return {}
    from app.realtime.pinger import BidRequest, pinger  # aiohttp: only bids ask over HTTP

    config = current_app.config
    vault = current_vault()
    requests = []
    for slot in targets:
        order = bidders[slot.id]
        body = bidding.request_body(ping.public_id, order.id, ping.attributes, score_points,
                                    now)
        headers, raw = webhook.signed(body, vault.decrypt(order.webhook_secret_enc), "bid",
                                      ping.public_id)
        requests.append(BidRequest(order.id, order.bid_url, headers, raw))
    started = time.monotonic()
    replies = pinger(config["WEBHOOK_ALLOW_PRIVATE"]).ask(
        requests, config["PING_DEADLINE_MS"], config["PING_BID_TIMEOUT_MS"])
    ping.answered_ms = round((time.monotonic() - started) * 1000)
    return {reply.order_id: bidding.read_reply(
        reply.order_id, reply.status, reply.body, reply.error, reply.milliseconds,
        bidders[reply.order_id].max_bid, config["MIN_PRICE"], config["PING_DEADLINE_MS"])
        for reply in replies}


def _record(ping: Ping, plan: list, answers: Mapping[int, Answer], now) -> None:
    """The ping with its price and every order's answer (fixed prices only for the
    orders that won: the others did not take part in anything the buyer did)."""
    won = {slot.id: slot.price for _, slot in plan}
    ping.price = sum(won.values()) if won else None
    ping.order_id = plan[0][1].id if plan else None
    db.session.add(ping)
    buyers = dict(db.session.execute(sa.select(Order.id, Order.buyer_id).where(
        Order.id.in_(list(answers)))).all()) if answers else {}
    for order_id, answer in answers.items():
        if answer.outcome == "fixed" and order_id not in won:
            continue
        db.session.add(PingBid(ping=ping, order_id=order_id, buyer_id=buyers[order_id],
                               outcome=answer.outcome, amount=answer.amount,
                               detail=answer.detail, milliseconds=answer.milliseconds,
                               won=order_id in won))


def _new_ping(seller_id: int, attributes: dict, default_country: str, floor_price: int,
              cap: int) -> Ping:
    return Ping(public_id=secrets.token_urlsafe(18), seller_id=seller_id,
                attributes=attributes, attributes_hash=bidding.attributes_hash(attributes),
                default_country=default_country, floor_price=floor_price, cap=cap,
                deadline_ms=current_app.config["PING_DEADLINE_MS"], answered_ms=0,
                created_at=utcnow())


def _seller_points(seller_id: int) -> int:
    """The seller's points as their lead posted today will carry them (those of the
    day's real-time batch, which app.services.ingest.realtime creates with them)."""
    points = db.session.scalar(sa.select(Batch.seller_points).where(
        Batch.seller_id == seller_id, Batch.api_day == utcnow().strftime("%Y-%m-%d"),
        Batch.source == BatchSource.API))
    return scoring.seller_points_for(seller_id) if points is None else points


def _checked_attributes(payload: Mapping[str, Any], default_country: str) -> tuple[dict, int]:
    """A ping's attributes validated like a lead's row (SPEC §3, without contacts),
    and the lead's own score points."""
    values = {name: realtime._as_cell(value) for name, value in payload.items()
              if value is not None and name not in ("has_email", "has_phone")}
    result = validate_row(values, RowContext(default_country=default_country, now=utcnow()),
                          contact_required=False)
    has_email, has_phone = bool(payload.get("has_email")), bool(payload.get("has_phone"))
    if not (has_email or has_phone):
        raise LeadRejected("A lead needs an email address or a phone number: say which it "
                           "has with has_email or has_phone.", code="no_contact")
    if not result.accepted:
        raise LeadRejected(result.message, code=result.code,
                           details={"codes": list(result.codes)})
    lead = result.lead
    short = {name: (getattr(lead, name) or None) and getattr(lead, name)[:INTENT_LIMIT]
             for name in ("budget", "authority", "need", "timeframe")}
    points = scoring.lead_points(has_phone=has_phone, has_email=has_email, age=lead.age,
                                 gender=lead.gender, region=lead.region,
                                 interests=lead.interests, marital_status=lead.marital_status,
                                 employed=lead.employed, **short)
    attributes = SimpleNamespace(**{name: getattr(lead, name) for name in bidding.ATTRIBUTES
                                    if name not in ("has_email", "has_phone")},
                                 has_email=has_email, has_phone=has_phone)
    return bidding.attributes_of(attributes), points
