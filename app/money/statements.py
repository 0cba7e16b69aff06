"""Queries (read only): a buyer's or seller's monthly statement (SPEC §5, issue 16).

Computed from ledger entries alone, like every balance: for each of the holder's
accounts (a buyer's available and held money; a seller's pending, available and, when
they owe returned sales, receivable) the opening balance is the sum of its entries
before the month, each movement of the month follows with the balance after it, and
the closing balance is the opening plus the month's movements -- which is the sum of
the entries before the next month, so a statement always reconciles with the books.
Months are calendar months in UTC, the ledger's clock; the current month runs to now.
"""
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterator

from sqlalchemy import func, select

from app.errors import ValidationFailed
from app.labels import label
from app.extensions import db
from app.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction, User
from app.money.receipts import Party, exchange, holder
from app.services import ledger
from app.services.exports import NUMBER, csv_lines, major_units

# The closing row's Amount is the month's net change, so the column adds up too.
CLOSING = "Closing balance (net change of the month)"
_KINDS_SHOWN = {
    "buyer": (AccountKind.BUYER_AVAILABLE, AccountKind.BUYER_HELD),
    "seller": (AccountKind.SELLER_PENDING, AccountKind.SELLER_AVAILABLE,
               AccountKind.SELLER_RECEIVABLE),
}
def movement_label(kind: str) -> str:
    return label(kind, "movement")


def _description(kind: str, memo: str | None) -> str:
    """The movement's words and its note, without saying the words twice when the
    note starts with them ("Card top-up pi_…")."""
    words = movement_label(kind)
    if not memo:
        return words
    return memo if memo.lower().startswith(words.lower()) else f"{words}: {memo}"


@dataclass(frozen=True)
class Line:
    at: datetime
    transaction_id: int
    kind: str
    description: str
    amount: int
    balance: int  # the account's balance after this movement


@dataclass(frozen=True)
class AccountStatement:
    kind: AccountKind
    label: str
    opening: int
    closing: int
    lines: list[Line]  # the month's, or one page of them
    totals: list[tuple[str, int]]  # per kind of movement, in order of first appearance
    count: int  # movements in the month


@dataclass(frozen=True)
class Statement:
    number: str
    month: date  # its first day
    owner_id: int
    holder: Party
    exchange: Party
    currency: str
    accounts: list[AccountStatement]
    to_date: bool  # the current month, so far
    closes_on: date  # its last day: the month's, or today's for a statement to date

    @property
    def opening(self) -> int:
        return sum(a.opening for a in self.accounts)

    @property
    def closing(self) -> int:
        return sum(a.closing for a in self.accounts)

    @property
    def accounts_label(self) -> str:
        """What the opening and closing totals add up: "Available + Held"."""
        return " + ".join(account.label for account in self.accounts)

    @property
    def title(self) -> str:
        return f"Statement for {self.month:%B %Y}"

    @property
    def filename(self) -> str:
        return f"statement-{self.month:%Y-%m}"


def next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def check_month(user: User, year: int, month: int, now: datetime | None = None) -> date:
    """The first day of a month the user has a statement for, or ValidationFailed saying
    which months there are."""
    now = now or datetime.now(timezone.utc)
    opened = user.created_at.astimezone(timezone.utc).date().replace(day=1)
    current = now.date().replace(day=1)
    if not (1 <= month <= 12 and 2000 <= year <= 9999):
        raise ValidationFailed("A statement month reads like 2026-03.", code="invalid_month",
                               details={"field": "month"})
    first = date(year, month, 1)
    if first < opened:
        raise ValidationFailed(
            f"Your account was opened in {opened:%B %Y}; there is no statement for "
            f"{first:%B %Y}. Choose a month from {opened:%B %Y} to {current:%B %Y}.",
            code="month_before_account", details={"field": "month"})
    if first > current:
        raise ValidationFailed(
            f"{first:%B %Y} has not begun; statements run to {current:%B %Y} (so far).",
            code="month_in_future", details={"field": "month"})
    return first


def months_for(user: User, now: datetime | None = None) -> tuple[date, date]:
    """The first days of the first and the last month the user has a statement for."""
    now = now or datetime.now(timezone.utc)
    return (user.created_at.astimezone(timezone.utc).date().replace(day=1),
            now.date().replace(day=1))


def parse_month(user: User, text: str, now: datetime | None = None) -> date:
    """A month typed as "2026-03" (the month picker's value), checked as check_month."""
    try:
        year, month = (int(part) for part in (text or "").strip().split("-"))
    except ValueError:
        raise ValidationFailed("A statement month reads like 2026-03.", code="invalid_month",
                               details={"field": "month"}) from None
    return check_month(user, year, month, now)


