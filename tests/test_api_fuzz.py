"""schemathesis over the OpenAPI document, as a seller, a buyer and an admin: every
operation gets generated requests (valid ones, and ones the document says are
invalid), in a market with real batches, leads, orders and sales to hit. No request
may end in a 5xx or an unhandled exception, and every 4xx must carry the SPEC §11
error shape."""
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app import create_app
from app.extensions import db
from app.models import Role
from tests.conftest import make_user
from tests.ingest_helpers import person
from tests.market_helpers import funded_buyer, live_leads, place, verified_seller

# Enough to find each class of defect again in CI; FUZZ_EXAMPLES=500 for a deeper hunt.
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "30"))


@pytest.fixture
def market(app, stripe_app, api_key_for):
    """Keys for each role, with something of theirs behind ids 1, 2, 3."""
    seller = verified_seller()
    buyer = funded_buyer(10_000_000)
    admin = make_user(Role.ADMIN)
    live_leads(seller, [person(i) for i in range(3)], cap=2)
    place(buyer, 500, 2)
    place(buyer, 400, 5)
    return {"seller": api_key_for(seller), "buyer": api_key_for(buyer),
            "admin": api_key_for(admin)}


def _isolated(app):
    """The app as production runs it: each request in its own app context, after the
    test's own writes are committed (as tests.conftest.IsolatedClient does)."""

    def wsgi(environ, start_response):
        db.session.commit()
        with app.app_context():
            return list(app(environ, start_response))

    return wsgi


def _document() -> dict:
    """The OpenAPI document, from an app of its own: it depends on no data."""
    app = create_app("testing", SQLALCHEMY_DATABASE_URI="sqlite://")
    return app.test_client().get("/api/v1/openapi.json").get_json()


schema = schemathesis.openapi.from_dict(_document())


def _check(case, response, role):
    assert response.status_code < 500, (
        f"{role}: {case.method} {case.formatted_path} -> {response.status_code}\n"
        f"{response.text[:2000]}")
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith(
            "application/json"):
        error = response.json().get("error")
        assert error and error["code"] and error["message"], response.text[:500]


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, app, market):
    wsgi = _isolated(app)
    for role, headers in market.items():
        _check(case, case.call(headers=headers, app=wsgi), role)
