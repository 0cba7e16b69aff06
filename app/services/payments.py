"""Every conversation with Stripe (SPEC §5, issue #5), in domain terms: top up,
withdraw, pay out, apply a webhook event, reconcile.

Money model: a prepaid balance. A PaymentIntent (automatic capture) credits the
buyer's available balance only when Stripe's signed `payment_intent.succeeded`
arrives; sales move money inside the ledger; a withdrawal refunds earlier
PaymentIntents; sellers are paid with Connect transfers (separate charges and
transfers) once their earnings have cleared the return window.

Crash safety: before asking Stripe to move money we commit a row that says what we are
about to ask, and we ask with an idempotency key built from that row's id. A job that
dies between the two asks again with the same key, and Stripe answers with the first
result instead of moving the money twice. Money leaving a balance (withdrawal, payout)
leaves it in that first commit, so it cannot be spent meanwhile; if Stripe refuses,
a reversing transaction puts it back.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Optional, Protocol

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.errors import DomainError, NotFound, ValidationFailed
from app.extensions import db
from app.formatting import format_money, reading_as
from app.models import (
    AccountKind, AutoTopUp, CardRefund, Payout, PayoutStatus, RefundStatus, Role, StripeEvent, TopUp,
    TopUpStatus, TrustLevel, User, Withdrawal,
)
from app.people import notifications
from app.services import accounts, audit, ledger
from app.services.earnings import recover_debt
from app.services.ledger import Posting

if TYPE_CHECKING:
    import stripe  # 7 MB: imported where Stripe is talked to, not by every process

log = logging.getLogger(__name__)


class PaymentsNotConfigured(DomainError):
    code = "payments_not_configured"
    status = 503


class PaymentFailed(DomainError):
    code = "payment_failed"
    status = 402


class PayoutsNotConfigured(DomainError):
    code = "payouts_not_configured"
    status = 409


class InvalidWebhook(DomainError):
    code = "invalid_signature"
    status = 400


def configured() -> bool:
    config = current_app.config
    return bool(config.get("STRIPE_SECRET_KEY") and config.get("STRIPE_WEBHOOK_SECRET"))


def _require_configured() -> None:
    if not configured():
        raise PaymentsNotConfigured(
            "Card payments are not configured on this exchange. An administrator can "
            "credit your balance for a bank transfer.")


def client() -> stripe.StripeClient:
    """One client per app, pointed at STRIPE_API_BASE when set (a local test server)."""
    import stripe

    _require_configured()
    app = current_app._get_current_object()
    if "stripe_client" not in app.extensions:
        base = app.config.get("STRIPE_API_BASE")
        app.extensions["stripe_client"] = stripe.StripeClient(
            app.config["STRIPE_SECRET_KEY"],
            base_addresses={"api": base} if base else None,
            # Safe: every call that moves money carries an idempotency key.
            max_network_retries=2,
        )
    return app.extensions["stripe_client"]


def stripe_js_url() -> str:
    config = current_app.config
    if config.get("STRIPE_JS_URL"):
        return config["STRIPE_JS_URL"]
    base = config.get("STRIPE_API_BASE")
    # localstripe serves its stand-in for Stripe.js at this path.
    return f"{base.rstrip('/')}/js.stripe.com/v3/" if base else "https://js.stripe.com/v3/"


def _currency() -> str:
    return ledger.currency().lower()


def _plain(obj) -> dict:
    """Stripe's objects are not dicts; events and answers are read as plain dicts."""
    import stripe

    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else obj


def _message(exc: stripe.StripeError) -> str:
    return exc.user_message or str(exc) or "The payment processor refused the request."


# ---------------------------------------------------------------- top-ups (buyers)

INTENT_STATUSES = {
    "requires_payment_method": TopUpStatus.REQUIRES_PAYMENT_METHOD,
    "requires_confirmation": TopUpStatus.REQUIRES_PAYMENT_METHOD,
    "requires_action": TopUpStatus.REQUIRES_ACTION,
    # Stripe has the money (or is collecting it); the balance waits for the webhook.
    "processing": TopUpStatus.PROCESSING,
    "requires_capture": TopUpStatus.PROCESSING,
    "succeeded": TopUpStatus.PROCESSING,
    "canceled": TopUpStatus.CANCELED,
}


@dataclass
class TopUpStart:
    topup: TopUp
    client_secret: Optional[str]


def check_topup_amount(amount: int) -> None:
    low, high = current_app.config["TOPUP_MINIMUM"], current_app.config["TOPUP_MAXIMUM"]
    if type(amount) is not int or not low <= amount <= high:
        raise ValidationFailed(
            f"A top-up is from {format_money(low)} to {format_money(high)}.", code="invalid_amount",
            details={"field": "amount"})


def ensure_customer(buyer: User) -> str:
    """The buyer's Stripe Customer, created once (keyed by our user id)."""
    if buyer.stripe_customer_id:
        return buyer.stripe_customer_id
    customer = client().v1.customers.create(
        params={"email": buyer.email, "metadata": {"user_id": str(buyer.id)}},
        options={"idempotency_key": f"customer:{buyer.id}"},
    )
    buyer.stripe_customer_id = customer.id
    db.session.commit()
    return customer.id


