"""Admin: money that moves through the exchange's bank account -- incoming bank
transfers recorded against buyers' references, and manual payouts to sellers; any
holder's receipt (app/money/web.py, audited)."""
from datetime import date

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from app.admin import bp
from app.admin.forms import BankTransferForm, ManualPayoutForm
from app.errors import DomainError, NotFound
from app.extensions import db
from app.formatting import format_money
from app.models import User
from app.money import web
from app.people.membership import account_of
from app.services import accounts, bank_transfers, manual_payouts

web.add_admin_routes(bp)


def _flash_errors(form) -> None:
    for name, errors in form.errors.items():
        for error in errors:
            flash(f"{getattr(form, name).label.text}: {error}", "danger")


@bp.route("/money/bank-transfers", methods=["GET", "POST"])
def bank_transfers_page():
    form = BankTransferForm(received_on=date.today())
    if form.validate_on_submit():
        try:
            transfer = bank_transfers.record_transfer(
                reference=form.reference.data, amount=form.amount.minor_units,
                received_on=form.received_on.data,
                bank_transaction_id=form.bank_transaction_id.data, note=form.note.data or "",
                actor=current_user)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            buyer = db.session.get(User, transfer.buyer_id)
            flash(f"Credited {format_money(transfer.amount)} to {buyer.email} "
                  f"({transfer.reference}).", "success")
            return redirect(url_for("admin.bank_transfers_page"))
    # A field's own error shows under it on this page: not flashed above it as well.
    status = 200 if not form.is_submitted() else 422
    transfers = bank_transfers.recent_transfers()
    return render_template("admin/bank_transfers.html", form=form, transfers=transfers,
                           names=accounts.names_of(id_ for t in transfers
                                                    for id_ in (t.buyer_id, t.recorded_by_id)),
                           bank=bank_transfers.bank_details()), status


@bp.route("/users/<int:user_id>/manual-payout", methods=["POST"])
def manual_payout(user_id: int):
    seller = db.session.get(User, user_id)
    if seller is None:
        raise NotFound("No such user.")
    seller = account_of(seller)  # a company member's payouts are their company's
    form = ManualPayoutForm()
    if form.validate_on_submit():
        try:
            payout = manual_payouts.record_payout(
                seller, amount=form.amount.minor_units, paid_on=form.paid_on.data,
                bank_transaction_id=form.bank_transaction_id.data,
                destination=form.destination.data or "", note=form.note.data or "",
                actor=current_user)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            flash(f"Recorded payout {payout.receipt_number} of {format_money(payout.amount)} "
                  f"to {seller.email}.", "success")
    else:
        _flash_errors(form)
    return redirect(url_for("admin.user_detail", user_id=seller.id))
