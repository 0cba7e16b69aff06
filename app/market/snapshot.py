"""Queries (read only): what the matcher plans with -- leads as `Candidate`s, open
orders as an `OrderBook`, who received which person as `Claims` -- loaded with the
rules of app.market.rules."""
import json
import threading
from collections import defaultdict
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Callable, Iterable, Optional

import sqlalchemy as sa

from app.core.dialect import id_chunks, in_
from app.extensions import db
from app.market import rules
from app.market.book import Candidate, Claims, OrderBook, Slot, person_hashes
from app.market.filters import Filters
from app.models import (
    BuyerSuppression, EmailDelivery, Lead, NamedBuyer, Order, PersonClaim, PersonListing, Sale,
    User,
)
from app.models.leads import utc_day

LEAD_COLUMNS = (Lead.id, Lead.seller_id, Lead.age, Lead.gender, Lead.region, Lead.country,
                Lead.has_email, Lead.has_phone, Lead.marital_status, Lead.employed,
                sa.cast(Lead.interests, sa.Text).label("interests"), Lead.consent_at, Lead.cap,
                Lead.sold_count, Lead.floor_price,
                (Lead.score_base + Lead.seller_points).label("score_points"),
                Lead.email_hash, Lead.phone_hash, Lead.batch_id, Lead.consent_scope_id)


_INTERESTS = [column.key for column in LEAD_COLUMNS].index("interests")
_SOLD_COUNT = [column.key for column in LEAD_COLUMNS].index("sold_count")


def candidates(rows) -> list[Candidate]:
    out = []
    # Interests come as JSON text, decoded once per distinct list: leads share a few
    # lists, and the driver's per-row JSON decoding was a fifth of loading them.
    decoded: dict[Optional[str], tuple] = {}
    scoped: list[tuple[Candidate, int]] = []  # leads of forms that named their buyers
    for row in rows:
        *fields_, email_hash, phone_hash, batch_id, scope_id = row
        text = fields_[_INTERESTS]
        interests = decoded.get(text)
        if interests is None:
            interests = decoded[text] = tuple(json.loads(text)) if text else ()
        fields_[_INTERESTS] = interests
        lead = Candidate(*fields_, person_hashes=person_hashes(email_hash, phone_hash),
                         batch_id=batch_id)
        out.append(lead)
        if scope_id is not None:
            scoped.append((lead, scope_id))
    if scoped:
        buyers = named_buyers({scope_id for _, scope_id in scoped})
        for lead, scope_id in scoped:
            lead.consent_scope = buyers[scope_id]
    return out


def named_buyers(version_ids: set[int]) -> dict[int, frozenset]:
    """The buyers each of these form versions named (§14)."""
    found: dict[int, set] = {version_id: set() for version_id in version_ids}
    for chunk in id_chunks(sorted(version_ids)):
        for version_id, buyer_id in db.session.execute(
                sa.select(NamedBuyer.version_id, NamedBuyer.buyer_id)
                .where(in_(NamedBuyer.version_id, chunk, sa.Integer))):
            found[version_id].add(buyer_id)
    return {version_id: frozenset(ids) for version_id, ids in found.items()}


def load_leads(lead_ids: list[int]) -> list[Candidate]:
    """These leads as the matcher plans with them, those still on offer, freshest
    first (rule 4), each with the buyers who have it already."""
    rows, owners = [], defaultdict(set)
    connection = db.session.connection()  # Core rows: the ORM handled each, a quarter of this
    for chunk in id_chunks(lead_ids):
        found = connection.execute(
            sa.select(*LEAD_COLUMNS).where(in_(Lead.id, chunk, sa.BigInteger), Lead.offered(),
                                           rules.LEAD_CAP.test(Lead, rules.Ctx()))).all()
        rows.extend(found)
        # Only a lead sold before has buyers: a fresh batch's need no lookup at all.
        sold = [row[0] for row in found if row[_SOLD_COUNT]]
        for lead_id, buyer_id in db.session.execute(
                sa.select(Sale.lead_id, Sale.buyer_id).where(in_(Sale.lead_id, sold,
                                                                 sa.BigInteger))) if sold else ():
            owners[lead_id].add(buyer_id)
    leads = candidates(rows)
    for lead in leads:
        if lead.id in owners:
            lead.buyers = owners[lead.id]
    leads.sort(key=attrgetter("consent_at", "id"), reverse=True)
    return leads


_ORDER_COLUMNS = [getattr(Order, attr.key) for attr in sa.inspect(Order).column_attrs]
_HAS_EMAIL = sa.exists().where(EmailDelivery.order_id == Order.id).label("has_email")


