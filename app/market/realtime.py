"""Job: real-time leads (SPEC §4 rule 5) stored and matched together as they arrive.

`sell` is what `POST /api/v1/leads` calls. The lead is validated in the request's
own thread (no database); then it waits for the process's seller thread, which
takes every lead that arrived meanwhile (up to MAX_GROUP) and, for all of them at
once, locks each seller's day batch once, stores the leads in one transaction and
matches them in one `jobs.match_leads` (one order book, one group of fills with
their ledger transactions, one webhook run). Each request then gets its own lead's
verdict. Nothing waits on purpose: a lead arriving alone is sold alone at once, and
leads group only while the thread is busy with earlier ones, so a group's cost is
shared exactly when the load needs it (bench/realtime.py). Under gunicorn the seller
thread runs in one process of its own shared by the web processes (REALTIME_SELLER =
"process": app.market.seller_process), so it does not queue for the GIL behind
request threads, and the leads of every web process share its groups.

Every rule is checked as it is for a single lead: duplicates within a group are
refused like duplicates of stored leads, and the matcher re-checks each fill under
its row locks, so money, caps and exclusivity hold across groups of several web
processes as they do across single leads. This module owns its commits.
"""
import os
import queue
import threading
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Optional

from flask import Flask, current_app

from app.extensions import db
from app.market import jobs, rules
from app.models import User
from app.services import key_cache
from app.services.ingest.pipeline import BatchTerms
from app.services.ingest.realtime import LeadRejected, StoredLead, store_leads, validate_lead

MAX_GROUP = 64  # leads stored and matched in one go
EXTENSION = "leadx.realtime"


@dataclass
class Arrival:
    seller_id: int
    row: tuple  # validated: realtime.validate_lead
    terms: BatchTerms
    # (API key hash, revision) pairs the request used unchecked: checked by the
    # group's transaction before the lead is stored (app.services.key_cache).
    key_checks: frozenset = frozenset()
    answer: Future = field(default_factory=Future)


def sell(seller: User, payload: dict, terms: BatchTerms) -> dict:
    """Validate, store and match one real-time lead with those arriving at the same
    time. Returns its answer (`lead_created`), or raises LeadRejected
    (or what storing it raised)."""
    row = validate_lead(seller, payload, terms)
    arrival = Arrival(seller.id, row, terms, key_cache.take_pending())
    # No transaction (nor SQLite read lock) held while waiting. A request still owing
    # its key's check has sent no statement (its first would have checked the key).
    if not arrival.key_checks:
        db.session.commit()
    _seller_thread(current_app._get_current_object()).put(arrival)
    return arrival.answer.result()


class SellerThread:
    """One per app and process: sells groups of arrivals, one group at a time."""

    def __init__(self, app: Flask):
        self.app = app
        self.arrivals: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True, name="leadx-realtime").start()
        self.pid = os.getpid()

    def put(self, arrival: Arrival) -> None:
        self.arrivals.put(arrival)

    def _run(self) -> None:
        while True:
            group = [self.arrivals.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self.arrivals.get_nowait())
                except queue.Empty:
                    break
            with self.app.app_context():
                try:
                    sell_group(group)
                except BaseException as exc:  # told to each request; the thread lives on
                    db.session.rollback()
                    for arrival in group:
                        if not arrival.answer.done():
                            arrival.answer.set_exception(exc)
                finally:
                    db.session.remove()


_starting = threading.Lock()


def _seller_thread(app: Flask):
    """This process's seller: a thread, or with REALTIME_SELLER = "process" its
    connection to the machine's seller process (app.market.seller_process)."""
    with _starting:
        thread = app.extensions.get(EXTENSION)
        # A forked worker starts its own; a seller process that ended is started again.
        if thread is None or thread.pid != os.getpid() or not getattr(thread, "alive", True):
            if app.config["REALTIME_SELLER"] == "process":
                from app.market.seller_process import SellerProcess

                thread = SellerProcess(app)
            else:
                thread = SellerThread(app)
            app.extensions[EXTENSION] = thread
        return thread


def start_seller(app) -> None:
    """Start this process's seller now (a web worker at boot), if `app` is the Flask app."""
    if isinstance(app, Flask):
        _seller_thread(app)


def stop_seller(app) -> None:
    """Leave the seller process, if this process uses one (a web worker as it exits)."""
    seller = app.extensions.get(EXTENSION) if isinstance(app, Flask) else None
    if seller is not None and hasattr(seller, "close") and seller.pid == os.getpid():
        seller.close()


def sell_group(group: list[Arrival]) -> None:
    """Store and match these arrivals; answer each with its lead or its verdict."""
    try:
        stored, rates = _store(group)
    except Exception:
        db.session.rollback()
        if len(group) == 1:
            raise
        for arrival in group:  # one lead's failure is its own, not its group's
            try:
                sell_group([arrival])
            except Exception as exc:
                db.session.rollback()
                arrival.answer.set_exception(exc)
        return
    lead_ids = [lead.id for lead in stored.values() if lead is not None]
    sales = defaultdict(list)
    if lead_ids:
        # Each lead's sales as the matcher stored them: no statement to read them back.
        for sale_id, lead_id, price, seller_share in sorted(
                jobs.match_leads(lead_ids, rates=rates).sold):
            sales[lead_id].append({"sale_id": sale_id, "price": price,
                                   "seller_share": seller_share})
    db.session.commit()
    for arrival in group:
        lead = stored[id(arrival)]
        if lead is None:
            continue  # answered with its verdict already
        arrival.answer.set_result(lead_created(lead, arrival.terms.cap, sales.get(lead.id, [])))


def lead_created(lead, cap: int, sales: list[dict]) -> dict:
    """The answer to a real-time lead just stored and matched (POST /leads, /posts):
    {id, status, sold, cap, cross_seller_duplicate, sales}. `lead` is new, so its
    sales are all it has sold: status "sold_out" when they reach its cap."""
    return {"id": lead.id, "status": rules.offer_status(lead.status.value, len(sales), cap),
            "sold": len(sales), "cap": cap,
            "cross_seller_duplicate": lead.cross_seller_duplicate, "sales": sales}


def _store(group: list[Arrival]) -> tuple[dict[int, Optional[StoredLead]], dict]:
    """Each arrival's StoredLead, stored in one transaction, sellers locked in id order
    (a refused one is answered with its verdict and maps to None), and the sellers'
    commission rates as their rows were read (for the match: Settlement.commission)."""
    stored, refused, rates = {}, [], {}
    by_seller = defaultdict(list)
    changed = key_cache.changed(set().union(*(a.key_checks for a in group)))
    for arrival in group:
        if arrival.key_checks & changed:  # its request signs in again and starts over
            refused.append((arrival, key_cache.KeyChanged("The API key changed.")))
            stored[id(arrival)] = None
        else:
            by_seller[arrival.seller_id].append(arrival)
    for seller_id in sorted(by_seller):
        arrivals = by_seller[seller_id]
        seller = db.session.get(User, seller_id)
        rates[seller_id] = seller.commission_rate_bp
        leads = store_leads(seller, [(arrival.row, arrival.terms) for arrival in arrivals])
        for arrival, lead in zip(arrivals, leads):
            if isinstance(lead, LeadRejected):
                refused.append((arrival, lead))
                stored[id(arrival)] = None
            else:
                stored[id(arrival)] = lead
    db.session.commit()
    for arrival, verdict in refused:
        arrival.answer.set_exception(verdict)
    return stored, rates
