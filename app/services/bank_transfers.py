"""Operations (they flush; callers commit): funding a buyer's balance by bank
transfer (SPEC §5, issue 16).

A buyer pays into the exchange's bank account (its details come from configuration)
quoting their reference; an admin reads the bank statement and records each incoming
transfer against that reference. The reference is derived from the buyer's id, so it
is stable and unique, and carries two check digits (ISO 7064 MOD 97-10, as in an
IBAN): every single mistyped character and every swap of two neighbours is caught
before any money moves. `O` and `I`/`L` typed for `0` and `1` are read as digits.

Each transfer is one balanced ledger transaction (manual clearing, which mirrors the
bank account, to the buyer's available balance), keyed by the bank's own transaction
id: recording the same bank line twice is refused, and a retry cannot credit twice.
"""
import re
from datetime import date, timedelta
from typing import Optional

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, ValidationFailed
from app.extensions import db
from app.models import AccountKind, BankTransfer, Role, User
from app.services import audit, ledger
from app.services.ledger import Posting

PREFIX = "LX"
_DIGITS = 6  # at least; ids beyond a million simply get longer references
_SHAPE = re.compile(rf"{PREFIX}([0-9]{{{_DIGITS},12}})([0-9]{{2}})")
# Characters people type for the digits they resemble, and separators banks add.
_LOOKALIKES = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1"})
_SEPARATORS = re.compile(r"[\s\-./_:]+")


class UnknownReference(ValidationFailed):
    code = "unknown_reference"


class DuplicateTransfer(Conflict):
    code = "duplicate_transfer"


def _mod97(text: str) -> int:
    """ISO 7064 MOD 97-10 over letters (A=10 … Z=35) and digits, as IBANs do."""
    return int("".join(str(int(ch, 36)) for ch in text)) % 97


def reference_for(buyer: User) -> str:
    """The buyer's bank transfer reference, e.g. LX-000042-68."""
    body = f"{buyer.id:0{_DIGITS}d}"
    check = 98 - _mod97(f"{PREFIX}{body}00")
    return f"{PREFIX}-{body}-{check:02d}"


def parse_reference(text: str) -> int:
    """The buyer id a reference names, or UnknownReference saying what is wrong."""
    raw = (text or "").strip()
    compact = _SEPARATORS.sub("", raw.upper())
    if compact.startswith(PREFIX):
        compact = PREFIX + compact[len(PREFIX):].translate(_LOOKALIKES)
    match = _SHAPE.fullmatch(compact)
    if match is None:
        raise UnknownReference(
            f"“{raw[:40]}” is not a buyer reference: they read like {PREFIX}-000042-68.",
            details={"field": "reference"})
    if _mod97(compact) != 1:
        raise UnknownReference(
            f"The check digits of “{raw[:40]}” do not match: a character is mistyped or "
            "two are swapped. Compare it with the bank statement.",
            details={"field": "reference"})
    return int(match.group(1))


def buyer_for_reference(text: str) -> User:
    buyer_id = parse_reference(text)
    buyer = db.session.get(User, buyer_id)
    if buyer is None or buyer.role is not Role.BUYER:
        raise UnknownReference(f"No buyer has the reference {text.strip()[:40]}.",
                               details={"field": "reference"})
    return buyer


def bank_details() -> Optional[dict[str, str]]:
    """Where buyers send transfers (BANK_* settings), or None when not configured."""
    config = current_app.config
    if not (config.get("BANK_IBAN") or config.get("BANK_ACCOUNT_NUMBER")):
        return None
    fields = {"account_name": "BANK_ACCOUNT_NAME", "bank_name": "BANK_NAME",
              "iban": "BANK_IBAN", "bic": "BANK_BIC", "account_number": "BANK_ACCOUNT_NUMBER",
              "routing_number": "BANK_ROUTING_NUMBER"}
    return {key: config[name] for key, name in fields.items() if config.get(name)}