class _ParsedFilters:
    """Each order's parsed filters, kept by this process between order books: an
    order's filters are parsed again only when they differ from the ones kept."""

    def __init__(self):
        self._lock = threading.Lock()
        self._kept: dict[int, tuple[dict, Filters]] = {}

    def of(self, order_id: int, raw: Optional[dict]) -> Filters:
        kept = self._kept.get(order_id)
        if kept is not None and kept[0] == raw:
            return kept[1]
        parsed = Filters.parse(raw)
        with self._lock:
            if len(self._kept) > 100_000:  # closed orders' entries go now and then
                self._kept.clear()
            self._kept[order_id] = (raw, parsed)
        return parsed


_filters = _ParsedFilters()


def load_book(now: datetime, order_ids: Optional[Iterable[int]] = None) -> OrderBook:
    """The orders that may take a lead now, at the price in effect now (a schedule's
    window), in price-time priority.

    One statement reads the open orders' rows as they are now (Core rows, not ORM
    objects: the book needs their values only) with whether each is delivered by
    email; the rules run on those rows, so a changed, paused, closed or new order is
    seen by the next book at once. Only the parsing of filters is kept between books."""
    query = sa.select(*_ORDER_COLUMNS, _HAS_EMAIL).where(
        rules.ORDER_OPEN.sql(Order, None, rules.Ctx()),
        rules.NOT_EXPIRED.sql(Order, None, rules.Ctx(now=now)))
    if order_ids is not None:
        query = query.where(Order.id.in_(list(order_ids)))
    slots, keys = [], {}
    for order in db.session.execute(query):
        price = rules.price_in_effect(order, now)
        if price is None:  # outside every window of its schedule
            continue
        if order.timezone not in keys:
            keys[order.timezone] = rules.period_keys(now, order.timezone)
        ctx = rules.Ctx(now=now, keys=keys[order.timezone], n=1, price=price)
        if not rules.order_takes(order, ctx):
            continue
        least, highest = rules.price_range(order)
        slots.append(Slot(order.id, order.buyer_id, price, order.created_at,
                          rules.order_room(order, ctx), timedelta(days=order.lookback_days),
                          _filters.of(order.id, order.filters), bool(order.webhook_url),
                          has_email=order.has_email, revision=order.revision,
                          keys=ctx.keys, least=least,
                          highest=highest, calling_from=order.calling_from,
                          calling_until=order.calling_until))
    return OrderBook(slots)


def listings(persons: Iterable[bytes]) -> dict[bytes, rules.Listing]:
    """How each of these people is being sold (those sold at all), read without locks."""
    found = {}
    for chunk in id_chunks(sorted(persons)):
        for person, cap, sold, first_sold_at in db.session.execute(
                sa.select(PersonListing.person_hash, PersonListing.cap, PersonListing.sold,
                          PersonListing.first_sold_at)
                .where(in_(PersonListing.person_hash, chunk, sa.LargeBinary))):
            found[bytes(person)] = rules.Listing(cap, sold, first_sold_at)
    return found


def load_claims(hashes: Iterable[bytes], buyer_ids: Optional[Iterable[int]] = None) -> Claims:
    """When each of these buyers last received each of these people, how each of
    these people is being sold, and which of these buyers listed which of them."""
    claims = Claims()
    wanted = None if buyer_ids is None else set(buyer_ids)
    # §14 costs nothing when unused: people are looked up on lists only for buyers
    # who keep one (one probe per buyer).
    keeping = None if wanted is None else buyers_with_lists(wanted)
    _claims_into(claims, set(hashes), wanted, keeping)
    return claims


class PlanClaims:
    """The claims a plan needs (load_claims), loaded as planning reaches the people
    (book.plan_parts calls it with each window of leads before planning them): each
    person once, before the first lead of theirs is planned -- the claims of one load
    at the start, only read later, so the first part is planned and stored without
    waiting for the claims on everyone. `listed` keeps each person's listing as read
    (None: not listed), for the groups that store the plan (grouped: read without
    locks, checked when locked)."""

    def __init__(self, buyer_ids: Iterable[int],
                 keeping: Optional[Callable[[Iterable[int]], set[int]]] = None):
        """`keeping`: which of some buyers keep a suppression list (buyers_with_lists,
        or a run's answer kept: Settlement.listing_buyers)."""
        self.claims = Claims()
        self.listed: dict[bytes, Optional[rules.Listing]] = {}
        self._buyers = set(buyer_ids)
        self._keeping: Optional[set[int]] = None
        self._keeping_of = keeping or buyers_with_lists
        self._loaded: set[bytes] = set()

    def __call__(self, leads: Iterable[Candidate]) -> None:
        persons = {h for lead in leads for h in lead.person_hashes} - self._loaded
        if not persons:
            return
        if self._keeping is None:
            self._keeping = self._keeping_of(self._buyers)
        found = _claims_into(self.claims, persons, self._buyers, self._keeping)
        self._loaded |= persons
        self.listed.update({person: found.get(person) for person in persons})


