"""Lead score and temperature (SPEC §6). The formula is documented in docs/scoring.md.

score (0–100) = completeness (≤ 35) + intent (≤ 20) + freshness (≤ 30) + seller (≤ 15)

- completeness: phone 10, email 8; demographics: age 4, gender 3, region 3,
  interests 3, marital status 2, employment 2 (known values only);
- intent, the SPEC §3 BANT fields: budget, authority, need, timeframe, 5 each when
  given (blank, "unknown", "n/a", "none", "no", "-" count as not given: a lead that
  says it has no budget or no need shows no intent);
- freshness: decays with the time since consent, in steps (FRESHNESS_STEPS):
  30 points within a day, 26 within 3 days, 22 within 7, 17 within 14, 12 within 30,
  7 within 60, 3 within 90, then 0;
- seller: 15 × the mean of three signals of the seller's record, each smoothed toward
  0.5 by pseudo-observations so a seller without a record scores a neutral 8:
  acceptance (accepted rows of all uploads), no returns (sales not refunded by an
  accepted return; open and rejected returns do not count), and buyers' feedback on its
  delivered leads (converted 1, contacted 0.5, bad 0).

An exchange consent certificate (a hosted form's lead, app/consent) adds
CERTIFICATE_POINTS to the lead's own part, within its 55: consent the exchange
witnessed is worth more than consent a seller claims.

Temperature: hot ≥ 70, warm 40–69, cold < 40.

How it stays current without rescoring everything: the parts that do not decay are
stored on the lead (`score_base` = completeness + intent, fixed at ingest;
`seller_points`, refreshed for unsold inventory by the periodic job
`refresh_seller_points`). Freshness is a step function of `consent_at`, so "score ≥ m"
is a handful of comparisons of the stored parts against consent-time cutoffs computed
from `now` (`min_score_condition` in SQL, `score_at` in the matcher): nothing is
rewritten as leads age, and every query sees the score as of its own `now`.

The formula part imports neither Flask nor SQLAlchemy: ingest worker processes
compute `lead_points` next to validation.
"""
from datetime import datetime, timedelta
from itertools import compress
from typing import Optional

COMPLETENESS_POINTS = {"phone": 10, "email": 8, "age": 4, "gender": 3, "region": 3,
                       "interests": 3, "marital_status": 2, "employed": 2}
INTENT_FIELDS = ("budget", "authority", "need", "timeframe")
INTENT_POINTS = 5
# (days since consent at most, points), freshest first; older than the last: 0.
FRESHNESS_STEPS = ((1, 30), (3, 26), (7, 22), (14, 17), (30, 12), (60, 7), (90, 3))
SELLER_MAX = 15
# Pseudo-observations pulling each seller signal toward 0.5 until evidence outweighs them.
PRIOR_ROWS, PRIOR_SALES, PRIOR_FEEDBACK = 200, 50, 20
FEEDBACK_VALUE = {"converted": 1.0, "contacted": 0.5, "bad": 0.0}

BASE_MAX = sum(COMPLETENESS_POINTS.values()) + INTENT_POINTS * len(INTENT_FIELDS)  # 55
CERTIFICATE_POINTS = 10
MAX_SCORE = BASE_MAX + FRESHNESS_STEPS[0][1] + SELLER_MAX  # 100

HOT, WARM = 70, 40
TEMPERATURES = ("hot", "warm", "cold")
TEMPERATURE_MIN = {"hot": HOT, "warm": WARM, "cold": 0}

NO_ANSWER = frozenset({"", "-", "?", "n/a", "na", "none", "no", "unknown", "null", "0"})


def _given(value: Optional[str]) -> bool:
    return value is not None and value.strip().lower() not in NO_ANSWER


# The weights in the order of lead_points' flags.
_COMPLETENESS_WEIGHTS = tuple(COMPLETENESS_POINTS[name] for name in (
    "phone", "email", "age", "gender", "region", "interests", "marital_status", "employed"))
_UNKNOWN = (None, "", "unknown")


def lead_points(*, has_phone: bool, has_email: bool, age: Optional[int], gender: str,
                region: Optional[str], interests, marital_status: str, employed: str,
                budget: Optional[str] = None, authority: Optional[str] = None,
                need: Optional[str] = None, timeframe: Optional[str] = None) -> int:
    """The lead's own, non-decaying part: completeness + intent (0–55).

    Computed for every ingested row, hence compress() over flags rather than a dict
    per row."""
    known = (has_phone, has_email, age is not None, gender not in _UNKNOWN, bool(region),
             bool(interests), marital_status not in _UNKNOWN, employed not in _UNKNOWN)
    intent = [value for value in (budget, authority, need, timeframe) if value]
    return (sum(compress(_COMPLETENESS_WEIGHTS, known))
            + INTENT_POINTS * sum(map(_given, intent)))


def with_certificate(base_points: int) -> int:
    """The lead's own part once the exchange holds its consent certificate."""
    return min(base_points + CERTIFICATE_POINTS, BASE_MAX)


def freshness_points(consent_at: datetime, now: datetime) -> int:
    age = now - consent_at
    for days, points in FRESHNESS_STEPS:
        if age <= timedelta(days=days):
            return points
    return 0


def score_at(base_points: int, consent_at: datetime, now: datetime) -> int:
    """The score now: the stored parts (`score_base + seller_points`) plus freshness."""
    return min(base_points + freshness_points(consent_at, now), MAX_SCORE)


def temperature(score: int) -> str:
    return "hot" if score >= HOT else "warm" if score >= WARM else "cold"