def save_card_token(buyer: User, token: str) -> str:
    """A card tokenised by Stripe.js in the browser, saved on the buyer's Customer;
    returns the id a PaymentIntent can charge."""
    import stripe

    customer = ensure_customer(buyer)
    try:
        card = client().v1.customers.payment_sources.create(
            customer, params={"source": token},
            options={"idempotency_key": f"card-token:{token}"})
    except stripe.CardError as exc:
        raise PaymentFailed(_message(exc), code="card_declined") from exc
    except stripe.InvalidRequestError as exc:
        raise ValidationFailed(_message(exc), code="invalid_card") from exc
    return card.id


def start_topup(buyer: User, amount: int, payment_method: Optional[str] = None, *,
                automatic: bool = False,
                claim: Optional[Callable[[TopUp], None]] = None) -> TopUpStart:
    """Create the PaymentIntent for a top-up and, given a payment method, confirm it.
    The balance is credited later, by `handle_event`, never here.

    An automatic top-up (the buyer's saved card, charged off-session) passes `claim`,
    which runs with the new row flushed, before anything is committed or asked of
    Stripe, and raises if another automatic top-up is already in flight."""
    _require_configured()
    if not buyer.is_buyer:
        raise ValidationFailed("Only buyers top up a balance.", code="not_a_buyer")
    check_topup_amount(amount)
    customer = ensure_customer(buyer)
    topup = TopUp(buyer_id=buyer.id, amount=amount, currency=ledger.currency(),
                  automatic=automatic)
    db.session.add(topup)
    db.session.flush()
    if claim is not None:
        claim(topup)
    else:  # an automatic top-up is the system's, not a person's
        audit.record("topup.started", actor=buyer, subject_type="topup", subject_id=topup.id,
                     details={"amount": amount, "card_given": bool(payment_method)})
    db.session.commit()
    intent = _create_intent(topup, customer)
    if payment_method:
        intent = confirm_topup(topup, payment_method, off_session=automatic)
    return TopUpStart(topup, intent.client_secret)


def _create_intent(topup: TopUp, customer: str):
    """The top-up's PaymentIntent. Its idempotency key is the top-up's, so asking again
    for a top-up whose job died after Stripe made the intent gives back the same one."""
    import stripe

    try:
        intent = client().v1.payment_intents.create(
            params={
                "amount": topup.amount,
                "currency": _currency(),
                "customer": customer,
                "payment_method_types": ["card"],
                "metadata": {"topup_id": str(topup.id), "buyer_id": str(topup.buyer_id)},
            },
            options={"idempotency_key": f"topup:{topup.id}"},
        )
    except stripe.StripeError as exc:
        _fail(topup, _message(exc))
        raise PaymentFailed(topup.failure_message) from exc
    topup.payment_intent_id = intent.id
    _follow_intent(topup, intent)
    db.session.commit()
    return intent


def resume_topup(topup: TopUp, payment_method: str, *, off_session: bool = False) -> TopUp:
    """Finish starting a top-up whose job died half-way (its row committed, the
    PaymentIntent not yet made, or made and not yet confirmed), with the keys the job
    used. What follows is the webhook's, as for any top-up."""
    if topup.payment_intent_id is None:
        _create_intent(topup, ensure_customer(db.session.get(User, topup.buyer_id)))
    else:
        refresh_topup(topup)
    if topup.status in (TopUpStatus.CREATED, TopUpStatus.REQUIRES_PAYMENT_METHOD):
        confirm_topup(topup, payment_method, off_session=off_session)
    return topup


def confirm_topup(topup: TopUp, payment_method: str, *, off_session: bool = False):
    """Charge the top-up's PaymentIntent with a card (server-side confirmation; 3-D
    Secure, if the card needs it, is finished by Stripe.js in the buyer's browser).
    Off-session (an automatic top-up) tells Stripe the buyer is not there; local test
    servers (STRIPE_API_BASE) do not know the parameter, and charge all the same."""
    import stripe

    api = client().v1.payment_intents
    confirm_params = ({"off_session": True}
                      if off_session and not current_app.config.get("STRIPE_API_BASE") else None)
    try:
        api.update(topup.payment_intent_id, params={"payment_method": payment_method},
                   options={"idempotency_key": f"topup:{topup.id}:pm:{payment_method}"})
        intent = api.confirm(topup.payment_intent_id, params=confirm_params,
                             options={"idempotency_key": f"topup:{topup.id}:confirm:{payment_method}"})
    except stripe.CardError as exc:
        _fail(topup, _message(exc))
        raise PaymentFailed(topup.failure_message, code="card_declined",
                            details={"topup_id": topup.id}) from exc
    except stripe.StripeError as exc:
        _fail(topup, _message(exc))
        raise PaymentFailed(topup.failure_message, details={"topup_id": topup.id}) from exc
    _follow_intent(topup, intent)
    db.session.commit()
    return intent


