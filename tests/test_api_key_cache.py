"""API keys kept per process (app.services.key_cache): a request with a kept key reads
only its revision (a sale of the user's keeps it), and any change to the key or its user -- revoked, the user
deactivated or suspended -- is seen by the very next request, in this process and in
another (a gunicorn server on PostgreSQL)."""
import os
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy import event

from app.extensions import db
from app.models import ApiKey, TrustLevel, User
from app.services import accounts
from tests.conftest import on_postgres
from tests.market_helpers import verified_seller
from tests.test_rate_limits import _start_gunicorn

ROOT = Path(__file__).resolve().parent.parent


class Statements:
    """The SQL statements the app sends while in use."""

    def __init__(self):
        self.seen: list[str] = []

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self._note)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self._note)

    def _note(self, conn, cursor, statement, *args):
        self.seen.append(statement)


def _key_of(user: User) -> ApiKey:
    """The user's first key: rows come in no set order (a key's recorded use moves its
    row behind a later key's), and the test revoking the wrong one passed its request."""
    return db.session.scalar(sa.select(ApiKey).where(ApiKey.user_id == user.id)
                             .order_by(ApiKey.id))


def test_a_kept_key_costs_one_small_statement_and_any_change_is_seen_at_once(
        client, api_key_for):
    seller = verified_seller()
    headers = api_key_for(seller)
    for _ in range(2):  # the first use is written (the key's last use): read again, kept
        assert client.get("/api/v1/balance", headers=headers).status_code == 200
    with Statements() as statements:
        assert client.get("/api/v1/balance", headers=headers).status_code == 200
    user_loads = [s for s in statements.seen if "users_1.password_hash" in s]
    if on_postgres():
        assert user_loads == []  # the key and its user came from the process's copy
        assert any("md5(" in s for s in statements.seen)
    else:
        assert len(user_loads) == 1  # SQLite has no row revision: read every time

    # A sale raises the seller's figures revision: the copy is kept, the revision read.
    db.session.execute(sa.update(User).where(User.id == seller.id)
                       .values(figures_revision=User.figures_revision + 1))
    db.session.commit()
    with Statements() as statements:
        assert client.get("/api/v1/balance", headers=headers).status_code == 200
    assert len([s for s in statements.seen if "users_1.password_hash" in s]) == len(user_loads)

    # The user deactivated (written without the ORM, as another process might).
    db.session.execute(sa.update(User).where(User.id == seller.id)
                       .values(is_active_account=False))
    db.session.commit()
    assert client.get("/api/v1/balance", headers=headers).status_code == 401
    db.session.execute(sa.update(User).where(User.id == seller.id)
                       .values(is_active_account=True))
    db.session.commit()
    assert client.get("/api/v1/balance", headers=headers).status_code == 200

    # Suspended: the real-time lead is refused by the next request, not a stale copy.
    seller = db.session.get(User, seller.id)
    accounts.set_trust_level(seller, TrustLevel.SUSPENDED, reason="test", actor=None)
    db.session.commit()
    reply = client.post("/api/v1/leads", headers=headers, json={
        "email": "a@example.com", "consent_at": "2026-12-01T10:00:00Z",
        "consent_text": "I agree", "default_country": "US"})
    assert reply.status_code == 403, reply.get_json()

    accounts.revoke_api_key(seller, _key_of(seller).id)
    db.session.commit()
    assert client.get("/api/v1/balance", headers=headers).status_code == 401


@pytest.mark.skipif(not on_postgres(), reason="a second process shares the database: PostgreSQL")
def test_a_key_revoked_by_another_process_is_refused_at_once(database_url, api_key_for, tmp_path):
    seller = verified_seller()
    headers = api_key_for(seller)
    other = api_key_for(seller)  # a second key of the same user, kept on
    env = os.environ | {"APP_ENV": "testing", "TEST_DATABASE_URL": database_url,
                        "PYTHONPATH": str(ROOT)}
    process, base = _start_gunicorn(env, tmp_path / "gunicorn.log")
    try:
        with requests.Session() as http:  # one kept-alive connection: the same worker
            for _ in range(3):
                assert http.get(f"{base}/api/v1/balance", headers=headers).status_code == 200
            accounts.revoke_api_key(seller, _key_of(seller).id)
            db.session.commit()
            assert http.get(f"{base}/api/v1/balance", headers=headers).status_code == 401
            assert http.get(f"{base}/api/v1/balance", headers=other).status_code == 200
            db.session.execute(sa.update(User).where(User.id == seller.id)
                               .values(is_active_account=False))
            db.session.commit()
            assert http.get(f"{base}/api/v1/balance", headers=other).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=20)
