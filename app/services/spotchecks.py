"""Spot-checks (SPEC §7): an admin contacts a random sample of a batch and the batch
passes or fails by an acceptance number.

The plan is an attributes sampling plan computed exactly from the hypergeometric
distribution (sampling without replacement from the lot): for a lot of N leads, the
rate p it must catch and the confidence 1 − β, n is the smallest sample such that a
lot with D = ⌈p·N⌉ defective leads (and so any worse lot) shows at most c defects in
the sample with probability ≤ β:

    P(pass | N, D, n, c) = Σ_{k=0..c} C(D, k) · C(N − D, n − k) / C(N, n) ≤ β

computed with math.comb in exact integers. c is 0: one fake or unconsented lead in
the sample fails the batch. The plans (PLANS): `standard` catches 5% with 95%
confidence (n = 59 for a large lot); `tightened`, for new sellers and batches with a
risk of 30 or more, catches 3% with 95% (n = 99); `strict`, for a risk of 60 or more
(or 30 or more from a new seller), catches 3% with 99% (n = 152).

Verdicts: genuine; fake and no_consent are defects; unreachable is neither. An
unreachable lead says nothing about the batch, so it does not count towards n and is
replaced by the next lead of the same seeded draw: the plan's guarantee holds for
the leads that could be reached. (Whether unreachable people are themselves a sign
of fakes is the admin's call: a number that does not exist is `fake`.) If the whole
lot has been drawn and fewer than n leads could be reached, the batch cannot be
verified and fails.

The sample is drawn reproducibly: positions in the lot (leads ordered by row number)
come from random.Random(seed) one at a time, skipping repeats, and the seed is
stored on the check, so the same seed always names the same leads, replacements
included.
"""
import math
import random
import secrets
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Iterator, Optional

import sqlalchemy as sa
from sqlalchemy import orm

from app.core import events, figures
from app.core.dialect import lock_in_id_order
from app.errors import Conflict, NotFound, ValidationFailed
from app.extensions import db
from app.models import (
    DEFECTS, LISTED_STATUSES, Batch, BatchStatus, Lead, LeadStatus, SpotCheck, SpotCheckItem,
    SpotCheckStatus, TrustLevel, User, Verdict,
)
from app.models.types import utcnow
from app.people import notifications
from app.services import audit, returns
from app.services.crypto import current_vault

ACCEPTANCE_NUMBER = 0
VERDICT_LABELS = {Verdict.GENUINE: "Genuine", Verdict.FAKE: "Fake",
                  Verdict.UNREACHABLE: "Unreachable", Verdict.NO_CONSENT: "No consent"}
# name -> (defect rate to catch, confidence), in basis points
PLANS = {"standard": (500, 9500), "tightened": (300, 9500), "strict": (300, 9900)}
TIGHTENED_RISK, STRICT_RISK = 30, 60


def accept_probability(lot: int, sample: int, acceptance: int, defects: int) -> Fraction:
    """Exact P(at most `acceptance` defects in the sample) for a lot with `defects`."""
    good = lot - defects
    favourable = sum(math.comb(defects, k) * math.comb(good, sample - k)
                     for k in range(0, min(acceptance, sample, defects) + 1))
    return Fraction(favourable, math.comb(lot, sample))


