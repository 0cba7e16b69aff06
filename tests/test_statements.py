"""Monthly statements (issue 16 item 5, SPEC §5): computed from ledger entries, they
reconcile -- opening + the month's movements = closing = the sum of entries before the
next month -- on a month with top-ups, sales, a return and a payout; HTML, PDF and a
CSV in the one money convention; months outside the account's life are refused."""
import csv
import io
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.errors import ValidationFailed
from app.extensions import db
from app.formatting import format_money
from app.market import jobs
from app.models import LedgerAccount, LedgerEntry, LedgerTransaction, Role
from app.money import statements
from app.services import bank_transfers, earnings, ledger, manual_payouts, returns
from tests.conftest import log_in, make_user
from tests.market_helpers import live_leads, person, place, sales_of, verified_seller
from tests.test_receipts import pdf_text


def _months():
    this = datetime.now(timezone.utc).date().replace(day=1)
    previous = (this - timedelta(days=1)).replace(day=1)
    return previous, this


def _entries_before(user, kind, moment: datetime) -> int:
    """The account's balance at `moment`, summed straight from the entries."""
    return int(db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0))
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerAccount.user_id == user.id, LedgerAccount.kind == kind,
               LedgerTransaction.created_at < moment)))


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


@pytest.fixture
def busy_month(app, admin):
    """A buyer and a seller whose accounts opened last month; last month the buyer
    paid in by bank transfer; this month: a credit, three sales, an accepted return,
    earnings cleared and a manual payout."""
    previous, this = _months()
    seller, buyer = verified_seller(), make_user(Role.BUYER, display_name="Ольга Núñez")
    for user in (seller, buyer):
        user.created_at = _at(previous) + timedelta(hours=3)
    transfer = bank_transfers.record_transfer(
        reference=bank_transfers.reference_for(buyer), amount=50_000,
        received_on=previous, bank_transaction_id="ST-BANK-1", actor=admin)
    db.session.get(LedgerTransaction, transfer.ledger_transaction_id).created_at = (
        _at(previous) + timedelta(days=1))
    ledger.manual_credit(buyer, 20_000, reason="wire", actor=admin)
    db.session.commit()
    live_leads(seller, [person(i) for i in range(3)])
    order = place(buyer, 1_000, 3)
    jobs.fill_order(order.id)
    db.session.commit()
    sales = sales_of(order)
    assert len(sales) == 3
    item = returns.open_return(buyer, sales[0].id, "wrong_number", "nobody answers")
    db.session.commit()
    returns.seller_respond(seller, item.id, accept=True)
    db.session.commit()
    assert earnings.release_cleared(datetime.now(timezone.utc) + timedelta(days=8)) == 1_600
    manual_payouts.record_payout(seller, amount=1_000, paid_on=date.today(),
                                 bank_transaction_id="ST-OUT-1", actor=admin)
    db.session.commit()
    return buyer, seller


def _reconciles(statement, user, first: date) -> None:
    end = _at(statements.next_month(first))
    for account in statement.accounts:
        assert account.opening == _entries_before(user, account.kind, _at(first))
        assert account.closing == account.opening + sum(line.amount for line in account.lines)
        assert account.closing == _entries_before(user, account.kind, end)
        assert sum(amount for _, amount in account.totals) == account.closing - account.opening
        balance = account.opening
        for line in account.lines:
            balance += line.amount
            assert line.balance == balance and first <= line.at.date() < end.date()


def test_a_busy_month_reconciles_for_buyer_and_seller(busy_month):
    buyer, seller = busy_month
    previous, this = _months()
    for user in (buyer, seller):
        before = statements.statement_for(user, previous)
        now = statements.statement_for(user, this)
        _reconciles(before, user, previous)
        _reconciles(now, user, this)
        assert now.opening == before.closing and now.to_date and not before.to_date
        shown = ledger.balance_for(user)
        assert now.closing == shown.available + shown.held + shown.pending

    last_month = statements.statement_for(buyer, previous)
    assert last_month.opening == 0 and last_month.closing == 50_000
    month = statements.statement_for(buyer, this)
    kinds = {line.kind for account in month.accounts for line in account.lines}
    assert {"manual_credit", "order_hold", "sale", "sale_reversal"} <= kinds
    available = month.accounts[0]
    assert dict(available.totals)["Returned sale reversed"] == 1_000
    assert dict(available.totals)["Credit by the exchange"] == 20_000

    earned = statements.statement_for(seller, this)
    assert [a.kind.value for a in earned.accounts][:2] == ["seller_pending", "seller_available"]
    pending, available = earned.accounts[0], earned.accounts[1]
    assert dict(pending.totals) == {"Sale of leads": 2_400, "Returned sale reversed": -800,
                                    "Earnings cleared": -1_600}
    assert dict(available.totals) == {"Earnings cleared": 1_600,
                                      "Payout by bank transfer": -1_000}
    assert available.closing == 600
    # Another buyer's statement of the same month holds none of these movements.
    stranger = make_user(Role.BUYER)
    stranger.created_at = buyer.created_at
    assert all(not a.lines for a in statements.statement_for(stranger, this).accounts)


