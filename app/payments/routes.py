"""Stripe's webhook route (SPEC §11): signature checked, each event applied once."""
from flask import jsonify, request

from app.extensions import csrf
from app.payments import bp
from app.services import payments


@bp.route("/stripe/webhook", methods=["POST"])
@csrf.exempt  # Stripe signs its requests; it has no session to forge
def webhook():
    try:
        outcome = payments.handle_webhook(request.get_data(),
                                          request.headers.get("Stripe-Signature"))
    except (payments.InvalidWebhook, payments.PaymentsNotConfigured) as exc:
        return jsonify(error={"code": exc.code, "message": exc.message}), 400
    return jsonify(received=True, outcome=outcome)
