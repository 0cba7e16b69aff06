"""Seller money, operations and one job: the return window, releasing cleared
earnings, and recovering what returns left a seller owing.

Sellers' earnings clear the return window (SPEC §5): a periodic job
(`release_cleared`, owns its commits) moves each sale's seller share from pending to
available once the buyer can no longer return the lead, and only available money is
paid out. A return after release can leave the seller owing (a negative receivable);
`recover_debt` (an operation: posts and flushes, the caller commits) takes it out of
the next money that becomes available, at release and before each payout.
Returns read the window from here; this module imports nothing of returns."""
from datetime import datetime, timedelta, timezone
from typing import Optional

from flask import current_app
from sqlalchemy import exists, select, update

from app.core import figures
from app.extensions import db
from app.models import AccountKind, Return, ReturnStatus, Sale, User
from app.services import ledger
from app.services.ledger import Posting


def return_window() -> timedelta:
    """How long a buyer may return a sold lead; the seller's share stays pending as long."""
    return timedelta(days=current_app.config["RETURN_WINDOW_DAYS"])


def unreturned():
    """SQL condition: the sale has no return that stands or may still stand, so its
    seller's share may leave pending."""
    return ~exists().where(Return.sale_id == Sale.id, Return.status != ReturnStatus.REJECTED)


def recover_debt(seller: User) -> int:
    """Pay what the seller owes (a negative receivable) out of their available money."""
    owed = -ledger.balance_of(ledger.account(AccountKind.SELLER_RECEIVABLE, seller))
    take = min(owed, ledger.balance_for(seller).available)
    if take <= 0:
        return 0
    ledger.post("debt_recovery", [
        Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), -take),
        Posting(ledger.account(AccountKind.SELLER_RECEIVABLE, seller), take)],
        memo="Recovered returned sales from later earnings")
    return take


def release_cleared(now: Optional[datetime] = None) -> int:
    """Release every sale older than the return window, one ledger transaction per
    seller per run; returns the amount released. A sale with a return that stands or is
    still open stays pending. Safe to run in several processes: a sale is released by
    whoever flips its `released_at`, exactly once."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - return_window()
    releasable = (Sale.released_at.is_(None), Sale.created_at <= cutoff, unreturned())
    seller_ids = db.session.scalars(
        select(Sale.seller_id).where(*releasable).distinct()).all()
    released = 0
    for seller_id in sorted(seller_ids):
        rows = db.session.execute(
            update(Sale)
            .where(Sale.seller_id == seller_id, *releasable)
            .values(released_at=now)
            .returning(Sale.id, Sale.seller_share)
            .execution_options(synchronize_session=False)).all()
        amount = sum(share for _, share in rows)
        figures.changed(seller_id)
        if amount:
            seller = db.session.get(User, seller_id)
            ledger.post(
                "earnings_release",
                [Posting(ledger.account(AccountKind.SELLER_PENDING, seller), -amount),
                 Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), amount)],
                # The newest sale released names the run: a retried run has the same key.
                idempotency_key=f"release:{seller_id}:{max(sale_id for sale_id, _ in rows)}",
                memo=f"{len(rows)} sale(s) cleared the return window",
            )
            recover_debt(seller)
        db.session.commit()
        released += amount
    return released
