"""Buyer area routes: dashboard, order builder with live estimate, orders filling live,
delivered leads with CSV export and outcomes, and
the KPI page comparing orders."""
from dataclasses import asdict
from functools import cache

from flask import (
    Response, current_app, flash, jsonify, make_response, redirect,
    render_template, request,
    stream_with_context, url_for,
)
import sqlalchemy as sa
from sqlalchemy import select

from app.auth.sessions import current_account
from app.core import bounds, figures
from app.auth.forms import ConfirmForm
from app.buyer import bp, lead_rows, worklist
from app.buyer.balance import problems_linked
from app.buyer.delivery import deliveries_context
from app.buyer.forms import (
    ChangeOrderForm, OrderFiltersForm, OrderForm, OutcomesUploadForm,
)
from app.errors import DomainError, NotFound, Refusals, ValidationFailed
from app.extensions import db, reads_only
from app.formatting import format_money, money_input, parse_money, user_language, user_zone
from app.forms import show_problems
from app.models import ErasureNotice, Order, OptOutNotice
from app.services import delivery, kpis, ledger, outcomes, regions
from app.services.market_stats import Net
from app.services.exports import XLSX_TYPE
from app.market import operations, queries
from app.market.filters import Filters
# Aliased: app.buyer.returns is this package's own module of return views.
from app.services import returns as sale_returns


@cache
def _orders_select(limit: int) -> sa.Select:
    # Built once per limit, as the other selects every page of this area runs.
    return (select(Order).where(Order.buyer_id == sa.bindparam("buyer_id"))
            .order_by(Order.id.desc()).limit(limit))


def _my_orders(limit: int = 200) -> dict:
    """The buyer's latest orders and their fills (`_fills`), as the orders table shows them."""
    orders = db.session.scalars(_orders_select(limit), {"buyer_id": current_account.id}).all()
    ids = [order.id for order in orders]
    refunds = figures.kept(current_account, "order_list_refunds", tuple(ids),
                           lambda: sale_returns.refunds_by_order(ids))
    return {"orders": orders, "fills": _fills(orders, refunds)}


@cache
def _open_notices_select() -> sa.Select:
    # Built once: composing it cost more than running it.
    def unacknowledged(model):
        return (select(sa.func.count()).select_from(model)
                .where(model.buyer_id == sa.bindparam("buyer_id"),
                       model.acknowledged_at.is_(None)).scalar_subquery())
    return select(unacknowledged(ErasureNotice), unacknowledged(OptOutNotice))


def _open_notices() -> dict:
    """How many of the people the buyer bought asked to be erased, and opted out, that
    the buyer has not acknowledged yet: both in one query (what the dashboard says),
    kept per revision of the buyer's figures (each new or acknowledged notice raises it)."""
    erasures, opt_outs = figures.kept(current_account, "open_notices", None, lambda: tuple(
        db.session.execute(_open_notices_select(), {"buyer_id": current_account.id}).one()))
    return {"erasure_notices": erasures, "opt_out_notices": opt_outs}


@bp.route("/")
def dashboard():
    return render_template(
        "buyer/dashboard.html",
        **figures.kept(current_account, "buyer_money", None, lambda: {
            "balance": ledger.balance_for(current_account),
            "statement": ledger.statement_for(current_account, limit=10)}),
        **_my_orders(10), **_open_notices())


@bp.route("/orders")
def order_list():
    return render_template("buyer/orders.html", **_my_orders())


@bp.route("/orders/estimate", methods=["POST"])
@reads_only
def estimate():
    """The builder's live supply panel (htmx, on every change of the filters). Posted:
    the builder's form carries its CSRF token and the webhook URL with its secret, which
    must not end up in a URL and so in access logs."""
    form = OrderFiltersForm(request.form)
    try:
        price = parse_money(request.form["price"]) if request.form.get("price") else None
    except ValueError:
        price = None  # the price field shows its own error; the count still helps
    try:
        result = queries.estimate(Filters.parse(form.filters_dict()), price,
                                  buyer=current_account, **form.estimate_terms())
    except DomainError as exc:
        return render_template("buyer/_estimate.html", error=exc.message)
    return render_template("buyer/_estimate.html", estimate=result, price=price)


