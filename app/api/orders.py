"""API routes for buyers' orders, their delivered leads, and the supply estimate (SPEC §11)."""
from flask import Response, stream_with_context
from sqlalchemy import select

from app.api.auth import api_blueprint, api_user
from app.api.schemas import (
    NOT_ALLOWED_YET, ApiErrorSchema, DeliveredLeadSchema, EstimateQuerySchema, EstimateSchema, OrderChangeSchema,
    OrderCreateSchema, OrderSchema, PageSchema,
)
from app.errors import ValidationFailed
from app.extensions import db
from app.models import Order, Role
from app.services import delivery
from app.market import operations, queries
from app.market.filters import Filters

blp = api_blueprint("Orders", __name__, description="Buyers: orders and delivered leads")


def _buyer():
    return api_user(Role.BUYER, "Only buyers place orders.")


def _filled_in(order: Order) -> Order:
    """The order as it is now: the commit that placed, changed or resumed it started
    its filling (filled already when jobs run inline, else under way)."""
    db.session.expire_all()
    return db.session.get(Order, order.id)


@blp.route("/orders", methods=["POST"])
@blp.arguments(OrderCreateSchema)
@blp.response(201, OrderSchema)
@blp.alt_response(409, schema=ApiErrorSchema, description="Not enough available balance")
@blp.alt_response(422, schema=ApiErrorSchema, description="Invalid filters or terms")
@blp.alt_response(403, schema=ApiErrorSchema, description=NOT_ALLOWED_YET)
def create_order(data):
    """Place an order: what it may spend is held from the balance, then it fills."""
    buyer = _buyer()
    filters = Filters.parse(data.pop("filters"))
    data["timezone"] = data["timezone"] or buyer.timezone
    terms = operations.check_terms(data.pop("price"), data.pop("quantity"), **data)
    order, secret = operations.place_order(buyer, filters, terms)
    db.session.commit()
    order = _filled_in(order)
    if secret:
        order.webhook_secret = secret
    return order


@blp.route("/orders", methods=["GET"])
@blp.response(200, OrderSchema(many=True))
def list_orders():
    """The caller's orders, newest first."""
    return db.session.scalars(select(Order).where(Order.buyer_id == api_user().id)
                              .order_by(Order.id.desc()).limit(500)).all()


@blp.route("/orders/<int:order_id>", methods=["GET"])
@blp.response(200, OrderSchema)
@blp.alt_response(404, schema=ApiErrorSchema)
def get_order(order_id: int):
    return queries.order_for(api_user(), order_id)


@blp.route("/orders/<int:order_id>", methods=["PATCH"])
@blp.arguments(OrderChangeSchema)
@blp.response(200, OrderSchema)
@blp.alt_response(409, schema=ApiErrorSchema)
def change_order(data, order_id: int):
    """Change price, quantity, caps, schedule, time zone, calling hours, bid URL or max
    bid; the hold follows."""
    if not data:
        raise ValidationFailed("Give price, quantity, caps, spend_caps, schedule, timezone, "
                               "calling_hours, bid_url or max_bid.",
                               code="nothing_to_change")
    order = operations.change_terms(_buyer(), order_id, **data)
    db.session.commit()
    return _filled_in(order)


@blp.route("/orders/<int:order_id>/cancel", methods=["POST"])
@blp.response(200, OrderSchema)
@blp.alt_response(409, schema=ApiErrorSchema, description="Already closed")
def cancel_order(order_id: int):
    """Cancel: nothing more is delivered and the unspent hold is released."""
    order = operations.cancel_order(_buyer(), order_id)
    db.session.commit()
    return order


@blp.route("/orders/<int:order_id>/pause", methods=["POST"])
@blp.response(200, OrderSchema)
def pause_order(order_id: int):
    order = operations.set_paused(_buyer(), order_id, True)
    db.session.commit()
    return order


@blp.route("/orders/<int:order_id>/resume", methods=["POST"])
@blp.response(200, OrderSchema)
def resume_order(order_id: int):
    order = operations.set_paused(_buyer(), order_id, False)
    db.session.commit()
    return _filled_in(order)


@blp.route("/orders/<int:order_id>/leads", methods=["GET"])
@blp.arguments(PageSchema, location="query")
@blp.response(200, DeliveredLeadSchema(many=True),
              description="JSON (money in minor units), or CSV with ?format=csv (price and "
                          "revenue in major units with a `currency` column; phones as a tab "
                          "then E.164, text in spreadsheets)")
@blp.alt_response(404, schema=ApiErrorSchema)
def order_leads(page, order_id: int):
    """The leads delivered to this order, with contacts and each sale's id."""
    order = queries.order_for(api_user(), order_id)
    if page["format"] == "csv":
        return Response(stream_with_context(delivery.delivered_csv(order)), mimetype="text/csv",
                        headers={"Content-Disposition":
                                 f'attachment; filename="order-{order.id}-leads.csv"'})
    limit = max(1, min(page["limit"], 5000))
    return list(delivery.delivered(order, limit=limit, offset=max(page["offset"], 0)))


@blp.route("/estimate", methods=["GET"])
@blp.arguments(EstimateQuerySchema(), location="query")  # one instance, not one per request
@blp.response(200, EstimateSchema)
def get_estimate(query):
    """How many live leads match these filters now, and what similar sales cleared at."""
    price = query.pop("price", None)
    result = queries.estimate(Filters.parse(query), price, buyer=api_user())
    return {"matching": result.matching, "clearing_prices": result.clearing_prices}