def _existing(bank_transaction_id: str) -> Optional[BankTransfer]:
    return db.session.scalar(select(BankTransfer).where(
        BankTransfer.bank_transaction_id == bank_transaction_id))


def _duplicate(found: BankTransfer) -> DuplicateTransfer:
    return DuplicateTransfer(
        f"Bank transaction {found.bank_transaction_id} was already recorded on "
        f"{found.created_at:%Y-%m-%d} ({found.reference}); nothing was credited again.",
        details={"bank_transfer_id": found.id, "field": "bank_transaction_id"})


def bank_line(bank_transaction_id: str, amount: int, day: date, *, field: str,
              future: str) -> str:
    """The bank's transaction id of a line of the exchange's bank statement (a
    transfer in or a payout out), stripped, once the line is checked: an id, an
    amount above zero, a day not in the future (`future` says so, about `field`)."""
    bank_id = (bank_transaction_id or "").strip()
    if not bank_id or len(bank_id) > 100:
        raise ValidationFailed("Enter the bank's transaction id (at most 100 characters).",
                               code="bank_transaction_id_required",
                               details={"field": "bank_transaction_id"})
    if type(amount) is not int or not 0 < amount <= ledger.MAX_AMOUNT:
        raise ValidationFailed("The amount must be above zero.", code="invalid_amount",
                               details={"field": "amount"})
    if day > date.today() + timedelta(days=1):
        raise ValidationFailed(future, code="invalid_date", details={"field": field})
    return bank_id


def record_transfer(*, reference: str, amount: int, received_on: date,
                    bank_transaction_id: str, actor: User, note: str = "") -> BankTransfer:
    """Credit the buyer named by `reference` with a transfer the bank received:
    one ledger transaction, audited. Refuses a wrong reference and a bank
    transaction id recorded before (DuplicateTransfer)."""
    bank_id = bank_line(bank_transaction_id, amount, received_on, field="received_on",
                        future="A transfer cannot have been received in the future.")
    buyer = buyer_for_reference(reference)
    found = _existing(bank_id)
    if found is not None:
        raise _duplicate(found)
    canonical = reference_for(buyer)
    try:
        with db.session.begin_nested():
            transaction = ledger.post(
                "bank_transfer",
                [Posting(ledger.account(AccountKind.MANUAL_CLEARING), -amount),
                 Posting(ledger.account(AccountKind.BUYER_AVAILABLE, buyer), amount)],
                idempotency_key=f"bank-transfer:{bank_id}",
                memo=f"Bank transfer {bank_id} ({canonical})",
                actor=actor)
            transfer = BankTransfer(
                buyer_id=buyer.id, reference=canonical, amount=amount,
                currency=ledger.currency(), received_on=received_on,
                bank_transaction_id=bank_id, note=(note or "").strip()[:2000],
                recorded_by_id=actor.id, ledger_transaction_id=transaction.id)
            db.session.add(transfer)
            db.session.flush()
    except IntegrityError:
        # Recorded meanwhile by another admin (or a double submit): that one stands.
        found = _existing(bank_id)
        if found is None:
            raise
        raise _duplicate(found) from None
    audit.record("ledger.bank_transfer", actor=actor, subject_type="user", subject_id=buyer.id,
                 details={"amount": amount, "reference": canonical,
                          "bank_transaction_id": bank_id, "received_on": received_on.isoformat(),
                          "transaction_id": transaction.id, "bank_transfer_id": transfer.id})
    return transfer


def transfers_for(buyer: User, limit: int = 20) -> list[BankTransfer]:
    return db.session.scalars(select(BankTransfer).where(BankTransfer.buyer_id == buyer.id)
                              .order_by(BankTransfer.id.desc()).limit(limit)).all()


def recent_transfers(limit: int = 50) -> list[BankTransfer]:
    return db.session.scalars(select(BankTransfer).order_by(BankTransfer.id.desc())
                              .limit(limit)).all()
