"""Figures kept per revision of an account (app/core/figures.py): a page shows a sale,
a return and an outcome as soon as they commit, whoever committed them (here the
operations run outside the page's requests, as another process would run them)."""
import sqlalchemy as sa

from app.core import figures
from app.extensions import db
from app.models import Batch, OutcomeStatus, Sale, User
from app.services import outcomes, returns
from app.services import accounts
from tests.conftest import TEST_PASSWORD, log_in
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
