"""Returns, operations (flush; callers commit) with one job (`accept_overdue`, commits)
and the queries the return pages read.

Returns (SPEC §7): a buyer returns a delivered lead with a reason inside the return
window; clear-cut reasons are decided by the system, the seller accepts or contests
the rest within SELLER_RESPONSE_DAYS (silence accepts), an admin decides contested
ones. An accepted return reverses the sale on the ledger: the buyer gets the price
back, the seller loses their share, the exchange its commission. A failed spot-check
returns every sale of the batch the same way (`return_batch_sales`). The return window
and the recovery of what a reversal leaves a seller owing live in `earnings`."""
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from app.core import figures
from app.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.extensions import db
from app.models import (
    OPEN_RETURN_STATUSES, AccountKind, Batch, Lead, Order, OutcomeStatus, Return, ReturnReason,
    ReturnStatus, Sale, SaleOutcome, User,
)
from app.models.contact_keys import holding
from app.people import notifications
from app.services import audit, earnings, ledger
from app.services.crypto import current_vault
from app.services.ledger import Posting

BUYER_REASONS = {
    ReturnReason.WRONG_NUMBER: "Wrong or dead number",
    ReturnReason.FAKE: "Fake person",
    ReturnReason.NO_CONSENT: "Says they never agreed to be contacted",
    ReturnReason.NOT_MATCHING: "Does not match the order's filters",
    ReturnReason.DUPLICATE: "Duplicate of a lead I already had",
}
RESPONSE_NOTE_MAX = 2000  # characters of a seller's reason
CONVERTED_REFUSAL = ("You marked this lead converted: a customer is not a bad lead. If that "
                     "was a mistake, change its outcome first.")
REASON_LABELS = {**BUYER_REASONS,
                 ReturnReason.FAILED_SPOT_CHECK: "The batch failed its authenticity check"}


def _now(now: Optional[datetime]) -> datetime:
    return now or datetime.now(timezone.utc)


def return_cap(order: Order) -> int:
    """How many of an order's leads its buyer may return (default 15%, at least one)."""
    return max(1, math.ceil(order.filled * current_app.config["RETURN_CAP_BP"] / 10_000))


def not_rejected_returns(order_id: int) -> int:
    """The buyer's returns of the order that count against its cap: open or accepted
    ones the buyer filed (a failed spot-check's refunds are the exchange's doing)."""
    return db.session.scalar(select(func.count()).select_from(Return).where(
        Return.order_id == order_id, Return.status != ReturnStatus.REJECTED,
        Return.filed_by_buyer))


@dataclass(frozen=True)
class Allowance:
    """How many of an order's leads its buyer may return, how many they have, until
    when this sale may be returned, and whether the buyer marked it converted: what
    opening a return checks, and what the return form says before it is filled in."""
    cap: int
    used: int
    of: int  # the order's leads
    closes: datetime
    converted: bool

    @property
    def left(self) -> int:
        return max(0, self.cap - self.used)


def allowance(sale: Sale, order: Optional[Order] = None) -> Allowance:
    order = order or db.session.get(Order, sale.order_id)
    outcome = db.session.scalar(select(SaleOutcome.status).where(SaleOutcome.sale_id == sale.id))
    return Allowance(return_cap(order), not_rejected_returns(order.id), order.filled,
                     sale.created_at + earnings.return_window(),
                     outcome is OutcomeStatus.CONVERTED)


