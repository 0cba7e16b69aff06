"""A seller's payouts: connect a Stripe account once, then cleared earnings are
transferred automatically; or the exchange pays by bank transfer (manual payouts,
each with a receipt); the history of every payout; receipts and monthly statements
(app/money/web.py)."""
from flask import flash, redirect, render_template, url_for
from app.auth.forms import ConfirmForm
from app.auth.sessions import current_account
from app.errors import DomainError
from app.extensions import db
from app.money import receipts, statements, web
from app.seller import bp
from app.services import earnings, ledger, manual_payouts, payments

web.add_routes(bp, "seller.payouts", "Payouts")


@bp.route("/payouts")
def payouts():
    configured = payments.configured()
    return render_template(
        "seller/payouts.html",
        configured=configured,
        balance=ledger.balance_for(current_account),
        payouts=payments.payouts_for(current_account),
        manual_payouts=manual_payouts.payouts_for(current_account),
        return_window_days=earnings.return_window().days,
        connect_form=ConfirmForm(),
        receipts=receipts.receipts_for(current_account),
        statement_months=statements.months_for(current_account),
    )


@bp.route("/payouts/connect", methods=["POST"])
def connect_account():
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; try again.", "danger")
        return redirect(url_for("seller.payouts"))
    try:
        target = payments.onboarding_url(
            current_account,
            return_url=url_for("seller.connect_return", _external=True),
            refresh_url=url_for("seller.payouts", _external=True))
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return redirect(url_for("seller.payouts"))
    return redirect(target)


@bp.route("/payouts/connected")
def connect_return():
    """Stripe sends the seller back here after onboarding."""
    try:
        enabled = payments.refresh_payout_account(current_account)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        if enabled:
            flash("Your Stripe account is connected: cleared earnings are paid out to it "
                  "automatically.", "success")
        else:
            flash("Stripe still needs some details before it can pay you; continue the "
                  "onboarding when you are ready.", "warning")
    return redirect(url_for("seller.payouts"))


@bp.route("/payouts/manual/<int:payout_id>")
def manual_payout_receipt(payout_id: int):
    """The receipt for one payout the exchange sent by bank transfer."""
    payout = manual_payouts.payout_of(current_account, payout_id)
    return redirect(url_for("seller.receipt", number=payout.receipt_number))