def refresh_topup(topup: TopUp) -> TopUp:
    """Read the PaymentIntent again (after the buyer's 3-D Secure step, say). Status
    only: the money still waits for the webhook."""
    _read_intent(topup)
    return topup


def _read_intent(topup: TopUp) -> Optional[dict]:
    """The top-up's PaymentIntent as Stripe has it now, its state followed here."""
    import stripe

    if not topup.payment_intent_id or topup.status is TopUpStatus.SUCCEEDED:
        return None
    try:
        intent = _plain(client().v1.payment_intents.retrieve(topup.payment_intent_id))
    except stripe.StripeError as exc:
        raise PaymentFailed(_message(exc), details={"topup_id": topup.id}) from exc
    _follow_intent(_locked(topup), intent)
    db.session.commit()
    return intent


def _locked(topup: TopUp) -> TopUp:
    """The top-up read again under a row lock: a webhook that committed while we asked
    Stripe (crediting it) is seen, and not overwritten with what we read before."""
    db.session.refresh(topup, with_for_update=True)
    return topup


# A top-up in these states waits for its buyer: a 3-D Secure step, or a card to confirm.
WAITING_FOR_BUYER = (TopUpStatus.CREATED, TopUpStatus.REQUIRES_PAYMENT_METHOD,
                     TopUpStatus.REQUIRES_ACTION)
# The PaymentIntent states Stripe lets us cancel that could still take the money.
_CANCELABLE_INTENTS = ("requires_payment_method", "requires_confirmation", "requires_action")
FINAL = (TopUpStatus.SUCCEEDED, TopUpStatus.FAILED, TopUpStatus.CANCELED)


def authentication_secret(topup: TopUp) -> Optional[str]:
    """What Stripe.js needs to take the buyer back to their 3-D Secure step (resuming a
    top-up they left there), read from Stripe; None once the top-up needs no step."""
    intent = _read_intent(topup)
    if intent is None or topup.status is not TopUpStatus.REQUIRES_ACTION:
        return None
    return intent.get("client_secret")


# Why a top-up its buyer cancelled is closed (the balance page's Cancel, the API's).
CANCELLED_BY_BUYER = "Cancelled by you; nothing was charged."


def cancel_topup(topup: TopUp, sentence: str, *, abandoned: bool = False) -> TopUp:
    """Close a top-up that waits for its buyer: the PaymentIntent is cancelled at Stripe
    if it could still take the money, then the top-up is closed here with `sentence`,
    the buyer's explanation. Stripe decides: an intent that went through meanwhile (the
    buyer authenticated just then) is followed instead, and its webhook credits it,
    once. Asking again (the buyer and the scheduler, a retry) asks Stripe with the same
    key and changes nothing more. A top-up with no PaymentIntent recorded was never
    confirmed with a card: nothing can charge it."""
    import stripe

    if topup.status not in WAITING_FOR_BUYER:
        return topup
    if topup.payment_intent_id:
        try:
            intent = _cancel_intent(topup, abandoned)
        except stripe.StripeError as exc:
            raise PaymentFailed(_message(exc), details={"topup_id": topup.id}) from exc
        if intent["status"] != "canceled":
            _follow_intent(_locked(topup), intent)
            db.session.commit()
            return topup
    # Conditional: a webhook applied meanwhile (in another transaction) has the last word.
    closed = db.session.execute(
        update(TopUp).where(TopUp.id == topup.id, TopUp.status.not_in(FINAL))
        .values(status=TopUpStatus.CANCELED, failure_message=sentence)
        .execution_options(synchronize_session=False)).rowcount
    db.session.refresh(topup)
    if closed:
        _automatic_done(topup, sentence)
    db.session.commit()
    return topup


def _cancel_intent(topup: TopUp, abandoned: bool) -> dict:
    """The top-up's PaymentIntent, cancelled at Stripe if it could still take money."""
    import stripe

    api = client().v1.payment_intents
    intent = _plain(api.retrieve(topup.payment_intent_id))
    if intent["status"] not in _CANCELABLE_INTENTS:
        return intent
    # Local test servers (STRIPE_API_BASE) refuse a reason; Stripe records it.
    reason = ({"cancellation_reason": "abandoned" if abandoned else "requested_by_customer"}
              if not current_app.config.get("STRIPE_API_BASE") else None)
    try:
        return _plain(api.cancel(topup.payment_intent_id, params=reason,
                                 options={"idempotency_key": f"topup:{topup.id}:cancel"}))
    except stripe.InvalidRequestError:  # no longer cancelable: it moved on meanwhile
        return _plain(api.retrieve(topup.payment_intent_id))


