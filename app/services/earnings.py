"""Sellers' earnings clear the return window (SPEC §5): a periodic job moves each
sale's seller share from pending to available once the buyer can no longer return
the lead, and only available money is paid out."""
from datetime import datetime, timedelta, timezone
from typing import Optional

from flask import current_app
from sqlalchemy import select, update

from app.extensions import db
from app.models import AccountKind, Sale, User
from app.services import ledger
from app.services.ledger import Posting


def return_window() -> timedelta:
    return timedelta(days=current_app.config["RETURN_WINDOW_DAYS"])


def release_cleared(now: Optional[datetime] = None) -> int:
    """Release every sale older than the return window, one ledger transaction per
    seller per run; returns the amount released. A sale with a return that stands or is
    still open stays pending. Safe to run in several processes: a sale is released by
    whoever flips its `released_at`, exactly once."""
    from app.services.returns import recover_debt, unreturned

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
