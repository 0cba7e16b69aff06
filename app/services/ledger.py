"""The double-entry ledger (SPEC §5).

Every movement of money is one `post` call: a transaction whose entries sum to zero,
applied inside a savepoint so that a refused movement (unbalanced, or one that would
take an available balance below zero) leaves nothing behind. Movements that may be
retried carry an idempotency key; posting the same key again returns the first
transaction and changes nothing.
"""
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator, Optional

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app.core import bounds, events, figures
from app.core.bulk import allocate_ids, bulk_insert
from app.core.dialect import locked, postgres, update_many
from app.errors import DomainError, InsufficientFunds, ValidationFailed
from app.extensions import db
from app.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction, User
from app.models.ledger import NEGATIVE_ALLOWED_KINDS, USER_ACCOUNT_KINDS
from app.people import notifications
from app.services import audit

ROLE_ACCOUNT_KINDS = {
    "buyer": (AccountKind.BUYER_AVAILABLE, AccountKind.BUYER_HELD),
    "seller": (AccountKind.SELLER_PENDING, AccountKind.SELLER_AVAILABLE),
}


# Far above any real movement, far below int64 overflow (where SQLite would silently
# turn an integer column into a float).
MAX_AMOUNT = bounds.AMOUNT.maximum
MAX_BALANCE = 10**15


class UnbalancedTransaction(DomainError):
    code = "unbalanced_transaction"
    status = 500


class AmountOutOfRange(DomainError):
    code = "amount_out_of_range"
    status = 422


@dataclass(frozen=True)
class AccountRef:
    """What posting needs of an account; unlike the ORM row it never goes stale, so a
    caller posting many transactions need not reload accounts after each commit."""

    id: int
    kind: AccountKind
    currency: str
    allow_negative: bool
    user_id: Optional[int] = None  # the owner, None for the exchange's own accounts

    @classmethod
    def of(cls, account: LedgerAccount) -> "AccountRef":
        return cls(account.id, account.kind, account.currency, account.allow_negative,
                   account.user_id)


@dataclass(frozen=True)
class Posting:
    account: LedgerAccount | AccountRef
    amount: int


@dataclass(frozen=True)
class Balance:
    currency: str
    available: int
    held: int
    pending: int


def commission_on(price: int, rate_bp: int) -> int:
    """SPEC §5: the exchange's cut of a sale at `rate_bp` basis points, half up; the
    seller's share is the rest of the price."""
    return (price * rate_bp + 5_000) // 10_000


def seller_share(price: int, seller: User) -> int:
    """What the seller is paid of a sale at `price`: their own commission rate, or the
    exchange's default."""
    rate = seller.commission_rate_bp
    return price - commission_on(price, current_app.config["COMMISSION_RATE_BP"]
                                 if rate is None else rate)


def currency() -> str:
    return current_app.config["CURRENCY"]


def _account_key(kind: AccountKind, user: Optional[User]) -> str:
    return f"user:{user.id}:{kind.value}" if user else f"system:{kind.value}"


def account(kind: AccountKind, user: Optional[User] = None) -> LedgerAccount:
    """The account of this kind for `user` (or the system), created on first use."""
    kind = AccountKind(kind)
    if (kind in USER_ACCOUNT_KINDS) != (user is not None):
        raise ValueError(f"{kind.value} accounts {'need' if user is None else 'take no'} owner")
    key = _account_key(kind, user)
    found = db.session.scalar(select(LedgerAccount).where(LedgerAccount.key == key))
    if found:
        return found
    try:
        with db.session.begin_nested():
            found = LedgerAccount(
                key=key,
                kind=kind,
                user_id=user.id if user else None,
                currency=currency(),
                balance=0,
                allow_negative=kind in NEGATIVE_ALLOWED_KINDS,
            )
            db.session.add(found)
    except IntegrityError:  # another process created it first
        found = db.session.scalar(select(LedgerAccount).where(LedgerAccount.key == key))
    return found


def open_accounts_for(user: User) -> None:
    for kind in ROLE_ACCOUNT_KINDS.get(user.role.value, ()):
        account(kind, user)