def lot_defects(lot: int, defect_rate_bp: int) -> int:
    """The fewest defective leads that make `defect_rate_bp` of the lot."""
    return max(1, -(-lot * defect_rate_bp // 10_000))


def sample_size(lot: int, defect_rate_bp: int, confidence_bp: int,
                acceptance: int = ACCEPTANCE_NUMBER) -> int:
    """Smallest n with P(pass) ≤ 1 − confidence for a lot at the defect rate."""
    defects = lot_defects(lot, defect_rate_bp)
    beta = Fraction(10_000 - confidence_bp, 10_000)
    if defects <= acceptance:
        return lot  # the lot is too small to fail by the acceptance number: check it all
    # P(pass) falls as n grows (at n = lot it is 0). Gallop up from small n, then
    # bisect: sizes far above the answer would need huge binomial coefficients.
    low, high = acceptance + 1, acceptance + 1
    while accept_probability(lot, high, acceptance, defects) > beta:
        low, high = high + 1, min(lot, high * 2)
    while low < high:
        middle = (low + high) // 2
        if accept_probability(lot, middle, acceptance, defects) <= beta:
            high = middle
        else:
            low = middle + 1
    return low


@dataclass(frozen=True)
class Plan:
    name: str
    reason: str
    lot_size: int
    sample_size: int
    acceptance_number: int
    defect_rate_bp: int
    confidence_bp: int

    @property
    def pass_probability(self) -> Fraction:
        """The exact chance a lot right at the defect rate passes (≤ 1 − confidence)."""
        return accept_probability(self.lot_size, self.sample_size, self.acceptance_number,
                                  lot_defects(self.lot_size, self.defect_rate_bp))

    @property
    def achieved_confidence(self) -> float:
        return float(1 - self.pass_probability)


def plan_for(lot_size: int, risk_score: Optional[int], trust: TrustLevel) -> Plan:
    risk = risk_score or 0
    is_new = trust is not TrustLevel.VERIFIED
    if risk >= STRICT_RISK or (is_new and risk >= TIGHTENED_RISK):
        name = "strict"
        reason = (f"Risk {risk}" + (" from a seller who is not verified" if is_new and
                                    risk < STRICT_RISK else " is high")
                  + ": sized to catch 3% bad leads with 99% confidence.")
    elif risk >= TIGHTENED_RISK or is_new:
        name = "tightened"
        reason = ("The seller is not verified yet" if is_new else f"Risk {risk} is raised") \
            + ": sized to catch 3% bad leads with 95% confidence."
    else:
        name = "standard"
        reason = "A verified seller and a low risk: sized to catch 5% bad leads with 95% confidence."
    rate, confidence = PLANS[name]
    return Plan(name, reason, lot_size, sample_size(lot_size, rate, confidence), ACCEPTANCE_NUMBER,
                rate, confidence)


def draw_positions(seed: int, lot_size: int) -> Iterator[int]:
    """Distinct lot positions in the order the seed draws them."""
    rng, seen = random.Random(seed), set()
    while len(seen) < lot_size:
        position = rng.randrange(lot_size)
        if position not in seen:
            seen.add(position)
            yield position


def lead_ids_at(batch_id: int, positions: set[int], chunk: int = 10_000) -> dict[int, int]:
    """Lot position → lead id, the lot being the batch's leads by (row number, id)."""
    found, offset, after = {}, 0, (-1, -1)
    remaining = set(positions)
    while remaining:
        rows = db.session.execute(
            sa.select(Lead.id, Lead.row_number)
            .where(Lead.batch_id == batch_id, sa.tuple_(Lead.row_number, Lead.id) > after)
            .order_by(Lead.row_number, Lead.id).limit(chunk)).all()
        if not rows:
            break
        for i, row in enumerate(rows):
            if offset + i in remaining:
                found[offset + i] = row.id
                remaining.discard(offset + i)
        offset += len(rows)
        after = (rows[-1].row_number, rows[-1].id)
    return found


def lot_size(batch_id: int) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Lead)
                             .where(Lead.batch_id == batch_id)) or 0


CHECKABLE = (BatchStatus.HELD, BatchStatus.LIVE)


def open_check(batch_id: int) -> Optional[SpotCheck]:
    return db.session.scalar(sa.select(SpotCheck).where(
        SpotCheck.batch_id == batch_id, SpotCheck.status == SpotCheckStatus.OPEN))