def open_return(buyer: User, sale_id: int, reason: str, note: str = "",
                now: Optional[datetime] = None) -> Return:
    now = _now(now)
    sale = db.session.get(Sale, sale_id)
    if sale is None or sale.buyer_id != buyer.id:
        raise NotFound("No such sale among your leads.")
    try:
        reason = ReturnReason(reason)
    except ValueError:
        reason = None
    if reason not in BUYER_REASONS:
        raise ValidationFailed(
            "Choose a reason: " + ", ".join(f"“{label}”" for label in BUYER_REASONS.values())
            + ".", code="invalid_reason",
            details={"field": "reason", "choices": [r.value for r in BUYER_REASONS]})
    if db.session.scalar(select(Return.id).where(Return.sale_id == sale.id)):
        raise Conflict("This lead has already been returned.", code="already_returned")
    order = db.session.get(Order, sale.order_id)
    allowed = allowance(sale, order)
    if allowed.converted:
        raise ValidationFailed(CONVERTED_REFUSAL, code="converted_lead")
    if now > allowed.closes:
        raise ValidationFailed(
            f"The return window closed on {allowed.closes:%Y-%m-%d %H:%M} UTC.",
            code="window_closed")
    if not allowed.left:
        raise ValidationFailed(
            f"You may return at most {allowed.cap} of this order's {order.filled} leads.",
            code="return_cap_reached", details={"cap": allowed.cap})
    item = Return(sale_id=sale.id, order_id=order.id, buyer_id=buyer.id,
                  seller_id=sale.seller_id, reason=reason, note=note.strip()[:2000],
                  status=ReturnStatus.AWAITING_SELLER, created_at=now)
    db.session.add(item)
    db.session.flush()
    audit.record("return.filed", actor=buyer, subject_type="sale", subject_id=sale.id,
                 details={"return": item.id, "order": order.id, "reason": reason.value})
    figures.changed(item.buyer_id, item.seller_id)
    verdict = _system_verdict(item, sale, order)
    if verdict is None:
        item.seller_deadline = now + timedelta(days=current_app.config["SELLER_RESPONSE_DAYS"])
        notifications.return_to_answer(item, REASON_LABELS[reason], now)
    else:
        accepted, why = verdict
        _decide(item, accepted, by="system", note=why, now=now)
    return item


def _system_verdict(item: Return, sale: Sale, order: Order) -> Optional[tuple[bool, str]]:
    """Decide what the system can check itself; None leaves it to the seller."""
    lead = db.session.get(Lead, sale.lead_id)
    if item.reason is ReturnReason.NOT_MATCHING:
        from app.market.filters import Filters

        if Filters.parse(order.filters).matches(lead, now=sale.created_at):
            return False, "The lead matched the order's filters when it was sold."
        return True, "The lead did not match the order's filters."
    if item.reason is ReturnReason.DUPLICATE:
        contacts = [("email", lead.email_hash), ("phone", lead.phone_hash)]
        earlier = db.session.scalar(
            select(Sale.id).join(Lead, Lead.id == Sale.lead_id)
            .where(Sale.buyer_id == sale.buyer_id, Sale.id < sale.id, Sale.lead_id != lead.id,
                   holding(contacts))
            .limit(1)) if any(h for _, h in contacts) else None
        if earlier:
            return True, f"The same person reached you earlier in sale #{earlier}."
    return None


def seller_respond(seller: User, return_id: int, accept: bool, note: str = "",
                   now: Optional[datetime] = None) -> Return:
    item = db.session.get(Return, return_id)
    if item is None or item.seller_id != seller.id:
        raise NotFound("No such return.")
    if item.status is not ReturnStatus.AWAITING_SELLER:
        raise Conflict("This return has already been decided or passed to an admin.")
    note = note.strip()
    if not accept and not note:
        # The admin decides on it and the buyer reads it: a contest without a reason
        # leaves both with nothing to weigh.
        raise ValidationFailed("Say why you contest the return: the administrator who "
                               "decides and the buyer read it.", code="reason_required",
                               details={"field": "note"})
    item.seller_note = note[:RESPONSE_NOTE_MAX]
    if accept:
        _decide(item, True, by="seller", note="The seller accepted the return.", now=now)
    else:
        item.status = ReturnStatus.CONTESTED
        figures.changed(item.buyer_id, item.seller_id)
        notifications.return_contested(item, REASON_LABELS[item.reason])
    audit.record("return.answered", actor=seller, subject_type="sale", subject_id=item.sale_id,
                 details={"return": item.id, "answer": "accepted" if accept else "contested"})
    return item


