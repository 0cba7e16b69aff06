"""Buyer area routes: dashboard, order builder with live estimate, orders filling live,
delivered leads with CSV export and outcomes, and
the KPI page comparing orders."""
from flask import (
    Response, current_app, flash, redirect, render_template, request,
    stream_with_context, url_for,
)
from sqlalchemy import select

from app.auth.sessions import current_account
from app.core import bounds
from app.auth.forms import ConfirmForm
from app.buyer import bp
from app.buyer.forms import (
    ChangeOrderForm, OrderFiltersForm, OrderForm, OutcomeForm, OutcomesUploadForm, WebhookForm,
)
from app.errors import DomainError, NotFound
from app.extensions import db
from app.formatting import format_money, money_input, parse_money
from app.models import Order
from app.aftersale.delivery import engine
from app.services import delivery, kpis, ledger, outcomes, privacy
from app.market import operations, queries
from app.market.filters import Filters
# Aliased: app.buyer.returns is this package's own module of return views.
from app.services import returns as sale_returns

LEADS_PAGE = 100


def _my_orders(limit: int = 200) -> list[Order]:
    return db.session.scalars(select(Order).where(Order.buyer_id == current_account.id)
                              .order_by(Order.id.desc()).limit(limit)).all()


@bp.route("/")
def dashboard():
    return render_template(
        "buyer/dashboard.html",
        balance=ledger.balance_for(current_account),
        statement=ledger.statement_for(current_account, limit=10),
        orders=_my_orders(10),
        erasure_notices=privacy.notices_for(current_account),
    )


@bp.route("/orders")
def order_list():
    return render_template("buyer/orders.html", orders=_my_orders())


@bp.route("/orders/estimate")
def estimate():
    """The builder's live supply panel (htmx, on every change of the filters)."""
    form = OrderFiltersForm(request.args)
    try:
        price = parse_money(request.args["price"]) if request.args.get("price") else None
    except ValueError:
        price = None  # the price field shows its own error; the count still helps
    try:
        result = queries.estimate(Filters.parse(form.filters_dict()), price,
                                  buyer=current_account, **form.estimate_terms())
    except DomainError as exc:
        return render_template("buyer/_estimate.html", error=exc.message)
    return render_template("buyer/_estimate.html", estimate=result, price=price)


@bp.route("/orders/new", methods=["GET", "POST"])
def new_order():
    form = OrderForm()
    if request.method == "GET":
        form.timezone.data = current_account.timezone
    if form.validate_on_submit():
        try:
            filters = Filters.parse(form.filters_dict())
            terms = operations.check_terms(form.price.minor_units, form.quantity.data,
                                           **form.terms_kwargs())
            order, secret = operations.place_order(current_account, filters, terms)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            field = form.field_named(exc.details.get("field", ""))
            (field.errors.append(exc.message) if field is not None else flash(exc.message, "danger"))
        else:
            flash(f"Order placed; {format_money(order.held)} is held for it.", "success")
            if secret:
                flash(f"Webhook secret (shown only now): {secret}", "warning")
            return redirect(url_for("buyer.order_detail", order_id=order.id))
    return render_template("buyer/new_order.html", form=form,
                           balance=ledger.balance_for(current_account))


def _leads_page(order: Order, page: int) -> list[dict]:
    return list(delivery.delivered(order, limit=LEADS_PAGE, offset=(page - 1) * LEADS_PAGE))


@bp.route("/orders/<int:order_id>")
def order_detail(order_id: int):
    order = queries.order_for(current_account, order_id)
    page = bounds.PAGE.take(request.args.get("page", "1"), "page")
    change = ChangeOrderForm(data={"price": money_input(order.price), "quantity": order.quantity})
    change.load_terms(order)
    leads = _leads_page(order, page)
    return render_template(
        "buyer/order.html", order=order, state=queries.order_now(order), leads=leads, page=page,
        returns=sale_returns.states_for_sales([r["sale_id"] for r in leads]),
        refunded=sale_returns.refunded_for_order(order.id),
        page_size=LEADS_PAGE, change_form=change, confirm=ConfirmForm(),
        outcome_form=OutcomeForm(),
        webhook_form=WebhookForm(data={"webhook_url": order.webhook_url}),
        deliveries=engine.log_for(order, limit=50))


@bp.route("/orders/<int:order_id>/status")
def order_status(order_id: int):
    """The fill panel; htmx polls it while the order is open."""
    order = queries.order_for(current_account, order_id)
    return render_template("buyer/_order_status.html", order=order,
                           state=queries.order_now(order))


def _act(order_id: int, action) -> Response:
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; please try again.", "danger")
        return redirect(url_for("buyer.order_detail", order_id=order_id))
    try:
        message = action()
        db.session.commit()
        flash(message, "success")
    except NotFound:
        raise  # not the caller's company's order: 404, as for its page
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
    return redirect(url_for("buyer.order_detail", order_id=order_id))


@bp.route("/orders/<int:order_id>/pause", methods=["POST"])
def pause(order_id: int):
    def action():
        operations.set_paused(current_account, order_id, True)
        return "Paused: no leads are delivered until you resume."
    return _act(order_id, action)


