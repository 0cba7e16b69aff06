"""Seller trust (SPEC §2, §7): the level the system proposes from a seller's record,
with its reasons, and what suspension does to the seller's inventory. Admins decide
(accounts.set_trust_level); the proposal only informs them.

The record, over the last RECORD_DAYS:
- acceptance rate: rows accepted ÷ rows read, over the seller's processed uploads;
- spot-checks passed and failed;
- return rate: the seller's sales refunded ÷ the seller's sales, as the marketplace
  counts it (market_stats): the sales of the period and those of them refunded, by a
  buyer's accepted return or by a failed spot-check alike (models.refund_of). That gross
  figure is what the admin reads; the rules below judge buyers' returns only (the
  refunds a failed spot-check made are left out: the failed check already counts);
- conversion feedback from buyers: the outcomes buyers recorded on the seller's leads
  (aggregated, never who gave them): good with a bad rate under HIGH_BAD, bad at or
  above it, neutral under MIN_RATED rated leads.

The proposal:
- suspended: 2 or more failed spot-checks; or 1 failed and a buyers' return rate of
  10% or more; or a buyers' return rate of 25% or more (over at least MIN_SALES sales);
- verified: at least 2 passed spot-checks and none failed, an acceptance rate of 70%
  or more (over at least MIN_ROWS rows), a return rate under 10% (or too few sales
  to tell) and buyers' feedback not bad;
- new otherwise: batches wait for a passed spot-check before they are sold.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

import sqlalchemy as sa

from app.extensions import db
from app.models import (
    LISTED_STATUSES, Batch, BatchStatus, Lead, LeadStatus, OutcomeStatus, Return, ReturnReason,
    Sale, SaleOutcome, SpotCheck, SpotCheckStatus, TrustLevel, User, refund_of,
)

RECORD_DAYS = 180
MIN_ROWS = 200
MIN_SALES = 20
GOOD_ACCEPTANCE = 0.70
HIGH_RETURNS, SUSPEND_RETURNS = 0.10, 0.25
MIN_RATED = 20  # leads rated by buyers before their feedback counts
HIGH_BAD = 0.30  # share of rated leads marked bad that makes the feedback bad


@dataclass
class Record:
    rows: int
    accepted: int
    checks_passed: int
    checks_failed: int
    sales: int
    returns_accepted: int  # of `sales`, those refunded (a spot-check's refunds included)
    refunded_by_checks: int = 0  # of `returns_accepted`, those a failed spot-check made
    rated: int = 0  # sold leads buyers gave an outcome to
    converted: int = 0
    bad: int = 0

    @property
    def acceptance_rate(self) -> Optional[float]:
        return self.accepted / self.rows if self.rows else None

    @property
    def return_rate(self) -> Optional[float]:
        return self.returns_accepted / self.sales if self.sales else None

    @property
    def buyer_return_rate(self) -> Optional[float]:
        """What the proposal judges: the refunds buyers' accepted returns made, not those
        of a failed spot-check (the failed check counts on its own)."""
        if not self.sales:
            return None
        return (self.returns_accepted - self.refunded_by_checks) / self.sales

    @property
    def conversion_rate(self) -> Optional[float]:
        return self.converted / self.rated if self.rated else None

    @property
    def bad_rate(self) -> Optional[float]:
        return self.bad / self.rated if self.rated else None


def record_of(seller: User, now: Optional[datetime] = None) -> Record:
    since = (now or datetime.now(timezone.utc)) - timedelta(days=RECORD_DAYS)
    rows, accepted = db.session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(Batch.rows_total), 0),
                  sa.func.coalesce(sa.func.sum(Batch.accepted), 0))
        .where(Batch.seller_id == seller.id, Batch.created_at >= since,
               Batch.status.in_([BatchStatus.HELD, BatchStatus.LIVE, BatchStatus.REJECTED]))).one()
    checks = dict(db.session.execute(
        sa.select(SpotCheck.status, sa.func.count()).join(Batch, Batch.id == SpotCheck.batch_id)
        .where(Batch.seller_id == seller.id, SpotCheck.decided_at >= since)
        .group_by(SpotCheck.status)).all())
    sales = db.session.scalar(sa.select(sa.func.count()).select_from(Sale).where(
        Sale.seller_id == seller.id, Sale.created_at >= since)) or 0
    # Of those sales, the few refunded, reached by the seller's returns.
    returned, by_checks = db.session.execute(
        sa.select(sa.func.count(),
                  sa.func.count(sa.case((Return.reason == ReturnReason.FAILED_SPOT_CHECK, 1))))
        .select_from(Return).join(Sale, refund_of(Sale.id))
        .where(Return.seller_id == seller.id, Sale.created_at >= since)).one()
    outcomes = dict(db.session.execute(
        sa.select(SaleOutcome.status, sa.func.count())
        .where(SaleOutcome.seller_id == seller.id, SaleOutcome.sold_at >= since)
        .group_by(SaleOutcome.status)).all())
    return Record(int(rows), int(accepted), checks.get(SpotCheckStatus.PASSED, 0),
                  checks.get(SpotCheckStatus.FAILED, 0), sales, returned, by_checks,
                  rated=sum(outcomes.values()), converted=outcomes.get(OutcomeStatus.CONVERTED, 0),
                  bad=outcomes.get(OutcomeStatus.BAD, 0))


@dataclass(frozen=True)
class Factor:
    name: str
    verdict: str  # "good", "neutral" or "bad"
    sentence: str


@dataclass
class Proposal:
    level: TrustLevel
    record: Record
    factors: list[Factor] = field(default_factory=list)
    summary: str = ""


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _feedback_factor(record: Record) -> Factor:
    """Buyers' outcomes on the seller's leads, as counts (never which buyer said what)."""
    if not record.rated:
        return Factor("Conversion feedback", "neutral",
                      f"No buyer has rated this seller's leads in {RECORD_DAYS} days.")
    counts = (f"{record.converted} of {record.rated} rated leads converted "
              f"({_pct(record.conversion_rate)}), {record.bad} bad ({_pct(record.bad_rate)})")
    if record.rated < MIN_RATED:
        return Factor("Conversion feedback", "neutral",
                      f"{counts}: too few to judge (needs {MIN_RATED}).")
    bad = record.bad_rate >= HIGH_BAD
    return Factor("Conversion feedback", "bad" if bad else "good",
                  f"{counts}; {HIGH_BAD:.0%} or more bad is high.")


def _refund_causes(record: Record, judged: float) -> str:
    """Which refunds a failed spot-check made, and the buyers' return rate the rules judge."""
    by_checks = record.refunded_by_checks
    if not by_checks:
        return ""
    returned = record.returns_accepted - by_checks
    causes = (f": {by_checks} by a failed spot-check, {returned} by buyers' returns"
              if returned else ", all by a failed spot-check")
    return f"{causes}; buyers' returns alone {_pct(judged)}, the rate judged"


