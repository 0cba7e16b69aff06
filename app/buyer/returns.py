"""A buyer's returns of bad leads, the erasure notices they must act on, and the
journeys of their leads (app/aftersale/web.py)."""
from flask import flash, redirect, render_template, request, url_for

from app.aftersale import web
from app.auth.forms import ConfirmForm
from app.auth.sessions import current_account
from app.buyer import bp
from app.errors import DomainError, NotFound
from app.extensions import db
from app.formatting import format_money, format_when
from app.models import Return, ReturnStatus, Sale
from app.models.types import utcnow
from app.services import privacy, returns

web.add_routes(bp, order_endpoint="buyer.order_detail")


def _sale(sale_id: int) -> Sale:
    sale = db.session.get(Sale, sale_id)
    if sale is None or sale.buyer_id != current_account.id:
        raise NotFound("No such sale among your leads.")
    return sale


@bp.route("/sales/<bigid:sale_id>/return", methods=["GET", "POST"])
def return_sale(sale_id: int):
    sale = _sale(sale_id)
    existing = db.session.query(Return).filter_by(sale_id=sale.id).one_or_none()
    if request.method == "POST" and ConfirmForm().validate_on_submit():
        try:
            item = returns.open_return(current_account, sale.id, request.form.get("reason", ""),
                                       request.form.get("note", ""))
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            if item.refunds:
                flash(f"Return accepted: {format_money(item.refund)} is back on your balance.",
                      "success")
            elif item.status is ReturnStatus.REJECTED:
                flash(f"Return refused: {item.decision_note}", "warning")
            else:
                flash("Return sent to the seller, who can answer until "
                      f"{format_when(item.seller_deadline, '%Y-%m-%d %H:%M %Z')}.", "info")
            return redirect(url_for("buyer.return_list"))
    return render_template("buyer/return_form.html", sale=sale, existing=existing,
                           reasons=returns.BUYER_REASONS, form=ConfirmForm(),
                           allowed=returns.allowance(sale), now=utcnow(),
                           converted_refusal=returns.CONVERTED_REFUSAL)


@bp.route("/returns")
def return_list():
    return render_template("buyer/returns.html", returns=returns.returns_for_buyer(current_account))


@bp.route("/erasures", methods=["GET", "POST"])
def erasures():
    if request.method == "POST" and ConfirmForm().validate_on_submit():
        count = privacy.acknowledge(current_account)
        db.session.commit()
        flash(f"Thank you: {count} erasure notice(s) marked as done.", "success")
        return redirect(url_for("buyer.erasures"))
    return render_template("buyer/erasures.html", form=ConfirmForm(),
                           notices=privacy.notices_for(current_account, include_acknowledged=True))
