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
from app.extensions import db
from app.models import Batch, SpotCheck, Verdict
from app.services import quality, spotchecks, trust

VERDICT_LABELS = {Verdict.GENUINE: "Genuine", Verdict.FAKE: "Fake",
                  Verdict.UNREACHABLE: "Unreachable", Verdict.NO_CONSENT: "No consent"}


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
    return render_template(
        "admin/quality_batch.html", batch=batch, signals=signals, checks=checks, plan=plan,
        can_check=batch.status in spotchecks.CHECKABLE and lot > 0, form=ConfirmForm(),
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


@bp.route("/quality/checks/<int:check_id>")
def spot_check(check_id: int):
    check = spotchecks.get_check(check_id)
    sample = spotchecks.sampled_contacts(check, current_user, ip=request.remote_addr)
    db.session.commit()  # the audited view is recorded even if rendering fails
    plan = spotchecks.Plan(check.plan, check.plan_reason, check.lot_size, check.sample_size,
                           check.acceptance_number, check.defect_rate_bp, check.confidence_bp)
    return render_template(
        "admin/spot_check.html", check=check, batch=check.batch, sample=sample, plan=plan,
        tally=spotchecks.tally(check), form=ConfirmForm(), verdicts=VERDICT_LABELS)


@bp.route("/quality/checks/<int:check_id>/items/<int:item_id>", methods=["POST"])
def spot_check_verdict(check_id: int, item_id: int):
    check = spotchecks.get_check(check_id)
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; try again.", "danger")
    else:
        try:
            spotchecks.record_verdict(check, item_id, request.form.get("verdict", ""),
                                      current_user, note=request.form.get("note", ""))
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
    return redirect(url_for("admin.spot_check", check_id=check_id) + f"#item-{item_id}")


@bp.route("/quality/checks/<int:check_id>/decide", methods=["POST"])
def spot_check_decide(check_id: int):
    check = spotchecks.get_check(check_id)
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; try again.", "danger")
        return redirect(url_for("admin.spot_check", check_id=check_id))
    try:
        decision = spotchecks.decide(check, current_user, note=request.form.get("note", ""))
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return redirect(url_for("admin.spot_check", check_id=check_id))
    if decision.went_live:  # committed: its leads are being offered (BatchWentLive)
        flash(f"Batch #{check.batch_id} passed and is live: its leads are offered to buyers.",
              "success")
    elif decision.outcome == "pass":
        flash(f"Batch #{check.batch_id} passed its spot-check.", "success")
    else:
        flash(f"Batch #{check.batch_id} failed: {decision.delisted} leads withdrawn, "
              f"{decision.sales_returned} sales returned and refunded.", "warning")
    return redirect(url_for("admin.spot_check", check_id=check_id))
