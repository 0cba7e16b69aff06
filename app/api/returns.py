"""API routes for returns (SPEC §11: `POST /returns {sale_id, reason}`)."""
from marshmallow import Schema, fields, validate

from app.api.auth import api_blueprint, api_user
from app.api.schemas import ApiErrorSchema, Int
from app.core import bounds
from app.extensions import db
from app.models import ReturnReason, Role
from app.services import returns

blp = api_blueprint("Returns", __name__, description="Buyers return bad leads; sellers answer")


class ReturnCreateSchema(Schema):
    sale_id = Int(bounds.BIG_ID, required=True)
    reason = fields.String(required=True, validate=validate.OneOf(
        [r.value for r in returns.BUYER_REASONS]))
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class ReturnAnswerSchema(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=returns.RESPONSE_NOTE_MAX),
                         metadata={"description": "why: required to contest, optional to accept"})


class ReturnSchema(Schema):
    id = fields.Integer()
    sale_id = fields.Integer()
    order_id = fields.Integer()
    reason = fields.Function(lambda r: r.reason.value, metadata={
        "enum": [r.value for r in ReturnReason]})
    note = fields.String()
    status = fields.Function(lambda r: r.status.value, metadata={
        "description": "awaiting_seller, contested (an admin decides), accepted (refunded), "
        "rejected"})
    decided_by = fields.String(allow_none=True)
    decision_note = fields.String()
    seller_note = fields.String()
    seller_deadline = fields.DateTime(allow_none=True)
    refund = fields.Integer(metadata={"description": "minor units back to the buyer"})
    created_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


@blp.route("/returns", methods=["POST"])
@blp.arguments(ReturnCreateSchema)
@blp.response(201, ReturnSchema)
@blp.alt_response(409, schema=ApiErrorSchema, description="Already returned")
@blp.alt_response(422, schema=ApiErrorSchema, description="Window closed, cap reached, bad reason")
def create_return(data):
    """Return a delivered lead; the answer says whether it was decided at once."""
    user = api_user()
    returns.require_buyer(user)
    item = returns.open_return(user, data["sale_id"], data["reason"], data["note"])
    db.session.commit()
    return item


@blp.route("/returns", methods=["GET"])
@blp.response(200, ReturnSchema(many=True))
def list_returns():
    """A buyer's returns, or the returns of a seller's leads."""
    user = api_user()
    return (returns.returns_for_seller(user, limit=500) if user.is_seller
            else returns.returns_for_buyer(user, limit=500))


@blp.route("/returns/<int:return_id>", methods=["GET"])
@blp.response(200, ReturnSchema)
def get_return(return_id: int):
    return returns.return_of(api_user(), return_id)


@blp.route("/returns/<int:return_id>/<any(accept, contest):answer>", methods=["POST"])
@blp.arguments(ReturnAnswerSchema, required=False)  # accepting needs no body
@blp.response(200, ReturnSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="A contest without a reason")
def answer_return(data, return_id: int, answer: str):
    """The seller accepts (the sale is reversed) or contests (an admin decides; the
    `note` says why and is required)."""
    user = api_user(Role.SELLER, "Only the lead's seller answers a return.")
    item = returns.seller_respond(user, return_id, answer == "accept", data["note"])
    db.session.commit()
    return item
