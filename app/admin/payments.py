"""Admin: the exchange's money — commission revenue, the processor reconciliation,
payouts run on demand, recent bank transfers and manual payouts."""
from datetime import datetime, timezone

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.admin import bp
from app.auth.forms import ConfirmForm
from app.errors import DomainError
from app.extensions import db
from app.formatting import format_money
from app.models import AccountKind, Payout, TopUp
from app.services import accounts, bank_transfers, ledger, manual_payouts, market_stats, payments


@bp.route("/money", endpoint="payments")
def money_overview():
    configured = payments.configured()
    stripe_totals, stripe_error = None, None
    if configured and request.args.get("compare") == "stripe":
        try:
            stripe_totals = payments.stripe_balance_transactions()
        except Exception as exc:  # shown to the admin; the page itself must still load
            stripe_error = str(exc)
    topups = db.session.scalars(select(TopUp).order_by(TopUp.id.desc()).limit(20)).all()
    payouts = db.session.scalars(select(Payout).order_by(Payout.id.desc()).limit(20)).all()
    recent_manual = manual_payouts.recent_payouts(limit=20)
    transfers = bank_transfers.recent_transfers(limit=20)
    names = accounts.names_of([t.buyer_id for t in topups] + [p.seller_id for p in payouts]
                              + [p.seller_id for p in recent_manual]
                              + [t.buyer_id for t in transfers])
    return render_template(
        "admin/payments.html", names=names,
        configured=configured,
        commission=ledger.system_balance(AccountKind.PLATFORM_COMMISSION),
        by_day=market_stats.commission_by_day(),
        recon=payments.reconciliation(),
        books=ledger.reconcile(),
        stripe_totals=stripe_totals,
        stripe_error=stripe_error,
        topups=topups,
        payouts=payouts,
        run_form=ConfirmForm(),
        manual_payouts=recent_manual,
        bank_transfers=transfers,
    )


@bp.route("/money/payouts", methods=["POST"])
def run_payouts_now():
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; try again.", "danger")
        return redirect(url_for("admin.payments"))
    try:
        made = payments.run_payouts(datetime.now(timezone.utc).date(), actor=current_user)
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
    else:
        total = sum(p.amount for p in made)
        flash(f"{len(made)} payout(s) started, {format_money(total)} in all." if made else
              "No seller had cleared earnings above the minimum that were not already paid "
              "today.", "success" if made else "info")
    return redirect(url_for("admin.payments"))
