from app.models import Role
from app.services import ledger
from tests.conftest import log_in, make_user
from tests.query_count import counted


def test_balance_with_an_api_key(client, buyer, api_key_for):
    ledger.manual_credit(buyer, 2_500, reason="wire", actor=None)
    response = client.get("/api/v1/balance", headers=api_key_for(buyer))
    assert response.status_code == 200
    assert response.json == {"currency": "USD", "available": 2_500, "held": 0, "pending": 0}


def test_a_read_finds_the_key_and_its_user_in_one_query_and_writes_nothing(
        client, buyer, api_key_for):
    headers = api_key_for(buyer)
    client.get("/api/v1/balance", headers=headers)  # records the key's first use
    client.get("/api/v1/balance", headers=headers)  # reads the changed key (PostgreSQL: keeps it)
    with counted() as statements:
        assert client.get("/api/v1/balance", headers=headers).status_code == 200
    lookups = [s for s in statements if "FROM api_keys" in s]
    assert len(lookups) == 1 and "users" in lookups[0], statements
    assert not any(s.lstrip().upper().startswith(("UPDATE", "INSERT")) for s in statements)


def test_seller_balance_shows_pending_and_available(client, seller, api_key_for):
    response = client.get("/api/v1/balance", headers=api_key_for(seller))
    assert response.json == {"currency": "USD", "available": 0, "held": 0, "pending": 0}


def test_missing_or_bad_key_gets_the_error_shape(client, buyer, api_key_for):
    for headers in ({}, {"Authorization": "Bearer lx_nope"}, {"Authorization": "Basic abc"}):
        response = client.get("/api/v1/balance", headers=headers)
        assert response.status_code == 401
        assert set(response.json) == {"error"}
        assert response.json["error"]["code"] == "unauthorized"
        assert response.json["error"]["message"]
        assert response.json["error"]["details"] == {}


def test_the_api_ignores_the_session_cookie(app):
    user = make_user(Role.BUYER)
    client = app.test_client()
    log_in(client, user)
    assert client.get("/api/v1/balance").status_code == 401


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_openapi_document_and_docs_page(client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["info"]["title"] == "Lead exchange API"
    assert "/api/v1/balance" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "ApiError" in spec["components"]["schemas"]
    page = client.get("/api/docs").get_data(as_text=True)
    assert "/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js" in page
    assert "http" not in page.split("<body>")[0]  # everything from our own static/
