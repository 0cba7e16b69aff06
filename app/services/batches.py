"""Operations on a batch's unsold leads (SPEC §3): pause, resume, withdraw, re-price.
They change state and flush; the caller commits. Each change is audited on the batch,
and one that may let leads sell now records BatchRelisted, so the batch is offered
to the orders once the caller's transaction commits.

Only unsold capacity changes: a lead with no buyer left to take it keeps what it has,
and sales already made keep their price. Paused and withdrawn are lead statuses, so
the market's rule that only live leads sell (app.market.rules.LEAD_LIVE) keeps them
out of every fill, also one planned before the change: fills re-check it under lock.
"""
from dataclasses import dataclass
from functools import cache
from typing import Optional

import sqlalchemy as sa

from app.core import bounds, events, figures
from app.core.dialect import lock_in_id_order
from app.errors import Conflict, NotFound, ValidationFailed
from app.extensions import db
from app.market import rules
from app.models import (
    LISTED_STATUSES, AuditEvent, Batch, BatchSource, BatchStatus, Lead, LeadStatus, TrustLevel,
    User,
)
from app.services import audit, market_stats
from app.services.ingest.pipeline import MAX_CAP

ACTIONS = ("batch.paused", "batch.resumed", "batch.withdrawn", "batch.repriced")
OFFER_ACTIONS = ACTIONS[:3]  # those that take the unsold leads off the market or back
# Listings a seller manages: a processing batch is not finished, a rejected or failed
# one has nothing for sale.
MANAGEABLE = (BatchStatus.HELD, BatchStatus.LIVE)


@dataclass
class Listing:
    """A batch's leads with a buyer left to take them, by status, and those that have
    all the buyers their cap allows."""

    live: int = 0
    held: int = 0
    paused: int = 0
    withdrawn: int = 0
    delisted: int = 0
    sold_out: int = 0


@dataclass(frozen=True)
class LeadTerms:
    """The floors and caps a batch's leads carry, lowest and highest."""

    floor_low: int
    floor_high: int
    cap_low: int
    cap_high: int


def lead_terms(batch: Batch) -> LeadTerms:
    """The terms the batch's leads carry. An upload's leads take the batch's (re-priced
    together); real-time leads each carry the floor and cap of their own post, so the
    day's real-time batch holds what its leads hold (its own are its first lead's)."""
    if not batch.terms_per_lead:
        return LeadTerms(batch.floor_price, batch.floor_price, batch.cap, batch.cap)
    found = db.session.execute(sa.select(
        sa.func.min(Lead.floor_price), sa.func.max(Lead.floor_price),
        sa.func.min(Lead.cap), sa.func.max(Lead.cap)).where(Lead.batch_id == batch.id)).one()
    if found[0] is None:  # no lead yet
        return LeadTerms(batch.floor_price, batch.floor_price, batch.cap, batch.cap)
    return LeadTerms(*found)


def batch_for(actor: User, batch_id: int, *, lock: bool = False) -> Batch:
    """The batch if `actor` is its seller or an admin; NotFound otherwise."""
    batch = db.session.get(Batch, batch_id, with_for_update=lock, populate_existing=lock)
    if batch is None or not (actor.is_admin or batch.seller_id == actor.id):
        raise NotFound(f"No batch {batch_id} among yours.")
    return batch


def _managed(actor: User, batch_id: int) -> Batch:
    batch = batch_for(actor, batch_id, lock=True)
    if batch.status not in MANAGEABLE:
        raise Conflict(f"The batch is {batch.status.value}: it has no leads for sale to change.",
                       code="batch_not_listed")
    return batch


def _lock_unsold(batch: Batch, statuses) -> list:
    """WHERE: the batch's leads in `statuses` that may still go to another buyer,
    their rows locked first (lock_in_id_order)."""
    where = [Lead.batch_id == batch.id, Lead.status.in_(statuses),
             rules.LEAD_CAP.test(Lead, rules.Ctx())]
    lock_in_id_order(Lead, *where)
    return where


def _set_status(batch: Batch, statuses, status: LeadStatus) -> int:
    figures.changed(batch.seller_id)  # what the batch page lists
    return db.session.execute(
        sa.update(Lead).where(*_lock_unsold(batch, statuses)).values(status=status)
        .execution_options(synchronize_session=False)).rowcount


def _record(action: str, actor: User, batch: Batch, details: dict) -> None:
    audit.record(action, actor=actor, subject_type="batch", subject_id=batch.id, details=details)


def pause(actor: User, batch_id: int) -> int:
    """Stop offering the batch's unsold leads until a resume. Returns leads paused."""
    batch = _managed(actor, batch_id)
    paused = _set_status(batch, (LeadStatus.LIVE, LeadStatus.HELD), LeadStatus.PAUSED)
    if paused:
        _record("batch.paused", actor, batch, {"leads": paused})
    return paused


def resume(actor: User, batch_id: int) -> int:
    """List the batch's paused leads again as the batch is: live, or held while it waits
    for its spot-check. Withdrawn and delisted leads stay off. Returns leads resumed."""
    batch = _managed(actor, batch_id)
    if batch.seller.trust_level is TrustLevel.SUSPENDED:
        raise Conflict("The seller's account is suspended: its leads cannot be listed.",
                       code="seller_suspended")
    status = LeadStatus.LIVE if batch.status is BatchStatus.LIVE else LeadStatus.HELD
    resumed = _set_status(batch, (LeadStatus.PAUSED,), status)
    if resumed:
        _record("batch.resumed", actor, batch, {"leads": resumed, "as": status.value})
        if status is LeadStatus.LIVE:
            events.record(events.BatchRelisted(batch.id))
    return resumed