def post(
    kind: str,
    postings: Iterable[Posting],
    *,
    idempotency_key: Optional[str] = None,
    memo: str = "",
    actor: Optional[User] = None,
) -> LedgerTransaction:
    """Apply one balanced transaction, or raise and apply nothing."""
    postings = _balanced(postings)
    _moved(postings)
    try:
        with db.session.begin_nested():
            transaction = LedgerTransaction(
                kind=kind,
                idempotency_key=idempotency_key,
                memo=memo,
                actor_id=actor.id if actor else None,
            )
            db.session.add(transaction)
            db.session.flush()
            # Fixed order of row locks, so concurrent transactions cannot deadlock.
            for posting in sorted(postings, key=lambda p: p.account.id):
                _apply(posting)
                db.session.add(
                    LedgerEntry(
                        transaction_id=transaction.id,
                        account_id=posting.account.id,
                        amount=posting.amount,
                    )
                )
            db.session.flush()
    except IntegrityError:
        # The key was used before (a retry, perhaps a concurrent one): that result stands.
        existing = _by_idempotency_key(idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing
    for posting in postings:
        if isinstance(posting.account, LedgerAccount):
            db.session.expire(posting.account, ["balance"])  # moved by SQL, not the ORM
        if posting.amount < 0 and posting.account.kind is AccountKind.BUYER_AVAILABLE:
            _tell_if_low(posting)
            # Once this commits, the buyer's automatic top-up may be due (app/tasks.py).
            events.record(events.BuyerFundsLowered(posting.account.id))
    return transaction


def _tell_if_low(posting: Posting) -> None:
    """A buyer's available balance went down: below their threshold, they are told."""
    user_id, after = db.session.execute(
        select(LedgerAccount.user_id, LedgerAccount.balance)
        .where(LedgerAccount.id == posting.account.id)).one()
    notifications.balance_fell(user_id, after - posting.amount, after)


def _balanced(postings: Iterable[Posting]) -> list[Posting]:
    """The postings of one transaction, or UnbalancedTransaction/AmountOutOfRange."""
    postings = list(postings)
    if len(postings) < 2:
        raise UnbalancedTransaction("A transaction needs at least two entries.")
    for posting in postings:
        if type(posting.amount) is not int or posting.amount == 0:
            raise UnbalancedTransaction(
                f"Entry amounts are non-zero integers of minor units, not {posting.amount!r}."
            )
        if abs(posting.amount) > MAX_AMOUNT:
            raise AmountOutOfRange(f"Amounts above {MAX_AMOUNT:,} minor units are refused.")
        if posting.account.currency != currency():
            raise UnbalancedTransaction("All entries must be in the exchange's currency.")
    if sum(p.amount for p in postings) != 0:
        raise UnbalancedTransaction("A transaction's entries must sum to zero.")
    return postings


@dataclass(frozen=True)
class Movement:
    """One transaction for `post_many`: its postings (one per account), and its key."""

    kind: str
    postings: list[Posting]
    idempotency_key: Optional[str] = None
    memo: str = ""


_BALANCES_PG = """
UPDATE ledger_accounts AS a SET balance = a.balance + v.d
FROM unnest(CAST(string_to_array(:id, ',') AS int[]),
            CAST(string_to_array(:d, ',') AS bigint[])) AS v(id, d)
WHERE a.id = v.id AND (a.allow_negative OR a.balance + v.d >= 0)
  AND abs(a.balance + v.d) <= :limit"""
_BALANCES_SQLITE = """
UPDATE ledger_accounts SET balance = balance + :d
WHERE id = :id AND (allow_negative OR balance + :d >= 0) AND abs(balance + :d) <= :limit"""


def post_many(movements: list[Movement], at: datetime) -> list[int]:
    """Apply many balanced transactions at once, set-based (COPY on PostgreSQL): the
    same promises as `post` -- every transaction balanced, keys used once (a reused key
    raises IntegrityError), no balance below zero or past the limit -- for callers that
    write thousands in one database transaction. Returns their ids, in order.

    Balances move last, each account once by its net amount, locked in id order (as
    `post` locks them); the statement is all-or-nothing, so checking each final
    balance checks every step. If one would break a limit, InsufficientFunds is raised
    and the caller's savepoint undoes what was written."""
    ids, deltas = write_transactions(movements, at)
    move_balances(deltas)
    return ids


def write_transactions(movements: list[Movement], at: datetime) -> tuple[list[int], dict]:
    """post_many in two steps, for callers that lock other rows in between: first the
    transactions and their entries (checked balanced; the accounts' rows only key-share
    locked by the entries' foreign key, which blocks no balance update), returning
    their ids and each account's net amount; then `move_balances` of those amounts, in
    the same database transaction."""
    checked = [_balanced(m.postings) for m in movements]
    ids = allocate_ids(LedgerTransaction.__table__, len(movements))
    deltas: dict[int, int] = {}
    entries = []
    for txn, postings in zip(ids, checked):
        for posting in postings:
            entries.append((txn, posting.account.id, posting.amount))
            deltas[posting.account.id] = deltas.get(posting.account.id, 0) + posting.amount
    bulk_insert(LedgerTransaction.__table__,
                ("id", "kind", "idempotency_key", "memo", "created_at"),
                [(txn, m.kind, m.idempotency_key, m.memo, at) for txn, m in zip(ids, movements)])
    _moved(posting for postings in checked for posting in postings)
    bulk_insert(LedgerEntry.__table__, ("transaction_id", "account_id", "amount"), entries)
    return ids, deltas


def _moved(postings: Iterable[Posting]) -> None:
    """An account's money is among its figures (balances and statement on its pages):
    every movement says whose, here where every ledger entry is written (before
    writing: a refused movement rolled back to its savepoint wrote entries too)."""
    figures.changed(*{posting.account.user_id for posting in postings})


def move_balances(deltas: dict[int, int]) -> None:
    """Move each account by its net amount (write_transactions), locked in id order."""
    account_ids = sorted(account_id for account_id, delta in deltas.items() if delta)
    if not account_ids:
        return
    locked("ledger_accounts", "balance", account_ids)
    moved = update_many(_BALANCES_PG if postgres() else _BALANCES_SQLITE, ("id", "d"),
                        [(i, deltas[i]) for i in account_ids], {"limit": MAX_BALANCE})
    if moved != len(account_ids):
        raise InsufficientFunds("Not enough money in an account for these movements.")


def _by_idempotency_key(key: str) -> Optional[LedgerTransaction]:
    return db.session.scalar(
        select(LedgerTransaction).where(LedgerTransaction.idempotency_key == key)
    )


def _apply(posting: Posting) -> None:
    """Move the account's running balance, refusing to take it below zero."""
    acct = posting.account
    statement = (
        update(LedgerAccount)
        .where(LedgerAccount.id == acct.id)
        .values(balance=LedgerAccount.balance + posting.amount)
        .execution_options(synchronize_session=False)
    )
    new_balance = LedgerAccount.balance + posting.amount
    statement = statement.where(new_balance <= MAX_BALANCE, new_balance >= -MAX_BALANCE)
    if not acct.allow_negative and posting.amount < 0:
        statement = statement.where(new_balance >= 0)
    if db.session.execute(statement).rowcount != 1:
        if posting.amount > 0 or acct.allow_negative:
            raise AmountOutOfRange("This movement would take the balance beyond what the "
                                   "ledger holds; check the amount.")
        raise InsufficientFunds(
            "Not enough money in the account for this movement.",
            details={"account": acct.kind.value, "needed": -posting.amount},
        )


def balance_of(acct: LedgerAccount) -> int:
    db.session.refresh(acct, ["balance"])
    return acct.balance


def system_balance(kind: AccountKind) -> int:
    """A system account's balance, 0 while it has none yet. For pages and reports: they
    read it without creating it (a write in a read-only request; on SQLite it also failed
    at once when another request had committed since this one's first read)."""
    return db.session.scalar(select(LedgerAccount.balance).where(
        LedgerAccount.key == _account_key(AccountKind(kind), None))) or 0


def balance_for(user: User) -> Balance:
    """The caller's balances in minor units (GET /api/v1/balance)."""
    by_kind = {
        acct.kind: acct.balance
        for acct in db.session.scalars(
            select(LedgerAccount).where(LedgerAccount.user_id == user.id)
        )
    }
    if user.is_seller:
        return Balance(
            currency(),
            available=by_kind.get(AccountKind.SELLER_AVAILABLE, 0),
            held=0,
            pending=by_kind.get(AccountKind.SELLER_PENDING, 0),
        )
    return Balance(
        currency(),
        available=by_kind.get(AccountKind.BUYER_AVAILABLE, 0),
        held=by_kind.get(AccountKind.BUYER_HELD, 0),
        pending=0,
    )


def manual_credit(
    buyer: User, amount: int, *, reason: str, actor: Optional[User], idempotency_key: str | None = None
) -> LedgerTransaction:
    """An admin credits a buyer's available balance for money received by wire."""
    if not buyer.is_buyer:
        raise ValidationFailed("Only buyers have a balance to credit.", code="not_a_buyer")
    return _manual("manual_credit", account(AccountKind.BUYER_AVAILABLE, buyer), amount,
                   reason=reason, actor=actor, idempotency_key=idempotency_key)


def manual_debit(
    user: User, amount: int, *, reason: str, actor: Optional[User], idempotency_key: str | None = None
) -> LedgerTransaction:
    """An admin takes money off a buyer's or seller's available balance (a chargeback
    settled outside Stripe, a correction), never below zero."""
    kinds = {"buyer": AccountKind.BUYER_AVAILABLE, "seller": AccountKind.SELLER_AVAILABLE}
    if user.role.value not in kinds:
        raise ValidationFailed("Only buyers and sellers have a balance to debit.",
                               code="no_balance")
    return _manual("manual_debit", account(kinds[user.role.value], user), amount,
                   reason=reason, actor=actor, idempotency_key=idempotency_key)


def _manual(kind: str, target: LedgerAccount, amount: int, *, reason: str,
            actor: Optional[User], idempotency_key: str | None) -> LedgerTransaction:
    """A movement between `target` and the manual clearing account: credits add
    `amount` to the target, debits take it away."""
    if type(amount) is not int or not 0 < amount <= MAX_AMOUNT:
        raise ValidationFailed(
            f"The amount must be a whole number of minor units from 1 to {MAX_AMOUNT:,}.",
            code="invalid_amount")
    if not reason.strip():
        raise ValidationFailed(f"A reason is required for a {kind.replace('_', ' ')}.",
                               code="reason_required")
    delta = amount if kind == "manual_credit" else -amount
    transaction = post(
        kind,
        [Posting(account(AccountKind.MANUAL_CLEARING), -delta), Posting(target, delta)],
        idempotency_key=idempotency_key,
        memo=reason.strip(),
        actor=actor,
    )
    audit.record(
        f"ledger.{kind}",
        actor=actor,
        subject_type="user",
        subject_id=target.user_id,
        details={"amount": amount, "reason": reason.strip(),
                 "transaction_id": transaction.id},
    )
    return transaction


@dataclass(frozen=True)
class Reconciliation:
    ledger_total: int
    mismatched_accounts: list[tuple[str, int, int]]  # key, running balance, sum of entries
    unbalanced_transactions: list[int]

    @property
    def ok(self) -> bool:
        return (
            self.ledger_total == 0
            and not self.mismatched_accounts
            and not self.unbalanced_transactions
        )


def reconcile() -> Reconciliation:
    """Prove the books: entries sum to zero, per transaction and per account."""
    sums = dict(
        db.session.execute(
            select(LedgerEntry.account_id, func.sum(LedgerEntry.amount)).group_by(
                LedgerEntry.account_id
            )
        ).all()
    )
    mismatched = [
        (acct.key, acct.balance, int(sums.get(acct.id, 0)))
        for acct in db.session.scalars(select(LedgerAccount))
        if acct.balance != int(sums.get(acct.id, 0))
    ]
    unbalanced = list(
        db.session.scalars(
            select(LedgerEntry.transaction_id)
            .group_by(LedgerEntry.transaction_id)
            .having(func.sum(LedgerEntry.amount) != 0)
        )
    )
    total = int(db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))))
    return Reconciliation(total, mismatched, unbalanced)


