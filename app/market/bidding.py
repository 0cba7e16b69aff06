"""Pure logic: live bids (SPEC §4 rule 9). Which orders a real-time lead is offered
to for a bid, what a bid request carries, what a reply means, and the winner: the
bids received in time join the fixed prices in one order book, and the lead goes to
its best orders by the allocation every other lead goes through (app.market.book),
with the rules of app.market.rules -- a bid from an order that could not pay it
(hold, caps, schedule) is no offer. No database, no network: app.realtime asks the
buyers and stores what they said."""
import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

from app.market import rules
from app.market.book import Candidate, Claims, OrderBook, Slot, allocate
from app.services import scoring

# What an order's answer to a ping was. Only `bid` and `fixed` are offers.
OUTCOMES = {
    "bid": "bid",
    "fixed": "its fixed price",
    "no_bid": "answered without a bid",
    "late": "no answer before the deadline",
    "failed": "the request failed",
    "malformed": "the reply was not {\"bid\": N}",
    "over_max": "bid more than its max_bid",
    "below_minimum": "bid less than the platform's minimum price",
    "cannot_pay": "could not pay its bid now (hold, caps or schedule)",
}
OFFERS = ("bid", "fixed")

# The attributes a ping carries and a post must match (SPEC §11: no contact data, but
# which contacts the lead has: orders may require a phone or an email).
ATTRIBUTES = ("age", "gender", "region", "country", "city", "postal_code", "marital_status",
              "employed", "interests", "budget", "authority", "need", "timeframe",
              "consent_at", "sub_id", "has_email", "has_phone")
# Of those, what the bid request shows a buyer (SPEC §11).
REQUEST_FIELDS = ("age", "gender", "region", "country", "city", "postal_code",
                  "marital_status", "employed", "interests", "consent_at", "sub_id")
_TEXT_LIMIT = 255  # stored leads keep the first 255 characters of these
_LIMITED = ("budget", "authority", "need", "timeframe", "sub_id", "city")


@dataclass
class Answer:
    """One order's answer to a ping (or a fixed-price offer)."""

    order_id: int
    outcome: str  # a key of OUTCOMES
    amount: Optional[int] = None  # minor units, for an offer
    detail: Optional[str] = None  # a sentence: what the reply was
    milliseconds: Optional[int] = None  # from the ping's start to the reply


def attributes_of(lead: Any) -> dict:
    """A lead's attributes (a stored Lead, or a validated row with has_email and
    has_phone), in the one form a ping and its post are compared in."""
    out = {}
    for name in ATTRIBUTES:
        value = getattr(lead, name)
        if name == "consent_at":
            value = value.astimezone(timezone.utc).isoformat(timespec="seconds")
        elif name == "interests":
            value = list(value or ())
        elif name in _LIMITED and value:
            value = value[:_TEXT_LIMIT]
        elif name in ("has_email", "has_phone"):
            value = bool(value)
        out[name] = value
    return out


def attributes_hash(attributes: Mapping) -> str:
    return hashlib.sha256(json.dumps(attributes, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def differences(pinged: Mapping, posted: Mapping) -> list[str]:
    """The attributes a post changed from its ping (names only)."""
    return [name for name in ATTRIBUTES if pinged.get(name) != posted.get(name)]


def request_body(ping_id: str, order_id: int, attributes: Mapping, score_points: int,
                 now: datetime) -> dict:
    """The bid request of SPEC §11: the lead's attributes, its score and temperature."""
    consent_at = datetime.fromisoformat(attributes["consent_at"])
    score = scoring.score_at(score_points, consent_at, now)
    lead = {name: attributes[name] for name in REQUEST_FIELDS}
    lead |= {"score": score, "temperature": scoring.temperature(score)}
    return {"ping_id": ping_id, "order_id": order_id, "lead": lead}


def read_reply(order_id: int, status: Optional[int], body: Optional[bytes],
               error: Optional[str], milliseconds: int, max_bid: int, minimum: int,
               deadline_ms: int) -> Answer:
    """What a bid URL's reply means: `{"bid": N}` with minimum <= N <= max_bid, in
    time, is a bid; anything else is no bid, and says why."""
    if error is not None:
        outcome = "late" if error == "late" else "failed"
        return Answer(order_id, outcome, None, None if outcome == "late" else error,
                      milliseconds)
    if milliseconds > deadline_ms:
        return Answer(order_id, "late", None, None, milliseconds)
    if not 200 <= status < 300:
        return Answer(order_id, "failed", None, f"HTTP {status}", milliseconds)
    try:
        reply = json.loads(body or b"")
    except ValueError:
        return Answer(order_id, "malformed", None, "not JSON", milliseconds)
    if not isinstance(reply, dict):
        return Answer(order_id, "malformed", None, "not a JSON object", milliseconds)
    amount = reply.get("bid")
    if amount is None or amount == 0 or amount is False:
        return Answer(order_id, "no_bid", None, None, milliseconds)
    if type(amount) is not int or amount < 0:
        return Answer(order_id, "malformed", None, "bid is not a whole number of minor units",
                      milliseconds)
    if amount > max_bid:
        return Answer(order_id, "over_max", amount, None, milliseconds)
    if amount < minimum:
        return Answer(order_id, "below_minimum", amount, None, milliseconds)
    return Answer(order_id, "bid", amount, None, milliseconds)


def to_ping(lead: Candidate, slots: list[Slot], bidders: Mapping[int, Any], claims: Claims,
            now: datetime) -> list[Slot]:
    """The bidding orders this lead may go to (SPEC §4 rule 9): their filters accept
    it, their max_bid meets its floor, it is not their own, they do not have the
    person within their lookback, and the person may still be sold. `bidders`: order
    id -> the order (with max_bid) for the slots that bid."""
    if min(rules.LEAD_CAP.room(lead, rules.Ctx()), claims.person_room(lead, now)) <= 0:
        return []
    book = OrderBook([replace(slot, price=bidders[slot.id].max_bid)
                      for slot in slots if slot.id in bidders])
    return [slot for slot in book.slots_in(book.accepting(lead, now))
            if rules.buyer_may_take(slot.buyer_id, lead)
            and not claims.blocks(slot.buyer_id, lead, slot.lookback, now)]


def offers_book(slots: list[Slot], bidders: Mapping[int, Any], answers: Mapping[int, Answer],
                now: datetime) -> OrderBook:
    """The order book a real-time lead is allocated from: the fixed-price orders as
    they are, and each bidding order at its bid -- if it bid in time and can pay it
    now (else its answer becomes `cannot_pay`); a bidding order without a bid takes
    nothing."""
    offered = []
    for slot in slots:
        order = bidders.get(slot.id)
        if order is None:
            offered.append(slot)
            continue
        answer = answers.get(slot.id)
        if answer is None or answer.outcome not in OFFERS:
            continue
        ctx = rules.Ctx(now=now, keys=slot.keys, n=1, price=answer.amount)
        if not rules.order_takes(order, ctx):
            answer.outcome = "cannot_pay"
            continue
        offered.append(replace(slot, price=answer.amount, room=rules.order_room(order, ctx)))
    return OrderBook(offered)


def winners(lead: Candidate, slots: list[Slot], bidders: Mapping[int, Any],
            answers: Mapping[int, Answer], claims: Claims, now: datetime
            ) -> list[tuple[Candidate, Slot]]:
    """The lead's fills: its best orders among fixed prices and timely bids, by price
    then time priority and every rule of the market (app.market.book.allocate)."""
    return allocate([lead], offers_book(slots, bidders, answers, now), claims, now)