def threshold(min_score: Optional[int], min_temperature: Optional[str]) -> int:
    """The lowest score an order accepts, from its two filters (0: any)."""
    return max(min_score or 0, TEMPERATURE_MIN.get(min_temperature or "cold", 0))


def _smoothed(good: float, total: float, prior: int) -> float:
    return (good + 0.5 * prior) / (total + prior)


def seller_points_from(*, rows: int, accepted: int, sold: int, returned: int,
                       converted: int, contacted: int, bad: int) -> int:
    """The seller's record as score points (0–15); 8 for a seller without a record."""
    acceptance = _smoothed(accepted, rows, PRIOR_ROWS)
    not_returned = _smoothed(sold - returned, sold, PRIOR_SALES)
    rated = converted + contacted + bad
    feedback = _smoothed(converted * FEEDBACK_VALUE["converted"]
                         + contacted * FEEDBACK_VALUE["contacted"], rated, PRIOR_FEEDBACK)
    return int(SELLER_MAX * (acceptance + not_returned + feedback) / 3 + 0.5)


# --- The database side -------------------------------------------------------------

def _stored_points():
    from app.models import Lead

    return Lead.score_base + Lead.seller_points


def min_score_condition(min_score: int, now: datetime):
    """SQL for "the lead's score at `now` is at least `min_score`": the stored parts
    against the freshness step its consent time falls in, as consent-time cutoffs."""
    import sqlalchemy as sa

    from app.models import Lead

    if min_score <= 0:
        return None
    stored = _stored_points()
    terms = [stored >= min_score]  # no freshness points needed
    for days, points in FRESHNESS_STEPS:
        needed = min_score - points
        cutoff = Lead.consent_at >= now - timedelta(days=days)
        terms.append(cutoff if needed <= 0 else sa.and_(stored >= needed, cutoff))
    return sa.or_(*terms)


def score_sql(now: datetime):
    """The score at `now` as a SQL expression (for grouping and display)."""
    import sqlalchemy as sa

    from app.models import Lead

    fresh = sa.case(*[(Lead.consent_at >= now - timedelta(days=days), points)
                      for days, points in FRESHNESS_STEPS], else_=0)
    return _stored_points() + fresh


def temperature_sql(now: datetime):
    import sqlalchemy as sa

    score = score_sql(now)
    return sa.case((score >= HOT, "hot"), (score >= WARM, "warm"), else_="cold")


def seller_records(seller_ids: Optional[list[int]] = None) -> dict[int, dict]:
    """Each seller's record, by aggregates: rows/accepted of uploads, sales, accepted
    returns, outcomes."""
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import Batch, Return, Role, Sale, SaleOutcome, User

    def scoped(query, column):
        return query.where(column.in_(seller_ids)) if seller_ids is not None else query

    if seller_ids is None:
        ids = list(db.session.scalars(sa.select(User.id).where(User.role == Role.SELLER)))
    else:
        ids = list(seller_ids)
    records = {sid: {"rows": 0, "accepted": 0, "sold": 0, "returned": 0,
                     "converted": 0, "contacted": 0, "bad": 0} for sid in ids}
    for sid, rows, accepted in db.session.execute(scoped(
            sa.select(Batch.seller_id, sa.func.sum(Batch.rows_total), sa.func.sum(Batch.accepted))
            .group_by(Batch.seller_id), Batch.seller_id)):
        if sid in records:
            records[sid].update(rows=int(rows or 0), accepted=int(accepted or 0))
    for sid, sold in db.session.execute(scoped(
            sa.select(Sale.seller_id, sa.func.count()).group_by(Sale.seller_id), Sale.seller_id)):
        if sid in records:
            records[sid]["sold"] = sold
    for sid, returned in db.session.execute(scoped(
            sa.select(Return.seller_id, sa.func.count())
            .where(Return.refunds).group_by(Return.seller_id),
            Return.seller_id)):
        if sid in records:
            records[sid]["returned"] = returned
    for sid, status, count in db.session.execute(scoped(
            sa.select(SaleOutcome.seller_id, SaleOutcome.status, sa.func.count())
            .group_by(SaleOutcome.seller_id, SaleOutcome.status), SaleOutcome.seller_id)):
        if sid in records:
            records[sid][status.value] = count
    return records


def seller_points_for(seller_id: int) -> int:
    return seller_points_from(**seller_records([seller_id])[seller_id])


def refresh_seller_points() -> int:
    """Periodic: bring each seller's record into its unsold inventory (and its open
    real-time batch), one UPDATE per seller whose points changed. Returns leads changed."""
    import sqlalchemy as sa

    from app.extensions import db
    from app.market import rules
    from app.models import LISTED_STATUSES, Batch, Lead

    changed = 0
    for seller_id, record in seller_records().items():
        points = seller_points_from(**record)
        # By the seller's batches: leads are indexed by batch, not necessarily by seller.
        batches = sa.select(Batch.id).where(Batch.seller_id == seller_id).scalar_subquery()
        changed += db.session.execute(
            sa.update(Lead).where(Lead.batch_id.in_(batches), Lead.seller_points != points,
                                  Lead.status.in_(LISTED_STATUSES),
                                  rules.LEAD_CAP.test(Lead, rules.Ctx()))
            .values(seller_points=points).execution_options(synchronize_session=False)).rowcount
        db.session.execute(sa.update(Batch).where(Batch.seller_id == seller_id,
                                                  Batch.seller_points != points)
                           .values(seller_points=points)
                           .execution_options(synchronize_session=False))
        db.session.commit()  # one seller per transaction: short write locks
    return changed