def statement_for(user: User, limit: int = 200, offset: int = 0) -> list[dict]:
    """Ledger entries on the user's accounts, newest first, each with the balance of
    its account after it (a running balance computed by the database)."""
    running = (
        select(
            LedgerEntry.id.label("entry_id"),
            func.sum(LedgerEntry.amount).over(
                partition_by=LedgerEntry.account_id, order_by=LedgerEntry.id
            ).label("balance_after"),
        )
        .join(LedgerAccount, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerAccount.user_id == user.id)
        .subquery()
    )
    rows = db.session.execute(  # plain rows: no ledger objects to build for a listing
        select(LedgerTransaction.id, LedgerTransaction.created_at, LedgerTransaction.kind,
               LedgerAccount.kind, LedgerEntry.amount, running.c.balance_after,
               LedgerTransaction.memo)
        .select_from(LedgerEntry)
        .join(running, running.c.entry_id == LedgerEntry.id)
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerEntry.account_id == LedgerAccount.id)
        .order_by(LedgerTransaction.id.desc(), LedgerEntry.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [
        {
            "transaction_id": txn_id,
            "created_at": created_at,
            "kind": kind,
            "account": account_kind.value,
            "amount": amount,
            "balance_after": int(balance_after),
            "memo": memo,
        }
        for txn_id, created_at, kind, account_kind, amount, balance_after, memo in rows
    ]


STATEMENT_CSV_COLUMNS = ["transaction_id", "created_at", "kind", "account", "amount",
                         "balance_after", "memo", "currency"]


def statement_csv(user: User) -> Iterator[str]:
    """The whole statement as CSV (SPEC §5): amounts in major units with the currency
    in its own column; our own numbers stay numbers (a negative amount is not a
    formula), memos are guarded like any free text."""
    from app.services.exports import NUMBER, csv_lines, major_units

    code = currency()
    rows = ([row["transaction_id"], row["created_at"].isoformat(), row["kind"], row["account"],
             major_units(row["amount"], code), major_units(row["balance_after"], code),
             row["memo"], code]
            for row in statement_for(user, limit=100_000))
    kinds = dict.fromkeys(("transaction_id", "amount", "balance_after"), NUMBER)
    return csv_lines(STATEMENT_CSV_COLUMNS, rows, kinds)