def _accounts(user: User) -> list[tuple[AccountKind, int | None]]:
    found = {acct.kind: acct.id for acct in db.session.scalars(
        select(LedgerAccount).where(LedgerAccount.user_id == user.id))}
    kinds = _KINDS_SHOWN.get(user.role.value, ())
    # A seller's receivable is shown only once it has ever been used.
    return [(kind, found.get(kind)) for kind in kinds
            if kind in found or kind is not AccountKind.SELLER_RECEIVABLE]


def statement_for(user: User, first: date, now: datetime | None = None,
                  page: int | None = None, page_size: int = 50) -> Statement:
    """The statement of the month starting `first` (checked by check_month). With a
    `page`, each account carries only that page's movements; its figures (opening,
    closing, totals, count) are still the whole month's, summed by the database, so a
    busy account's page costs what fifty lines cost, not what its month holds."""
    now = now or datetime.now(timezone.utc)
    start, end = _start(first), _start(next_month(first))
    accounts = _accounts(user)
    ids = [account_id for _, account_id in accounts if account_id is not None]
    joined = (select().select_from(LedgerEntry)
              .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
              .where(LedgerEntry.account_id.in_(ids)))
    in_month = (LedgerTransaction.created_at >= start, LedgerTransaction.created_at < end)
    openings, kinds, lines = {}, {}, {account_id: [] for account_id in ids}
    if ids:
        openings = dict(db.session.execute(
            joined.add_columns(LedgerEntry.account_id, func.sum(LedgerEntry.amount))
            .where(LedgerTransaction.created_at < start).group_by(LedgerEntry.account_id)).all())
        for account_id, kind, amount, count in db.session.execute(
                joined.add_columns(LedgerEntry.account_id, LedgerTransaction.kind,
                                   func.sum(LedgerEntry.amount), func.count())
                .where(*in_month).group_by(LedgerEntry.account_id, LedgerTransaction.kind)
                .order_by(func.min(LedgerTransaction.id))):
            kinds.setdefault(account_id, []).append((kind, int(amount), count))
        order = (LedgerTransaction.created_at, LedgerTransaction.id, LedgerEntry.id)
        numbered = joined.add_columns(
            LedgerEntry.account_id, LedgerTransaction.id.label("transaction_id"),
            LedgerTransaction.created_at, LedgerTransaction.kind, LedgerTransaction.memo,
            LedgerEntry.amount,
            func.row_number().over(partition_by=LedgerEntry.account_id, order_by=order)
            .label("n"),
            func.sum(LedgerEntry.amount).over(partition_by=LedgerEntry.account_id,
                                              order_by=order, rows=(None, 0)).label("moved"),
        ).where(*in_month).subquery()
        shown = select(numbered).order_by(numbered.c.account_id, numbered.c.n)
        if page is not None:
            shown = shown.where(numbered.c.n > (page - 1) * page_size,
                                numbered.c.n <= page * page_size)
        for row in db.session.execute(shown):
            lines[row.account_id].append(Line(
                row.created_at, row.transaction_id, row.kind, _description(row.kind, row.memo),
                int(row.amount), int(openings.get(row.account_id) or 0) + int(row.moved)))
    sections = []
    for kind, account_id in accounts:
        opening = int(openings.get(account_id) or 0)
        totals: dict[str, int] = {}
        for txn_kind, amount, _ in kinds.get(account_id, ()):
            words = movement_label(txn_kind)
            totals[words] = totals.get(words, 0) + amount
        sections.append(AccountStatement(
            kind, label(kind, "account"), opening, opening + sum(totals.values()),
            lines.get(account_id, []), list(totals.items()),
            sum(count for _, _, count in kinds.get(account_id, ()))))
    return Statement(f"ST-{first:%Y-%m}-{user.id:06d}", first, user.id, holder(user), exchange(),
                     ledger.currency(), sections, to_date=end > now,
                     closes_on=min(next_month(first) - timedelta(days=1), now.date()))


CSV_COLUMNS = ["date", "transaction_id", "account", "kind", "description", "amount",
               "balance", "currency"]


def statement_csv(statement: Statement) -> Iterator[str]:
    """The statement as CSV in the one money convention (major units, a currency
    column): per account an opening row, its movements, a closing row."""
    code = statement.currency

    def money(minor: int) -> str:
        return major_units(minor, code)

    def rows():
        for account in statement.accounts:
            name = account.kind.value
            yield [statement.month.isoformat(), None, name, "opening", "Opening balance", None,
                   money(account.opening), code]
            for line in account.lines:
                yield [line.at.isoformat(), line.transaction_id, name, line.kind,
                       line.description, money(line.amount), money(line.balance), code]
            yield [statement.closes_on.isoformat(), None, name, "closing",
                   CLOSING, money(account.closing - account.opening),
                   money(account.closing), code]

    kinds = dict.fromkeys(("transaction_id", "amount", "balance"), NUMBER)
    return csv_lines(CSV_COLUMNS, rows(), kinds)
