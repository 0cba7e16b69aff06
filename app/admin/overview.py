"""The admin's marketplace overview: every figure on the page (accounts by role, the
commission ever earned, the books' reconciliation, the period's market) computed
together, so that they agree, and kept per process for MARKET_STATS_CACHE_SECONDS at
one version of the data (memo.cached): a sale, return, payment, upload or sign-up
anywhere makes it stale at once, and the page says when its figures were computed (a
helper: reads only)."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from app.extensions import db
from app.models import AccountKind, Role, User
from app.models.types import utcnow
from app.services import ledger, market_stats, memo


@dataclass(frozen=True)
class Overview:
    computed_at: datetime
    users_by_role: dict[str, int]
    commission: int  # all time, in minor units
    reconciliation: ledger.Reconciliation
    market: market_stats.Marketplace


def overview(days: int) -> Overview:
    return memo.cached(("admin_overview", days), lambda: _compute(days),
                       version=market_stats.marketplace_version())


def _compute(days: int) -> Overview:
    now = utcnow()
    counts = dict(db.session.execute(select(User.role, func.count()).group_by(User.role)).all())
    commission = ledger.system_balance(AccountKind.PLATFORM_COMMISSION)
    return Overview(now, {role.value: counts.get(role, 0) for role in Role}, commission,
                    ledger.reconcile(), market_stats.marketplace(days, now=now))
