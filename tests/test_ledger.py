import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.errors import InsufficientFunds, ValidationFailed
from app.extensions import db
from app.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction
from app.services import ledger
from app.services.ledger import Posting, UnbalancedTransaction


def _count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def _fund(buyer, amount=10_000):
    ledger.manual_credit(buyer, amount, reason="wire", actor=None)
    db.session.commit()


def test_manual_credit_moves_money_from_clearing_to_buyer(buyer):
    _fund(buyer, 12_345)
    balance = ledger.balance_for(buyer)
    assert (balance.available, balance.held, balance.pending) == (12_345, 0, 0)
    assert ledger.balance_of(ledger.account(AccountKind.MANUAL_CLEARING)) == -12_345
    assert ledger.reconcile().ok


def test_unbalanced_transaction_is_refused(buyer):
    available = ledger.account(AccountKind.BUYER_AVAILABLE, buyer)
    clearing = ledger.account(AccountKind.MANUAL_CLEARING)
    with pytest.raises(UnbalancedTransaction):
        ledger.post("test", [Posting(clearing, -100), Posting(available, 99)])
    assert _count(LedgerTransaction) == 0


@pytest.mark.parametrize("amount", [1.5, 100.0, True, 0])
def test_amounts_must_be_nonzero_integers(buyer, amount):
    available = ledger.account(AccountKind.BUYER_AVAILABLE, buyer)
    clearing = ledger.account(AccountKind.MANUAL_CLEARING)
    with pytest.raises(UnbalancedTransaction):
        ledger.post("test", [Posting(clearing, -amount), Posting(available, amount)])


def test_available_balance_never_goes_negative_and_nothing_half_applies(buyer):
    _fund(buyer, 1_000)
    available = ledger.account(AccountKind.BUYER_AVAILABLE, buyer)
    held = ledger.account(AccountKind.BUYER_HELD, buyer)
    transactions_before = _count(LedgerTransaction)
    with pytest.raises(InsufficientFunds):
        ledger.post("hold", [Posting(held, 1_001), Posting(available, -1_001)])
    db.session.commit()  # the refused movement left nothing to commit
    assert ledger.balance_for(buyer).available == 1_000
    assert ledger.balance_for(buyer).held == 0
    assert _count(LedgerTransaction) == transactions_before
    ledger.post("hold", [Posting(held, 1_000), Posting(available, -1_000)])
    db.session.commit()
    assert (ledger.balance_for(buyer).available, ledger.balance_for(buyer).held) == (0, 1_000)
    assert ledger.reconcile().ok


def test_database_check_constraint_backs_the_rule(buyer):
    account = ledger.account(AccountKind.BUYER_AVAILABLE, buyer)
    db.session.commit()
    with pytest.raises(IntegrityError):
        db.session.execute(
            sa.update(LedgerAccount).where(LedgerAccount.id == account.id).values(balance=-1)
        )
        db.session.flush()
    db.session.rollback()


def test_idempotency_key_applies_a_movement_once(buyer):
    first = ledger.manual_credit(buyer, 500, reason="wire", actor=None, idempotency_key="wire:1")
    again = ledger.manual_credit(buyer, 500, reason="wire", actor=None, idempotency_key="wire:1")
    db.session.commit()
    assert first.id == again.id
    assert ledger.balance_for(buyer).available == 500
    assert _count(LedgerEntry) == 2


def test_reconcile_detects_a_tampered_balance_and_an_unbalanced_entry(buyer):
    _fund(buyer, 700)
    assert ledger.reconcile().ok
    account = ledger.account(AccountKind.BUYER_AVAILABLE, buyer)
    db.session.execute(
        sa.update(LedgerAccount).where(LedgerAccount.id == account.id).values(balance=800)
    )
    result = ledger.reconcile()
    assert not result.ok
    assert result.mismatched_accounts == [(account.key, 800, 700)]
    db.session.rollback()
    txn_id = db.session.scalar(sa.select(LedgerTransaction.id))
    db.session.add(LedgerEntry(transaction_id=txn_id, account_id=account.id, amount=5))
    db.session.flush()
    result = ledger.reconcile()
    assert result.unbalanced_transactions == [txn_id] and result.ledger_total == 5
    db.session.rollback()


