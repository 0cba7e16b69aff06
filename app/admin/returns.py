"""Admin: contested returns, any lead's journey (app/aftersale/web.py), and the people
who ask to be suppressed or erased."""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.admin import bp
from app.aftersale import web
from app.auth.forms import ConfirmForm
from app.errors import DomainError
from app.extensions import commit_keeping_loaded, db
from app.models import AuditEvent
from app.services import privacy, returns

web.add_routes(bp)


@bp.route("/returns")
def return_queue():
    cases = returns.contested_cases(current_user, ip=request.remote_addr)
    commit_keeping_loaded()  # the audited view is recorded even if rendering fails
    return render_template("admin/returns.html", cases=cases, form=ConfirmForm())


@bp.route("/returns/<int:return_id>/<any(accept, reject):decision>", methods=["POST"])
def decide_return(return_id: int, decision: str):
    if ConfirmForm().validate_on_submit():
        try:
            returns.admin_decide(current_user, return_id, decision == "accept",
                                 request.form.get("note", ""))
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            flash(f"Return #{return_id} {decision}ed.", "success")
    return redirect(url_for("admin.return_queue"))


@bp.route("/privacy", methods=["GET", "POST"])
def privacy_requests():
    form = ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        action = request.form.get("action")
        try:
            person = privacy.identify(request.form.get("email", ""), request.form.get("phone", ""),
                                      request.form.get("country", ""))
            reason = request.form.get("reason", "")
            if action == "erase":
                done = privacy.erase(person, reason=reason, actor=current_user)
                db.session.commit()  # buyers' webhooks go from here (DeliveryRequested)
                flash(f"Erased: {done.leads} lead(s) and {done.rejections} rejected row(s) "
                      f"forgotten; {done.buyers_told} buyer(s) told. Future uploads of this "
                      "person are refused.", "success")
            else:
                delisted = privacy.suppress(person, reason=reason, actor=current_user)
                db.session.commit()
                flash(f"Suppressed: {delisted} lead(s) delisted; future uploads of this person "
                      "are refused.", "success")
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        return redirect(url_for("admin.privacy_requests"))
    history = db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("privacy.%"))
                                 .order_by(AuditEvent.id.desc()).limit(50)).all()
    return render_template("admin/privacy.html", form=form, history=history,
                           suppressed=privacy.suppression_count())