def start_check(batch: Batch, admin: User, *, seed: Optional[int] = None) -> SpotCheck:
    """The batch's open check, or a new one with its sample drawn."""
    existing = open_check(batch.id)
    if existing is not None:
        return existing
    if batch.status not in CHECKABLE:
        raise Conflict(f"Batch #{batch.id} is {batch.status.value}: only held or live batches "
                       "are spot-checked.", code="not_checkable")
    if waits_for_nothing(batch):
        raise Conflict(f"Batch #{batch.id} has no lead left that could go on sale (each was "
                       "withdrawn or delisted): there is nothing to check.", code="not_checkable")
    lot = lot_size(batch.id)
    if lot == 0:
        raise Conflict("The batch has no leads to check.", code="not_checkable")
    plan = plan_for(lot, batch.risk_score, batch.seller.trust_level)
    check = SpotCheck(
        batch_id=batch.id, status=SpotCheckStatus.OPEN,
        seed=seed if seed is not None else secrets.randbits(62), lot_size=lot,
        sample_size=plan.sample_size, acceptance_number=plan.acceptance_number,
        defect_rate_bp=plan.defect_rate_bp, confidence_bp=plan.confidence_bp, plan=plan.name,
        plan_reason=plan.reason, risk_score=batch.risk_score, created_by_id=admin.id)
    db.session.add(check)
    db.session.flush()
    figures.changed(batch.seller_id)
    _draw(check, plan.sample_size)
    audit.record("spot_check.started", actor=admin, subject_type="batch", subject_id=batch.id,
                 details={"check_id": check.id, "seed": check.seed, "lot_size": lot,
                          "sample_size": check.sample_size, "plan": plan.name})
    return check


def _draw(check: SpotCheck, wanted: int) -> int:
    """Add items until the check has `wanted` of them (or the lot is exhausted)."""
    have = db.session.scalar(sa.select(sa.func.count()).select_from(SpotCheckItem)
                             .where(SpotCheckItem.check_id == check.id)) or 0
    wanted = min(wanted, check.lot_size)
    if have >= wanted:
        return 0
    sequence = draw_positions(check.seed, check.lot_size)
    positions = [next(sequence) for _ in range(wanted)][have:]
    ids = lead_ids_at(check.batch_id, set(positions))
    for index, position in enumerate(positions, start=have):
        if position in ids:
            db.session.add(SpotCheckItem(check_id=check.id, lead_id=ids[position], position=index))
    db.session.flush()
    db.session.expire(check, ["items"])
    return wanted - have


@dataclass(frozen=True)
class Tally:
    verified: int  # genuine + defects
    defects: int
    unreachable: int
    pending: int
    outcome: str  # "pass", "fail" or "pending"
    reason: str


def tally(check: SpotCheck) -> Tally:
    verdicts = [item.verdict for item in check.items]
    defects = sum(v in DEFECTS for v in verdicts)
    genuine = verdicts.count(Verdict.GENUINE)
    unreachable = verdicts.count(Verdict.UNREACHABLE)
    pending = verdicts.count(None)
    verified, n, c = genuine + defects, check.sample_size, check.acceptance_number
    if defects > c:
        return Tally(verified, defects, unreachable, pending, "fail",
                     f"{defects} sampled lead{'s' if defects != 1 else ''} fake or without "
                     f"consent: more than the acceptance number {c}.")
    if pending:
        return Tally(verified, defects, unreachable, pending, "pending",
                     f"{pending} sampled lead{'s' if pending != 1 else ''} still to verify.")
    if verified >= n:
        return Tally(verified, defects, unreachable, pending, "pass",
                     f"{verified} leads verified, {defects} defective: within the acceptance "
                     f"number {c}.")
    return Tally(verified, defects, unreachable, pending, "fail",
                 f"The whole lot was drawn and only {verified} of the {n} leads needed could "
                 "be reached: the batch cannot be verified.")


def get_check(check_id: int) -> SpotCheck:
    check = db.session.get(SpotCheck, check_id)
    if check is None:
        raise NotFound("No such spot-check.")
    return check