def close_abandoned_topups(older_than: Optional[timedelta] = None) -> int:
    """The scheduler's job (commits) for card top-ups older than
    TOPUP_WAIT_LIMIT_SECONDS: those their buyers left waiting (3-D Secure never
    finished) are checked against Stripe and closed, so nothing stays chargeable and the
    money page stops saying "waiting"; those waiting for Stripe to confirm are followed
    to what Stripe says now (`recheck_topup`). Automatic top-ups left by their job have
    their own (autotopup.resume_stuck). Returns how many were closed."""
    limit = older_than or timedelta(seconds=current_app.config["TOPUP_WAIT_LIMIT_SECONDS"])
    waited = notifications.time_left(limit)
    old = TopUp.created_at < datetime.now(timezone.utc) - limit
    ids = db.session.scalars(select(TopUp.id).where(
        old, TopUp.status.in_(WAITING_FOR_BUYER), TopUp.automatic.is_(False))
        .order_by(TopUp.id)).all()
    unconfirmed = db.session.scalars(select(TopUp.id).where(
        old, TopUp.status == TopUpStatus.PROCESSING).order_by(TopUp.id)).all()
    db.session.commit()
    done = 0
    for topup_id in [*ids, *unconfirmed]:
        topup = db.session.get(TopUp, topup_id)
        try:
            if topup.status in WAITING_FOR_BUYER:
                cancel_topup(topup, f"Expired: the payment was not completed within "
                                    f"{waited}, so it was cancelled and nothing was charged.",
                             abandoned=True)
            if topup.status is TopUpStatus.PROCESSING:
                recheck_topup(topup)
        except PaymentFailed as exc:  # Stripe did not answer: asked again on the next run
            db.session.rollback()
            log.warning("could not close abandoned top-up %s: %s", topup_id, exc.message)
            continue
        done += topup.status in (TopUpStatus.CANCELED, TopUpStatus.FAILED)
    return done


def recheck_topup(topup: TopUp) -> TopUp:
    """Follow a top-up Stripe has not confirmed to us to its PaymentIntent's state
    (commits): one cancelled or refused is closed; one Stripe is still collecting keeps
    waiting. One that succeeded keeps waiting too: the balance is credited only by the
    verified webhook (SPEC §5), which Stripe retries for days. Its lateness is logged
    for the operators, who can resend the event from Stripe's dashboard."""
    import stripe

    if not topup.payment_intent_id or topup.status in FINAL:
        return topup
    try:
        intent = _plain(client().v1.payment_intents.retrieve(topup.payment_intent_id))
    except stripe.StripeError as exc:
        raise PaymentFailed(_message(exc), details={"topup_id": topup.id}) from exc
    _locked(topup)
    if topup.status not in FINAL:
        if intent["status"] == "succeeded":
            log.warning("top-up %s: Stripe says %s succeeded, and its webhook has not "
                        "reached us", topup.id, topup.payment_intent_id)
        elif intent["status"] == "canceled":
            _on_intent_canceled(intent)
        else:
            _follow_intent(topup, intent)
    db.session.commit()
    return topup


def _follow_intent(topup: TopUp, intent) -> None:
    intent = _plain(intent)
    if topup.status in (TopUpStatus.SUCCEEDED, TopUpStatus.FAILED):
        return  # final: set by the webhook or by a refused card
    error = intent.get("last_payment_error")
    if intent["status"] == "requires_payment_method" and error:
        topup.status = TopUpStatus.FAILED
        topup.failure_message = error.get("message") or "The card was declined."
        return
    topup.status = INTENT_STATUSES.get(intent["status"], topup.status)


def _fail(topup: TopUp, message: str) -> None:
    import stripe

    if topup.status is not TopUpStatus.SUCCEEDED:
        topup.status = TopUpStatus.FAILED
        topup.failure_message = message
        _automatic_done(topup, message)
    db.session.commit()
    if topup.payment_intent_id:
        try:  # leave nothing chargeable behind at Stripe
            client().v1.payment_intents.cancel(topup.payment_intent_id)
        except stripe.StripeError:
            log.info("could not cancel %s after a failure", topup.payment_intent_id)


def _automatic_done(topup: TopUp, error: Optional[str] = None) -> None:
    """An automatic top-up reached its end: the next one may start. A failed one
    stops automatic top-ups until the buyer turns them on again, and says why on
    their balance page (retrying a refused card on every order would only be refused
    again)."""
    if not topup.automatic:
        return
    settings = db.session.get(AutoTopUp, topup.buyer_id)
    if settings is None or settings.pending_topup_id != topup.id:
        return
    settings.pending_topup_id = None
    if error:
        settings.enabled = False
        with reading_as(db.session.get(User, topup.buyer_id)):  # a job's, or a webhook's
            settings.last_error = (f"The automatic top-up of {format_money(topup.amount)} "
                                   f"failed: {error}")
        settings.last_error_at = datetime.now(timezone.utc)


def topups_for(buyer: User, limit: int = 50) -> list[TopUp]:
    return db.session.scalars(select(TopUp).where(TopUp.buyer_id == buyer.id)
                              .order_by(TopUp.id.desc()).limit(limit)).all()


def topup_of(buyer: User, topup_id: int) -> TopUp:
    topup = db.session.get(TopUp, topup_id)
    if topup is None or topup.buyer_id != buyer.id:
        raise NotFound("No such top-up.")
    return topup


# ---------------------------------------------------------------- webhook events