def admin_decide(admin: User, return_id: int, accept: bool, note: str,
                 now: Optional[datetime] = None) -> Return:
    item = db.session.get(Return, return_id)
    if item is None:
        raise NotFound("No such return.")
    if item.status is not ReturnStatus.CONTESTED:
        raise Conflict("Only contested returns wait for an admin.")
    if not note.strip():
        raise ValidationFailed("Say why: both sides read the decision.", code="reason_required")
    _decide(item, accept, by="admin", note=note.strip(), now=now)
    # The note's words stay on the return, where an erasure finds them; the log keeps
    # that one was written.
    audit.record("return.decided", actor=admin, subject_type="return", subject_id=item.id,
                 details={"sale_id": item.sale_id, "accepted": accept,
                          "note_chars": len(note.strip())})
    return item


def accept_overdue(now: Optional[datetime] = None) -> int:
    """Returns the seller left unanswered past the deadline are accepted."""
    now = _now(now)
    overdue = db.session.scalars(select(Return).where(
        Return.status == ReturnStatus.AWAITING_SELLER, Return.seller_deadline < now)
        .order_by(Return.id)).all()
    for item in overdue:
        _decide(item, True, by="timeout", now=now,
                note="The seller did not answer within the response time.")
    db.session.commit()
    return len(overdue)


def return_batch_sales(batch_id: int, actor: Optional[User], now: Optional[datetime] = None) -> int:
    """A batch failed its spot-check: every sale of it is returned and refunded.
    Returns how many sales were reversed."""
    now = _now(now)
    sales = db.session.scalars(
        select(Sale).join(Lead, Lead.id == Sale.lead_id).where(Lead.batch_id == batch_id)
        .order_by(Sale.id)).all()
    reversed_count, refunded = 0, []
    for sale in sales:
        item = db.session.scalar(select(Return).where(Return.sale_id == sale.id))
        if item is not None and item.refunds:
            continue  # already refunded
        if item is None:
            item = Return(sale_id=sale.id, order_id=sale.order_id, buyer_id=sale.buyer_id,
                          seller_id=sale.seller_id, reason=ReturnReason.FAILED_SPOT_CHECK,
                          status=ReturnStatus.AWAITING_SELLER, created_at=now)
            db.session.add(item)
            db.session.flush()
        _decide(item, True, by="system", now=now, tell=False,
                note="The batch failed its authenticity spot-check.")
        reversed_count += 1
        refunded.append(sale)
    notifications.batch_refunded(refunded)  # one notice per buyer, not one per sale
    return reversed_count


def _decide(item: Return, accepted: bool, *, by: str, note: str,
            now: Optional[datetime] = None, tell: bool = True) -> None:
    item.status = ReturnStatus.ACCEPTED if accepted else ReturnStatus.REJECTED
    figures.changed(item.buyer_id, item.seller_id)
    item.decided_by, item.decision_note, item.decided_at = by, note, _now(now)
    if accepted:
        transaction = reverse_sale(item.sale, memo=f"Return #{item.id} of sale #{item.sale_id}")
        item.refund = item.sale.price
        item.ledger_transaction_id = transaction.id
    if item.filed_by_buyer:  # only a buyer's return asked the seller to answer
        notifications.return_answered(item)
    if tell:
        notifications.return_decided(item)


def reverse_sale(sale: Sale, memo: str):
    """The sale's money goes back where it came from. The seller's share comes out of
    pending while it is there; once released (or paid out) it comes out of the
    available balance, and what that cannot cover becomes a debt recovered from the
    seller's next earnings (`earnings.recover_debt`)."""
    seller = db.session.get(User, sale.seller_id)
    buyer = db.session.get(User, sale.buyer_id)
    postings = [Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), sale.price)]
    if sale.commission:
        postings.append(Posting(ledger.account(AccountKind.PLATFORM_COMMISSION), -sale.commission))
    share = sale.seller_share
    if share and sale.released_at is None:
        postings.append(Posting(ledger.account(AccountKind.SELLER_PENDING, seller), -share))
    elif share:
        available = ledger.balance_for(seller).available
        from_available = min(share, available)
        if from_available:
            postings.append(Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller),
                                    -from_available))
        if share - from_available:
            postings.append(Posting(ledger.account(AccountKind.SELLER_RECEIVABLE, seller),
                                    -(share - from_available)))
    return ledger.post("sale_reversal", postings, idempotency_key=f"reverse:{sale.id}", memo=memo)