@bp.route("/orders/<int:order_id>/resume", methods=["POST"])
def resume(order_id: int):
    def action():
        operations.set_paused(current_account, order_id, False)
        return "Resumed."
    return _act(order_id, action)


@bp.route("/orders/<int:order_id>/cancel", methods=["POST"])
def cancel(order_id: int):
    def action():
        order = queries.order_for(current_account, order_id)
        released = order.held
        operations.cancel_order(current_account, order_id)
        return f"Cancelled; {format_money(released)} released to your balance."
    return _act(order_id, action)


@bp.route("/orders/<int:order_id>/change", methods=["POST"])
def change(order_id: int):
    form = ChangeOrderForm()
    if not form.validate_on_submit():
        for name, errors in form.errors.items():
            flash(f"{getattr(form, name).label.text}: {_said(errors)}", "danger")
        return redirect(url_for("buyer.order_detail", order_id=order_id))
    try:
        operations.change_terms(current_account, order_id, price=form.price.minor_units,
                                quantity=form.quantity.data, **form.terms_changes())
        db.session.commit()
        flash("Order updated; the money held for it follows the new terms.", "success")
    except NotFound:
        raise
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
    return redirect(url_for("buyer.order_detail", order_id=order_id))


def _said(errors) -> str:
    """A field's errors as one line (a schedule's rows nest theirs by field)."""
    if isinstance(errors, dict):
        return "; ".join(f"{name}: {_said(e)}" for name, e in errors.items())
    return "; ".join(_said(e) if isinstance(e, (dict, list)) else str(e) for e in errors if e)


@bp.route("/orders/<int:order_id>/leads.csv")
def leads_csv(order_id: int):
    order = queries.order_for(current_account, order_id)
    return Response(stream_with_context(delivery.delivered_csv(order)), mimetype="text/csv",
                    headers={"Content-Disposition":
                             f'attachment; filename="order-{order.id}-leads.csv"'})



@bp.route("/orders/<int:order_id>/sales/<bigid:sale_id>/outcome", methods=["POST"])
def record_outcome(order_id: int, sale_id: int):
    form = OutcomeForm()
    page = bounds.PAGE.take(request.form.get("page", "1"), "page")
    back = url_for("buyer.order_detail", order_id=order_id, page=page, _anchor=f"sale-{sale_id}")
    if not form.validate_on_submit():
        for name, errors in form.errors.items():
            flash(f"Sale {sale_id}: {'; '.join(errors)}", "danger")
        return redirect(back)
    try:
        outcome = outcomes.record(current_account, sale_id, form.status.data, form.revenue.minor_units)
        db.session.commit()
        revenue = f", revenue {format_money(outcome.revenue)}" if outcome.revenue is not None else ""
        flash(f"Sale {sale_id} marked {outcome.status.value}{revenue}.", "success")
    except NotFound:
        raise
    except DomainError as exc:
        db.session.rollback()
        flash(f"Sale {sale_id}: {exc.message}", "danger")
    return redirect(back)


@bp.route("/outcomes/upload", methods=["GET", "POST"])
def upload_outcomes():
    form, errors, error_count = OutcomesUploadForm(), [], 0
    if form.validate_on_submit():
        try:
            result = outcomes.import_csv(current_account, form.file.data.read())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            errors = exc.details.get("errors", [])
            error_count = exc.details.get("error_count", len(errors))
            form.file.errors.append(exc.message)
        else:
            skipped = f"; {result.skipped:,} rows without a status were left as they are" \
                if result.skipped else ""
            flash(f"Recorded {result.applied:,} outcomes{skipped}.", "success")
            return redirect(url_for("buyer.kpi_page"))
    return render_template("buyer/outcomes_upload.html", form=form, errors=errors,
                           error_count=error_count)


def _period() -> kpis.DateRange:
    if "from" not in request.args and "to" not in request.args:
        return kpis.DateRange.last_days(30)
    return kpis.DateRange.parse(request.args.get("from"), request.args.get("to"))


@bp.route("/kpis")
def kpi_page():
    try:
        period = _period()
    except DomainError as exc:
        flash(exc.message, "danger")
        period = kpis.DateRange.last_days(30)
    data = kpis.page_data(current_account, period)
    shown = kpis.orders_for_page(current_account, data.per_order)
    return render_template(
        "buyer/kpis.html", period=period, orders=shown, per_order=data.per_order,
        total=kpis.total(data.per_order), empty=kpis.Kpis(),
        charts=kpis.chart_data(shown, data.per_order, data.days, data.regions))


@bp.route("/kpis.csv")
def kpi_csv():
    period = _period()
    per_order = kpis.by_order(current_account, period)
    shown = kpis.orders_for_page(current_account, per_order, limit=10_000)
    # One line per order: built whole, so no transaction stays open while it is sent.
    body = "".join(kpis.kpi_table_csv(shown, per_order, current_app.config["CURRENCY"]))
    name = f"kpis-{period.start or 'start'}-{period.end or 'today'}.csv"
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})