def handle_webhook(payload: bytes, signature: Optional[str]) -> str:
    """Verify and apply one event from Stripe; returns what was done. A replay of an
    event already applied changes nothing."""
    import stripe

    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise PaymentsNotConfigured("Stripe webhooks are not configured.")
    try:
        event = stripe.Webhook.construct_event(payload, signature or "", secret)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise InvalidWebhook("The Stripe signature does not verify.") from exc
    obj = _plain(event.data.object)
    try:
        with db.session.begin_nested():
            record = StripeEvent(id=event.id, type=event.type, object_id=obj.get("id") or "")
            db.session.add(record)
            db.session.flush()
            record.outcome = _apply_event(event.type, obj)
    except IntegrityError:
        db.session.rollback()
        return "duplicate"
    db.session.commit()
    log.info("stripe event %s %s: %s", event.id, event.type, record.outcome)
    return record.outcome


def _apply_event(kind: str, obj) -> str:
    handler = EVENT_HANDLERS.get(kind)
    return handler(obj) if handler else "ignored"


def _topup_for_intent(intent) -> Optional[TopUp]:
    topup = db.session.scalar(select(TopUp).where(TopUp.payment_intent_id == intent["id"]))
    if topup is None:
        # The intent was created but our job died before saving its id.
        topup_id = (intent.get("metadata") or {}).get("topup_id")
        if topup_id and str(topup_id).isdigit():
            topup = db.session.get(TopUp, int(topup_id))
            if topup is not None and topup.payment_intent_id in (None, intent["id"]):
                topup.payment_intent_id = intent["id"]
            else:
                topup = None
    return topup


def _on_intent_succeeded(intent) -> str:
    topup = _topup_for_intent(intent)
    if topup is None:
        return "unknown payment intent"
    if intent["currency"].upper() != topup.currency.upper():
        log.error("top-up %s paid in %s, expected %s", topup.id, intent["currency"], topup.currency)
        return "currency mismatch: not credited"
    received = int(intent.get("amount_received") or intent["amount"])
    buyer = db.session.get(User, topup.buyer_id)
    transaction = ledger.post(
        "topup",
        [Posting(ledger.account(AccountKind.PROCESSOR_CLEARING), -received),
         Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), received)],
        idempotency_key=f"topup:{topup.id}",
        memo=f"Card top-up {intent['id']}",
    )
    topup.amount = received
    topup.status = TopUpStatus.SUCCEEDED
    topup.failure_message = ""
    topup.ledger_transaction_id = transaction.id
    _automatic_done(topup)
    return f"credited {received} to buyer {buyer.id}"


def _on_intent_failed(intent) -> str:
    topup = _topup_for_intent(intent)
    if topup is None:
        return "unknown payment intent"
    if topup.status is not TopUpStatus.SUCCEEDED:
        topup.status = TopUpStatus.FAILED
        error = intent.get("last_payment_error") or {}
        topup.failure_message = error.get("message") or "The payment failed."
        _automatic_done(topup, topup.failure_message)
    return "marked failed"


def _on_intent_canceled(intent) -> str:
    topup = _topup_for_intent(intent)
    if topup is None:
        return "unknown payment intent"
    if topup.status not in (TopUpStatus.SUCCEEDED, TopUpStatus.FAILED):
        topup.status = TopUpStatus.CANCELED
        _automatic_done(topup, "The payment was canceled.")
    return "marked canceled"


def _on_intent_requires_action(intent) -> str:
    topup = _topup_for_intent(intent)
    if topup is None:
        return "unknown payment intent"
    _follow_intent(topup, intent)
    return "awaiting authentication"


def _on_refund_updated(refund) -> str:
    card_refund = db.session.scalar(
        select(CardRefund).where(CardRefund.stripe_refund_id == refund["id"]))
    if card_refund is None:
        return "unknown refund"
    if refund["status"] == "succeeded":
        card_refund.status = RefundStatus.SUCCEEDED
    elif refund["status"] in ("failed", "canceled"):
        _refund_refused(card_refund, refund.get("failure_reason") or refund["status"])
    return f"refund {refund['status']}"


def _on_transfer_reversed(transfer) -> str:
    payout = db.session.scalar(select(Payout).where(Payout.transfer_id == transfer["id"]))
    if payout is None:
        return "unknown transfer"
    _payout_refused(payout, "The transfer was reversed.")
    return "payout reversed"


def _on_account_updated(account) -> str:
    seller = db.session.scalar(select(User).where(User.stripe_account_id == account["id"]))
    if seller is None:
        return "unknown account"
    seller.payouts_enabled = bool(account.get("payouts_enabled"))
    return f"payouts enabled: {seller.payouts_enabled}"


EVENT_HANDLERS = {
    "payment_intent.succeeded": _on_intent_succeeded,
    "payment_intent.payment_failed": _on_intent_failed,
    "payment_intent.canceled": _on_intent_canceled,
    "payment_intent.requires_action": _on_intent_requires_action,
    "refund.updated": _on_refund_updated,
    "charge.refund.updated": _on_refund_updated,
    "transfer.reversed": _on_transfer_reversed,
    "account.updated": _on_account_updated,
}


