"""Pure logic: the order book and the allocation of leads to orders (SPEC §4 rules
1–3). No database: the book is built from `Slot`s and `Candidate`s that
app.market.snapshot loads, and a plan is a list of (lead, order) pairs that
app.market.settle stores. Every rule it applies comes from app.market.rules."""
import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable, Iterator, Optional

from app.market import rules
from app.market.filters import Filters
from app.services import scoring

NO_AGE = -1  # a lead without an age passes only orders without an age filter
DEMAND_COUNT_LIMIT = 200


@dataclass
class Slot:
    """An open order as the matcher plans with it."""

    id: int
    buyer_id: int
    price: int  # in effect now: rules.price_in_effect
    created_at: datetime
    room: int  # leads it may take now: rules.order_room when loaded
    lookback: timedelta
    filters: Filters
    has_webhook: bool
    has_email: bool = False  # its leads are also delivered by email (EmailDelivery)
    revision: int = 0  # the order's terms it was loaded with (rules.TERMS_AS_PLANNED)
    keys: Optional[dict] = None  # its current periods (rules.period_keys)
    least: int = 0  # the lowest price it may pay (rules.price_range)
    highest: Optional[int] = None  # the highest, its hold is sized for (None: `price`)
    calling_from: Optional[int] = None  # the person's calling hours (rules.in_calling_hours)
    calling_until: Optional[int] = None
    rank: tuple = ()  # price, then time priority: smaller is served first
    # The age range as plain ints, for the order book's age index.
    age_lo: int = NO_AGE
    age_hi: int = 1000

    def __post_init__(self):
        self.rank = (-self.price, self.created_at, self.id)
        if self.highest is None:
            self.highest = self.price
        if self.filters.age_min is not None:
            self.age_lo = self.filters.age_min
        if self.filters.age_max is not None:
            self.age_hi = self.filters.age_max

    def can_take_one(self) -> bool:
        return self.room > 0

    def take_one(self) -> None:
        self.room -= 1


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
    # §14: the buyers a hosted form named, to whom alone the person agreed (None: any).
    consent_scope: Optional[frozenset] = None


def person_hashes(email_hash: Optional[bytes], phone_hash: Optional[bytes]) -> tuple[bytes, ...]:
    """One person's identities: either contact makes two leads the same person."""
    hashes = []
    if email_hash:
        hashes.append(b"e" + bytes(email_hash))
    if phone_hash:
        hashes.append(b"p" + bytes(phone_hash))
    return tuple(hashes)



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

    def accepting(self, lead: Candidate, now: datetime) -> int:
        """The open orders whose filters accept this lead and whose price meets its
        floor, as a set of positions (before the rules that depend on the buyer)."""
        floor = lead.floor_price
        mask = self._floors.get(floor)
        if mask is None:
            paying = rules.paying(self._minus_prices, floor)
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

    def slots_in(self, mask: int) -> Iterator[Slot]:
        """The slots of a set of positions (`accepting`), best first."""
        while mask:
            best = mask & -mask
            mask ^= best
            yield self._ranked[best.bit_length() - 1]

    def retire(self, slot: Slot) -> None:
        """A slot that can take no more leaves the open set."""
        self.open &= ~(1 << self._position[slot.id])

    @property
    def buyer_ids(self) -> set[int]:
        return {slot.buyer_id for slot in self.slots.values()}