def test_statement_page_pdf_and_csv(app, busy_month):
    buyer, seller = busy_month
    _, this = _months()
    month = statements.statement_for(buyer, this)
    client = app.test_client()
    log_in(client, buyer)
    balance_page = client.get("/buyer/balance").get_data(as_text=True)
    assert 'id="statement-picker"' in balance_page and 'type="month"' in balance_page
    # The recent movements say what happened in words, not as ledger codes.
    assert "<td>Credit by the exchange</td>" in balance_page and "manual credit<" not in balance_page
    assert '<td class="d-none d-md-table-cell">Available</td>' in balance_page
    assert "buyer available" not in balance_page

    picked = client.get(f"/buyer/statements?month={this:%Y-%m}")
    assert picked.status_code == 302
    assert picked.headers["Location"].endswith(f"/buyer/statements/{this.year}-{this.month}")
    # The bare address (typed, bookmarked) opens this month's, not an error.
    assert client.get("/buyer/statements").headers["Location"] == picked.headers["Location"]
    page = client.get(picked.headers["Location"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert month.number in html and "Opening balance" in html and "Returned sale reversed" in html
    assert "$680.00" in html  # closing: 500 + 200 - 3 x 10 bought + 10 returned
    # The header's total says what it adds up, each account's closing beside it
    available, held = month.accounts
    closing = html.split('id="statement-closing-card"', 1)[1].split("</section>", 1)[0]
    assert f"Closing balance, {available.label} + {held.label}" in closing
    assert (f"{available.label} {format_money(available.closing)} + {held.label} "
            f"{format_money(held.closing)}") in closing

    document = client.get(f"/buyer/statements/{this.year}-{this.month}.pdf")
    assert document.mimetype == "application/pdf"
    text = pdf_text(document.data)
    for words in (month.number, "Ольга Núñez", "Opening balance", "Closing balance",
                  "$500.00", "Sale of leads", "Totals by kind"):
        assert words in text

    exported = client.get(f"/buyer/statements/{this.year}-{this.month}.csv")
    assert exported.mimetype == "text/csv"
    body = exported.get_data(as_text=True)
    assert body.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))
    assert list(rows[0]) == statements.CSV_COLUMNS
    assert {row["currency"] for row in rows} == {"USD"}
    for account in month.accounts:
        mine = [row for row in rows if row["account"] == account.kind.value]
        assert mine[0]["kind"] == "opening" and mine[-1]["kind"] == "closing"
        # A statement to date closes today, not on the month's last day
        assert mine[-1]["date"] == datetime.now(timezone.utc).date().isoformat()
        opening, closing = Decimal(mine[0]["balance"]), Decimal(mine[-1]["balance"])
        moved = sum(Decimal(row["amount"]) for row in mine[1:-1])
        assert opening + moved == closing == Decimal(account.closing) / 100
        assert all(row["amount"] == "" or row["amount"].lstrip("-").count(".") == 1
                   for row in mine)
    assert any(row["amount"].startswith("-") for row in rows)  # a number, not a guarded text

    seller_client = app.test_client()
    log_in(seller_client, seller)
    payouts_page = seller_client.get("/seller/payouts").get_data(as_text=True)
    assert 'id="statement-picker"' in payouts_page
    seller_csv = seller_client.get(f"/seller/statements/{this.year}-{this.month}.csv")
    assert "manual_payout" in seller_csv.get_data(as_text=True)
    assert seller_client.get(f"/seller/statements/{this.year}-{this.month}.pdf").status_code == 200


def test_months_outside_the_accounts_life_are_refused_clearly(app, buyer_client, buyer):
    opened, this = statements.months_for(buyer)
    before = (opened - timedelta(days=1)).replace(day=1)
    after = (this + timedelta(days=32)).replace(day=1)
    for month, says in ((before, "was opened in"), (after, "has not begun")):
        with pytest.raises(ValidationFailed) as refused:
            statements.check_month(buyer, month.year, month.month)
        assert says in refused.value.message
        picked = buyer_client.get(f"/buyer/statements?month={month:%Y-%m}")
        assert picked.status_code == 302 and picked.headers["Location"].endswith("/buyer/balance")
        assert says in buyer_client.get("/buyer/balance").get_data(as_text=True)
        for suffix in ("", ".pdf", ".csv"):
            direct = buyer_client.get(f"/buyer/statements/{month.year}-{month.month}{suffix}")
            assert direct.status_code == 422 and says in direct.get_data(as_text=True)
    for text in ("", "2026", "2026-13", "march", "2026-03-01"):
        with pytest.raises(ValidationFailed):
            statements.parse_month(buyer, text)
    assert buyer_client.get("/buyer/statements/2026-13").status_code == 422


def test_a_page_of_a_busy_month_has_that_pages_lines_and_the_whole_months_figures(
        app, admin, busy_month):
    buyer, _ = busy_month
    for i in range(57):  # more movements than one page of 50 shows
        ledger.manual_credit(buyer, 100 + i, reason=f"credit {i}", actor=admin)
    db.session.commit()
    _, this = _months()
    whole = statements.statement_for(buyer, this)
    available = whole.accounts[0]
    assert available.count == len(available.lines) > 50
    pages = [statements.statement_for(buyer, this, page=n, page_size=50) for n in (1, 2, 3)]
    for paged in pages:  # figures of the month, whatever the page
        assert [(a.opening, a.closing, a.totals, a.count) for a in paged.accounts] == [
            (a.opening, a.closing, a.totals, a.count) for a in whole.accounts]
    # The pages are the month's lines cut in fifties, running balances included.
    assert pages[0].accounts[0].lines + pages[1].accounts[0].lines == available.lines
    assert len(pages[0].accounts[0].lines) == 50 and pages[2].accounts[0].lines == []
    _reconciles(whole, buyer, this)

    client = app.test_client()
    log_in(client, buyer)
    url = f"/buyer/statements/{this.year}-{this.month:02d}"
    first, second = (client.get(url + q).get_data(as_text=True) for q in ("", "?page=2"))
    assert "Later movements" in first and statements.CLOSING not in first.split("account-buyer_held")[0]
    assert "Earlier movements" in second and statements.CLOSING in second
    assert "credit 56" in second and "credit 56" not in first