@bp.route("/regions")
def region_options():
    """The region picker's suggestions: regions whose name or code matches `q`."""
    matches = regions.search_regions(request.args.get("q", "")[:100], user_language(), limit=12)
    return jsonify([asdict(match) for match in matches])


@bp.route("/orders/new", methods=["GET", "POST"])
def new_order():
    form = OrderForm()
    if request.method == "GET":
        form.timezone.data = current_account.timezone
    if form.is_submitted():
        # The fields, the filters and the terms are all checked, so every problem shows
        # at once, not one more after each submit.
        valid = form.validate()
        found = Refusals()
        filters = found.check(Filters.parse, form.filters_dict())
        terms = found.check(operations.check_terms, form.price.minor_units,
                            form.quantity.data, **form.terms_kwargs())
        show_problems(found.found, form.field_named)
        order = None
        if valid and not found.found:
            try:
                order, secret = operations.place_order(current_account, filters, terms)
                held = order.held  # read before the commit starts the fill that spends it
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                show_problems(problems_linked(exc), form.field_named)
        if order is not None:
            flash(f"Order placed; {format_money(held)} is held for it, and spent as leads "
                  "arrive.", "success")
            if secret:
                flash(f"Webhook secret (shown only now): {secret}", "warning")
            return redirect(url_for("buyer.order_detail", order_id=order.id))
    return render_template("buyer/new_order.html", form=form,
                           balance=ledger.balance_for(current_account),
                           chosen_regions=regions.chosen_regions(form.regions.data,
                                                                 user_language()))


MAX_SELECTION = 500  # a page shows 50; more in one request is not a person choosing


def _my_order(order_id: int) -> Order:
    """The only ownership check of the order page and its actions: every sale they
    touch is then required to be this order's (worklist.selection)."""
    return queries.order_for(current_account, order_id)


def _view(values, *, search: bool = True) -> worklist.View:
    try:
        return worklist.View.parse(values, search=search)
    except DomainError:
        return worklist.View()


def _return_href() -> str:
    return url_for("buyer.return_sale", sale_id=1).replace("/1/", "/{id}/")


def _journey_href() -> str:
    return url_for("buyer.journey", lead_id=1).replace("/1/", "/{id}/")


def _row_links(order: Order) -> lead_rows.RowLinks:
    """The URLs rows use, built once, with the row's id put in by `str.format`."""
    return lead_rows.RowLinks(url_for("buyer.record_outcome", order_id=order.id),
                              _return_href(), _journey_href())


def _kept(order: Order, name: str, compute):
    """`compute()` for the order, kept per revision of its buyer's figures (sales,
    returns, outcomes: app/core/figures.py) when its buyer is the one asking."""
    if order.buyer_id != current_account.id:
        return compute()
    return figures.kept(current_account, name, order.id, compute)


def _worklist_context(order: Order, view: worklist.View, **extra) -> dict:
    """What templates/buyer/_worklist.html needs, its rows' HTML included. The count
    of the whole list changes only with a sale, so it is kept per revision."""
    total = (worklist.total(order, view) if view.filtered
             else _kept(order, "worklist_total", lambda: worklist.total(order, view)))
    leads = worklist.page(order, view, total)
    return {"order": order, "leads": leads, "view": view,
            "rows_html": lead_rows.rows_html(leads.rows, _row_links(order)),
            "outcomes": worklist.OUTCOMES, "return_states": worklist.RETURN_STATES,
            "temperatures": worklist.TEMPERATURES, "search_help": worklist.SEARCH_HELP,
            **extra}


def _fills(orders: list[Order], refunds: dict[int, tuple[int, int]]) -> dict[int, dict]:
    """order id → its leads and spend: every lead delivered and what it cost (what its
    quantity, budget and caps count: a refund gives the money back, not the place) and
    what stands of them after refunds (what its KPIs count)."""
    found = {}
    for order in orders:
        count, amount = refunds.get(order.id, (0, 0))
        found[order.id] = {"leads": Net(order.filled, count), "spend": Net(order.spent, amount)}
    return found