# ---------------------------------------------------------------- withdrawals (buyers)

def refundable(buyer: User) -> int:
    """How much of the buyer's money can still go back to a card."""
    total = db.session.scalar(
        select(func.coalesce(func.sum(TopUp.amount - TopUp.refunded), 0))
        .where(TopUp.buyer_id == buyer.id, TopUp.status == TopUpStatus.SUCCEEDED))
    return min(int(total), ledger.balance_for(buyer).available)


def withdraw(buyer: User, amount: int) -> Withdrawal:
    """Send unspent money back to the cards it came from, newest top-up first."""
    accounts.require_verified_email(buyer)
    _require_configured()
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed("Enter an amount above zero.", code="invalid_amount",
                               details={"field": "amount"})
    limit = refundable(buyer)
    if amount > limit:
        raise ValidationFailed(
            f"At most {format_money(limit)} can go back to your cards now: money still "
            "held for orders, or credited by bank transfer, cannot be refunded to a card.",
            code="exceeds_refundable", details={"field": "amount", "refundable": limit})
    withdrawal = Withdrawal(buyer_id=buyer.id, amount=amount)
    db.session.add(withdrawal)
    db.session.flush()
    withdrawal.ledger_transaction_id = ledger.post(
        "withdrawal",
        [Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), -amount),
         Posting(ledger.account(AccountKind.PROCESSOR_CLEARING), amount)],
        idempotency_key=f"withdrawal:{withdrawal.id}",
        memo="Refund to card",
    ).id
    remaining = amount
    sources = db.session.scalars(
        select(TopUp).where(TopUp.buyer_id == buyer.id, TopUp.status == TopUpStatus.SUCCEEDED,
                            TopUp.refunded < TopUp.amount)
        .order_by(TopUp.id.desc())).all()
    for topup in sources:
        part = min(remaining, topup.amount - topup.refunded)
        # Conditional, so two withdrawals at once cannot refund one top-up twice over.
        moved = db.session.execute(
            update(TopUp).where(TopUp.id == topup.id, TopUp.refunded + part <= TopUp.amount)
            .values(refunded=TopUp.refunded + part)
            .execution_options(synchronize_session=False)).rowcount
        if moved:
            db.session.add(CardRefund(withdrawal=withdrawal, topup_id=topup.id, amount=part))
            remaining -= part
        if remaining == 0:
            break
    if remaining:
        db.session.rollback()
        raise ValidationFailed("Another withdrawal took this money first; try again.",
                               code="exceeds_refundable")
    audit.record("balance.withdrawn", actor=buyer, subject_type="withdrawal",
                 subject_id=withdrawal.id,
                 details={"amount": amount, "cards": len(withdrawal.refunds)})
    db.session.commit()
    for card_refund in withdrawal.refunds:
        send_refund(card_refund)
    return withdrawal


def send_refund(card_refund: CardRefund) -> None:
    """Ask Stripe for one refund (again, after a crash: the key makes it one refund)."""
    import stripe

    topup = db.session.get(TopUp, card_refund.topup_id)
    try:
        refund = client().v1.refunds.create(
            params={"payment_intent": topup.payment_intent_id, "amount": card_refund.amount,
                    "metadata": {"withdrawal_id": str(card_refund.withdrawal_id)}},
            options={"idempotency_key": f"refund:{card_refund.id}"},
        )
    except stripe.StripeError as exc:
        _refund_refused(card_refund, _message(exc))
        db.session.commit()
        return
    card_refund.stripe_refund_id = refund.id
    if refund.status == "succeeded":
        card_refund.status = RefundStatus.SUCCEEDED
    elif refund.status in ("failed", "canceled"):
        _refund_refused(card_refund, _plain(refund).get("failure_reason") or refund.status)
    db.session.commit()


def _refund_refused(card_refund: CardRefund, message: str) -> None:
    if card_refund.status is RefundStatus.FAILED:
        return
    card_refund.status = RefundStatus.FAILED
    card_refund.failure_message = message
    buyer = db.session.get(User, card_refund.withdrawal.buyer_id)
    _back_from_processor("withdrawal_reversal", ledger.account(AccountKind.BUYER_AVAILABLE, buyer),
                         card_refund.amount, key=f"refund-failed:{card_refund.id}",
                         memo=f"Refund to card refused: {message}")
    db.session.execute(update(TopUp).where(TopUp.id == card_refund.topup_id)
                       .values(refunded=TopUp.refunded - card_refund.amount)
                       .execution_options(synchronize_session=False))


def withdrawals_for(buyer: User, limit: int = 50) -> list[Withdrawal]:
    return db.session.scalars(select(Withdrawal).where(Withdrawal.buyer_id == buyer.id)
                              .order_by(Withdrawal.id.desc()).limit(limit)).all()


# ---------------------------------------------------------------- payouts (sellers)

