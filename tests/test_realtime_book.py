"""What a real-time group reads per group, kept right: the order book
(snapshot.load_book) sees every change to an order at once, though the parsing of
filters is kept between books; the do-not-call probe flags a listed phone; an API
key revoked in one request is refused by the next."""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from app.aftersale.delivery import settings as delivery_settings
from app.extensions import db
from app.market import operations, realtime, snapshot
from app.market.filters import Filters
from app.models import ApiKey, Lead, Order
from app.services import accounts, do_not_call
from tests.market_helpers import funded_buyer, place, verified_seller
from tests.test_realtime_groups import answer, arrival


def _book(now=None):
    return snapshot.load_book(now or datetime.now(timezone.utc))


def test_the_order_book_sees_a_changed_paused_new_or_filtered_order_at_once():
    buyer = funded_buyer()
    order = place(buyer, 500, quantity=10, filters={"regions": ["US-CA"]})
    first = _book().slots[order.id]
    assert (first.price, first.room, first.has_email) == (500, 10, False)
    assert _book().slots[order.id].filters is first.filters  # parsed once, kept

    operations.change_terms(buyer, order.id, price=650, quantity=3)
    db.session.commit()
    changed = _book().slots[order.id]
    assert (changed.price, changed.room, changed.revision) == (650, 3, first.revision + 1)

    delivery_settings.use_email(db.session.get(Order, order.id), addresses="crm@buyer.example.com",
                                mode="lead", digest="hourly")
    db.session.commit()
    assert _book().slots[order.id].has_email

    # Counters another process changed (a fill) are read as they are now.
    db.session.execute(sa.update(Order).where(Order.id == order.id).values(filled=2))
    db.session.commit()
    assert _book().slots[order.id].room == 1

    # Filters changed under the kept parse are parsed again.
    db.session.execute(sa.update(Order).where(Order.id == order.id)
                       .values(filters={"regions": ["US-NY"]}))
    db.session.commit()
    assert _book().slots[order.id].filters == Filters.parse({"regions": ["US-NY"]})

    operations.set_paused(buyer, order.id, True)
    db.session.commit()
    assert order.id not in _book().slots
    operations.set_paused(buyer, order.id, False)
    db.session.commit()
    assert order.id in _book().slots

    newer = place(funded_buyer(), 400, quantity=5)
    assert set(_book().slots) == {order.id, newer.id}
    later = datetime.now(timezone.utc) + timedelta(days=2)
    db.session.execute(sa.update(Order).where(Order.id == newer.id)
                       .values(expires_at=later - timedelta(days=1)))
    db.session.commit()
    assert set(_book(later).slots) == {order.id}  # expired by then


def test_a_listed_phone_in_a_group_is_flagged_before_it_is_matched():
    seller, buyer = verified_seller(), funded_buyer()
    place(buyer, 700, quantity=10)
    do_not_call.load("US", ["+1 415 555 0147"], actor=None)
    db.session.commit()
    listed = arrival(seller, 1, phone="+1 415 555 0147")
    clean = arrival(seller, 2, phone="+1 415 555 0148")
    realtime.sell_group([listed, clean])
    flagged, other = (db.session.get(Lead, answer(a)["id"]) for a in (listed, clean))
    assert (flagged.do_not_call, flagged.has_phone) == (True, False)
    assert (other.do_not_call, other.has_phone) == (False, True)
    assert len(answer(listed)["sales"]) == 1  # still sold, for its email


def test_a_revoked_api_key_is_refused_by_the_next_request(client, api_key_for):
    seller = verified_seller()
    headers = api_key_for(seller)
    assert client.get("/api/v1/balance", headers=headers).status_code == 200
    key = db.session.scalar(sa.select(ApiKey).where(ApiKey.user_id == seller.id))
    accounts.revoke_api_key(seller, key.id)
    db.session.commit()
    assert client.get("/api/v1/balance", headers=headers).status_code == 401
