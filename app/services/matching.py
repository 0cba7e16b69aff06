"""The matcher (SPEC §4): one entry point per event, every rule enforced twice.

Planning happens in memory: open orders are indexed by region and sorted by price,
then age (price-time priority), and each lead takes the best eligible orders up to
its cap. Storing a plan goes through the database one fill at a time inside a
savepoint, with conditional UPDATEs that re-check the rules under row locks (lead
still under its cap, order still open, under quantity, daily cap and hold, person not
claimed by that buyer within the lookback) and UNIQUE/CHECK constraints behind them.
A fill that lost a race to another process is rolled back whole and its lead is
planned again; nothing is ever half-applied.

Events: `match_leads` (a batch went live, a real-time lead arrived), `fill_order` (an
order was placed, resumed or changed), `match_open_orders` (periodic: delivery hours
opening, daily caps resetting, expiries).
"""
import bisect
import heapq
import itertools
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Iterator, Optional

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db
from app.models import (
    AccountKind, Lead, LeadStatus, Order, OrderStatus, PersonClaim, Sale, User,
    WebhookDelivery,
)
from app.models.types import utcnow
from app.services import ledger
from app.services.ledger import Posting
from app.services.orders import Filters, close_order, in_delivery_hours
from app.services.settlement_batch import sale_key, store_group

log = logging.getLogger(__name__)

NO_AGE = -1  # a lead without an age passes only orders without an age filter
DEMAND_COUNT_LIMIT = 200
PLAN_ROUNDS = 3  # a lead that lost a race is planned again this many times
# PostgreSQL error codes for a transaction that lost to another: it is retried.
RETRYABLE_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


@dataclass
class Slot:
    """An open order as the matcher plans with it."""

    id: int
    buyer_id: int
    price: int
    created_at: datetime
    remaining: int
    held: int
    daily_left: Optional[int]
    lookback: timedelta
    filters: Filters
    has_webhook: bool
    rank: tuple = ()  # price, then time priority: smaller is served first
    # The age range as plain ints, for the order book's age index.
    age_lo: int = NO_AGE
    age_hi: int = 1000

    def __post_init__(self):
        self.rank = (-self.price, self.created_at, self.id)
        if self.filters.age_min is not None:
            self.age_lo = self.filters.age_min
        if self.filters.age_max is not None:
            self.age_hi = self.filters.age_max

    def can_take_one(self) -> bool:
        return (self.remaining > 0 and self.held >= self.price
                and (self.daily_left is None or self.daily_left > 0))

    def take_one(self) -> None:
        self.remaining -= 1
        self.held -= self.price
        if self.daily_left is not None:
            self.daily_left -= 1


@dataclass
class Candidate:
    """A lead as the matcher plans with it."""

    id: int
    seller_id: int
    age: Optional[int]
    gender: str
    region: Optional[str]
    country: Optional[str]
    has_email: bool
    has_phone: bool
    marital_status: str
    employed: str
    interests: list
    consent_at: datetime
    cap: int
    sold_count: int
    floor_price: int
    score_points: int  # the stored score parts; freshness is added as of `now`
    person_hashes: tuple[bytes, ...]
    buyers: set = field(default_factory=set)  # buyers who already have this lead
    batch_id: Optional[int] = None  # copied onto its sales, for per-batch figures


LEAD_COLUMNS = (Lead.id, Lead.seller_id, Lead.age, Lead.gender, Lead.region, Lead.country,
                Lead.has_email, Lead.has_phone, Lead.marital_status, Lead.employed,
                Lead.interests, Lead.consent_at, Lead.cap, Lead.sold_count, Lead.floor_price,
                (Lead.score_base + Lead.seller_points).label("score_points"),
                Lead.email_hash, Lead.phone_hash, Lead.batch_id)


def person_hashes(email_hash: Optional[bytes], phone_hash: Optional[bytes]) -> tuple[bytes, ...]:
    """One person's identities: either contact makes two leads the same person."""
    hashes = []
    if email_hash:
        hashes.append(b"e" + bytes(email_hash))
    if phone_hash:
        hashes.append(b"p" + bytes(phone_hash))
    return tuple(hashes)


def _candidates(rows) -> list[Candidate]:
    out = []
    for row in rows:
        *fields_, email_hash, phone_hash, batch_id = row
        out.append(Candidate(*fields_, person_hashes=person_hashes(email_hash, phone_hash),
                             batch_id=batch_id))
    return out


def _rank(slot: "Slot") -> tuple:
    return slot.rank


def _minus_price(slot: "Slot") -> int:
    return slot.rank[0]