class Claims:
    """When each buyer last received each person (for the duplicate lookback), how
    each person is being sold (their listing: caps and exclusivity per person), and
    which buyers listed them as never to receive (§14 suppression lists)."""

    def __init__(self):
        self._last: dict[tuple[int, bytes], datetime] = {}
        self._listings: dict[bytes, rules.Listing] = {}
        self._suppressed: set[tuple[int, bytes]] = set()  # buyers' lists (§14)

    def blocks(self, buyer_id: int, lead: Candidate, lookback: timedelta, now: datetime) -> bool:
        if self._suppressed and rules.buyer_listed(buyer_id, lead, self._suppressed):
            return True
        for person in lead.person_hashes:
            last = self._last.get((buyer_id, person))
            if last is not None and not rules.claim_expired(
                    last, rules.lookback_start(now, lookback)):
                return True
        return False

    def record(self, buyer_id: int, person: bytes, at: datetime) -> None:
        self._last[(buyer_id, person)] = at

    def suppress(self, buyer_id: int, person: bytes) -> None:
        """The buyer listed this person: never to them."""
        self._suppressed.add((buyer_id, person))

    def add(self, buyer_id: int, lead: Candidate, now: datetime) -> None:
        for person in lead.person_hashes:
            self._last[(buyer_id, person)] = now

    def sold(self, lead: Candidate, buyers: int, now: datetime) -> None:
        """The lead's person went to `buyers` more buyers through it."""
        for person in lead.person_hashes:
            self._listings[person] = rules.person_after_sale(self._listings.get(person),
                                                              lead.cap, now, buyers)

    def list_person(self, person: bytes, listing: rules.Listing) -> None:
        self._listings[person] = listing

    def person_room(self, lead: Candidate, now: datetime) -> int:
        """How many more buyers may receive this lead's person through it."""
        room, listings = lead.cap, self._listings
        for person in lead.person_hashes:
            listing = listings.get(person)
            if listing is not None:  # an unsold person takes the copy's own cap
                room = min(room, rules.person_room(listing, lead.cap, now))
        return room


_NOW_ANY = rules.Ctx()  # the lead cap asks nothing of the moment


def allocate(leads: list[Candidate], book: OrderBook, claims: Claims,
             now: datetime) -> list[tuple[Candidate, Slot]]:
    """Each lead, in the order given, to its best eligible orders (SPEC §4 rules 1–3)."""
    plan = []
    for lead in leads:
        room = min(rules.LEAD_CAP.room(lead, _NOW_ANY), claims.person_room(lead, now))
        if room <= 0:
            continue
        taken = 0
        eligible = book.accepting(lead, now)
        while eligible:
            best = eligible & -eligible
            eligible ^= best
            slot = book._ranked[best.bit_length() - 1]
            if (not rules.buyer_may_take(slot.buyer_id, lead)
                    or claims.blocks(slot.buyer_id, lead, slot.lookback, now)
                    or not rules.in_calling_hours(slot, lead, now)):
                continue
            plan.append((lead, slot))
            slot.take_one()
            if not slot.can_take_one():
                book.retire(slot)
            lead.buyers.add(slot.buyer_id)
            claims.add(slot.buyer_id, lead, now)
            taken += 1
            if taken == room:
                break
        if taken:
            claims.sold(lead, taken, now)
    return plan


def plan_batch(leads: list[Candidate], book: OrderBook, claims: Claims,
               now: datetime) -> list[tuple[Candidate, Slot]]:
    """Plan a batch of leads. Each lead still takes the best orders it can
    (price-time priority), but the leads that few orders can use choose first, so
    they are not left unsold by orders any lead would have filled: revenue comes
    close to the best possible allocation (bench/match.py measures how close)."""
    return [fill for part in plan_parts(leads, book, claims, now) for fill in part]


def plan_parts(leads: list[Candidate], book: OrderBook, claims: Claims, now: datetime,
               size: int = 500, load: Optional[Callable[[list[Candidate]], None]] = None,
               window: int = 5000) -> Iterator[list[tuple[Candidate, Slot]]]:
    """plan_batch's plan in parts of `size` leads, planned as they are asked for:
    allocate keeps no state but the book and the claims, so the parts are that plan,
    and a caller can store the first while the rest is planned. `load`, if given, is
    called with each window of `window` leads (the first: two parts) before any of
    them is planned, to add what `claims` must know of them (snapshot.PlanClaims)."""
    leads = sorted(leads, key=lambda lead: book.demand_for(lead, now))
    loaded = 0
    for start in range(0, len(leads), size):
        if load is not None and start >= loaded:
            loaded = start + (2 * size if start == 0 else window)
            load(leads[start:loaded])
        yield allocate(leads[start:start + size], book, claims, now)