def propose(seller: User, now: Optional[datetime] = None) -> Proposal:
    record = record_of(seller, now)
    factors = []
    acceptance = record.acceptance_rate
    if acceptance is None or record.rows < MIN_ROWS:
        factors.append(Factor("Acceptance rate", "neutral",
                              f"{record.rows} rows uploaded: too few to judge (needs {MIN_ROWS})."))
    else:
        factors.append(Factor(
            "Acceptance rate", "good" if acceptance >= GOOD_ACCEPTANCE else "bad",
            f"{_pct(acceptance)} of {record.rows} rows accepted "
            f"({'at or above' if acceptance >= GOOD_ACCEPTANCE else 'below'} "
            f"{GOOD_ACCEPTANCE:.0%})."))
    if record.checks_failed:
        factors.append(Factor("Spot-checks", "bad", f"{record.checks_failed} failed and "
                              f"{record.checks_passed} passed in {RECORD_DAYS} days."))
    elif record.checks_passed:
        factors.append(Factor("Spot-checks", "good" if record.checks_passed >= 2 else "neutral",
                              f"{record.checks_passed} passed, none failed in {RECORD_DAYS} days."))
    else:
        factors.append(Factor("Spot-checks", "neutral", "None decided yet."))
    returns, judged = record.return_rate, record.buyer_return_rate
    if returns is None or record.sales < MIN_SALES:
        factors.append(Factor("Return rate", "neutral",
                              f"{record.sales} sales: too few to judge (needs {MIN_SALES})."))
        judged = None
    else:
        factors.append(Factor(
            "Return rate", "bad" if judged >= HIGH_RETURNS else "good",
            f"{record.returns_accepted} of {record.sales} sales refunded ({_pct(returns)}"
            f"{_refund_causes(record, judged)}; {HIGH_RETURNS:.0%} or more is high)."))
    factors.append(_feedback_factor(record))
    feedback_bad = factors[-1].verdict == "bad"

    if record.checks_failed >= 2:
        level, summary = TrustLevel.SUSPENDED, "Two or more failed spot-checks."
    elif record.checks_failed and judged is not None and judged >= HIGH_RETURNS:
        level, summary = TrustLevel.SUSPENDED, "A failed spot-check and a high return rate."
    elif judged is not None and judged >= SUSPEND_RETURNS:
        level, summary = TrustLevel.SUSPENDED, f"Returns of {SUSPEND_RETURNS:.0%} or more."
    elif (record.checks_passed >= 2 and not record.checks_failed
          and acceptance is not None and record.rows >= MIN_ROWS
          and acceptance >= GOOD_ACCEPTANCE
          and (judged is None or judged < HIGH_RETURNS)
          and not feedback_bad):
        level, summary = TrustLevel.VERIFIED, ("Passed spot-checks, a good acceptance rate and "
                                               "few returns.")
    elif seller.trust_level is TrustLevel.VERIFIED and all(f.verdict != "bad" for f in factors):
        # Too little record to earn verification is no reason to take it away.
        level, summary = TrustLevel.VERIFIED, ("Verified already, and nothing in the record "
                                               "speaks against it.")
    else:
        level, summary = TrustLevel.NEW, ("Not enough good record yet: batches should keep "
                                          "waiting for a passed spot-check.")
    return Proposal(level, record, factors, summary)


def delist_unsold(seller: User) -> int:
    """Take every lead of the seller that is still for sale (or paused) off the market."""
    return db.session.execute(
        sa.update(Lead).where(Lead.seller_id == seller.id,
                              Lead.status.in_(LISTED_STATUSES))
        .values(status=LeadStatus.DELISTED)
        .execution_options(synchronize_session=False)).rowcount
