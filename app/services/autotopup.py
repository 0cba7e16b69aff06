"""A buyer's automatic top-up (SPEC §5, issue 16): a card saved with a Stripe
SetupIntent is charged off-session when the available balance falls below the
threshold the buyer set.

Jobs and settings that talk to Stripe, so, like `payments`, they own their commits.
Nothing here runs from a view: `ledger.post` records `BuyerFundsLowered` when a
buyer's available balance goes down, and once that transaction commits app/tasks.py
runs `check` for the buyer. `check` starts at most one automatic top-up at a time (a
conditional UPDATE claims the buyer's settings row for the new top-up in the same
commit that creates it), with the same idempotency keys as any top-up; the webhook
credits it and frees the claim. A refused card stops automatic top-ups and says why
on the buyer's balance page until they turn them on again.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Optional

from flask import current_app
from sqlalchemy import select, update

from app.errors import Conflict, DomainError, ValidationFailed
from app.extensions import db
from app.models import AccountKind, AutoTopUp, LedgerAccount, TopUp, TopUpStatus, User
from app.models.types import utcnow
from app.services import audit, ledger, payments

log = logging.getLogger(__name__)


class AlreadyInFlight(Conflict):
    code = "auto_topup_in_flight"


def settings_for(buyer: User) -> Optional[AutoTopUp]:
    return db.session.get(AutoTopUp, buyer.id)


def check_terms(threshold: int, amount: int) -> None:
    """The threshold may be zero (top up only when empty); the amount is a top-up."""
    if type(threshold) is not int or not 0 <= threshold <= current_app.config["TOPUP_MAXIMUM"]:
        raise ValidationFailed("The threshold must be an amount from zero up.",
                               code="invalid_threshold", details={"field": "threshold"})
    payments.check_topup_amount(amount)


def start_card_setup(buyer: User) -> str:
    """A SetupIntent for the buyer's Customer; Stripe.js confirms it with the card in
    the browser. Returns its client secret."""
    payments._require_configured()
    if not buyer.is_buyer:
        raise ValidationFailed("Only buyers top up a balance.", code="not_a_buyer")
    customer = payments.ensure_customer(buyer)
    intent = payments.client().v1.setup_intents.create(params={
        "customer": customer, "usage": "off_session", "payment_method_types": ["card"],
        "metadata": {"buyer_id": str(buyer.id), "purpose": "auto_topup"}})
    return intent.client_secret


def _card_label(payment_method: dict) -> str:
    card = payment_method.get("card") or {}
    brand, last4 = card.get("brand") or "card", card.get("last4") or "????"
    return f"{brand} •••• {last4}"


def save(buyer: User, *, setup_intent_id: str, threshold: int, amount: int) -> AutoTopUp:
    """Turn automatic top-up on with the card the buyer just saved: the SetupIntent
    is read back from Stripe (it must be the buyer's and have succeeded)."""
    import stripe

    check_terms(threshold, amount)
    customer = payments.ensure_customer(buyer)
    api = payments.client().v1
    try:
        intent = payments._plain(api.setup_intents.retrieve(setup_intent_id))
    except stripe.StripeError as exc:
        raise ValidationFailed("Stripe does not know this card setup.",
                               code="invalid_setup") from exc
    if intent.get("customer") != customer or intent.get("status") != "succeeded" \
            or not intent.get("payment_method"):
        raise ValidationFailed("The card was not saved; enter it again.", code="invalid_setup")
    method_id = intent["payment_method"]
    try:
        method = payments._plain(api.payment_methods.retrieve(method_id))
        if method.get("customer") is None:  # Stripe attaches it; some test servers do not
            method = payments._plain(api.payment_methods.attach(
                method_id, params={"customer": customer},
                options={"idempotency_key": f"attach:{method_id}:{customer}"}))
    except stripe.CardError as exc:
        raise payments.PaymentFailed(payments._message(exc), code="card_declined") from exc
    settings = settings_for(buyer) or AutoTopUp(buyer_id=buyer.id, pending_topup_id=None)
    settings.threshold, settings.amount, settings.enabled = threshold, amount, True
    settings.payment_method_id, settings.setup_intent_id = method_id, setup_intent_id
    settings.card_label = _card_label(method)
    settings.last_error, settings.last_error_at = "", None
    db.session.add(settings)
    audit.record("autotopup.card_saved", actor=buyer, subject_type="user", subject_id=buyer.id,
                 details={"card": settings.card_label, "threshold": threshold, "amount": amount})
    db.session.commit()
    return settings


def change(buyer: User, *, threshold: int, amount: int, enabled: bool) -> AutoTopUp:
    """New terms for the saved card, or on/off (turning on again clears the last error)."""
    settings = settings_for(buyer)
    if settings is None or not settings.payment_method_id:
        raise ValidationFailed("Save a card for automatic top-ups first.", code="no_card")
    check_terms(threshold, amount)
    settings.threshold, settings.amount = threshold, amount
    if enabled and not settings.enabled:
        settings.last_error, settings.last_error_at = "", None
    settings.enabled = enabled
    audit.record("autotopup.changed", actor=buyer, subject_type="user", subject_id=buyer.id,
                 details={"threshold": threshold, "amount": amount, "enabled": enabled})
    db.session.commit()
    return settings


def check(account_id: int) -> Optional[TopUp]:
    """The job after a buyer's available balance went down: if it is now below their
    threshold, charge the saved card (one automatic top-up in flight at a time).
    Returns the top-up started, if any."""
    account = db.session.get(LedgerAccount, account_id)
    if account is None or account.kind is not AccountKind.BUYER_AVAILABLE:
        return None
    settings = db.session.get(AutoTopUp, account.user_id)
    if settings is None or not settings.enabled or settings.pending_topup_id is not None \
            or not settings.payment_method_id or not payments.configured():
        return None
    buyer = db.session.get(User, account.user_id)
    if ledger.balance_for(buyer).available >= settings.threshold:
        return None

    def claim(topup: TopUp) -> None:
        claimed = db.session.execute(
            update(AutoTopUp).where(AutoTopUp.buyer_id == buyer.id, AutoTopUp.enabled.is_(True),
                                    AutoTopUp.pending_topup_id.is_(None))
            .values(pending_topup_id=topup.id)
            .execution_options(synchronize_session=False)).rowcount
        if claimed != 1:
            raise AlreadyInFlight("An automatic top-up is already under way.")

    try:
        started = payments.start_topup(buyer, settings.amount, settings.payment_method_id,
                                       automatic=True, claim=claim)
    except AlreadyInFlight:
        db.session.rollback()
        return None
    except DomainError as exc:  # refused: the top-up and the settings say so
        db.session.rollback()
        log.info("automatic top-up for buyer %s failed: %s", buyer.id, exc.message)
        return db.session.scalar(select(TopUp).where(TopUp.buyer_id == buyer.id,
                                                     TopUp.automatic.is_(True))
                                 .order_by(TopUp.id.desc()))
    return _unattended(started.topup)


def _unattended(topup: TopUp) -> TopUp:
    if topup.status is TopUpStatus.REQUIRES_ACTION:
        # Nobody is there to authenticate an off-session charge.
        payments._fail(topup, "your bank asks you to confirm each payment, which an "
                              "automatic top-up cannot do. Top up by hand, or save a card "
                              "that does not ask every time.")
    return topup


def resume_stuck(older_than_seconds: int = 300) -> int:
    """The periodic job for automatic top-ups a crashed job left claimed but never
    charged (no PaymentIntent yet, or one never confirmed): without it the claim would
    stay and no automatic top-up would ever start again for that buyer. Each is
    finished with the keys the dead job used (payments.resume_topup)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    stuck = db.session.execute(
        select(AutoTopUp.payment_method_id, TopUp)
        .join(TopUp, TopUp.id == AutoTopUp.pending_topup_id)
        .where(TopUp.created_at < cutoff,
               TopUp.status.in_((TopUpStatus.CREATED, TopUpStatus.REQUIRES_PAYMENT_METHOD)))
        .order_by(TopUp.id)).all()
    db.session.commit()
    for payment_method, topup in stuck:
        try:
            _unattended(payments.resume_topup(topup, payment_method, off_session=True))
        except DomainError as exc:  # refused: the top-up and the settings say so
            db.session.rollback()
            log.info("automatic top-up %s failed on resuming: %s", topup.id, exc.message)
    return len(stuck)
