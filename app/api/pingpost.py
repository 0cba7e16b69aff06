"""API routes for ping/post (SPEC §4 rule 9, §11 additions): a seller pings a lead's
attributes, the exchange answers with the best price its buyers offer, and the post
of the full lead completes the sale."""
from marshmallow import Schema, fields, validate

from app.api.auth import api_blueprint, api_user
from app.api.fast_json import json_arguments
from app.api.schemas import NOT_ALLOWED_YET, ApiErrorSchema, LeadCreatedSchema, LeadInputSchema
from app.models import Role
from app.realtime import auction
from app.services import ledger
from app.services.ingest import realtime

blp = api_blueprint("Ping/post", __name__, description=(
    "Sellers: offer a lead's attributes (a ping), learn the price, then post the full "
    "lead. Orders with a bid URL are asked at once and may bid; the exchange waits at "
    "most the ping deadline (PING_DEADLINE_MS, 300 ms unless configured otherwise; each "
    "bid URL at most PING_BID_TIMEOUT_MS) for their bids."))

_CONTACTS = ("first_name", "last_name", "email", "phone", "ip")


class PingInputSchema(LeadInputSchema):
    """A lead's SPEC §3 fields without its contacts (no names, email, phone or IP),
    saying which contacts it has, plus the terms."""

    has_email = fields.Boolean(load_default=False, metadata={
        "description": "the lead has an email address (orders may require one)"})
    has_phone = fields.Boolean(load_default=False, metadata={
        "description": "the lead has a phone number"})

    class Meta:
        exclude = _CONTACTS


class PingCreatedSchema(Schema):
    ping_id = fields.String(allow_none=True, metadata={
        "description": "null when no order would buy; post the full lead with it"})
    price = fields.Integer(metadata={"description": "minor units the exchange pays you for "
                                                    "the lead (SPEC §12: the buyers' price "
                                                    "less the commission, as the post's "
                                                    "sales[].seller_share)"})
    expires_at = fields.DateTime(metadata={"description": "post before this"})
    reason = fields.String(metadata={"description": "no_buyer (no order takes these "
                                                    "attributes now) or no_bid (the bidding "
                                                    "orders did not bid)"})


class PostInputSchema(LeadInputSchema):
    """The full lead (SPEC §3 fields) for a ping; the ping's terms apply. A post may
    repeat them (a seller posting the ping's payload plus the contacts), and then they
    must be the ping's."""

    # The shape of the ids pings are given (URL-safe base64); anything else, a NUL
    # byte PostgreSQL refuses to compare included, is no ping's.
    ping_id = fields.String(required=True, validate=validate.Regexp(
        r"[A-Za-z0-9_-]{1,32}\Z", error="Not a ping id: give the ping_id the ping answered."))
    default_country = fields.String(load_default=None)
    floor_price = fields.Integer(load_default=None)
    cap = fields.Integer(load_default=None)


def _seller():
    return api_user(Role.SELLER, "Only sellers can upload leads.")


@blp.route("/pings", methods=["POST"])
@json_arguments(blp, PingInputSchema())  # one instance, as POST /leads
@blp.response(201, PingCreatedSchema, description="Some order would buy: the price and "
              "how long the offer stands")
@blp.alt_response(200, schema=PingCreatedSchema, description="No order would buy: "
                  "ping_id null and the reason")
@blp.alt_response(422, schema=ApiErrorSchema, description="The attributes' verdict (a §3 "
                  "row verdict, e.g. implausible_age, no_consent)")
@blp.alt_response(403, schema=ApiErrorSchema, description=NOT_ALLOWED_YET)
def create_ping(payload):
    """Offer a lead's attributes: every eligible order with a bid URL is asked at once
    (attributes only, signed like a webhook), and the best of the fixed prices and the
    bids received within the ping deadline (PING_DEADLINE_MS) is the price. The answer
    comes within about that deadline."""
    seller = _seller()
    terms = realtime.terms_of(payload)
    ping, reason = auction.open_ping(seller, payload, terms)
    if ping is None:
        return {"ping_id": None, "reason": reason}, 200
    return {"ping_id": ping.public_id, "price": ledger.seller_share(ping.price, seller),
            "expires_at": ping.expires_at}


@blp.route("/posts", methods=["POST"])
@json_arguments(blp, PostInputSchema())  # one instance, as POST /leads
@blp.response(201, LeadCreatedSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such ping of yours")
@blp.alt_response(409, schema=ApiErrorSchema, description="ping_mismatch: the lead's "
                  "attributes differ from the ping's (details.fields); ping_used")
@blp.alt_response(410, schema=ApiErrorSchema, description="ping_expired")
@blp.alt_response(422, schema=ApiErrorSchema, description="The lead's verdict (code, message)")
@blp.alt_response(403, schema=ApiErrorSchema, description=NOT_ALLOWED_YET)
def create_post(payload):
    """The full lead for a ping: stored like any real-time lead and sold at the ping's
    price. If the ping's winner can no longer pay, the ping's next best bid buys at its
    own price; if none can, the lead is stored unsold (sales empty) and stays on offer."""
    seller = _seller()
    terms = {name: payload.pop(name) for name in ("default_country", "floor_price", "cap")}
    lead, settlement = auction.post(seller, payload.pop("ping_id"), payload, terms)
    return auction.answer(lead, settlement)