def _claims_into(claims: Claims, hashes: set[bytes], wanted: Optional[set[int]],
                 keeping: Optional[set[int]]) -> dict[bytes, rules.Listing]:
    """load_claims into `claims`; returns the listings read."""
    found = {}
    for chunk in id_chunks(list(hashes)):
        read = listings(chunk)
        found.update(read)
        for person, listing in read.items():
            claims.list_person(person, listing)
        # The buyers are filtered here, not in SQL: a second list in the WHERE made the
        # index probe every (person, buyer) pair. A person has few claims.
        for buyer_id, person_hash, claimed_at in db.session.execute(
                sa.select(PersonClaim.buyer_id, PersonClaim.person_hash, PersonClaim.claimed_at)
                .where(in_(PersonClaim.person_hash, chunk, sa.LargeBinary))):
            if wanted is None or buyer_id in wanted:
                claims.record(buyer_id, bytes(person_hash), claimed_at)
        if keeping is None or keeping:
            for buyer_id, person in listed_by_buyers(chunk, keeping):
                claims.suppress(buyer_id, person)
    return found


def buyers_with_lists(buyer_ids: Iterable[int]) -> set[int]:
    """Which of these buyers have a suppression list at all."""
    buyer_ids = sorted(set(buyer_ids))
    if not buyer_ids:
        return set()
    return set(db.session.scalars(sa.select(User.id).where(
        in_(User.id, buyer_ids, sa.Integer),
        sa.exists().where(BuyerSuppression.buyer_id == User.id))))


def listed_by_buyers(persons: Iterable[bytes], buyer_ids: Optional[Iterable[int]] = None
                     ) -> set[tuple[int, bytes]]:
    """(buyer, person) for each of these people on a suppression list of one of these
    buyers (any buyer: None)."""
    found = set()
    buyers = None if buyer_ids is None else set(buyer_ids)
    for chunk in id_chunks(sorted(set(persons))):
        wanted = set(chunk)
        # Buyers filtered here, as load_claims does: two lists in the WHERE would have
        # the primary key probed for every (buyer, person) pair.
        for buyer_id, kind, value_hash in db.session.execute(
                sa.select(BuyerSuppression.buyer_id, BuyerSuppression.kind,
                          BuyerSuppression.value_hash).where(
                    in_(BuyerSuppression.value_hash, sorted({p[1:] for p in chunk}),
                        sa.LargeBinary))):
            person = kind.encode() + bytes(value_hash)
            if person in wanted and (buyers is None or buyer_id in buyers):
                found.add((buyer_id, person))
    return found


def inventory_for(slot: Slot, now: datetime, after: Optional[tuple], limit: int
                  ) -> list[Candidate]:
    """Leads on offer that this order may take, freshest first, after the
    (consent_at, id) cursor `after` (rule 4: an order fills from the freshest)."""
    query = (sa.select(*LEAD_COLUMNS)
             .where(Lead.offered(), rules.LEAD_CAP.test(Lead, rules.Ctx()),
                    rules.FLOOR.sql(None, Lead, rules.Ctx(price=slot.price)),
                    rules.NOT_OWN_SELLER.sql(slot, Lead, rules.Ctx()),
                    rules.not_bought_by(slot.buyer_id, Lead.id, Sale),
                    ~rules.listed_by(slot.buyer_id, Lead.email_hash, Lead.phone_hash,
                                     BuyerSuppression),
                    rules.consent_covers(slot.buyer_id, Lead.consent_scope_id, NamedBuyer),
                    *slot.filters.sql_conditions(now))
             # The order of (consent_at, id), led by the day ix_leads_status_consent_day
             # keys leads by: the index gives the days in order, a day is sorted alone.
             .order_by(utc_day(Lead.consent_at).desc(), Lead.consent_at.desc(), Lead.id.desc())
             .limit(limit))
    if after is not None:
        query = query.where(Lead.consented_up_to(after[0]),
                            sa.or_(Lead.consent_at < after[0],
                                   sa.and_(Lead.consent_at == after[0], Lead.id < after[1])))
    return candidates(db.session.connection().execute(query).all())


def live_leads_of(batch_id: int) -> list[int]:
    """A batch's leads still on offer, freshest first."""
    return list(db.session.scalars(
        sa.select(Lead.id).where(Lead.batch_id == batch_id,
                                 rules.LEAD_LIVE.sql(None, Lead, rules.Ctx()),
                                 rules.LEAD_CAP.test(Lead, rules.Ctx()))
        .order_by(Lead.consent_at.desc())))