class Connect(Protocol):
    """Stripe Connect as payouts need it. localstripe has no Connect, so local runs and
    tests use `SimulatedConnect` behind the same interface (STRIPE_CONNECT=simulated)."""

    def create_account(self, seller: User) -> str: ...
    def onboarding_url(self, account_id: str, return_url: str, refresh_url: str) -> str: ...
    def payouts_enabled(self, account_id: str) -> bool: ...
    def transfer(self, account_id: str, amount: int, currency: str, key: str,
                 metadata: dict) -> str: ...


class StripeConnect:
    def create_account(self, seller: User) -> str:
        account = client().v1.accounts.create(
            params={"type": "express", "email": seller.email,
                    "capabilities": {"transfers": {"requested": True}},
                    "metadata": {"user_id": str(seller.id)}},
            options={"idempotency_key": f"connect-account:{seller.id}"})
        return account.id

    def onboarding_url(self, account_id: str, return_url: str, refresh_url: str) -> str:
        link = client().v1.account_links.create(params={
            "account": account_id, "type": "account_onboarding",
            "return_url": return_url, "refresh_url": refresh_url})
        return link.url

    def payouts_enabled(self, account_id: str) -> bool:
        return bool(_plain(client().v1.accounts.retrieve(account_id)).get("payouts_enabled"))

    def transfer(self, account_id, amount, currency, key, metadata) -> str:
        transfer = client().v1.transfers.create(
            params={"amount": amount, "currency": currency, "destination": account_id,
                    "metadata": metadata},
            options={"idempotency_key": key})
        return transfer.id


class SimulatedConnect:
    """Connect for local test servers that lack it: accounts are ready at once and a
    transfer is remembered by its idempotency key, as Stripe does, so a retried key
    returns the first transfer. It moves no money anywhere."""

    def __init__(self):
        self.transfers: dict[str, dict] = {}
        self.calls = 0
        self.refuse_next: Optional[str] = None  # a message: the next transfer is refused

    def create_account(self, seller: User) -> str:
        return f"acct_sim_{seller.id}"

    def onboarding_url(self, account_id: str, return_url: str, refresh_url: str) -> str:
        return return_url

    def payouts_enabled(self, account_id: str) -> bool:
        return True

    def transfer(self, account_id, amount, currency, key, metadata) -> str:
        import stripe

        self.calls += 1
        if key in self.transfers:
            return self.transfers[key]["id"]
        if self.refuse_next:
            message, self.refuse_next = self.refuse_next, None
            raise stripe.InvalidRequestError(message, param="destination")
        transfer = {"id": f"tr_sim_{len(self.transfers) + 1}", "amount": amount,
                    "currency": currency, "destination": account_id, "metadata": metadata}
        self.transfers[key] = transfer
        return transfer["id"]


def connect() -> Connect:
    app = current_app._get_current_object()
    if "stripe_connect" not in app.extensions:
        app.extensions["stripe_connect"] = (
            SimulatedConnect() if app.config.get("STRIPE_CONNECT") == "simulated"
            else StripeConnect())
    return app.extensions["stripe_connect"]


def onboarding_url(seller: User, return_url: str, refresh_url: str) -> str:
    """Where the seller goes to connect (or finish connecting) a Stripe account."""
    _require_configured()
    if not seller.stripe_account_id:
        seller.stripe_account_id = connect().create_account(seller)
        audit.record("payouts.account_created", actor=seller, subject_type="user",
                     subject_id=seller.id, details={"account": seller.stripe_account_id})
        db.session.commit()
    return connect().onboarding_url(seller.stripe_account_id, return_url, refresh_url)


def refresh_payout_account(seller: User) -> bool:
    if seller.stripe_account_id:
        seller.payouts_enabled = connect().payouts_enabled(seller.stripe_account_id)
        db.session.commit()
    return seller.payouts_enabled


def run_payouts(today: date, actor: Optional[User] = None) -> list[Payout]:
    """Pay every connected seller their cleared earnings, once per day; then retry
    the transfers an earlier run left unconfirmed."""
    _require_configured()
    minimum = current_app.config["PAYOUT_MINIMUM"]
    sellers = db.session.scalars(
        select(User).where(User.role == Role.SELLER, User.payouts_enabled.is_(True),
                           User.stripe_account_id.is_not(None),
                           User.trust_level != TrustLevel.SUSPENDED)
        .order_by(User.id)).all()
    started = []
    for seller in sellers:
        recover_debt(seller)  # returned sales come out of this payout first
        available = ledger.balance_for(seller).available
        if available < minimum:
            continue
        payout = Payout(seller_id=seller.id, period=today, amount=available,
                        currency=ledger.currency(), destination=seller.stripe_account_id)
        try:
            with db.session.begin_nested():
                db.session.add(payout)
                db.session.flush()
                payout.ledger_transaction_id = ledger.post(
                    "payout",
                    [Posting(ledger.account(AccountKind.SELLER_AVAILABLE, seller), -available),
                     Posting(ledger.account(AccountKind.PROCESSOR_CLEARING), available)],
                    idempotency_key=payout.idempotency_key,
                    memo=f"Payout to {seller.stripe_account_id}",
                    actor=actor,
                ).id
        except IntegrityError:
            continue  # already paid out today (this run's twin got there first)
        except DomainError as exc:  # the balance moved meanwhile; next run pays it
            log.info("payout for seller %s skipped: %s", seller.id, exc)
            continue
        db.session.commit()
        started.append(payout.id)
    pending = db.session.scalars(select(Payout).where(Payout.status == PayoutStatus.PENDING)
                                 .order_by(Payout.id)).all()
    for payout in pending:
        send_transfer(payout)
    if actor is not None:
        audit.record("payouts.run", actor=actor, details={"payouts": started})
        db.session.commit()
    return [db.session.get(Payout, payout_id) for payout_id in started]