def returns_for_buyer(buyer: User, limit: int = 200) -> list[Return]:
    return db.session.scalars(select(Return).where(Return.buyer_id == buyer.id)
                              .order_by(Return.id.desc()).limit(limit)).all()


def returns_for_seller(seller: User, limit: int = 200) -> list[Return]:
    return db.session.scalars(select(Return).where(Return.seller_id == seller.id)
                              .order_by(Return.status.in_(OPEN_RETURN_STATUSES).desc(),
                                        Return.id.desc()).limit(limit)).all()


@dataclass(frozen=True)
class SellerCase:
    """A return of a seller's lead with what the seller needs to find the lead: the
    file and row it came from and the person's name (their own lead)."""
    item: Return
    lead: Lead
    batch: Batch
    name: str


def seller_cases(seller: User, limit: int = 200) -> list[SellerCase]:
    """The returns of a seller's leads, open ones first (one query)."""
    rows = db.session.execute(
        select(Return, Lead, Batch).join(Sale, Sale.id == Return.sale_id)
        .join(Lead, Lead.id == Sale.lead_id).join(Batch, Batch.id == Lead.batch_id)
        .where(Return.seller_id == seller.id)
        .order_by(Return.status.in_(OPEN_RETURN_STATUSES).desc(), Return.id.desc())
        .limit(limit)).all()
    open_contact = current_vault().open_contact
    cases = []
    for item, lead, batch in rows:
        contact = open_contact(lead.contact_enc)
        name = " ".join(filter(None, (contact.get("first_name"), contact.get("last_name"))))
        cases.append(SellerCase(item, lead, batch, name))
    return cases


@dataclass(frozen=True)
class ContestedCase:
    """A contested return with what an admin needs to decide it."""
    item: Return
    sale: Sale
    lead: Lead
    buyer: User
    seller: User
    contact: dict  # the lead's contacts, decrypted (CONTACT_FIELDS)


def contested_cases(admin: User, ip: Optional[str] = None, limit: int = 200) -> list[ContestedCase]:
    """The contested returns, oldest first, each with the sale, the lead's data and
    both parties (one query). Showing the contacts is an audited view (SPEC §7)."""
    buyer, seller = aliased(User), aliased(User)
    rows = db.session.execute(
        select(Return, Sale, Lead, buyer, seller)
        .join(Sale, Sale.id == Return.sale_id).join(Lead, Lead.id == Sale.lead_id)
        .join(buyer, buyer.id == Return.buyer_id).join(seller, seller.id == Return.seller_id)
        .where(Return.status == ReturnStatus.CONTESTED).order_by(Return.id).limit(limit)).all()
    open_contact = current_vault().open_contact
    cases = [ContestedCase(*row, contact=open_contact(row[2].contact_enc)) for row in rows]
    if cases:
        audit.record("returns.contacts_viewed", actor=admin, subject_type="returns", ip=ip,
                     details={"return_ids": [case.item.id for case in cases],
                              "lead_ids": [case.lead.id for case in cases]})
    return cases


def return_of(user: User, return_id: int) -> Return:
    item = db.session.get(Return, return_id)
    if item is None or (user.id not in (item.buyer_id, item.seller_id) and not user.is_admin):
        raise NotFound("No such return.")
    return item


def require_buyer(user: User) -> None:
    if not user.is_buyer:
        raise Forbidden("Only buyers return leads.", code="not_a_buyer")




def states_for_sales(sale_ids: list[int]) -> dict[int, Return]:
    """The returns of these sales, by sale id (for a page of delivered leads)."""
    if not sale_ids:
        return {}
    return {item.sale_id: item for item in db.session.scalars(
        select(Return).where(Return.sale_id.in_(sale_ids)))}


def refunds_by_order(order_ids: list[int]) -> dict[int, tuple[int, int]]:
    """order id → how many of its leads were refunded and how much money went back
    (orders with no refund are left out)."""
    if not order_ids:
        return {}
    return {order_id: (int(count), int(amount)) for order_id, count, amount in db.session.execute(
        select(Return.order_id, func.count(), func.sum(Return.refund))
        .where(Return.order_id.in_(order_ids), Return.refunds).group_by(Return.order_id))}
