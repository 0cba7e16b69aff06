"""`POST /api/v1/leads` with a key the process keeps (app.api.auth.key_checked_with_sale):
the request thread sends no statement at all, the seller's group transaction checks
the key's revision before it stores the lead, and whatever changed in between (the
key revoked, the user suspended or edited) gives the answer a request reading the key
would have given -- with nothing stored for a key no longer good. PostgreSQL: SQLite
keeps no keys (every request reads its key)."""
import threading

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import ApiKey, Lead, TrustLevel, User
from app.realtime import auction
from app.services import accounts
from tests.conftest import on_postgres
from tests.market_helpers import funded_buyer, place, verified_seller
from tests.query_count import counted
from tests.test_realtime_groups import TERMS, visitor
from tests.test_seller_process import seller_process  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(not on_postgres(), reason="keys are kept on PostgreSQL only")


@pytest.fixture
def groups_only(app, monkeypatch):
    """No order bids, and whether one does is looked up once an hour: every lead goes
    to the seller's groups (in the tests it is looked up for each lead)."""
    monkeypatch.setitem(app.config, "PING_CHECK_SECONDS", 3600)
    monkeypatch.setattr(auction, "_bidders_seen", auction._BiddersSeen())


def _kept_key(client, seller: User, api_key_for) -> dict:
    headers = api_key_for(seller)
    for _ in range(2):  # the first use is written (the key's last use): read again, kept
        assert client.get("/api/v1/balance", headers=headers).status_code == 200
    return headers


def _lead(client, headers, i: int, **fields):
    return client.post("/api/v1/leads", headers=headers, json={**visitor(i, **fields), **TERMS})


def _leads() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Lead))


def _refused_key_answer(client):
    reply = client.post("/api/v1/leads", headers={"Authorization": "Bearer lx_no-such-key"},
                        json={**visitor(99), **TERMS})
    assert reply.status_code == 401
    return reply.get_json()


def test_a_kept_key_costs_the_request_no_statement_and_its_group_one(
        app, client, api_key_for, groups_only):
    seller = verified_seller()
    place(funded_buyer(amount=10_000), 500, quantity=5)
    headers = _kept_key(client, seller, api_key_for)
    assert _lead(client, headers, 0).status_code == 201  # the bidders looked up once
    with counted(lambda statement: (threading.current_thread().name, statement)) as seen:
        reply = _lead(client, headers, 1)
    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json()["sales"]

    def of(thread_name: str) -> list[str]:
        return [s for name, s in seen if name.startswith(thread_name)]

    assert of("MainThread") == []  # the test client's request: no SQL
    seller_side = of("leadx-realtime")
    assert len([s for s in seller_side if "md5(" in s]) == 1
    assert not [s for s in seller_side if "users_1.password_hash" in s]


def test_a_key_revoked_meanwhile_stores_nothing_and_is_refused_as_any_bad_key(
        app, client, api_key_for, groups_only):
    seller = verified_seller()
    headers = _kept_key(client, seller, api_key_for)
    assert _lead(client, headers, 0).status_code == 201
    before = _leads()
    accounts.revoke_api_key(seller, db.session.scalar(sa.select(ApiKey.id)))
    db.session.commit()
    reply = _lead(client, headers, 1)
    assert (reply.status_code, reply.get_json()) == (401, _refused_key_answer(client))
    assert _leads() == before


def test_an_answer_without_a_sale_checks_the_key_first(app, client, api_key_for, groups_only):
    """A lead refused by its verdict (no sale, so no group to check the key) from a key
    revoked meanwhile: the key's refusal, not the verdict."""
    seller = verified_seller()
    headers = _kept_key(client, seller, api_key_for)
    bad = _lead(client, headers, 0, consent_at="not a date")
    assert bad.status_code == 422
    accounts.revoke_api_key(seller, db.session.scalar(sa.select(ApiKey.id)))
    db.session.commit()
    reply = _lead(client, headers, 1, consent_at="not a date")
    assert (reply.status_code, reply.get_json()) == (401, _refused_key_answer(client))


def test_a_seller_suspended_meanwhile_is_refused_and_an_edited_one_sells(
        app, client, api_key_for, groups_only):
    seller = verified_seller()
    headers = _kept_key(client, seller, api_key_for)
    assert _lead(client, headers, 0).status_code == 201
    before = _leads()

    # Any other change to the user's row: the request signs in again and its lead is stored once.
    db.session.execute(sa.update(User).where(User.id == seller.id).values(display_name="Renamed"))
    db.session.commit()
    reply = _lead(client, headers, 1)
    assert reply.status_code == 201, reply.get_json()
    assert _leads() == before + 1

    seller = db.session.get(User, seller.id)
    accounts.set_trust_level(seller, TrustLevel.SUSPENDED, reason="test", actor=None)
    db.session.commit()
    reply = _lead(client, headers, 2)
    assert reply.status_code == 403 and reply.get_json()["error"]["code"] == "seller_suspended"
    assert _leads() == before + 1


def test_the_seller_process_checks_the_key_too(app, client, api_key_for, groups_only,
                                               seller_process):  # noqa: F811
    seller = verified_seller()
    headers = _kept_key(client, seller, api_key_for)
    assert _lead(client, headers, 0).status_code == 201
    before = _leads()
    accounts.revoke_api_key(seller, db.session.scalar(sa.select(ApiKey.id)))
    db.session.commit()
    reply = _lead(client, headers, 1)
    assert (reply.status_code, reply.get_json()) == (401, _refused_key_answer(client))
    assert _leads() == before
