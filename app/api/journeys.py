"""API route for a lead's journey (SPEC §11 additions: `GET /leads/{id}/journey`)."""
from marshmallow import Schema, fields

from app.aftersale import journeys
from app.api.auth import api_blueprint, api_member
from app.api.schemas import ApiErrorSchema

blp = api_blueprint("Journeys", __name__, description="What happened to a lead, step by step")


def _field(field_class, kinds: str, description: str, **options):
    return field_class(allow_none=True, metadata={"description": f"({kinds}) {description}"},
                       **options)


class JourneyStepSchema(Schema):
    """One step; which fields it carries depends on its kind and on who asks."""

    at = fields.DateTime(required=True)
    kind = fields.String(required=True, metadata={
        "enum": ["received", "ping", "bid", "verdict", "spot_check_sampled", "spot_check", "sale",
                 "delivery_attempt", "return_opened", "return_decided", "outcome"]})
    how = _field(fields.String, "received", "upload or api (real time); seller and admins")
    batch_id = _field(fields.Integer, "received", "seller and admins")
    file = _field(fields.String, "received", "the uploaded file's name")
    row = _field(fields.Integer, "received", "the row of the file")
    sub_id = _field(fields.String, "received", "the seller's source tag (sub_id); null when none was given")
    consent_at = _field(fields.DateTime, "received", "when the person consented")
    certificate = _field(fields.String, "received", "the public id of the exchange's consent "
                         "certificate (GET /certificates/{id}), for a hosted form's lead")
    trustedform_cert_url = _field(fields.String, "received", "the seller's TrustedForm certificate")
    jornaya_leadid = _field(fields.String, "received", "the seller's Jornaya LeadiD")
    accepted = _field(fields.Boolean, "verdict, return_decided", "accepted")
    cross_seller_duplicate = _field(fields.Boolean, "verdict",
                                    "another seller offered the same person")
    held = _field(fields.Boolean, "verdict", "held until its batch passes a spot-check")
    status = _field(fields.String, "verdict, return_opened, outcome",
                    "the lead's (as POST /leads answers: live, held, paused, withdrawn, "
                    "delisted, or sold_out), the return's or the outcome's status now")
    sold = _field(fields.Integer, "verdict", "buyers the lead was sold to; seller and admins")
    cap = _field(fields.Integer, "verdict", "buyers it may be sold to at most")
    verdict = _field(fields.String, "spot_check_sampled", "the admin's verdict on this lead")
    result = _field(fields.String, "spot_check", "passed or failed")
    sales_returned = _field(fields.Integer, "spot_check", "sales returned by a failed check")
    note = _field(fields.String, "spot-check, returns", "the note of whoever decided or asked")
    asked = _field(fields.Integer, "ping", "how many bidding orders were asked")
    deadline_ms = _field(fields.Integer, "ping", "the ping deadline, milliseconds")
    answered_ms = _field(fields.Integer, "ping", "when the last bid was in (or the deadline)")
    outcome = _field(fields.String, "bid", "bid, fixed (a fixed price), or why no bid: "
                     "no_bid, late, failed, malformed, over_max, below_minimum, cannot_pay")
    amount = _field(fields.Integer, "bid", "the bid or fixed price, minor units")
    won = _field(fields.Boolean, "bid", "the lead was offered to this order")
    sale_id = _field(fields.Integer, "sale and after", "the sale")
    order_id = _field(fields.Integer, "sale, bid", "buyer and admins")
    order_name = _field(fields.String, "sale", "buyer and admins")
    price = _field(fields.Integer, "sale, ping", "minor units the buyer paid (the ping's "
                   "offered price: seller and admins); buyer and admins")
    earnings = _field(fields.Integer, "sale", "the seller's share, minor units")
    buyer = _field(fields.String, "sale", "the buying account; admins")
    event = _field(fields.String, "delivery_attempt", "lead.delivered or lead.erased")
    method = _field(fields.String, "delivery_attempt", "webhook, http (the buyer's format) or email")
    request = _field(fields.String, "delivery_attempt",
                     "the request as sent, secret headers masked; admins see its first line")
    status_code = _field(fields.Integer, "delivery_attempt",
                         "the reply's HTTP status (by email: the SMTP reply code)")
    reply = _field(fields.String, "delivery_attempt", "the reply's first characters; the buyer")
    milliseconds = _field(fields.Integer, "delivery_attempt, bid", "how long the request took")
    delivered = _field(fields.Boolean, "delivery_attempt", "the buyer's system accepted it")
    refused = _field(fields.Boolean, "delivery_attempt", "the buyer's system answered and "
                     "refused it (its reply rule said no): not a failure to deliver")
    error = _field(fields.String, "delivery_attempt, bid", "why not, as a sentence")
    reason = _field(fields.String, "return_opened", "the buyer's reason")
    seller_note = _field(fields.String, "return_opened", "the seller's answer")
    decided_by = _field(fields.String, "return_decided", "system, seller, admin or timeout")
    refund = _field(fields.Integer, "return_decided", "minor units back to the buyer")
    revenue = _field(fields.Integer, "outcome", "minor units the buyer earned")


@blp.route("/leads/<int:lead_id>/journey", methods=["GET"])
@blp.response(200, JourneyStepSchema(many=True))
@blp.alt_response(404, schema=ApiErrorSchema, description="No lead of yours")
def lead_journey(lead_id: int):
    """The lead's steps, oldest first, as the caller may see them (SPEC §12): its seller
    sees how it came in, its verdict and sales; a buyer their own sale and what followed;
    admins every step."""
    return journeys.journey(api_member(), lead_id)