class OrderBook:
    """Open orders that can take a lead now, in priority order, indexed by the three
    filters that split a market most (region, gender, age). For each kind of lead the
    orders that may want it are kept as one list in priority order, built on first
    use; orders leave the lists as they fill, so the last leads of a big batch do not
    wade through full orders."""

    def __init__(self, slots: list[Slot]):
        self.slots = {slot.id: slot for slot in slots}
        self._buckets: dict[tuple, list[Slot]] = defaultdict(list)
        for slot in sorted(slots, key=_rank):
            for region in slot.filters.regions or (None,):
                for gender in slot.filters.genders or (None,):
                    self._buckets[(region, gender)].append(slot)
        self._lists: dict[tuple, list[Slot]] = {}
        self._lists_of: dict[int, list[tuple]] = defaultdict(list)
        self._dead: Counter = Counter()

    def _list_for(self, region: Optional[str], gender: str, age: int) -> list[Slot]:
        key = (region, gender, age)
        found = self._lists.get(key)
        if found is None:
            regions = (region, None) if region else (None,)
            parts = [self._buckets.get((r, g), ()) for r in regions for g in (gender, None)]
            found = [slot for slot in heapq.merge(*parts, key=_rank)
                     if slot.age_lo <= age <= slot.age_hi and slot.can_take_one()]
            self._lists[key] = found
            for slot in found:
                self._lists_of[slot.id].append(key)
        return found

    @classmethod
    def load(cls, now: datetime, order_ids: Optional[Iterable[int]] = None) -> "OrderBook":
        query = sa.select(Order).where(
            Order.status == OrderStatus.OPEN, Order.filled < Order.quantity,
            Order.held >= Order.price,
            sa.or_(Order.expires_at.is_(None), Order.expires_at > now))
        if order_ids is not None:
            query = query.where(Order.id.in_(list(order_ids)))
        today = now.strftime("%Y-%m-%d")
        slots = []
        for order in db.session.scalars(query):
            if not in_delivery_hours(order, now):
                continue
            daily_left = None
            if order.daily_cap is not None:
                daily_left = order.daily_cap - (order.day_filled if order.fill_day == today else 0)
                if daily_left <= 0:
                    continue
            slots.append(Slot(order.id, order.buyer_id, order.price, order.created_at,
                              order.remaining, order.held, daily_left,
                              timedelta(days=order.lookback_days), Filters.parse(order.filters),
                              bool(order.webhook_url)))
        return cls(slots)

    def demand_for(self, lead: Candidate, now: datetime) -> int:
        """How many open orders would take this lead (its scarcity), counted exactly up
        to DEMAND_COUNT_LIMIT: beyond that a lead is plentiful enough either way."""
        candidates = self._list_for(lead.region, lead.gender,
                                    NO_AGE if lead.age is None else lead.age)
        paying = bisect.bisect_right(candidates, -lead.floor_price, key=_minus_price)
        return sum(1 for slot in itertools.islice(candidates, min(paying, DEMAND_COUNT_LIMIT))
                   if slot.filters.matches(lead, now))

    def candidates(self, lead: Candidate) -> Iterator[Slot]:
        return iter(self._list_for(lead.region, lead.gender,
                                   NO_AGE if lead.age is None else lead.age))

    def retire(self, slot: Slot) -> None:
        """A slot that can take no more leaves the lists: rebuilt once an eighth are
        full, so full orders (the best-paid fill first) never pile up in front."""
        for key in self._lists_of.get(slot.id, ()):
            self._dead[key] += 1
            current = self._lists[key]
            if self._dead[key] * 8 > len(current):
                # A new list, not an in-place edit: a running loop may hold the old one.
                self._lists[key] = [s for s in current if s.can_take_one()]
                self._dead[key] = 0

    @property
    def buyer_ids(self) -> set[int]:
        return {slot.buyer_id for slot in self.slots.values()}


class Claims:
    """When each buyer last received each person (for the duplicate lookback)."""

    def __init__(self):
        self._last: dict[tuple[int, bytes], datetime] = {}

    @classmethod
    def load(cls, hashes: Iterable[bytes], buyer_ids: Optional[Iterable[int]] = None) -> "Claims":
        claims = cls()
        hashes = list(set(hashes))
        for start in range(0, len(hashes), 500):
            query = sa.select(PersonClaim.buyer_id, PersonClaim.person_hash, PersonClaim.claimed_at
                              ).where(PersonClaim.person_hash.in_(hashes[start:start + 500]))
            if buyer_ids is not None:
                query = query.where(PersonClaim.buyer_id.in_(list(buyer_ids)))
            for buyer_id, person_hash, claimed_at in db.session.execute(query):
                claims._last[(buyer_id, bytes(person_hash))] = claimed_at
        return claims

    def blocks(self, buyer_id: int, lead: Candidate, lookback: timedelta, now: datetime) -> bool:
        for person in lead.person_hashes:
            last = self._last.get((buyer_id, person))
            if last is not None and last > now - lookback:
                return True
        return False

    def add(self, buyer_id: int, lead: Candidate, now: datetime) -> None:
        for person in lead.person_hashes:
            self._last[(buyer_id, person)] = now


