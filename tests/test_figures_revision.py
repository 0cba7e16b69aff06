"""Figures kept per revision of an account (app/core/figures.py): a page shows a sale,
a return and an outcome as soon as they commit, whoever committed them (here the
operations run outside the page's requests, as another process would run them)."""
import re
from datetime import timedelta

import sqlalchemy as sa

from app.core import figures
from app.extensions import db
from app.models import AccountKind, Batch, LedgerEntry, OutcomeStatus, Sale, User
from app.models.types import utcnow
from app.services import accounts, earnings, ledger, outcomes, returns
from tests.conftest import TEST_PASSWORD, log_in
from tests.query_count import counted as count_selects
from tests.test_outcomes_kpis import _market


def _revision(user_id: int) -> int:
    return db.session.scalar(sa.select(User.figures_revision).where(User.id == user_id))


def test_pages_show_each_sale_outcome_and_return_as_soon_as_it_commits(app, buyer,
                                                                        api_key_for):
    order, sales = _market(4, 300, buyer)
    seller_id = db.session.get(Sale, sales[0]).seller_id
    seller = db.session.get(User, seller_id)
    batch_id = db.session.scalar(sa.select(Batch.id).where(Batch.seller_id == seller_id))
    headers = api_key_for(buyer)
    client, seller_client = app.test_client(), app.test_client()
    log_in(seller_client, seller)

    def kpis() -> tuple:
        body = client.get("/api/v1/kpis", headers=headers).json
        return body["leads"], body["conversions"]

    def sold_on_batch_page() -> str:
        return seller_client.get(f"/seller/batches/{batch_id}").get_data(as_text=True)

    assert kpis() == (4, 0) and kpis() == (4, 0)  # the second from what the first kept
    before = sold_on_batch_page()
    revisions = _revision(buyer.id), _revision(seller_id)

    outcomes.record(buyer, sales[0], OutcomeStatus.CONVERTED.value, 5_000)
    db.session.commit()
    assert (_revision(buyer.id), _revision(seller_id)) == (revisions[0] + 1, revisions[1] + 1)
    assert kpis() == (4, 1)
    assert sold_on_batch_page() != before  # the batch's feedback counts the conversion

    item = returns.open_return(buyer, sales[1], "wrong_number")
    returns.seller_respond(seller, item.id, accept=True)
    db.session.commit()
    assert kpis() == (3, 1)

    _market(2, 300, buyer, seller)
    assert kpis() == (5, 1)


def test_a_write_that_forgets_to_say_whose_figures_changed_fails(app, buyer):
    _, sales = _market(1, 300, buyer)
    db.session.execute(sa.update(Sale).where(Sale.id == sales[0]).values(region="US-NY"))
    try:
        db.session.commit()
    except AssertionError as error:
        assert "figures.changed()" in str(error)
    else:
        raise AssertionError("the commit went through unmarked")
    db.session.rollback()
    db.session.execute(sa.update(Sale).where(Sale.id == sales[0]).values(region="US-NY"))
    figures.changed(buyer.id)
    db.session.commit()


def test_raising_revisions_passes_over_a_loaded_user_whose_row_is_gone(app):
    """The session still holds (expired) a user another connection deleted: raising
    another account's revision must not try to load it."""
    gone = accounts.create_user("gone@example.com", TEST_PASSWORD, "buyer")
    kept = accounts.create_user("kept@example.com", TEST_PASSWORD, "seller")
    db.session.commit()  # expires both
    gone_id, kept_id = sa.inspect(gone).identity[0], sa.inspect(kept).identity[0]
    with db.engine.begin() as other:
        other.execute(sa.delete(User.__table__).where(User.id == gone_id))
    figures.changed(kept_id)
    db.session.commit()
    assert _revision(kept_id) == 1


def _stat(page: str, name: str) -> str:
    return re.search(rf'id="{name}">([^<]+)<', page).group(1)


def test_the_seller_dashboard_shows_each_money_movement_as_soon_as_it_commits(app, buyer):
    """Balances and statement are kept per revision: a movement committed outside the
    page's requests (a job, an admin's debit, as another process would) shows at the
    next request, and an unchanged account's page reads no ledger."""
    _, sales = _market(3, 1_000, buyer)
    seller = db.session.get(User, db.session.get(Sale, sales[0]).seller_id)
    client = app.test_client()
    log_in(client, seller)

    def dashboard() -> tuple[str, str, int]:
        page = client.get("/seller/").get_data(as_text=True)
        return _stat(page, "pending"), _stat(page, "available"), page.count("Debit by the exchange")

    pending, available, debits = dashboard()
    assert available == "$0.00" and pending != "$0.00" and debits == 0
    with count_selects() as statements:
        assert dashboard() == (pending, available, 0)
    assert not [s for s in statements if "ledger_entries" in s or "ledger_accounts" in s]

    earnings.release_cleared(now=utcnow() + earnings.return_window() + timedelta(days=1))
    pending, available, _ = dashboard()
    assert pending == "$0.00" and available != "$0.00"

    revision = _revision(seller.id)
    ledger.manual_debit(seller, 100, reason="a correction", actor=None)  # marks nothing itself
    db.session.commit()
    assert _revision(seller.id) == revision + 1
    after = dashboard()
    assert after[1] != available and after[2] == 1


def test_ledger_entries_written_without_saying_whose_fail_and_the_exchanges_own_pass(app):
    clearing = ledger.account(AccountKind.MANUAL_CLEARING)
    commission = ledger.account(AccountKind.PLATFORM_COMMISSION)
    txn = ledger.post("transfer", [ledger.Posting(clearing, -5), ledger.Posting(commission, 5)])
    db.session.commit()  # no account's figures: said so by the ledger, and committed
    db.session.execute(sa.insert(LedgerEntry.__table__), [  # past the ledger's own writer
        {"transaction_id": txn.id, "account_id": clearing.id, "amount": -1},
        {"transaction_id": txn.id, "account_id": commission.id, "amount": 1}])
    try:
        db.session.commit()
    except AssertionError as error:
        assert "ledger_entries" in str(error)
    else:
        raise AssertionError("the commit went through unmarked")
    db.session.rollback()


def test_the_admin_overviews_figures_are_computed_together_and_follow_a_sign_up(app,
                                                                              admin_client):
    """Cached (MARKET_STATS_CACHE_SECONDS), the overview's figures come from one
    computation at one version of the data, which a sign-up anywhere changes."""
    _market(2, 500)

    def overview() -> tuple:
        page = admin_client.get("/admin/").get_data(as_text=True)
        counts = re.findall(r'<div class="text-body-secondary">(\w+)s</div>'
                            r'<div class="stat-value">(\d+)</div>', page)
        return (dict(counts), _stat(page, "commission-total"), _stat(page, "commission-period"),
                _stat(page, "overview-as-of"))

    app.config["MARKET_STATS_CACHE_SECONDS"] = 300
    try:
        first = overview()
        assert first[1] == first[2] and first[3].startswith("as of ")
        with count_selects() as statements:
            assert overview() == first
        assert not [s for s in statements if "ledger_entries" in s]  # not reconciled again
        accounts.create_user("newcomer@example.com", TEST_PASSWORD, "buyer")
        db.session.commit()
        second = overview()
        assert int(second[0]["Buyer"]) == int(first[0]["Buyer"]) + 1
        assert second[1:3] == first[1:3]
    finally:
        app.config["MARKET_STATS_CACHE_SECONDS"] = 0
