"""Admin: the risk-ranked spot-check queue, a batch's fraud signals, and the check page
where the sampled leads' contacts are shown (audited) and verdicts recorded."""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.admin import bp
from app.admin.routes import PAGE_SIZE
from app.auth.forms import ConfirmForm
from app.core import bounds
from app.errors import DomainError, NotFound
from app.extensions import commit_keeping_loaded, db
from app.models import Batch, SpotCheck, SpotCheckStatus
from app.services import batches as batch_listing
from app.services import market_stats, quality, spotchecks, trust
from app.services.spotchecks import VERDICT_LABELS


def _batch_or_404(batch_id: int) -> Batch:
    batch = db.session.get(Batch, batch_id)
    if batch is None:
        raise NotFound("No such batch.")
    return batch


@bp.route("/quality")
def quality_queue():
    page = bounds.PAGE.take(request.args.get("page", "1"), "page")
    rows = spotchecks.queue(limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    batches = rows[:PAGE_SIZE]
    return render_template(
        "admin/quality_queue.html", batches=batches, has_next=len(rows) > PAGE_SIZE, page=page,
        checks=spotchecks.checks_of([b.id for b in batches]), top_signals=quality.top_signals,
        status_label=spotchecks.status_label)


@bp.route("/quality/batches/<int:batch_id>")
def quality_batch(batch_id: int):
    batch = _batch_or_404(batch_id)
    checks = db.session.scalars(select(SpotCheck).where(SpotCheck.batch_id == batch.id)
                                .order_by(SpotCheck.id.desc())).all()
    lot = spotchecks.lot_size(batch.id)
    plan = spotchecks.plan_for(lot, batch.risk_score, batch.seller.trust_level) if lot else None
    signals = sorted(batch.risk_signals or [], key=lambda s: (-s.get("points", 0), s["code"]))
    # An open check can always be finished; a new one needs leads that could go on sale.
    check_open = bool(checks) and checks[0].status is SpotCheckStatus.OPEN
    nothing_to_check = not check_open and spotchecks.waits_for_nothing(batch)
    return render_template(
        "admin/quality_batch.html", batch=batch, signals=signals, checks=checks, plan=plan,
        can_check=batch.status in spotchecks.CHECKABLE and lot > 0 and not nothing_to_check,
        nothing_to_check=nothing_to_check, form=ConfirmForm(),
        offer=batch_listing.offer_state(batch.id),
        sources=market_stats.sub_id_figures([batch.id]),
        proposal=trust.propose(batch.seller), assessed=quality.assessed_at_text)


@bp.route("/quality/batches/<int:batch_id>/check", methods=["POST"])
def start_spot_check(batch_id: int):
    batch = _batch_or_404(batch_id)
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; try again.", "danger")
        return redirect(url_for("admin.quality_batch", batch_id=batch.id))
    try:
        check = spotchecks.start_check(batch, current_user)
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return redirect(url_for("admin.quality_batch", batch_id=batch.id))
    return redirect(url_for("admin.spot_check", check_id=check.id))


def _check_page_parts(check) -> dict:
    plan = spotchecks.Plan(check.plan, check.plan_reason, check.lot_size, check.sample_size,
                           check.acceptance_number, check.defect_rate_bp, check.confidence_bp)
    return {"check": check, "batch": check.batch, "plan": plan, "tally": spotchecks.tally(check),
            "verdicts": VERDICT_LABELS, "is_open": check.status.value == "open",
            "offer": batch_listing.offer_state(check.batch_id)}


@bp.route("/quality/checks/<int:check_id>")
def spot_check(check_id: int):
    """The check page: this view of the sampled contacts is one audit entry; verdicts
    and the decision then update the page in place (htmx) without showing it again."""
    check = spotchecks.get_check(check_id)
    sample = spotchecks.sampled_contacts(check, current_user, ip=request.remote_addr)
    commit_keeping_loaded()  # the audited view is recorded even if rendering fails
    return render_template("admin/spot_check.html", sample=sample, **_check_page_parts(check))


def _partial_or_page(check_id: int, message: str, category: str, **parts):
    """An htmx request gets the changed parts of the page; a plain form post (no
    JavaScript) gets the page again through a redirect."""
    if request.headers.get("HX-Request") != "true":
        flash(message, category)
        return redirect(url_for("admin.spot_check", check_id=check_id))
    check = spotchecks.get_check(check_id)
    return render_template("admin/_spot_check_update.html", message=message, category=category,
                           **parts, **_check_page_parts(check))


@bp.route("/quality/checks/<int:check_id>/verdicts", methods=["POST"])
def spot_check_verdicts(check_id: int):
    """One verdict on the sampled leads named by `item` (one, or several selected)."""
    check = spotchecks.get_check(check_id)
    ids = [int(value) for value in request.form.getlist("item") if value.isdigit()]
    try:
        judged, drawn = spotchecks.record_verdicts(
            check, ids, request.form.get("verdict", ""), current_user,
            note=request.form.get("note", ""))
        # Leads drawn to replace unreachable ones are shown for the first time: a view.
        fresh = spotchecks.sampled_contacts(check, current_user, ip=request.remote_addr,
                                            items=drawn) if drawn else []
        commit_keeping_loaded()
    except DomainError as exc:
        db.session.rollback()
        return _partial_or_page(check_id, exc.message, "danger", changed=[], fresh=[])
    label = VERDICT_LABELS[judged[0].verdict]
    message = (f"{len(judged)} sampled leads marked {label.lower()}." if len(judged) > 1 else
               f"Lead #{judged[0].lead_id} marked {label.lower()}.")
    if fresh:
        message += f" {len(fresh)} more drawn to replace the unreachable."
    return _partial_or_page(check_id, message, "success",
                            changed=spotchecks.contacts_of(judged), fresh=fresh)


@bp.route("/quality/checks/<int:check_id>/decide", methods=["POST"])
def spot_check_decide(check_id: int):
    check = spotchecks.get_check(check_id)
    try:
        decision = spotchecks.decide(check, current_user, note=request.form.get("note", ""))
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        return _partial_or_page(check_id, exc.message, "danger", changed=[], fresh=[])
    if decision.went_live:  # committed: its leads are being offered (BatchWentLive)
        message = f"Batch #{check.batch_id} passed and is live: its leads are offered to buyers."
    elif decision.outcome == "pass":
        message = f"Batch #{check.batch_id} passed its spot-check."
    else:
        message = (f"Batch #{check.batch_id} failed: {decision.delisted} leads withdrawn, "
                   f"{decision.sales_returned} sales returned and refunded.")
    return _partial_or_page(check_id, message, "success" if decision.outcome == "pass"
                            else "warning", changed=[], fresh=[],
                            decided_items=spotchecks.sample_items(check))
