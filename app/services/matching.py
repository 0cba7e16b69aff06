"""The matcher (SPEC §4): one entry point per event, every rule enforced twice.

Planning happens in memory: open orders are kept in price-time priority as bit sets
per filter value (OrderBook), and each lead takes the best eligible orders up to its
cap. Storing a plan goes through the database in groups of fills, one transaction
each (settlement_batch), with conditional UPDATEs that re-check the rules under row
locks (lead still under its cap, order still open, under quantity, daily cap and
hold, person not claimed by that buyer within the lookback) and UNIQUE/CHECK
constraints behind them; a group that collides with another worker is split, down
to single fills in a savepoint each. A fill that lost a race to another process is
rolled back whole and its lead is planned again; nothing is ever half-applied.

Events: `match_leads` (a batch went live, a real-time lead arrived), `fill_order` (an
order was placed, resumed or changed), `match_open_orders` (periodic: delivery hours
opening, daily caps resetting, expiries).
"""
import bisect
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Iterable, Iterator, Optional

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from app.extensions import db
from app.models import (
    AccountKind, Lead, LeadStatus, LedgerAccount, Order, OrderStatus, PersonClaim, Sale, User,
    WebhookDelivery,
)
from app.models.types import utcnow
from app.services import ledger, scoring
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
    interests: tuple  # shared between leads with the same interests: never mutated
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
                sa.cast(Lead.interests, sa.Text).label("interests"), Lead.consent_at, Lead.cap,
                Lead.sold_count, Lead.floor_price,
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


_INTERESTS = [column.key for column in LEAD_COLUMNS].index("interests")


def _candidates(rows) -> list[Candidate]:
    out = []
    # Interests come as JSON text, decoded once per distinct list: leads share a few
    # lists, and the driver's per-row JSON decoding was a fifth of loading them.
    decoded: dict[Optional[str], tuple] = {}
    for row in rows:
        *fields_, email_hash, phone_hash, batch_id = row
        text = fields_[_INTERESTS]
        interests = decoded.get(text)
        if interests is None:
            interests = decoded[text] = tuple(json.loads(text)) if text else ()
        fields_[_INTERESTS] = interests
        out.append(Candidate(*fields_, person_hashes=person_hashes(email_hash, phone_hash),
                             batch_id=batch_id))
    return out


def _rank(slot: "Slot") -> tuple:
    return slot.rank