def withdraw(actor: User, batch_id: int) -> int:
    """Take the batch's unsold leads off the market for good (sold copies stay sold).
    Returns leads withdrawn."""
    batch = _managed(actor, batch_id)
    withdrawn = _set_status(batch, LISTED_STATUSES, LeadStatus.WITHDRAWN)
    if withdrawn:
        _record("batch.withdrawn", actor, batch, {"leads": withdrawn})
    return withdrawn


def _regions(batch: Batch) -> list[Optional[str]]:
    """The regions of the batch's unsold leads."""
    return db.session.scalars(sa.select(Lead.region).distinct().where(
        Lead.batch_id == batch.id, Lead.status.in_(LISTED_STATUSES))).all()


def _was(low: int, high: int):
    """A term as the history shows what it was: one value, or the leads' [low, high]."""
    return low if low == high else [low, high]


def reprice(actor: User, batch_id: int, *, floor_price=None, cap=None,
            confirm: bool = False) -> int:
    """Change the floor and/or cap of the batch's unsold leads; the next sale is made
    under them, past ones keep their price. A lead already sold keeps the promise made
    to its buyers: its cap may go down, never below the buyers it has, and never up.
    A floor far above what leads of its regions sold for lately needs `confirm`
    (market_stats.check_floor). Returns leads changed."""
    if floor_price is None and cap is None:
        raise ValidationFailed("Give a new floor price or cap.", code="nothing_to_change")
    floor_price = bounds.AMOUNT.optional(floor_price, "floor_price")
    cap = bounds.COUNT.narrowed(1, MAX_CAP).optional(cap, "cap")
    batch = _managed(actor, batch_id)
    old = lead_terms(batch)  # a real-time batch's leads each carry their own
    values, details = {}, {}
    if floor_price is not None:
        unchanged = old.floor_low == old.floor_high == floor_price
        if not unchanged and market_stats.check_floor(floor_price, _regions(batch), confirm):
            details["confirmed"] = True  # far above recent prices, saved all the same
        values["floor_price"] = batch.floor_price = floor_price
        if not unchanged:  # the history says what changed, not what the form sent again
            details["floor_price"] = [_was(old.floor_low, old.floor_high), floor_price]
    if cap is not None:
        # Never sold: the new cap. Sold: lowered at most to the buyers it has, never raised.
        values["cap"] = sa.case((Lead.sold_count == 0, cap),
                                (Lead.sold_count >= cap, Lead.sold_count),
                                (Lead.cap < cap, Lead.cap), else_=cap)
        batch.cap = cap
        if not old.cap_low == old.cap_high == cap:
            details["cap"] = [_was(old.cap_low, old.cap_high), cap]
    figures.changed(batch.seller_id)
    changed = db.session.execute(
        sa.update(Lead).where(*_lock_unsold(batch, LISTED_STATUSES)).values(**values)
        .execution_options(synchronize_session=False)).rowcount
    if details:
        _record("batch.repriced", actor, batch, {**details, "leads": changed})
    # Some lead may sell now: one's floor went down or one's cap up.
    cheaper = floor_price is not None and floor_price < old.floor_high
    if changed and batch.status is BatchStatus.LIVE and (cheaper or (cap or 0) > old.cap_low):
        events.record(events.BatchRelisted(batch.id))
    return changed


def listing(batch: Batch) -> Listing:
    """How the batch's leads stand: unsold capacity by status, and the sold out."""
    has_room = rules.LEAD_CAP.test(Lead, rules.Ctx())
    out = Listing()
    for status, room, count in db.session.execute(
            sa.select(Lead.status, has_room, sa.func.count()).where(Lead.batch_id == batch.id)
            .group_by(Lead.status, has_room)):
        if room:
            setattr(out, LeadStatus(status).value, count)
        else:
            out.sold_out += count
    return out


@cache
def _history() -> sa.Select:
    # Built once: composing it cost more than running it, on every batch page.
    return (sa.select(AuditEvent).where(AuditEvent.subject_type == "batch",
                                        AuditEvent.subject_id == sa.bindparam("batch_id"),
                                        AuditEvent.action.in_(ACTIONS))
            .order_by(AuditEvent.id.desc()).limit(sa.bindparam("limit")))


def offer_states(batch_ids: list[int]) -> dict[int, str]:
    """Uploads whose unsold leads the seller took off the market, by what they did last:
    "paused" or "withdrawn" (a resume lists them again). The batch's own status says
    how it was checked (live, held), not whether its leads are on offer. Not a day's
    real-time batch: the leads posted after a pause are on offer."""
    if not batch_ids:
        return {}
    latest = (sa.select(sa.func.max(AuditEvent.id))
              .where(AuditEvent.subject_type == "batch", AuditEvent.subject_id.in_(batch_ids),
                     AuditEvent.action.in_(OFFER_ACTIONS))
              .group_by(AuditEvent.subject_id))
    return {batch_id: action.removeprefix("batch.") for batch_id, action in db.session.execute(
        sa.select(AuditEvent.subject_id, AuditEvent.action)
        .join(Batch, Batch.id == AuditEvent.subject_id)
        .where(AuditEvent.id.in_(latest), Batch.source == BatchSource.UPLOAD))
        if action != "batch.resumed"}


def offer_state(batch_id: int) -> Optional[str]:
    """offer_states of one batch: "paused", "withdrawn" or None."""
    return offer_states([batch_id]).get(batch_id)


def history(batch: Batch, limit: int = 50) -> list[AuditEvent]:
    """The batch's pauses, resumes, withdrawals and re-pricings, newest first."""
    return db.session.scalars(_history(), {"batch_id": batch.id, "limit": limit}).all()