def allocate(leads: list[Candidate], book: OrderBook, claims: Claims,
             now: datetime) -> list[tuple[Candidate, Slot]]:
    """Each lead, in the order given, to its best eligible orders (SPEC §4 rules 1–3)."""
    plan = []
    for lead in leads:
        room = lead.cap - lead.sold_count
        if room <= 0:
            continue
        for slot in book.candidates(lead):
            if slot.price < lead.floor_price:
                break  # the rest pay even less
            if (not slot.can_take_one() or slot.buyer_id in lead.buyers
                    or slot.buyer_id == lead.seller_id
                    or not slot.filters.matches(lead, now)
                    or claims.blocks(slot.buyer_id, lead, slot.lookback, now)):
                continue
            plan.append((lead, slot))
            slot.take_one()
            if not slot.can_take_one():
                book.retire(slot)
            lead.buyers.add(slot.buyer_id)
            claims.add(slot.buyer_id, lead, now)
            room -= 1
            if room == 0:
                break
    return plan


def plan_batch(leads: list[Candidate], book: OrderBook, claims: Claims,
               now: datetime) -> list[tuple[Candidate, Slot]]:
    """Plan a batch of leads. Each lead still takes the best orders it can
    (price-time priority), but the leads that few orders can use choose first, so
    they are not left unsold by orders any lead would have filled: revenue comes
    close to the best possible allocation (bench/match.py measures how close)."""
    leads = sorted(leads, key=lambda lead: book.demand_for(lead, now))
    return allocate(leads, book, claims, now)


class _Lost(Exception):
    """The database refused a planned fill: another process got there first."""