def test_manual_credit_validation(buyer, seller):
    with pytest.raises(ValidationFailed, match="Only buyers"):
        ledger.manual_credit(seller, 100, reason="x", actor=None)
    with pytest.raises(ValidationFailed, match="from 1 to"):
        ledger.manual_credit(buyer, -5, reason="x", actor=None)
    with pytest.raises(ValidationFailed, match="reason"):
        ledger.manual_credit(buyer, 5, reason="  ", actor=None)


def test_accounts_have_one_owner_per_kind(buyer):
    assert ledger.account(AccountKind.BUYER_AVAILABLE, buyer).id == \
        ledger.account(AccountKind.BUYER_AVAILABLE, buyer).id
    with pytest.raises(ValueError):
        ledger.account(AccountKind.BUYER_AVAILABLE)
    with pytest.raises(ValueError):
        ledger.account(AccountKind.PLATFORM_COMMISSION, buyer)


def test_statement_lists_the_users_movements(buyer):
    _fund(buyer, 300)
    rows = ledger.statement_for(buyer)
    assert [(r["kind"], r["account"], r["amount"], r["memo"]) for r in rows] == [
        ("manual_credit", "buyer_available", 300, "wire")
    ]


def test_amounts_beyond_the_ledgers_range_are_refused_not_overflowed(buyer):
    from app.services.ledger import MAX_AMOUNT, AmountOutOfRange

    with pytest.raises(ValidationFailed):
        ledger.manual_credit(buyer, MAX_AMOUNT + 1, reason="typo", actor=None)
    for _ in range(ledger.MAX_BALANCE // MAX_AMOUNT + 2):  # until the balance would overflow
        try:
            ledger.manual_credit(buyer, MAX_AMOUNT, reason="big wire", actor=None)
        except AmountOutOfRange:
            break
    else:
        pytest.fail("the balance bound was never reached")
    db.session.commit()
    assert type(ledger.balance_for(buyer).available) is int
    assert ledger.balance_for(buyer).available <= ledger.MAX_BALANCE
    assert ledger.reconcile().ok


def _refs(buyer):
    return (ledger.AccountRef.of(ledger.account(AccountKind.BUYER_AVAILABLE, buyer)),
            ledger.AccountRef.of(ledger.account(AccountKind.BUYER_HELD, buyer)))


def test_post_many_applies_balanced_transactions_at_once(buyer):
    from app.models.types import utcnow

    _fund(buyer, 1_000)
    available, held = _refs(buyer)
    before = _count(LedgerTransaction)
    ids = ledger.post_many([
        ledger.Movement("order_hold", [Posting(available, -300), Posting(held, 300)], "k1"),
        ledger.Movement("order_hold", [Posting(available, -200), Posting(held, 200)], "k2"),
    ], utcnow())
    db.session.commit()
    assert len(ids) == 2 and _count(LedgerTransaction) == before + 2
    balance = ledger.balance_for(buyer)
    assert (balance.available, balance.held) == (500, 500)
    assert ledger.reconcile().ok


def test_post_many_refuses_what_post_refuses_and_applies_nothing(buyer):
    from app.models.types import utcnow

    _fund(buyer, 1_000)
    available, held = _refs(buyer)
    with pytest.raises(UnbalancedTransaction):
        ledger.post_many([ledger.Movement("x", [Posting(available, -1), Posting(held, 2)])],
                         utcnow())
    before = _count(LedgerTransaction)
    with pytest.raises(InsufficientFunds):
        with db.session.begin_nested():
            ledger.post_many([ledger.Movement("order_hold", [Posting(available, -600),
                                                             Posting(held, 600)]),
                              ledger.Movement("order_hold", [Posting(available, -600),
                                                             Posting(held, 600)])], utcnow())
    db.session.commit()
    assert _count(LedgerTransaction) == before
    assert ledger.balance_for(buyer).available == 1_000
    ledger.post_many([ledger.Movement("order_hold", [Posting(available, -1), Posting(held, 1)],
                                      "once")], utcnow())
    db.session.commit()
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            ledger.post_many([ledger.Movement("order_hold", [Posting(available, -1),
                                                             Posting(held, 1)], "once")],
                             utcnow())
    db.session.commit()
    assert ledger.balance_for(buyer).available == 999 and ledger.reconcile().ok
