"""API routes for money (SPEC §11): top-ups, withdrawals, statement, payouts."""
from marshmallow import Schema, fields

from app.api.auth import api_blueprint, api_user
from app.api.schemas import NOT_ALLOWED_YET, ApiErrorSchema, Int
from app.core import bounds
from app.errors import Conflict
from app.labels import label
from app.models import Role, TopUpStatus
from app.services import ledger, payments

blp = api_blueprint("Money", __name__, description="Top-ups, withdrawals, statement, payouts")


class TopUpCreateSchema(Schema):
    amount = Int(bounds.AMOUNT, minimum=1, config_minimum="TOPUP_MINIMUM",
                 config_maximum="TOPUP_MAXIMUM", required=True,
                 metadata={"description": "minor units"})
    payment_method = fields.String(
        metadata={"description": "Optional: a Stripe PaymentMethod to charge now (server-side "
                  "confirmation). Without it, confirm `client_secret` with Stripe.js."})


class TopUpSchema(Schema):
    id = fields.Integer()
    amount = fields.Integer(metadata={"description": "minor units"})
    currency = fields.String()
    payment_intent_id = fields.String(allow_none=True)
    client_secret = fields.String(allow_none=True, metadata={
        "description": "Only in the answer to POST: for Stripe.js to confirm the payment"})
    status = fields.Function(lambda t: t.status.value, metadata={
        "description": "created, requires_payment_method, requires_action, processing "
        "(Stripe accepted; the balance waits for its webhook), succeeded (credited), "
        "failed, canceled"})
    failure_message = fields.String()
    refunded = fields.Integer()
    created_at = fields.DateTime()


class WithdrawalCreateSchema(Schema):
    amount = Int(bounds.AMOUNT, minimum=1, required=True, metadata={"description": "minor units"})


class CardRefundSchema(Schema):
    topup_id = fields.Integer()
    amount = fields.Integer()
    status = fields.Function(lambda r: r.status.value)
    stripe_refund_id = fields.String(allow_none=True)
    failure_message = fields.String()


class WithdrawalSchema(Schema):
    id = fields.Integer()
    amount = fields.Integer()
    refunded = fields.Integer()
    status = fields.Function(lambda w: w.status.value)
    refunds = fields.List(fields.Nested(CardRefundSchema))
    created_at = fields.DateTime()


class StatementEntrySchema(Schema):
    transaction_id = fields.Integer()
    created_at = fields.DateTime()
    kind = fields.String()
    account = fields.String()
    amount = fields.Integer()
    balance_after = fields.Integer()
    memo = fields.String()


class PayoutSchema(Schema):
    id = fields.Integer()
    period = fields.Date()
    amount = fields.Integer()
    currency = fields.String()
    status = fields.Function(lambda p: p.status.value)
    transfer_id = fields.String(allow_none=True)
    failure_message = fields.String()
    created_at = fields.DateTime()


def _buyer():
    return api_user(Role.BUYER, "Only buyers have a balance to top up.")


@blp.route("/topups", methods=["POST"])
@blp.arguments(TopUpCreateSchema)
@blp.response(201, TopUpSchema)
@blp.alt_response(402, schema=ApiErrorSchema, description="The card was declined")
@blp.alt_response(422, schema=ApiErrorSchema, description="Amount out of range")
@blp.alt_response(503, schema=ApiErrorSchema, description="Card payments not configured")
def create_topup(data):
    """Start a card top-up. The balance is credited only when Stripe's signed webhook
    for the PaymentIntent arrives."""
    started = payments.start_topup(_buyer(), data["amount"], data.get("payment_method"))
    started.topup.client_secret = started.client_secret
    return started.topup


@blp.route("/topups", methods=["GET"])
@blp.response(200, TopUpSchema(many=True))
def list_topups():
    return payments.topups_for(_buyer(), limit=200)


@blp.route("/topups/<int:topup_id>", methods=["GET"])
@blp.response(200, TopUpSchema)
def get_topup(topup_id: int):
    return payments.topup_of(_buyer(), topup_id)


@blp.route("/topups/<int:topup_id>/cancel", methods=["POST"])
@blp.response(200, TopUpSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such top-up of yours")
@blp.alt_response(409, schema=ApiErrorSchema, description="topup_not_waiting: it waits for "
                  "no card or 3-D Secure step (details.status); topup_already_paid: it went "
                  "through before it could be cancelled, and is credited once Stripe confirms")
def cancel_topup(topup_id: int):
    """Give up a top-up that waits for you (a card, or its 3-D Secure step), as the
    balance page's Cancel does: its PaymentIntent is cancelled at Stripe, so nothing can
    be charged, and the top-up is canceled. Asking again changes nothing."""
    topup = payments.topup_of(_buyer(), topup_id)
    if topup.status is TopUpStatus.CANCELED:
        return topup
    if topup.status not in payments.WAITING_FOR_BUYER:
        raise Conflict(f"Top-up #{topup.id} is not waiting for you "
                       f"({label(topup.status, 'topup').lower()}): it cannot be cancelled.",
                       code="topup_not_waiting", details={"status": topup.status.value})
    topup = payments.cancel_topup(topup, payments.CANCELLED_BY_BUYER)
    if topup.status is not TopUpStatus.CANCELED:
        raise Conflict(f"Top-up #{topup.id} went through before it could be cancelled: your "
                       "balance is credited once Stripe confirms it.",
                       code="topup_already_paid", details={"status": topup.status.value})
    return topup


@blp.route("/withdrawals", methods=["POST"])
@blp.arguments(WithdrawalCreateSchema)
@blp.response(201, WithdrawalSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="More than can go back to a card")
@blp.alt_response(403, schema=ApiErrorSchema, description=NOT_ALLOWED_YET)
def create_withdrawal(data):
    """Send unspent money back to the cards it came from."""
    return payments.withdraw(_buyer(), data["amount"])


@blp.route("/statement", methods=["GET"])
@blp.response(200, StatementEntrySchema(many=True))
def statement():
    """Every movement on the caller's accounts, newest first, with running balances."""
    return ledger.statement_for(api_user(), limit=500)


@blp.route("/payouts", methods=["GET"])
@blp.response(200, PayoutSchema(many=True))
def list_payouts():
    user = api_user(Role.SELLER, "Only sellers are paid out.")
    return payments.payouts_for(user, limit=200)
