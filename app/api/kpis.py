"""API routes for outcomes of delivered leads and the buyer's KPIs (SPEC §9, §11)."""
from marshmallow import Schema, fields

from app.api.auth import api_blueprint, api_user
from app.api.schemas import ApiErrorSchema, Int, TextInput
from app.core import bounds
from app.extensions import db
from app.models import Role
from app.services import kpis, outcomes
from app.market import queries

blp = api_blueprint("KPIs", __name__, description="Buyers: outcomes of delivered leads, KPIs")


class OutcomeInputSchema(Schema):
    status = fields.String(required=True, metadata={"description": "contacted, converted or bad"})
    revenue = Int(bounds.AMOUNT, allow_none=True, load_default=None, metadata={
        "description": "minor units; converted leads only: the gross margin the customer "
                       "brought (feeds ROI)"})


class OutcomeSchema(Schema):
    sale_id = fields.Integer()
    order_id = fields.Integer()
    status = fields.Function(lambda o: o.status.value)
    revenue = fields.Integer(allow_none=True)
    updated_at = fields.DateTime()


class KpiQuerySchema(TextInput):
    order_id = Int(bounds.ID, load_default=None)
    from_ = fields.String(data_key="from", load_default=None,
                          metadata={"description": "first delivery day, YYYY-MM-DD (UTC)"})
    to = fields.String(load_default=None, metadata={"description": "last delivery day, included"})


class KpiSchema(Schema):
    leads = fields.Integer(metadata={"description": "leads delivered"})
    spend = fields.Integer(metadata={"description": "minor units"})
    cpl = fields.Float(allow_none=True, metadata={"description": "spend ÷ leads, minor units"})
    conversions = fields.Integer()
    conversion_rate = fields.Float(allow_none=True, metadata={"description": "a fraction"})
    cpa = fields.Float(allow_none=True, metadata={"description": "spend ÷ conversions, minor units"})
    revenue = fields.Integer(metadata={"description": "recorded on converted leads, minor units"})
    roi = fields.Float(allow_none=True, metadata={"description": "(revenue − spend) ÷ spend"})


def _buyer():
    return api_user(Role.BUYER, "Only buyers record outcomes and read KPIs.")


@blp.route("/sales/<bigid:sale_id>/outcome", methods=["POST"])
@blp.arguments(OutcomeInputSchema)
@blp.response(200, OutcomeSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="Not one of your sales")
@blp.alt_response(422, schema=ApiErrorSchema, description="Invalid status or revenue")
def record_outcome(data, sale_id: int):
    """Record what became of a delivered lead; a later call replaces it."""
    outcome = outcomes.record(_buyer(), sale_id, data["status"], data["revenue"])
    db.session.commit()
    return outcome


@blp.route("/kpis", methods=["GET"])
@blp.arguments(KpiQuerySchema, location="query")
@blp.response(200, KpiSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="Not one of your orders")
def get_kpis(query):
    """KPIs of one order (`order_id`), or of all your orders, over delivery days
    `from`–`to` (both optional, UTC, included)."""
    buyer = _buyer()
    period = kpis.DateRange.parse(query["from_"], query["to"])
    if query["order_id"] is not None:
        queries.order_for(buyer, query["order_id"])  # 404 unless it is the caller's
    return kpis.for_buyer(buyer, period, query["order_id"]).as_dict()