def _fill(order: Order) -> dict:
    refunds = _kept(order, "order_refunds", lambda: sale_returns.refunds_by_order([order.id]))
    return _fills([order], refunds)[order.id]


def _order_page(order: Order, view: worklist.View) -> str:
    change = confirm = None
    if order.is_active:  # an ended order's page has no forms to change or end it
        change = ChangeOrderForm(data={"price": money_input(order.price),
                                       "quantity": order.quantity})
        change.load_terms(order)
        change.load_bids(order)
        confirm = ConfirmForm()
    return render_template(
        "buyer/order.html", state=queries.order_now(order), fill=_fill(order),
        change_form=change, confirm=confirm, **_worklist_context(order, view))


@bp.route("/orders/<int:order_id>")
def order_detail(order_id: int):
    # A search is never read from the URL: it may be a person's email or phone.
    return _order_page(_my_order(order_id), _view(request.args, search=False))


@bp.route("/orders/<int:order_id>/leads", methods=["POST"])
def order_leads(order_id: int):
    """The work list for the filters and search posted: the list alone for htmx to
    swap in, the whole page for a browser without scripts."""
    order, view = _my_order(order_id), _view(request.form)
    if not request.headers.get("HX-Request"):
        return _order_page(order, view)
    return render_template("buyer/_worklist.html", **_worklist_context(order, view))


@bp.route("/orders/<int:order_id>/deliveries")
def deliveries(order_id: int):
    order = _my_order(order_id)
    page = bounds.PAGE.take(request.args.get("page", "1"), "page")
    return render_template("buyer/_deliveries.html", order=order, confirm=ConfirmForm(),
                           **deliveries_context(order, page))


@bp.route("/orders/<int:order_id>/status")
def order_status(order_id: int):
    """The fill panel; htmx polls it while the order is open. When more leads were
    delivered than the page last showed (`seen`), the work list is told to reload."""
    order = _my_order(order_id)
    response = make_response(render_template("buyer/_order_status.html", order=order,
                                             state=queries.order_now(order), fill=_fill(order)))
    seen = request.args.get("seen", "")
    if seen.isdigit() and int(seen) != order.filled:
        response.headers["HX-Trigger"] = "leads-delivered"
    return response


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
        order = _my_order(order_id)
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
        order = operations.change_terms(current_account, order_id, price=form.price.minor_units,
                                        quantity=form.quantity.data, **form.terms_changes(),
                                        **form.bid_terms())
        secret = getattr(order, "webhook_secret", None)  # a first bid URL: its signing secret
        db.session.commit()
        flash("Order updated; the money held for it follows the new terms.", "success")
        if secret:
            flash(f"Secret for signed bid requests (shown only now): {secret}", "warning")
    except NotFound:
        raise
    except DomainError as exc:
        db.session.rollback()
        for problem in problems_linked(exc):
            flash(problem["message"], "danger")
    return redirect(url_for("buyer.order_detail", order_id=order_id))


def _said(errors) -> str:
    """A field's errors as one line (a schedule's rows nest theirs by field)."""
    if isinstance(errors, dict):
        return "; ".join(f"{name}: {_said(e)}" for name, e in errors.items())
    return "; ".join(_said(e) if isinstance(e, (dict, list)) else str(e) for e in errors if e)


@bp.route("/orders/<int:order_id>/leads.csv")
def leads_csv(order_id: int):
    order = _my_order(order_id)
    return Response(stream_with_context(delivery.delivered_csv(order)), mimetype="text/csv",
                    headers={"Content-Disposition":
                             f'attachment; filename="order-{order.id}-leads.csv"'})


@bp.route("/orders/<int:order_id>/leads.xlsx")
def leads_xlsx(order_id: int):
    order = _my_order(order_id)
    return Response(stream_with_context(delivery.delivered_xlsx(order, user_zone())),
                    mimetype=XLSX_TYPE,
                    headers={"Content-Disposition":
                             f'attachment; filename="order-{order.id}-leads.xlsx"'})



def _sale_ids(values) -> list[int]:
    ids = values.getlist("sale_id")[:MAX_SELECTION + 1]
    if len(ids) > MAX_SELECTION:
        raise ValidationFailed(f"Choose at most {MAX_SELECTION} leads at a time.",
                               code="selection_too_large")
    return [bounds.BIG_ID.take(value, "sale_id") for value in ids]