def record_verdicts(check: SpotCheck, item_ids: list[int], verdict: str, admin: User,
                    note: str = "") -> tuple[list[SpotCheckItem], list[SpotCheckItem]]:
    """One verdict on one or several sampled leads, as one audited action. Returns the
    judged items and the replacements drawn for the unreachable ones (new leads whose
    contacts the admin has not seen yet)."""
    if check.status is not SpotCheckStatus.OPEN:
        raise Conflict("This spot-check is decided; its verdicts are final.", code="check_decided")
    try:
        verdict = Verdict(verdict)
    except ValueError:
        raise ValidationFailed(f"Choose a verdict: {', '.join(v.value for v in Verdict)}.",
                               code="invalid_verdict")
    wanted = set(item_ids)
    if not wanted:
        raise ValidationFailed("Select at least one sampled lead.", code="no_items")
    items = db.session.scalars(sa.select(SpotCheckItem).options(orm.joinedload(SpotCheckItem.lead))
        .where(SpotCheckItem.check_id == check.id, SpotCheckItem.id.in_(wanted))
        .order_by(SpotCheckItem.position)).all()
    if len(items) != len(wanted):
        raise NotFound("No such lead in this sample.")
    previous = {item.lead_id: item.verdict.value if item.verdict else None for item in items}
    now, note = utcnow(), note.strip()[:2000]
    for item in items:
        item.verdict, item.admin_id, item.decided_at, item.note = verdict, admin.id, now, note
    db.session.flush()
    unreachable = db.session.scalar(
        sa.select(sa.func.count()).select_from(SpotCheckItem)
        .where(SpotCheckItem.check_id == check.id, SpotCheckItem.verdict == Verdict.UNREACHABLE))
    had = db.session.scalar(sa.select(sa.func.max(SpotCheckItem.position))
                            .where(SpotCheckItem.check_id == check.id))
    drawn = _draw(check, check.sample_size + unreachable)  # each unreachable lead is replaced
    replacements = db.session.scalars(
        sa.select(SpotCheckItem).options(orm.joinedload(SpotCheckItem.lead))
        .where(SpotCheckItem.check_id == check.id, SpotCheckItem.position > had)
        .order_by(SpotCheckItem.position)).all() if drawn else []
    # The note's words stay on the items, where an erasure finds them; the log keeps
    # that one was written.
    details = {"check_id": check.id, "batch_id": check.batch_id, "verdict": verdict.value,
               "replacements_drawn": drawn, "note_chars": len(note)}
    if len(items) == 1:
        audit.record("spot_check.verdict", actor=admin, subject_type="lead",
                     subject_id=items[0].lead_id,
                     details=details | {"previous": previous[items[0].lead_id]})
    else:
        audit.record("spot_check.verdict", actor=admin, subject_type="batch",
                     subject_id=check.batch_id,
                     details=details | {"lead_ids": [item.lead_id for item in items],
                                        "previous": previous})
    return items, replacements


def record_verdict(check: SpotCheck, item_id: int, verdict: str, admin: User,
                   note: str = "") -> SpotCheckItem:
    """A verdict on one sampled lead."""
    return record_verdicts(check, [item_id], verdict, admin, note)[0][0]


@dataclass(frozen=True)
class SampledLead:
    item: SpotCheckItem
    lead: Lead
    first_name: Optional[str]
    last_name: Optional[str]
    email: Optional[str]
    phone: Optional[str]
    ip: Optional[str]


def sample_items(check: SpotCheck) -> list[SpotCheckItem]:
    """The check's sampled leads in draw order, each with its lead (one query)."""
    return db.session.scalars(
        sa.select(SpotCheckItem).options(orm.joinedload(SpotCheckItem.lead))
        .where(SpotCheckItem.check_id == check.id).order_by(SpotCheckItem.position)).all()


def contacts_of(items: list[SpotCheckItem]) -> list[SampledLead]:
    """The items with their leads' contacts decrypted; callers audit the view."""
    open_contact = current_vault().open_contact
    shown = []
    for item in items:
        contact = open_contact(item.lead.contact_enc)
        shown.append(SampledLead(item, item.lead, contact["first_name"], contact["last_name"],
                                 contact["email"], contact["phone"], contact["ip"]))
    return shown


