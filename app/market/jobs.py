"""Jobs of the market (SPEC §4): each owns its commits. One entry point per event --
`match_leads` (a batch went live, a real-time lead arrived), `fill_order` (an order
was placed, resumed or changed), `match_open_orders` (periodic: schedule windows
opening, caps' periods starting over, expiries) -- and the storing of a plan.

Planning happens in memory (app.market.book) with no lock held; storing goes through
the database in groups of fills, one transaction each (app.market.grouped), re-checked
under row locks by the same rules; a group that collides with another worker is
split, down to single fills in a savepoint each (app.market.settle). A lead whose
fill was lost to another process is planned again. Each commit that stores sales
records SalesMade, so their webhooks go once they are committed (app.core.events).
The jobs run with the cyclic garbage collector paused (app.core.collector).
"""
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime
from typing import Callable, Iterator, Optional, Union

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import OperationalError

from app.core import collector, events
from app.core.dialect import id_chunks, in_, postgres, retryable
from app.extensions import db
from app.market import rules, snapshot
from app.market.book import Candidate, Slot, allocate, plan_parts
from app.market.grouped import Fills, prepare, store_group
from app.market.operations import close_order
from app.market.settle import NotLoaded, Settlement
from app.models import Order, OrderStatus
from app.models.types import utcnow

PLAN_ROUNDS = 3  # a lead that lost a race is planned again this many times
GROUP_SIZE = 5000  # fills stored per transaction on the fast path
FIRST_GROUP = 1000  # the first, smaller: nothing is stored until it is planned
TAIL_GROUP = 500  # the smallest of the groups a plan's end is shared out in
SMALLEST_GROUP = 8  # a group that collides is split down to this, then stored one by one
SMALL_MATCH = 500  # leads planned whole and stored by the calling thread (real-time groups)
WRITERS = 2  # PostgreSQL connections storing a plan's groups at once (SQLite: one writer)