def send_transfer(payout: Payout) -> None:
    import stripe

    try:
        payout.transfer_id = connect().transfer(
            payout.destination, payout.amount, payout.currency.lower(), payout.idempotency_key,
            {"payout_id": str(payout.id), "seller_id": str(payout.seller_id)})
    except stripe.StripeError as exc:
        _payout_refused(payout, _message(exc))
    else:
        payout.status = PayoutStatus.PAID
        notifications.payout_sent(payout)
    db.session.commit()


def _payout_refused(payout: Payout, message: str) -> None:
    if payout.status is PayoutStatus.FAILED:
        return
    payout.status = PayoutStatus.FAILED
    payout.failure_message = message
    seller = db.session.get(User, payout.seller_id)
    _back_from_processor("payout_reversal", ledger.account(AccountKind.SELLER_AVAILABLE, seller),
                         payout.amount, key=f"payout-failed:{payout.id}",
                         memo=f"Payout refused: {message}")


def _back_from_processor(kind: str, account, amount: int, *, key: str, memo: str) -> None:
    """Stripe refused to send money out: it goes back to the account it left."""
    ledger.post(kind, [Posting(ledger.account(AccountKind.PROCESSOR_CLEARING), -amount),
                       Posting(account, amount)], idempotency_key=key, memo=memo[:500])


def payouts_for(seller: User, limit: int = 50) -> list[Payout]:
    return db.session.scalars(select(Payout).where(Payout.seller_id == seller.id)
                              .order_by(Payout.id.desc()).limit(limit)).all()


def retry_unfinished(older_than_seconds: int = 300) -> int:
    """Refunds and transfers a crashed job left unconfirmed: ask again, same keys."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than_seconds)
    refunds = db.session.scalars(select(CardRefund).where(
        CardRefund.status == RefundStatus.PENDING, CardRefund.stripe_refund_id.is_(None),
        CardRefund.created_at < cutoff)).all()
    for card_refund in refunds:
        send_refund(card_refund)
    payouts = db.session.scalars(select(Payout).where(
        Payout.status == PayoutStatus.PENDING, Payout.created_at < cutoff)).all()
    for payout in payouts:
        send_transfer(payout)
    return len(refunds) + len(payouts)


# ---------------------------------------------------------------- reconciliation

@dataclass(frozen=True)
class ProcessorReconciliation:
    clearing_balance: int  # the ledger's processor-clearing account
    captured: int  # top-ups Stripe confirmed by webhook
    refunded: int  # refunds Stripe confirmed
    refunds_in_flight: int
    paid_out: int  # transfers Stripe confirmed
    payouts_in_flight: int

    @property
    def expected_clearing(self) -> int:
        return -self.captured + self.refunded + self.refunds_in_flight + self.paid_out \
            + self.payouts_in_flight

    @property
    def difference(self) -> int:
        return self.clearing_balance - self.expected_clearing

    @property
    def held_at_stripe(self) -> int:
        """What Stripe should hold for us before its fees."""
        return self.captured - self.refunded - self.paid_out


def _sum(column, *where) -> int:
    return int(db.session.scalar(select(func.coalesce(func.sum(column), 0)).where(*where)))


def reconciliation() -> ProcessorReconciliation:
    return ProcessorReconciliation(
        clearing_balance=ledger.system_balance(AccountKind.PROCESSOR_CLEARING),
        captured=_sum(TopUp.amount, TopUp.status == TopUpStatus.SUCCEEDED),
        refunded=_sum(CardRefund.amount, CardRefund.status == RefundStatus.SUCCEEDED),
        refunds_in_flight=_sum(CardRefund.amount, CardRefund.status == RefundStatus.PENDING),
        paid_out=_sum(Payout.amount, Payout.status == PayoutStatus.PAID),
        payouts_in_flight=_sum(Payout.amount, Payout.status == PayoutStatus.PENDING),
    )



def stripe_balance_transactions(limit: int = 1000) -> dict[str, int]:
    """Stripe's own record: balance transactions summed by type (gross amounts)."""
    totals: dict[str, int] = {}
    page = client().v1.balance_transactions.list(params={"limit": 100})
    for count, item in enumerate(page.auto_paging_iter()):
        if count >= limit:
            break
        totals[item.type] = totals.get(item.type, 0) + int(item.amount)
    return totals
