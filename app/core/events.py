"""After-commit events: an operation records what happened, and the follow-up work
starts only once the transaction that made it happen has committed.

    events.record(OrderOpened(order.id))       # inside the operation's transaction
    events.on(OrderEvent, lambda e: dispatch(fill_order, e.order_id))  # app/tasks.py

Recorded events wait on the Flask-SQLAlchemy session (its `info`), each tagged with
the transaction (or savepoint) it was recorded in. When the outermost transaction
commits, their handlers run; when it rolls back (or the session is closed without a
commit) they are dropped, and a savepoint that rolls back drops the events recorded
inside it (single fills and groups run in `begin_nested`). Events that ask for the
same work merge first: one `fill_order` per order, one webhook run for all the sale
ids of a commit.

Handlers run when the committed transaction has ended, and must only launch work:
the session that committed can no longer run SQL for them. `app.tasks.dispatch`
queues the job (thread and Celery modes) or, in eager mode, runs it in an app
context, and so a session, of its own. Events carry ids only, never ORM objects.

This module knows no handler: app/tasks.py registers them, so that core imports
neither the market nor the services.
"""
import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Hashable, Iterator

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, SessionTransaction

from app.extensions import db

log = logging.getLogger(__name__)

PENDING, COMMITTED, MUTED = "events.pending", "events.committed", "events.muted"


@dataclass(frozen=True)
class Event:
    """Something that happened in a transaction. Subclasses are frozen dataclasses of ids."""

    def merge_key(self) -> Hashable:
        """Events of one commit with the same key are merged into one (`merged`)."""
        return self

    def merged(self, other: "Event") -> "Event":
        return self


# Batches
@dataclass(frozen=True)
class BatchUploaded(Event):
    """A batch was created from an upload: process it."""
    batch_id: int


@dataclass(frozen=True)
class BatchWentLive(Event):
    """A held batch was listed (its spot-check passed): offer its leads to the orders.
    (A batch that is live when its processing ends is matched by that same job.)"""
    batch_id: int


@dataclass(frozen=True)
class BatchRelisted(Event):
    """A seller resumed a live batch's paused leads, or lowered its floor or raised its
    cap: offer its leads to the orders again."""
    batch_id: int


# Orders: each asks for the order to be filled from inventory, once per commit.
@dataclass(frozen=True)
class OrderEvent(Event):
    order_id: int

    def merge_key(self) -> Hashable:
        return (OrderEvent, self.order_id)


@dataclass(frozen=True)
class OrderOpened(OrderEvent):
    """An order was placed."""


@dataclass(frozen=True)
class OrderChanged(OrderEvent):
    """An open order's terms changed (price, quantity, caps, schedule, time zone)."""


@dataclass(frozen=True)
class OrderResumed(OrderEvent):
    """A paused order was resumed."""


# Money
@dataclass(frozen=True)
class BuyerFundsLowered(Event):
    """A buyer's available balance went down (a hold for an order, a withdrawal, a
    debit): their automatic top-up, if they have one, may be due."""
    account_id: int


# Webhooks: the sales whose pending deliveries should be sent now, all in one run.
@dataclass(frozen=True)
class WebhooksDue(Event):
    sale_ids: tuple[int, ...]
    by_email: bool = True  # False: none of these sales has a delivery by email

    def merge_key(self) -> Hashable:
        return WebhooksDue

    def merged(self, other: "Event") -> "Event":
        known = set(self.sale_ids)
        return replace(self, sale_ids=self.sale_ids + tuple(
            sale_id for sale_id in other.sale_ids if sale_id not in known),
            by_email=self.by_email or other.by_email)


@dataclass(frozen=True)
class SalesMade(WebhooksDue):
    """The market stored sales; `sale_ids` are those with a webhook delivery."""


@dataclass(frozen=True)
class DeliveryRequested(WebhooksDue):
    """Webhook deliveries to send: a buyer asked again, an erasure tells buyers."""


# Orders' buyers to tell: the matcher records these and a job writes the notices
# after the commit, so storing sales pays nothing for them (app.people.notification_jobs).
@dataclass(frozen=True)
class OrderIdsEvent(Event):
    order_ids: tuple[int, ...]

    def merge_key(self) -> Hashable:
        return type(self)

    def merged(self, other: "Event") -> "Event":
        known = set(self.order_ids)
        return replace(self, order_ids=self.order_ids + tuple(
            order_id for order_id in other.order_ids if order_id not in known))