def store_plan(plan: Union[list[tuple[Candidate, Slot]], Iterator[list]],
               settlement: Settlement, share_end: bool = True) -> list[int]:
    """Store a plan: its fills, or its parts as they are planned (book.plan_parts).
    Returns the ids of leads whose fill was lost to another worker.

    Groups of fills go in one transaction each (app.market.grouped). A group that
    collides with another worker is split in halves, each tried as a group, down to
    single fills (one per transaction), whose row locks follow the same order (lead,
    person claims, person listings, order, ledger accounts).

    Groups are planned and prepared (grouped.prepare: pure Python) on a helper thread
    while others are written (what planning reads, snapshot.PlanClaims, it reads on
    a connection of its own); on PostgreSQL, WRITERS connections write groups at once
    (one database process could not keep up with the plan; groups wait for each other
    only on the listings, orders and accounts they share, locked last). The plan's
    end is shared out in smaller groups, so the writers finish together (unless
    `share_end` is False: a plan that more plans follow, whose groups' fixed costs
    would add up). If one writer fails, the others stop taking groups and the error is
    raised."""
    if isinstance(plan, list):
        settlement.preload({slot.buyer_id for _, slot in plan},
                           {lead.seller_id for lead, _ in plan})
        if len(plan) <= FIRST_GROUP:
            # A few fills (real-time leads): one group stored by this thread; a planner
            # thread and a second writer would cost more than the plan (bench/realtime.py).
            ready = iter([(plan, None)] if plan else [])
            lost_leads = _write_groups(lambda: next(ready, None), settlement)
            close_filled_orders(settlement)
            db.session.commit()
            return lost_leads
        plan = iter([plan])
    writers = WRITERS if postgres() else 1
    app = current_app._get_current_object()
    planned: list = []  # fills planned and not yet in a group
    ended = False  # no more parts to plan
    sizes = iter([FIRST_GROUP])

    def next_group() -> Optional[tuple[list, Optional[Fills]]]:  # on the helper thread
        nonlocal ended
        first = next(sizes, None)
        # After the first group, plan a group ahead, to see the plan's end coming: what
        # is left then goes in smaller groups (a share per writer, each time), so that
        # the writers finish together instead of one storing the last group alone.
        ahead = first or 2 * GROUP_SIZE
        with app.app_context():  # a session of its own, for what planning reads (PlanClaims)
            while len(planned) < ahead and not ended:
                part = next(plan, None)
                if part is None:
                    ended = True
                else:
                    planned.extend(part)
        size = first or GROUP_SIZE
        if ended and not first and share_end:
            size = min(size, max(TAIL_GROUP, -(-len(planned) // writers)))
            if len(planned) - size < TAIL_GROUP:  # too few left for a group of their own
                size = len(planned)
        # A lead's fills stay in one group (they are together in the plan): split
        # between two, the second group's first lock would wait for the whole of the
        # first on the other connection.
        cut = min(size, len(planned))
        while cut < len(planned) and planned[cut][0] is planned[cut - 1][0]:
            cut += 1
        group = planned[:cut]
        del planned[:cut]
        if not group:
            return None
        try:
            return group, prepare(group, settlement, load=False)
        except NotLoaded:  # a rate not loaded: prepared by store_group, which may query
            return group, None

    with ThreadPoolExecutor(max_workers=1) as planner:
        upcoming = planner.submit(next_group)
        taking, failed = threading.Lock(), threading.Event()

        def take() -> Optional[tuple[list, Optional[Fills]]]:
            nonlocal upcoming
            with taking:
                if failed.is_set():
                    return None
                ready = upcoming.result()
                if ready is not None:  # plan the next while this one is written
                    upcoming = planner.submit(next_group)
                return ready

        def write(part: Settlement) -> list[int]:
            try:
                return _write_groups(take, part)
            except BaseException:
                failed.set()  # the other writers stop; none waits on this one's locks
                db.session.rollback()
                raise
        if writers == 1:
            lost_leads = write(settlement)
        else:
            muted = events.is_muted()
            parts = [settlement.sibling() for _ in range(writers - 1)]
            with ThreadPoolExecutor(max_workers=writers - 1) as pool:
                others = [pool.submit(_on_own_connection, app, muted, write, part)
                          for part in parts]
                lost_leads = write(settlement)
                for other, part in zip(others, parts):
                    lost_leads += other.result()
                    settlement.absorb(part)
                    settlement.touched_orders |= part.touched_orders
    close_filled_orders(settlement)
    db.session.commit()
    return lost_leads


def _on_own_connection(app, muted: bool, work, *args):
    """Run `work` in an app context, and so a session and connection, of its own."""
    with app.app_context():
        try:
            with events.muted() if muted else nullcontext():
                return work(*args)
        finally:
            db.session.remove()


def _write_groups(take: Callable, settlement: Settlement) -> list[int]:
    """Store groups as `take` hands them out, each in a transaction of this session;
    a group that collides is split and its halves stored before the next is taken.
    Returns the ids of leads whose fill was lost."""
    lost_leads = []
    halves = []  # of groups that collided, stored before what follows
    while True:
        if halves:
            group, prepared, split = halves.pop(), None, True
        else:
            ready = take()
            if ready is None:
                break
            (group, prepared), split = ready, False
        if not split or len(group) > SMALLEST_GROUP:
            stored = len(settlement.webhook_sale_ids)
            lost, again = store_group(group, settlement, prepared)
            _sales_made(settlement, stored)
            db.session.commit()
            lost_leads.extend(lead.id for lead, _ in lost)
            if again:
                half = len(again) // 2
                halves += [again[half:], again[:half]]
            continue
        for lead, slot in group:
            stored = len(settlement.webhook_sale_ids)
            if settlement.fill(lead, slot):
                _sales_made(settlement, stored)
                db.session.commit()
            else:
                db.session.rollback()
                lost_leads.append(lead.id)
    return lost_leads


def _sales_made(settlement: Settlement, since: int) -> None:
    """The sales about to be committed: their webhooks go once they are."""
    sale_ids = settlement.webhook_sale_ids[since:]
    if sale_ids:
        # The email deliveries are looked for only if there are some.
        events.record(events.SalesMade(tuple(sale_ids), any(
            sale_id in settlement.emailed for sale_id in sale_ids)))


def close_filled_orders(settlement: Settlement) -> None:
    """Orders that reached their quantity, or cannot pay for one more lead, are done:
    those single fills touched (a stored group closes the orders it finishes and
    checks the others under their locks already: grouped._write).

    One order per transaction: closing locks the order, then its buyer's accounts;
    several in one transaction could lock two buyers' accounts in either order."""
    is_open = rules.ORDER_OPEN.sql(Order, None, rules.Ctx())
    touched = sorted(settlement.touched_orders)
    done, capped = [], []  # found without locks first: most touched orders still have room
    for chunk in id_chunks(touched):
        for order in db.session.scalars(
                sa.select(Order).where(in_(Order.id, chunk, sa.Integer), is_open)):
            if _finished(order):
                done.append(order.id)
            elif order.has_caps:  # one of them may be used up until its next period
                capped.append(order.id)
    if capped:
        events.record(events.OrdersCapped(tuple(capped)))
    db.session.commit()
    for order_id in sorted(done):
        try:
            order = db.session.scalar(sa.select(Order).where(Order.id == order_id, is_open)
                                      .with_for_update())
            if order is not None and _finished(order):
                close_order(order, OrderStatus.FILLED)
            db.session.commit()
        except OperationalError as exc:
            db.session.rollback()
            if not retryable(exc):
                raise
            # Another worker holds it; whoever fills it next closes it.
    settlement.touched_orders.clear()


def _finished(order: Order) -> bool:
    return rules.order_finished(order, 0, 0, rules.price_range(order)[0])


def expire_due_orders(now: Optional[datetime] = None) -> int:
    """Close orders past their expiry, each in a transaction of its own (an order,
    then its buyer's accounts)."""
    now = now or utcnow()
    due = sa.and_(Order.status.in_((OrderStatus.OPEN, OrderStatus.PAUSED)),
                  ~rules.NOT_EXPIRED.sql(Order, None, rules.Ctx(now=now)))
    order_ids = db.session.scalars(sa.select(Order.id).where(due)).all()
    for order_id in order_ids:
        order = db.session.scalar(sa.select(Order).where(Order.id == order_id, due)
                                  .with_for_update())
        if order is not None:
            close_order(order, OrderStatus.EXPIRED)
        db.session.commit()
    return len(order_ids)


@collector.paused()
def match_leads(lead_ids: list[int], now: Optional[datetime] = None,
                rates: Optional[dict[int, Optional[int]]] = None) -> Settlement:
    """Offer these leads to the open orders (a batch went live, a lead arrived).
    `rates`: sellers' commission rates (User.commission_rate_bp) read already."""
    now = now or utcnow()
    settlement = Settlement(now, rates)
    pending = list(lead_ids)
    for _ in range(PLAN_ROUNDS):
        leads = snapshot.load_leads(pending)
        if not leads:
            break
        book = snapshot.load_book(now)
        if not book.slots:
            break
        people = _plan_claims(leads, book, settlement)
        # Their commission rates and every account the plan may move, committed now.
        settlement.preload(book.buyer_ids, {lead.seller_id for lead in leads})
        db.session.commit()  # hold no lock while planning
        plan = plan_parts(leads, book, people.claims, now, load=people)
        if len(leads) <= SMALL_MATCH:
            plan = [fill for part in plan for fill in part]
        pending = store_plan(plan, settlement)
        if not pending:
            break
    return settlement


def _plan_claims(leads: list[Candidate], book, settlement: Settlement) -> snapshot.PlanClaims:
    """The claims on these leads' people, loaded as planning reaches them (on
    PostgreSQL by the planner thread of store_plan, on a connection of its own;
    SQLite's single connection reads them all now). The groups storing the plan
    start from the listings they read (Settlement.listed)."""
    # Who keeps a suppression list, asked once in the run (the groups ask it again).
    people = snapshot.PlanClaims(book.buyer_ids, settlement.listing_buyers)
    if not postgres():
        people(leads)
    settlement.listed = people.listed
    return people


@collector.paused()
def match_batch(batch_id: int, chunk: int = 5000) -> Settlement:
    """A batch went live: offer its leads, freshest first, in chunks.

    One order book serves every chunk: planning takes each fill out of it, so while
    every planned fill is stored it stays what the database holds, and rebuilding it
    per chunk cost two fifths of the planning (bench/match.py). When a fill is lost,
    another worker changed the orders: those leads are planned again from a fresh
    book (match_leads), and so is what follows."""
    now = utcnow()
    settlement = Settlement(now)
    ids = snapshot.live_leads_of(batch_id)
    order_book = None
    for start in range(0, len(ids), chunk):
        leads = snapshot.load_leads(ids[start:start + chunk])
        order_book = order_book or snapshot.load_book(now)
        if not order_book.open:
            break  # no order can take a lead now
        people = _plan_claims(leads, order_book, settlement)
        # Their commission rates and every account the plan may move, committed now.
        settlement.preload(order_book.buyer_ids, {lead.seller_id for lead in leads})
        db.session.commit()  # hold no lock while planning
        lost = store_plan(plan_parts(leads, order_book, people.claims, now, load=people),
                          settlement, share_end=start + chunk >= len(ids))
        if lost:
            settlement.absorb(match_leads(lost, now))
            order_book = None
    return settlement


@collector.paused()
def fill_order(order_id: int, now: Optional[datetime] = None) -> Settlement:
    """An order was placed, resumed or changed: fill it from live inventory, freshest first."""
    now = now or utcnow()
    settlement = Settlement(now)
    cursor = None  # (consent_at, id) of the last lead looked at
    while True:
        book = snapshot.load_book(now, [order_id])
        slot = book.slots.get(order_id)
        if slot is None or not slot.can_take_one():
            break
        leads = snapshot.inventory_for(slot, now, cursor, max(slot.room * 2, 200))
        if not leads:
            break
        cursor = (leads[-1].consent_at, leads[-1].id)
        claims = snapshot.load_claims([h for lead in leads for h in lead.person_hashes],
                                      [slot.buyer_id])
        db.session.commit()  # hold no lock while planning
        store_plan(allocate(leads, book, claims, now), settlement)
    return settlement


@collector.paused()
def match_open_orders(now: Optional[datetime] = None) -> Settlement:
    """Periodic: expire orders, then fill every open order from inventory by priority."""
    now = now or utcnow()
    expire_due_orders(now)
    db.session.commit()
    settlement = Settlement(now)
    order_ids = [slot.id for slot in sorted(snapshot.load_book(now).slots.values(),
                                            key=lambda s: s.rank)]
    for order_id in order_ids:
        settlement.absorb(fill_order(order_id, now))
    return settlement