def sampled_contacts(check: SpotCheck, admin: User, ip: Optional[str] = None,
                     items: Optional[list[SpotCheckItem]] = None) -> list[SampledLead]:
    """The sample (or the given items of it) with its contacts decrypted; the view is
    audited once (SPEC §7). Re-showing leads the admin already saw after a verdict on
    them is part of that verdict's audited action, not a new view."""
    shown = contacts_of(sample_items(check) if items is None else items)
    audit.record("spot_check.contacts_viewed", actor=admin, subject_type="batch",
                 subject_id=check.batch_id, ip=ip,
                 details={"check_id": check.id, "lead_ids": [s.lead.id for s in shown]})
    return shown


@dataclass(frozen=True)
class Decision:
    check: SpotCheck
    outcome: str
    went_live: bool  # a held batch was listed: offer it to the matcher
    delisted: int
    sales_returned: int


def decide(check: SpotCheck, admin: User, note: str = "",
           now: Optional[datetime] = None) -> Decision:
    """Apply what the sample says. Pass: a held batch goes live. Fail: the batch is
    rejected, every lead of it still listed is delisted, and every sale of it is
    returned and refunded on the ledger. The caller commits; a batch that went live
    is then offered to the matcher (BatchWentLive)."""
    result = tally(check)
    if result.outcome == "pending":
        raise Conflict(f"Not decided yet: {result.reason}", code="check_pending")
    # The conditional update is the decision's claim: two admins cannot both decide.
    status = SpotCheckStatus.PASSED if result.outcome == "pass" else SpotCheckStatus.FAILED
    claimed = db.session.execute(
        sa.update(SpotCheck).where(SpotCheck.id == check.id,
                                   SpotCheck.status == SpotCheckStatus.OPEN)
        .values(status=status, decided_by_id=admin.id, decided_at=now or utcnow(),
                decision_note=(note.strip() or result.reason)[:2000])
        .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        raise Conflict("This spot-check was decided already.", code="check_decided")
    batch = db.session.get(Batch, check.batch_id, with_for_update=True, populate_existing=True)
    figures.changed(batch.seller_id)
    went_live, delisted, returned = False, 0, 0
    if status is SpotCheckStatus.PASSED:
        if batch.status is BatchStatus.HELD and batch.seller.trust_level is not TrustLevel.SUSPENDED:
            held = (Lead.batch_id == batch.id, Lead.status == LeadStatus.HELD)
            lock_in_id_order(Lead, *held)
            listed = db.session.execute(
                sa.update(Lead).where(*held).values(status=LeadStatus.LIVE)
                .execution_options(synchronize_session=False)).rowcount
            batch.status = BatchStatus.LIVE
            # Leads the seller paused or withdrew meanwhile stay off: say "on sale" only
            # when some are.
            went_live = listed > 0
            if went_live:
                events.record(events.BatchWentLive(batch.id))
    else:
        # Delist first: from here on the matcher cannot sell these leads, and every
        # sale made before is visible to the returns below.
        listed = (Lead.batch_id == batch.id, Lead.status.in_(LISTED_STATUSES))
        lock_in_id_order(Lead, *listed)
        delisted = db.session.execute(
            sa.update(Lead).where(*listed).values(status=LeadStatus.DELISTED)
            .execution_options(synchronize_session=False)).rowcount
        batch.status = BatchStatus.REJECTED
        batch.error_code = "spot_check_failed"
        batch.error_message = (f"The batch failed its spot-check: {result.reason} Its leads "
                               "were withdrawn and buyers refunded.")
        returned = returns.return_batch_sales(batch.id, admin, now=now)
    db.session.execute(sa.update(SpotCheck).where(SpotCheck.id == check.id)
                       .values(sales_returned=returned)
                       .execution_options(synchronize_session=False))
    audit.record("spot_check.decided", actor=admin, subject_type="batch", subject_id=batch.id,
                 details={"check_id": check.id, "outcome": result.outcome,
                          "reason": result.reason, "note": note.strip(),
                          "verified": result.verified, "defects": result.defects,
                          "unreachable": result.unreachable, "went_live": went_live,
                          "delisted": delisted, "sales_returned": returned})
    notifications.spot_check_decided(check, status is SpotCheckStatus.PASSED, result.reason,
                                     note, went_live=went_live, sales_returned=returned)
    db.session.expire(check)
    return Decision(check, result.outcome, went_live, delisted, returned)


def _waits_for_nothing() -> sa.ColumnElement[bool]:
    """Per batch: held, and none of its leads may still be listed (the seller withdrew
    them all, or the exchange delisted them). Nothing of it was sold and no check can put
    any of it on sale, so no admin should contact its people. A live batch always waits:
    a failed check returns the sales it made."""
    listed = sa.exists().where(Lead.batch_id == Batch.id, Lead.status.in_(LISTED_STATUSES))
    return sa.and_(Batch.status == BatchStatus.HELD, ~listed)


def waits_for_nothing(batch: Batch) -> bool:
    return bool(db.session.scalar(sa.select(_waits_for_nothing()).where(Batch.id == batch.id)))


def queue(limit: int = 50, offset: int = 0) -> list[Batch]:
    """Batches that wait for a decided spot-check, riskiest first."""
    decided = sa.exists().where(SpotCheck.batch_id == Batch.id,
                                SpotCheck.status != SpotCheckStatus.OPEN)
    return db.session.scalars(
        sa.select(Batch).where(Batch.status.in_(CHECKABLE), ~decided, ~_waits_for_nothing())
        .order_by(sa.func.coalesce(Batch.risk_score, -1).desc(), Batch.id)
        .limit(limit).offset(offset)).all()


def checks_of(batch_ids: list[int]) -> dict[int, SpotCheck]:
    """The latest check of each batch."""
    if not batch_ids:
        return {}
    checks = db.session.scalars(sa.select(SpotCheck).where(SpotCheck.batch_id.in_(batch_ids))
                                .order_by(SpotCheck.id)).all()
    return {check.batch_id: check for check in checks}


def status_label(check: Optional[SpotCheck]) -> str:
    if check is None:
        return "not checked"
    return {"open": "checking", "passed": "passed", "failed": "failed"}[check.status.value]


def latest_status_by_batch(batch_ids: list[int]) -> dict[int, SpotCheckStatus]:
    """Each batch's most recent spot-check state (batches never checked are absent)."""
    if not batch_ids:
        return {}
    latest = (sa.select(SpotCheck.batch_id, sa.func.max(SpotCheck.id).label("id"))
              .where(SpotCheck.batch_id.in_(batch_ids)).group_by(SpotCheck.batch_id).subquery())
    return dict(db.session.execute(
        sa.select(SpotCheck.batch_id, SpotCheck.status).join(latest, latest.c.id == SpotCheck.id)
    ).all())


@dataclass(frozen=True)
class SellerReport:
    """What the seller sees of a batch's latest spot-check: the outcome, the admin's
    note, and each sampled lead that failed it with the verdict and note on it."""
    check: SpotCheck
    failed: list[SampledLead]


def latest_of_batch() -> sa.ColumnElement:
    """The join condition of a batch (`Batch`) and its latest spot-check: a page reads
    the batch and the check in one query (an outer join: a batch may have none)."""
    other = orm.aliased(SpotCheck)
    return SpotCheck.id == (sa.select(sa.func.max(other.id)).where(other.batch_id == Batch.id)
                            .correlate(Batch).scalar_subquery())


def seller_report(check: Optional[SpotCheck]) -> Optional[SellerReport]:
    """A batch's latest spot-check (latest_of_batch) for its seller. The failed leads
    are the seller's own, so their contacts are shown to help find what went wrong at
    the source."""
    if check is None:
        return None
    failed = [] if check.status is SpotCheckStatus.OPEN else contacts_of(db.session.scalars(
        sa.select(SpotCheckItem).options(orm.joinedload(SpotCheckItem.lead))
        .where(SpotCheckItem.check_id == check.id, SpotCheckItem.verdict.in_(DEFECTS))
        .order_by(SpotCheckItem.position)).all())
    return SellerReport(check, failed)