@dataclass(frozen=True)
class OrdersFilled(OrderIdsEvent):
    """Orders closed full, or with a budget that cannot pay for one more lead."""


@dataclass(frozen=True)
class OrdersCapped(OrderIdsEvent):
    """Open orders with caps per period took leads: some may have used a cap up."""


# Email: outgoing messages stored by the transaction, to send once it commits.
@dataclass(frozen=True)
class EmailsQueued(Event):
    email_ids: tuple[int, ...]

    def merge_key(self) -> Hashable:
        return EmailsQueued

    def merged(self, other: "Event") -> "Event":
        return replace(self, email_ids=self.email_ids + other.email_ids)


# Handlers -----------------------------------------------------------------------

Handler = Callable[[Event], object]
_handlers: dict[type, list[Handler]] = {}


def on(event_type: type, handler: Handler) -> Handler:
    """Run `handler(event)` after the commit of each event of this type (or a subclass).
    Register handlers on the class that defines the merge (OrderEvent, WebhooksDue):
    merged events keep the class of the first one recorded."""
    _handlers.setdefault(event_type, []).append(handler)
    return handler


def off(event_type: type, handler: Handler) -> None:
    _handlers.get(event_type, []).remove(handler)


def handlers_for(event: Event) -> list[Handler]:
    return [h for cls in type(event).__mro__ for h in _handlers.get(cls, ())]


def merge(events: list[Event]) -> list[Event]:
    """One event per merge key, in the order first recorded."""
    merged: dict[Hashable, Event] = {}
    for event in events:
        key = event.merge_key()
        merged[key] = merged[key].merged(event) if key in merged else event
    return list(merged.values())


# Recording ----------------------------------------------------------------------

def record(event: Event) -> None:
    """Remember `event` until the current transaction ends: its handlers run if it
    commits, never if it (or the savepoint the event was recorded in) rolls back."""
    session = db.session()
    if session.info.get(MUTED):
        return
    # Begin now if nothing has yet: an event tagged with no transaction would
    # survive the rollback of the one that is about to begin.
    tag = (session.get_nested_transaction() or session.get_transaction()
           or session.begin())
    session.info.setdefault(PENDING, []).append((event, tag))


@contextmanager
def muted() -> Iterator[None]:
    """Events recorded inside are dropped: for callers that do the follow-up work
    themselves, right away (demo data, tests that drive the jobs step by step)."""
    session = db.session()
    session.info[MUTED] = session.info.get(MUTED, 0) + 1
    try:
        yield
    finally:
        session.info[MUTED] -= 1


def is_muted() -> bool:
    """Inside `muted` (work on other sessions for the same caller mutes theirs too)."""
    return bool(db.session().info.get(MUTED))


def _inside(tag: SessionTransaction, ancestor: SessionTransaction) -> bool:
    while tag is not None:
        if tag is ancestor:
            return True
        tag = tag.parent
    return False


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: its events now stand or fall with its parent
    session.info[COMMITTED] = session.info.get(COMMITTED, []) + [
        event for event, _ in session.info.pop(PENDING, [])]


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    pending = session.info.get(PENDING)
    if pending:
        session.info[PENDING] = [(e, tag) for e, tag in pending if not _inside(tag, previous)]


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    session.info.pop(PENDING, None)  # neither committed nor rolled back: closed
    committed = session.info.pop(COMMITTED, None)
    if committed:
        run(committed)


def run(events: list[Event]) -> None:
    """Run the handlers of committed events, merged. A failing handler does not stop
    the others; the first failure is raised once they have all run."""
    failure = None
    for event in merge(events):
        for handler in handlers_for(event):
            try:
                handler(event)
            except Exception as exc:
                log.exception("handler of %r failed", event)
                failure = failure or exc
    if failure is not None:
        raise failure


sa_event.listen(db.session, "after_commit", _after_commit)
sa_event.listen(db.session, "after_soft_rollback", _after_soft_rollback)
sa_event.listen(db.session, "after_transaction_end", _after_transaction_end)