def _bits(positions: Iterable[int], size: int) -> int:
    """A set of positions as an int: bit i set for position i."""
    buf = bytearray(size // 8 + 1)
    for p in positions:
        buf[p >> 3] |= 1 << (p & 7)
    return int.from_bytes(buf, "little")


class _AnyOf:
    """One "any of these values" filter as sets of orders: those without the filter,
    and for each value those that list it."""

    def __init__(self):
        self.unfiltered: list[int] = []
        self.listing: dict = defaultdict(list)

    def add(self, position: int, values) -> None:
        if values:
            for value in values:
                self.listing[value].append(position)
        else:
            self.unfiltered.append(position)

    def freeze(self, size: int) -> "_AnyOf":
        self.any = _bits(self.unfiltered, size)
        self.by_value = {value: _bits(ps, size) for value, ps in self.listing.items()}
        return self

    def of(self, value) -> int:
        """The orders that accept a lead with this value."""
        return self.any | self.by_value.get(value, 0)

    def of_any(self, values) -> int:
        """The orders that accept a lead with these values (one in common will do)."""
        mask = self.any
        for value in values:
            mask |= self.by_value.get(value, 0)
        return mask


class _Bound:
    """One bound on a number (an order's minimum or maximum age, ...) as sets of
    orders: `cumulative[k]` holds the orders without the bound plus those whose bound
    is among the k most permissive (`bounds`, most permissive first)."""

    def __init__(self, size: int, bounded: list[tuple], unbounded: list[int], maximum: bool):
        bounded.sort(key=lambda pair: pair[0], reverse=maximum)
        self.maximum = maximum
        self.bounds: list = []
        buf = bytearray(size // 8 + 1)
        for p in unbounded:
            buf[p >> 3] |= 1 << (p & 7)
        self.cumulative = [int.from_bytes(buf, "little")]
        for i, (bound, p) in enumerate(bounded):
            buf[p >> 3] |= 1 << (p & 7)
            if i + 1 == len(bounded) or bounded[i + 1][0] != bound:
                self.bounds.append(bound)
                self.cumulative.append(int.from_bytes(buf, "little"))
        # Ascending, for bisect: a maximum passes values up to it, a minimum from it.
        self._keys = [-b for b in self.bounds] if maximum else self.bounds
        self.unbounded_only = not bounded

    def passing(self, value) -> int:
        """The orders whose bound lets this value through."""
        return self.cumulative[bisect.bisect_right(self._keys, -value if self.maximum else value)]


class OrderBook:
    """Open orders in price-time priority, as sets of bits.

    Position i is the i-th order by priority, and a set of orders is an int with bit
    i set for each. Each filter of SPEC §4 is kept as the set of orders that accept
    each value (gender "f", region "US-CA", age 37, ...), so the orders that accept a
    lead are the AND of a few ints -- exactly the orders `Filters.matches` accepts
    (tests/test_matching_properties.py compares them) -- and the lowest set bit is the
    best of them. Orders leave `open` as they fill. What depends on the buyer (the
    lead is theirs already, their own lead, a person inside their lookback) is checked
    for each order as it is taken."""

    def __init__(self, slots: list[Slot]):
        self.slots = {slot.id: slot for slot in slots}
        ranked = sorted(slots, key=_rank)
        self._ranked = ranked
        self._position = {slot.id: i for i, slot in enumerate(ranked)}
        self._minus_prices = [-slot.price for slot in ranked]
        size = len(ranked)
        self.open = _bits((i for i, slot in enumerate(ranked) if slot.can_take_one()), size)
        genders, regions, countries = _AnyOf(), _AnyOf(), _AnyOf()
        marital, employed, interests = _AnyOf(), _AnyOf(), _AnyOf()
        require = defaultdict(list)
        exclusive, age_min, age_max, fresh, score_min = [], [], [], [], []
        no_min, no_max, no_fresh, no_score = [], [], [], []
        for i, slot in enumerate(ranked):
            f = slot.filters
            genders.add(i, f.genders)
            regions.add(i, f.regions)
            countries.add(i, f.countries)
            marital.add(i, f.marital_statuses)
            employed.add(i, () if f.employed is None else (f.employed,))
            interests.add(i, f.interests)
            require[f.require].append(i)
            if f.exclusive_only:
                exclusive.append(i)
            if f.age_min is None:
                no_min.append(i)
            else:
                age_min.append((f.age_min, i))
            if f.age_max is None:
                no_max.append(i)
            else:
                age_max.append((f.age_max, i))
            if f.max_age_days is None:
                no_fresh.append(i)
            else:
                fresh.append((f.max_age_days, i))
            if f.score_threshold:
                score_min.append((f.score_threshold, i))
            else:
                no_score.append(i)
        self._genders, self._regions = genders.freeze(size), regions.freeze(size)
        self._countries, self._marital = countries.freeze(size), marital.freeze(size)
        self._employed, self._interests = employed.freeze(size), interests.freeze(size)
        self._anyone_interests = not interests.listing
        self._require = {kind: _bits(require.get(kind, ()), size)
                         for kind in (None, "phone", "email", "both")}
        self._exclusive = _bits(exclusive, size)
        self._age_min = _Bound(size, age_min, no_min, maximum=False)
        self._age_max = _Bound(size, age_max, no_max, maximum=True)
        # Freshness is a maximum age in days: the longest window is the most permissive.
        self._fresh = _Bound(size, fresh, no_fresh, maximum=True)
        self._fresh_now: Optional[datetime] = None
        self._fresh_cutoffs: list[datetime] = []
        # min_score / minimum temperature (SPEC §6): the lead's score as of `now`.
        self._score_min = _Bound(size, score_min, no_score, maximum=False)
        self._who: dict = {}  # (region, country, gender) -> orders that accept it
        self._what: dict = {}  # (email, phone, marital, employed, exclusive) -> orders
        self._ages: dict = {}
        self._tastes: dict = {}  # interests -> orders
        self._floors: dict = {}  # floor price -> orders that pay it

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

    def accepting(self, lead: Candidate, now: datetime) -> int:
        """The open orders whose filters accept this lead and whose price meets its
        floor, as a set of positions (before the rules that depend on the buyer)."""
        floor = lead.floor_price
        mask = self._floors.get(floor)
        if mask is None:
            paying = bisect.bisect_right(self._minus_prices, -floor)
            mask = self._floors[floor] = (1 << paying) - 1
        mask &= self.open
        if not mask:
            return 0
        key = (lead.region, lead.country, lead.gender)
        who = self._who.get(key)
        if who is None:
            who = self._who[key] = (self._regions.of(lead.region)
                                    & self._countries.of(lead.country)
                                    & self._genders.of(lead.gender))
        mask &= who
        key = (bool(lead.has_email), bool(lead.has_phone), lead.marital_status, lead.employed,
               lead.cap == 1)
        what = self._what.get(key)
        if what is None:
            what = self._what[key] = self._what_mask(*key)
        mask &= what
        age = self._ages.get(lead.age)
        if age is None:
            age = self._ages[lead.age] = self._age_mask(lead.age)
        mask &= age
        if not mask:
            return 0
        if not self._anyone_interests:
            key = tuple(lead.interests or ())
            tastes = self._tastes.get(key)
            if tastes is None:
                tastes = self._tastes[key] = self._interests.of_any(key)
            mask &= tastes
        if not self._fresh.unbounded_only:
            if now != self._fresh_now:
                self._fresh_now = now
                self._fresh_cutoffs = [now - timedelta(days=d) for d in self._fresh.bounds]
            # Fresh enough for an order when consent_at >= now - its window.
            mask &= self._fresh.cumulative[bisect.bisect_right(self._fresh_cutoffs,
                                                               lead.consent_at)]
        if not self._score_min.unbounded_only:
            mask &= self._score_min.passing(
                scoring.score_at(lead.score_points, lead.consent_at, now))
        return mask

    def _what_mask(self, email: bool, phone: bool, marital: str, employed: str,
                   exclusive_ok: bool) -> int:
        require = self._require
        mask = require[None]
        if phone:
            mask |= require["phone"]
        if email:
            mask |= require["email"]
        if phone and email:
            mask |= require["both"]
        mask &= self._marital.of(marital) & self._employed.of(employed)
        if not exclusive_ok:  # exclusive-only orders take leads sold once only
            mask &= ~self._exclusive
        return mask

    def _age_mask(self, age: Optional[int]) -> int:
        if age is None:  # passes only orders without an age bound
            return self._age_min.cumulative[0] & self._age_max.cumulative[0]
        return self._age_min.passing(age) & self._age_max.passing(age)

    def demand_for(self, lead: Candidate, now: datetime) -> int:
        """How many open orders would take this lead (its scarcity), counted exactly up
        to DEMAND_COUNT_LIMIT: beyond that a lead is plentiful enough either way."""
        return min(self.accepting(lead, now).bit_count(), DEMAND_COUNT_LIMIT)

    def retire(self, slot: Slot) -> None:
        """A slot that can take no more leaves the open set."""
        self.open &= ~(1 << self._position[slot.id])

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
        for chunk in _id_chunks(list(set(hashes))):
            query = sa.select(PersonClaim.buyer_id, PersonClaim.person_hash, PersonClaim.claimed_at
                              ).where(_in(PersonClaim.person_hash, chunk, sa.LargeBinary))
            if buyer_ids is not None:
                query = query.where(_in(PersonClaim.buyer_id, list(buyer_ids), sa.Integer))
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
        eligible = book.accepting(lead, now)
        while eligible:
            best = eligible & -eligible
            eligible ^= best
            slot = book._ranked[best.bit_length() - 1]
            if (slot.buyer_id in lead.buyers or slot.buyer_id == lead.seller_id
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

    def account_ids(self, kind: AccountKind):
        """user id -> the id of that user's account of this kind."""
        accounts = self._accounts

        def account_id(user_id: int) -> int:
            found = accounts.get((kind, user_id))
            return (found or self.account(kind, user_id)).id
        return account_id

    def preload(self, buyer_ids: Iterable[int], seller_ids: Iterable[int]) -> None:
        """The accounts and commission rates a plan will need, in two queries rather
        than a few per user."""
        buyer_ids, seller_ids = set(buyer_ids), set(seller_ids)
        wanted = {AccountKind.BUYER_HELD: buyer_ids, AccountKind.BUYER_AVAILABLE: buyer_ids,
                  AccountKind.SELLER_PENDING: seller_ids}
        users = sorted(buyer_ids | seller_ids)
        for start in range(0, len(users), 1000):
            part = users[start:start + 1000]
            for account in db.session.scalars(sa.select(LedgerAccount).where(
                    LedgerAccount.user_id.in_(part),
                    LedgerAccount.kind.in_(list(wanted)))):
                if account.user_id in wanted[account.kind]:
                    self._accounts[(account.kind, account.user_id)] = ledger.AccountRef.of(account)
        sellers = sorted(seller_ids - set(self._rates))
        for start in range(0, len(sellers), 1000):
            for seller_id, override in db.session.execute(
                    sa.select(User.id, User.commission_rate_bp)
                    .where(User.id.in_(sellers[start:start + 1000]))):
                self._rates[seller_id] = self.default_bp if override is None else override

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
        """Orders that reached their quantity, or cannot pay for one more lead, are done
        (those a stored group finished are closed by it already).

        One order per transaction: closing locks the order, then its buyer's accounts;
        several in one transaction could lock two buyers' accounts in either order."""
        touched = sorted(self.touched_orders)
        done = []  # found without locks first: most touched orders still have room
        for chunk in _id_chunks(touched):
            done += db.session.scalars(sa.select(Order.id).where(
                _in(Order.id, chunk, sa.Integer), Order.status == OrderStatus.OPEN,
                sa.or_(Order.filled >= Order.quantity, Order.held < Order.price)))
        db.session.commit()
        for order_id in sorted(done):
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


GROUP_SIZE = 5000  # fills stored per transaction on the fast path
SMALLEST_GROUP = 8  # a group that collides is split down to this, then stored one by one


def _store(plan: list[tuple[Candidate, Slot]], settlement: Settlement) -> list[int]:
    """Store a plan; returns the ids of leads whose fill was lost to another worker.

    Groups of fills go in one transaction each (settlement_batch). A group that
    collides with another worker is split in halves, each tried as a group, down to
    single fills (one per transaction), whose row locks follow the same order (lead,
    order, person claims, ledger accounts by id)."""
    settlement.preload({slot.buyer_id for _, slot in plan}, {lead.seller_id for lead, _ in plan})
    lost_leads = []
    # A stack of (fills, split from a group that collided?): the plan's own order,
    # halves before what follows.
    groups = [(plan[start:start + GROUP_SIZE], False)
              for start in range(0, len(plan), GROUP_SIZE)][::-1]
    while groups:
        group, split = groups.pop()
        if not split or len(group) > SMALLEST_GROUP:
            lost, again = store_group(group, settlement)
            db.session.commit()
            lost_leads.extend(lead.id for lead, _ in lost)
            if again:
                half = len(again) // 2
                groups += [(again[half:], True), (again[:half], True)]
            continue
        for lead, slot in group:
            if settlement.fill(lead, slot):
                db.session.commit()
            else:
                db.session.rollback()
                lost_leads.append(lead.id)
    settlement.close_filled_orders()
    db.session.commit()
    return lost_leads


def _id_chunks(ids: list) -> Iterator[list]:
    """Ids in chunks for `IN`; PostgreSQL takes them all as one array (`_in`)."""
    size = 100_000 if db.session.get_bind().dialect.name == "postgresql" else 1000
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _in(column, values: list, item_type):
    """`column IN values`; on PostgreSQL `= ANY(array)` with the array sent as one
    string (the driver would escape a long list item by item)."""
    if db.session.get_bind().dialect.name == "postgresql":
        if item_type is sa.LargeBinary:
            text = ",".join(bytes(v).hex() for v in values)
            array = sa.func.array(sa.select(sa.func.decode(sa.column("x"), "hex")).select_from(
                sa.func.unnest(sa.func.string_to_array(text, ",")).alias("x")).scalar_subquery())
        else:
            array = sa.cast(sa.func.string_to_array(",".join(map(str, values)), ","),
                            postgresql.ARRAY(item_type))
        return column == sa.any_(array)
    return column.in_(values)


def _load_leads(lead_ids: list[int]) -> list[Candidate]:
    rows, owners = [], defaultdict(set)
    for chunk in _id_chunks(lead_ids):
        rows.extend(db.session.execute(
            sa.select(*LEAD_COLUMNS).where(_in(Lead.id, chunk, sa.BigInteger),
                                           Lead.offered(),
                                           Lead.sold_count < Lead.cap)))
        for lead_id, buyer_id in db.session.execute(
                sa.select(Sale.lead_id, Sale.buyer_id).where(_in(Sale.lead_id, chunk,
                                                                 sa.BigInteger))):
            owners[lead_id].add(buyer_id)
    leads = _candidates(rows)
    for lead in leads:
        lead.buyers = owners[lead.id]
    # Rule 4: the freshest leads first.
    leads.sort(key=attrgetter("consent_at", "id"), reverse=True)
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
                 .where(Lead.offered(), Lead.sold_count < Lead.cap,
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