class Settlement:
    """Stores fills: the sale, its ledger transaction and its webhook delivery."""

    def __init__(self, now: datetime):
        self.now = now
        self.today = now.strftime("%Y-%m-%d")
        self.default_bp = current_app.config["COMMISSION_RATE_BP"]
        self._rates: dict[int, int] = {}
        self._accounts: dict[tuple, ledger.AccountRef] = {}
        self.sale_ids: list[int] = []
        self.webhook_sale_ids: list[int] = []
        self.touched_orders: set[int] = set()

    def commission(self, seller_id: int, price: int) -> int:
        """The exchange's cut of a sale: the seller's rate (or the default), half up."""
        if seller_id not in self._rates:
            override = db.session.scalar(sa.select(User.commission_rate_bp).where(User.id == seller_id))
            self._rates[seller_id] = self.default_bp if override is None else override
        return (price * self._rates[seller_id] + 5_000) // 10_000

    def absorb(self, other: "Settlement") -> None:
        """Add the sales of a sub-run (one chunk, one order) to this run's."""
        self.sale_ids += other.sale_ids
        self.webhook_sale_ids += other.webhook_sale_ids

    def account(self, kind: AccountKind, user_id: Optional[int]) -> ledger.AccountRef:
        key = (kind, user_id)
        if key not in self._accounts:
            user = db.session.get(User, user_id) if user_id else None
            self._accounts[key] = ledger.AccountRef.of(ledger.account(kind, user))
        return self._accounts[key]

    def fill(self, lead: Candidate, slot: Slot) -> bool:
        """Store one planned fill whole, or nothing of it (False: lost a race)."""
        try:
            with db.session.begin_nested():
                self._fill(lead, slot)
        except _Lost:
            return False
        except IntegrityError:  # the UNIQUE/CHECK guards caught what a race slipped past
            return False
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
                return False
            raise
        return True

    def _fill(self, lead: Candidate, slot: Slot) -> None:
        now, price = self.now, slot.price
        taken = db.session.execute(
            sa.update(Lead).where(Lead.id == lead.id, Lead.status == LeadStatus.LIVE,
                                  Lead.sold_count < Lead.cap, Lead.floor_price <= price)
            .values(sold_count=Lead.sold_count + 1)
            .execution_options(synchronize_session=False)).rowcount
        if taken != 1:
            raise _Lost
        filled = db.session.execute(
            sa.update(Order).where(
                Order.id == slot.id, Order.status == OrderStatus.OPEN, Order.price == price,
                Order.filled < Order.quantity, Order.held >= price,
                sa.or_(Order.expires_at.is_(None), Order.expires_at > now),
                sa.or_(Order.daily_cap.is_(None), Order.fill_day.is_(None),
                       Order.fill_day != self.today, Order.day_filled < Order.daily_cap))
            .values(filled=Order.filled + 1, spent=Order.spent + price, held=Order.held - price,
                    day_filled=sa.case((Order.fill_day == self.today, Order.day_filled + 1),
                                       else_=1),
                    fill_day=self.today)
            .execution_options(synchronize_session=False)).rowcount
        if filled != 1:
            raise _Lost
        for person in lead.person_hashes:
            if not self._claim(slot.buyer_id, person, slot.lookback):
                raise _Lost
        commission = self.commission(lead.seller_id, price)
        sale_id = db.session.execute(sa.insert(Sale).values(
            order_id=slot.id, lead_id=lead.id, buyer_id=slot.buyer_id, seller_id=lead.seller_id,
            price=price, commission=commission, seller_share=price - commission,
            created_at=now, region=lead.region, batch_id=lead.batch_id
        ).returning(Sale.id)).scalar_one()
        postings = [Posting(self.account(AccountKind.BUYER_HELD, slot.buyer_id), -price),
                    Posting(self.account(AccountKind.SELLER_PENDING, lead.seller_id),
                            price - commission)]
        if commission:
            postings.append(Posting(self.account(AccountKind.PLATFORM_COMMISSION, None),
                                    commission))
        transaction = ledger.post("sale", postings, idempotency_key=sale_key(lead.id, slot.id),
                                  memo=f"Sale #{sale_id}, order #{slot.id}")
        db.session.execute(sa.update(Sale).where(Sale.id == sale_id)
                           .values(ledger_transaction_id=transaction.id)
                           .execution_options(synchronize_session=False))
        if slot.has_webhook:
            db.session.execute(sa.insert(WebhookDelivery).values(
                sale_id=sale_id, order_id=slot.id, next_attempt_at=now, created_at=now))
            self.webhook_sale_ids.append(sale_id)
        self.sale_ids.append(sale_id)
        self.touched_orders.add(slot.id)

    def _claim(self, buyer_id: int, person: bytes, lookback: timedelta) -> bool:
        """Record the delivery of a person to a buyer unless one is inside the lookback."""
        dialect = db.session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(PersonClaim)
        statement = insert.values(buyer_id=buyer_id, person_hash=person, claimed_at=self.now)
        statement = statement.on_conflict_do_update(
            index_elements=[PersonClaim.buyer_id, PersonClaim.person_hash],
            set_={"claimed_at": self.now},
            where=PersonClaim.claimed_at <= self.now - lookback)
        # RETURNING, not rowcount: drivers disagree on rowcount for an upsert.
        return db.session.execute(statement.returning(PersonClaim.buyer_id)).first() is not None

    def close_filled_orders(self) -> None:
        """Orders that reached their quantity, or cannot pay for one more lead, are done.

        One order per transaction: closing locks the order, then its buyer's accounts;
        several in one transaction could lock two buyers' accounts in either order."""
        for order_id in sorted(self.touched_orders):
            try:
                order = db.session.scalar(sa.select(Order).where(
                    Order.id == order_id, Order.status == OrderStatus.OPEN,
                    sa.or_(Order.filled >= Order.quantity, Order.held < Order.price))
                    .with_for_update())
                if order is not None:
                    close_order(order, OrderStatus.FILLED)
                db.session.commit()
            except OperationalError as exc:
                db.session.rollback()
                if getattr(exc.orig, "sqlstate", None) not in RETRYABLE_SQLSTATES:
                    raise
                # Another worker holds it; whoever fills it next closes it.
        self.touched_orders.clear()


GROUP_SIZE = 1000  # fills stored per transaction on the fast path


def _store(plan: list[tuple[Candidate, Slot]], settlement: Settlement) -> list[int]:
    """Store a plan; returns the ids of leads whose fill was lost to another worker.

    Groups of fills go in one transaction each (settlement_batch); what a group
    cannot absorb is stored one fill per transaction, whose row locks follow the
    same order (lead, order, person claims, ledger accounts by id)."""
    lost_leads = []
    for start in range(0, len(plan), GROUP_SIZE):
        lost, one_by_one = store_group(plan[start:start + GROUP_SIZE], settlement)
        db.session.commit()
        lost_leads.extend(lead.id for lead, _ in lost)
        for lead, slot in one_by_one:
            if settlement.fill(lead, slot):
                db.session.commit()
            else:
                db.session.rollback()
                lost_leads.append(lead.id)
    settlement.close_filled_orders()
    db.session.commit()
    return lost_leads


