"""The buyer's money: balance, card top-ups (Stripe.js tokenises the card in the
browser; the server confirms the PaymentIntent), bank transfer details with the
buyer's reference, automatic top-up with a saved card (Stripe.js confirms a
SetupIntent in the browser), withdrawals, statement; receipts and monthly statements
(app/money/web.py)."""
from flask import (
    Response, flash, jsonify, redirect, render_template, request, stream_with_context, url_for,
)
from markupsafe import Markup
from app.auth.sessions import current_account
from app.core import bounds
from app.buyer import bp
from app.buyer.forms import AutoTopUpForm, TopUpForm, WithdrawForm
from app.errors import DomainError, InsufficientFunds, problems
from app.extensions import db
from app.formatting import format_money, money_input, parse_money
from app.models import TopUpStatus
from app.money import receipts, statements, web
from app.services import autotopup, bank_transfers, ledger, payments

# Stripe's move: the page polls until the webhook arrives. A top-up waiting for the
# buyer (payments.WAITING_FOR_BUYER) waits for them to resume or cancel it instead.
WAITING = (TopUpStatus.PROCESSING,)


def problems_linked(exc: DomainError) -> list[dict]:
    """The problems a refusal carries (app.errors.problems), a lack of funds linking to
    the top-up form with the missing amount filled in (flashed Markup survives the
    redirect)."""
    if not isinstance(exc, InsufficientFunds) or "shortfall" not in exc.details:
        return problems(exc)
    shortfall = exc.details["shortfall"]
    href = url_for("buyer.balance", topup=money_input(shortfall), _anchor="add-funds")
    return [{"field": "", "message": Markup(
        '{} <a class="alert-link" href="{}">Top up {} now</a>').format(
            exc.message, href, format_money(shortfall))}]


def _prefilled_amount() -> str:
    """The amount a "Top up" link asks for, as the form spells it; none if unreadable."""
    try:
        return money_input(parse_money(request.args.get("topup", "")))
    except (DomainError, ValueError):
        return ""


def _balance_context() -> dict:
    topups = payments.topups_for(current_account, limit=20) if payments.configured() else []
    return {
        "balance": ledger.balance_for(current_account),
        "topups": topups,
        "waiting": any(t.status in WAITING for t in topups),
    }


STATEMENT_PAGE = 50
web.add_routes(bp, "buyer.balance", "Balance")


@bp.route("/balance")
def balance():
    configured = payments.configured()
    page = bounds.PAGE.take(request.args.get("page", "1"), "page")
    return render_template(
        "buyer/balance.html",
        configured=configured,
        stripe_js_url=payments.stripe_js_url() if configured else None,
        topup_form=TopUpForm(), topup_amount=_prefilled_amount(),
        withdraw_form=WithdrawForm(),
        refundable=payments.refundable(current_account) if configured else 0,
        withdrawals=payments.withdrawals_for(current_account, limit=20) if configured else [],
        statement=ledger.statement_for(current_account, limit=STATEMENT_PAGE,
                                       offset=(page - 1) * STATEMENT_PAGE),
        page=page, page_size=STATEMENT_PAGE,
        auto=autotopup.settings_for(current_account),
        auto_form=_auto_form(),
        bank=bank_transfers.bank_details(),
        bank_reference=bank_transfers.reference_for(current_account),
        bank_transfers=bank_transfers.transfers_for(current_account),
        receipts=receipts.receipts_for(current_account),
        statement_months=statements.months_for(current_account),
        **_balance_context(),
    )