def _outcome_entry(values) -> tuple:
    """(status, revenue in minor units) from a posted outcome; ValidationFailed if not."""
    try:
        revenue = parse_money(values["revenue"]) if (values.get("revenue") or "").strip() else None
    except ValueError as exc:  # parse_money says what is wrong: the spelling or the size
        raise ValidationFailed(f"The revenue {exc}.", code="invalid_outcome",
                               details={"field": "revenue"}) from None
    return outcomes.check(values.get("status"), revenue)


@bp.route("/orders/<int:order_id>/outcome", methods=["POST"])
def record_outcome(order_id: int):
    """One lead's outcome, from its row (htmx: the row comes back, saved or with the
    reason it was not)."""
    order = _my_order(order_id)
    sale_id = bounds.BIG_ID.take(request.form.get("sale_id", ""), "sale_id")
    worklist.selection(order, [sale_id])
    error = None
    try:
        status, revenue = _outcome_entry(request.form)
        outcomes.record_many(current_account, [(sale_id, status, revenue)])
        db.session.commit()
    except DomainError as exc:
        db.session.rollback()
        error = exc.message
    if not request.headers.get("HX-Request"):
        flash(f"Sale {sale_id}: {error}" if error else f"Sale {sale_id}: outcome saved.",
              "danger" if error else "success")
        return redirect(url_for("buyer.order_detail", order_id=order.id))
    return lead_rows.row_html(worklist.row(order, sale_id), _row_links(order), error=error,
                              saved=error is None)


@bp.route("/orders/<int:order_id>/outcomes", methods=["POST"])
def bulk_outcome(order_id: int):
    """The chosen leads' outcome at once; the list comes back as the buyer filtered it."""
    order = _my_order(order_id)
    message, ok = None, False
    try:
        chosen = worklist.selection(order, _sale_ids(request.form))
        if not chosen:
            raise ValidationFailed("Choose the leads first (the boxes on the left).",
                                   code="nothing_chosen")
        status, revenue = _outcome_entry(request.form)
        outcomes.record_many(current_account, [(sale_id, status, revenue) for sale_id in chosen])
        db.session.commit()
        message, ok = f"{len(chosen)} lead(s) marked {worklist.OUTCOMES[status.value].lower()}.", True
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        message = exc.message
    return render_template("buyer/_worklist.html", bulk_message=message, bulk_ok=ok,
                           **_worklist_context(order, _view(request.form)))


@bp.route("/orders/<int:order_id>/leads-chosen.csv", methods=["POST"])
def chosen_csv(order_id: int):
    """The chosen leads as the order's CSV export (same columns and conventions)."""
    order = _my_order(order_id)
    chosen = worklist.selection(order, _sale_ids(request.form))
    if not chosen:
        flash("Choose the leads to export first (the boxes on the left), or export them all.",
              "warning")
        return redirect(url_for("buyer.order_detail", order_id=order.id))
    return Response(stream_with_context(delivery.delivered_csv(order, chosen)),
                    mimetype="text/csv",
                    headers={"Content-Disposition":
                             f'attachment; filename="order-{order.id}-chosen-leads.csv"'})


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
    """The KPI range asked for, in days on the buyer's clock (the last 30 by default)."""
    if "from" not in request.args and "to" not in request.args:
        return kpis.DateRange.last_days(30, zone=user_zone())
    return kpis.DateRange.parse(request.args.get("from"), request.args.get("to"), user_zone())


@bp.route("/kpis")
def kpi_page():
    try:
        period = _period()
    except DomainError as exc:
        flash(exc.message, "danger")
        period = kpis.DateRange.last_days(30, zone=user_zone())
    data = kpis.page_data(current_account, period)
    shown = kpis.orders_for_page(current_account, data.per_order)
    return render_template(
        "buyer/kpis.html", period=period, orders=shown, per_order=data.per_order,
        total=kpis.total(data.per_order), empty=kpis.Kpis(),
        charts=kpis.chart_data(shown, data.per_order, data.days, data.regions,
                               user_language()))


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