def _load_leads(lead_ids: list[int]) -> list[Candidate]:
    rows = []
    for start in range(0, len(lead_ids), 1000):
        rows.extend(db.session.execute(
            sa.select(*LEAD_COLUMNS).where(Lead.id.in_(lead_ids[start:start + 1000]),
                                           Lead.status == LeadStatus.LIVE,
                                           Lead.sold_count < Lead.cap)))
    leads = _candidates(rows)
    owners = defaultdict(set)
    for start in range(0, len(lead_ids), 1000):
        for lead_id, buyer_id in db.session.execute(
                sa.select(Sale.lead_id, Sale.buyer_id).where(
                    Sale.lead_id.in_(lead_ids[start:start + 1000]))):
            owners[lead_id].add(buyer_id)
    for lead in leads:
        lead.buyers = owners[lead.id]
    # Rule 4: the freshest leads first.
    leads.sort(key=lambda lead: (lead.consent_at, lead.id), reverse=True)
    return leads


def match_leads(lead_ids: list[int], now: Optional[datetime] = None) -> Settlement:
    """Offer these leads to the open orders (a batch went live, a lead arrived)."""
    now = now or utcnow()
    settlement = Settlement(now)
    pending = list(lead_ids)
    for _ in range(PLAN_ROUNDS):
        leads = _load_leads(pending)
        if not leads:
            break
        book = OrderBook.load(now)
        if not book.slots:
            break
        claims = Claims.load([h for lead in leads for h in lead.person_hashes], book.buyer_ids)
        db.session.commit()  # hold no lock while planning
        pending = _store(plan_batch(leads, book, claims, now), settlement)
        if not pending:
            break
    return settlement


def match_batch(batch_id: int, chunk: int = 5000) -> Settlement:
    """A batch went live: offer its leads, freshest first, in chunks."""
    now = utcnow()
    settlement = Settlement(now)
    ids = list(db.session.scalars(
        sa.select(Lead.id).where(Lead.batch_id == batch_id, Lead.status == LeadStatus.LIVE,
                                 Lead.sold_count < Lead.cap).order_by(Lead.consent_at.desc())))
    for start in range(0, len(ids), chunk):
        settlement.absorb(match_leads(ids[start:start + chunk], now))
    return settlement


def fill_order(order_id: int, now: Optional[datetime] = None) -> Settlement:
    """An order was placed, resumed or changed: fill it from live inventory, freshest first."""
    now = now or utcnow()
    settlement = Settlement(now)
    cursor = None  # (consent_at, id) of the last lead looked at
    while True:
        book = OrderBook.load(now, [order_id])
        slot = book.slots.get(order_id)
        if slot is None or not slot.can_take_one():
            break
        want = slot.remaining if slot.daily_left is None else min(slot.remaining, slot.daily_left)
        query = (sa.select(*LEAD_COLUMNS)
                 .where(Lead.status == LeadStatus.LIVE, Lead.sold_count < Lead.cap,
                        Lead.floor_price <= slot.price, Lead.seller_id != slot.buyer_id,
                        *slot.filters.sql_conditions(now),
                        ~sa.exists().where(Sale.lead_id == Lead.id,
                                           Sale.buyer_id == slot.buyer_id))
                 .order_by(Lead.consent_at.desc(), Lead.id.desc())
                 .limit(max(want * 2, 200)))
        if cursor is not None:
            query = query.where(sa.or_(Lead.consent_at < cursor[0],
                                       sa.and_(Lead.consent_at == cursor[0], Lead.id < cursor[1])))
        leads = _candidates(db.session.execute(query))
        if not leads:
            break
        cursor = (leads[-1].consent_at, leads[-1].id)
        claims = Claims.load([h for lead in leads for h in lead.person_hashes], [slot.buyer_id])
        db.session.commit()  # hold no lock while planning
        _store(allocate(leads, book, claims, now), settlement)
    return settlement


def match_open_orders(now: Optional[datetime] = None) -> Settlement:
    """Periodic: expire orders, then fill every open order from inventory by priority."""
    from app.services.orders import expire_due_orders

    now = now or utcnow()
    expire_due_orders(now)
    db.session.commit()
    settlement = Settlement(now)
    order_ids = [slot.id for slot in sorted(OrderBook.load(now).slots.values(),
                                            key=lambda s: s.rank)]
    for order_id in order_ids:
        settlement.absorb(fill_order(order_id, now))
    return settlement