@bp.route("/balance/statement.csv")
def statement_csv():
    return Response(stream_with_context(ledger.statement_csv(current_account)),
                    mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="statement.csv"'})


@bp.route("/balance/live")
def balance_live():
    """The balance cards and top-ups, polled by htmx while a payment is in flight."""
    return render_template("buyer/_balance_live.html", **_balance_context())


def _json_error(exc: DomainError):
    return jsonify(error={"code": exc.code, "message": exc.message, "details": exc.details}), (
        exc.status if exc.status < 500 else 502)


def _topup_json(topup, client_secret=None):
    return jsonify(
        topup_id=topup.id,
        status=topup.status.value,
        message=topup.failure_message,
        client_secret=client_secret if topup.status is TopUpStatus.REQUIRES_ACTION else None,
        refresh_url=url_for("buyer.refresh_topup", topup_id=topup.id),
        redirect_url=url_for("buyer.balance"),
    )


@bp.route("/balance/topups", methods=["POST"])
def create_topup():
    """Called by static/js/balance.js with the card token Stripe.js made."""
    form = TopUpForm()
    if not form.validate_on_submit():
        message = "; ".join(e for errors in form.errors.values() for e in errors)
        return jsonify(error={"code": "validation_error", "message": message}), 422
    try:
        card = payments.save_card_token(current_account, form.token.data)
        started = payments.start_topup(current_account, form.amount.minor_units, payment_method=card)
    except DomainError as exc:
        db.session.rollback()
        return _json_error(exc)
    if started.topup.status is TopUpStatus.PROCESSING:
        flash(f"Stripe accepted your card for {format_money(started.topup.amount)}; the "
              "money appears on your balance as soon as Stripe confirms it.", "success")
    return _topup_json(started.topup, started.client_secret)


@bp.route("/balance/topups/<int:topup_id>/refresh", methods=["POST"])
def refresh_topup(topup_id: int):
    """After the buyer's 3-D Secure step: read the PaymentIntent's new state."""
    try:
        topup = payments.refresh_topup(payments.topup_of(current_account, topup_id))
    except DomainError as exc:
        return _json_error(exc)
    if topup.status is TopUpStatus.PROCESSING:
        flash("Card authenticated; your balance shows the money as soon as Stripe "
              "confirms it.", "success")
    elif topup.status is not TopUpStatus.SUCCEEDED:
        flash("The card was not authenticated, so nothing was charged.", "warning")
    return _topup_json(topup)


@bp.route("/balance/topups/<int:topup_id>/resume", methods=["POST"])
def resume_topup(topup_id: int):
    """A top-up the buyer left at its 3-D Secure step: static/js/balance.js takes them
    back to it with the client secret, then asks refresh_topup."""
    try:
        topup = payments.topup_of(current_account, topup_id)
        secret = payments.authentication_secret(topup)
    except DomainError as exc:
        return _json_error(exc)
    return _topup_json(topup, secret)


@bp.route("/balance/topups/<int:topup_id>/cancel", methods=["POST"])
def cancel_topup(topup_id: int):
    """The buyer gives up a top-up that waits for them (CSRF checked by CSRFProtect)."""
    topup = payments.topup_of(current_account, topup_id)  # another's: 404
    try:
        topup = payments.cancel_topup(topup, payments.CANCELLED_BY_BUYER)
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
    else:
        if topup.status is TopUpStatus.CANCELED:
            flash(f"Top-up #{topup.id} of {format_money(topup.amount)} is cancelled; "
                  "nothing was charged.", "success")
        elif topup.status not in payments.FINAL:  # it went through before Stripe heard
            flash(f"Top-up #{topup.id} was already paid, so it was not cancelled: your "
                  "balance shows it as soon as Stripe confirms it.", "warning")
    return redirect(url_for("buyer.balance"))


@bp.route("/balance/withdraw", methods=["POST"])
def withdraw():
    form = WithdrawForm()
    if form.validate_on_submit():
        try:
            withdrawal = payments.withdraw(current_account, form.amount.minor_units)
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            refunded = withdrawal.refunded
            if refunded == withdrawal.amount:
                flash(f"{format_money(refunded)} is on its way back to your card "
                      "(banks take 5–10 days to show it).", "success")
            elif refunded:
                flash(f"Only {format_money(refunded)} of {format_money(withdrawal.amount)} "
                      "could be refunded; the rest is back on your balance.", "warning")
            else:
                flash("The refund is being processed; the table below shows its state.", "info")
    else:
        for errors in form.errors.values():
            for error in errors:
                flash(error, "danger")
    return redirect(url_for("buyer.balance"))


def _auto_form() -> AutoTopUpForm:
    settings = autotopup.settings_for(current_account)
    if settings is None:
        return AutoTopUpForm()
    return AutoTopUpForm(threshold=money_input(settings.threshold),
                         amount=money_input(settings.amount), enabled=settings.enabled)


def _form_error_json(form):
    message = "; ".join(e for errors in form.errors.values() for e in errors)
    return jsonify(error={"code": "validation_error", "message": message}), 422


@bp.route("/balance/auto-topup/setup", methods=["POST"])
def auto_topup_setup():
    """Called by static/js/balance.js: a SetupIntent for Stripe.js to confirm."""
    form = AutoTopUpForm()
    if not form.validate_on_submit():
        return _form_error_json(form)
    try:
        autotopup.check_terms(form.threshold.minor_units, form.amount.minor_units)
        client_secret = autotopup.start_card_setup(current_account)
    except DomainError as exc:
        db.session.rollback()
        return _json_error(exc)
    return jsonify(client_secret=client_secret)


@bp.route("/balance/auto-topup", methods=["POST"])
def auto_topup_save():
    """With a confirmed SetupIntent (JSON, from static/js/balance.js): save the card and the
    terms. Without one (a plain form): change the terms or turn it on or off."""
    form = AutoTopUpForm()
    wants_json = bool(form.setup_intent_id.data)
    if not form.validate_on_submit():
        if wants_json:
            return _form_error_json(form)
        for errors in form.errors.values():
            for error in errors:
                flash(error, "danger")
        return redirect(url_for("buyer.balance"))
    try:
        if wants_json:
            settings = autotopup.save(current_account, setup_intent_id=form.setup_intent_id.data,
                                      threshold=form.threshold.minor_units,
                                      amount=form.amount.minor_units)
        else:
            settings = autotopup.change(current_account, threshold=form.threshold.minor_units,
                                        amount=form.amount.minor_units,
                                        enabled=form.enabled.data)
    except DomainError as exc:
        db.session.rollback()
        if wants_json:
            return _json_error(exc)
        flash(exc.message, "danger")
        return redirect(url_for("buyer.balance"))
    if settings.enabled:
        flash(f"Automatic top-up is on: when your balance falls below "
              f"{format_money(settings.threshold)}, {format_money(settings.amount)} is charged "
              f"to your {settings.card_label}.", "success")
    else:
        flash("Automatic top-up is off.", "info")
    if wants_json:
        return jsonify(redirect_url=url_for("buyer.balance"))
    return redirect(url_for("buyer.balance"))
