import io
from datetime import timezone

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Batch, Lead, Role, TrustLevel
from app.services.crypto import current_vault
from tests.conftest import make_user
from tests.ingest_helpers import csv_bytes, person


def _upload(client, headers, data: bytes, **form):
    body = {"default_country": "US", "floor_price": "100", "cap": "2", **form,
            "file": (io.BytesIO(data), "leads.csv")}
    return client.post("/api/v1/batches", headers=headers, data=body,
                       content_type="multipart/form-data")


def test_upload_then_poll_then_download_rejections(client, seller, api_key_for):
    headers = api_key_for(seller)
    response = _upload(client, headers, csv_bytes([person(1), person(2, email="x@"),
                                                   person(3, phone="=1+2", email="")]))
    assert response.status_code in (201, 202), response.json
    batch_id = response.json["id"]
    body = client.get(f"/api/v1/batches/{batch_id}", headers=headers).json
    assert body["status"] == "held"
    assert (body["rows_total"], body["accepted"], body["rejected"]) == (3, 1, 2)
    assert body["progress"] == 1.0 and body["cap"] == 2 and body["floor_price"] == 100
    assert body["rejection_counts"] == {"invalid_email": 1, "invalid_phone": 1}
    csv_response = client.get(f"/api/v1/batches/{batch_id}/rejections", headers=headers)
    assert csv_response.mimetype == "text/csv"
    lines = csv_response.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0] == "row,code,message,first_name,email,phone,age,gender,region,consent_at,source_url"
    assert lines[1].startswith("3,invalid_email,")
    assert ",'=1+2," in lines[2]  # a formula-looking cell is defused for spreadsheets


def test_not_a_csv_is_one_clear_error_and_no_batch(client, seller, api_key_for):
    response = _upload(client, api_key_for(seller), b"\x00\x01\x02PK\x03\x04" * 100)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "binary_file"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Batch)) == 0


def test_bad_terms_are_refused(client, seller, api_key_for):
    headers = api_key_for(seller)
    response = _upload(client, headers, csv_bytes([person(1)]), default_country="Narnia")
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_default_country"
    response = _upload(client, headers, csv_bytes([person(1)]), cap="0")
    assert response.json["error"]["details"]["field"] == "cap"
    response = _upload(client, headers, csv_bytes([person(1)]), mapping='{"x": "shoe_size"}')
    assert response.json["error"]["code"] == "unknown_field"


def test_every_bad_term_is_named_at_once():
    from app.errors import ValidationFailed
    from app.services.ingest import pipeline

    with pytest.raises(ValidationFailed) as refused:
        pipeline.check_terms("Narnia", -1, 0, "[1]")
    assert refused.value.code == "invalid_default_country"
    assert [e["field"] for e in refused.value.details["errors"]] == [
        "default_country", "floor_price", "cap", "mapping"]


def test_same_file_twice_is_a_conflict_unless_allowed(client, seller, api_key_for):
    headers = api_key_for(seller)
    data = csv_bytes([person(1)])
    first = _upload(client, headers, data).json["id"]
    again = _upload(client, headers, data)
    assert again.status_code == 409
    assert again.json["error"]["code"] == "duplicate_file"
    assert again.json["error"]["details"]["batch_id"] == first
    assert _upload(client, headers, data, allow_duplicate="true").status_code in (201, 202)


def test_a_floor_far_above_recent_prices_needs_confirm_floor(client, seller, api_key_for):
    from tests.market_helpers import recent_sales_at

    recent_sales_at(300)
    headers, data = api_key_for(seller), csv_bytes([person(1)])
    refused = _upload(client, headers, data, floor_price="901")
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "floor_needs_confirmation"
    assert refused.json["error"]["details"]["field"] == "floor_price"
    accepted = _upload(client, headers, data, floor_price="901", confirm_floor="true")
    assert accepted.status_code in (201, 202) and accepted.json["floor_price"] == 901


def test_batches_are_private_to_their_seller_but_not_to_admins(client, seller, api_key_for):
    batch_id = _upload(client, api_key_for(seller), csv_bytes([person(1)])).json["id"]
    other = make_user(Role.SELLER)
    assert client.get(f"/api/v1/batches/{batch_id}", headers=api_key_for(other)).status_code == 404
    assert client.get(f"/api/v1/batches/{batch_id}/rejections",
                      headers=api_key_for(other)).status_code == 404
    admin = make_user(Role.ADMIN)
    assert client.get(f"/api/v1/batches/{batch_id}", headers=api_key_for(admin)).status_code == 200


def test_buyers_cannot_upload(client, buyer, api_key_for):
    response = _upload(client, api_key_for(buyer), csv_bytes([person(1)]))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "not_a_seller"


def test_real_time_lead_accepted_then_duplicate(client, api_key_for):
    seller = make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)
    headers = api_key_for(seller)
    lead = {"email": "Visitor@Mail.Example.com", "phone": "(415) 555-0199", "first_name": "Ann",
            "age": 34, "interests": ["cars", "Travel"], "region": "California",
            "consent_at": "2026-11-01T09:30:00Z", "source_url": "https://landing.example.com/offer",
            "default_country": "US", "floor_price": 300, "cap": 1}
    response = client.post("/api/v1/leads", headers=headers, json=lead)
    assert response.status_code == 201, response.json
    assert response.json["status"] == "live" and response.json["sales"] == []
    stored = db.session.get(Lead, response.json["id"])
    assert (stored.region, stored.age, stored.interests, stored.floor_price) == \
        ("US-CA", 34, ["cars", "travel"], 300)
    again = client.post("/api/v1/leads", headers=headers, json=lead)
    assert again.status_code == 422
    assert again.json["error"]["code"] == "duplicate_own"
    assert again.json["error"]["message"] == (
        f"You already have this lead: row {stored.row_number} of your batch #{stored.batch_id}.")


def test_real_time_lead_verdicts_are_4xx_with_the_row_code(client, seller, api_key_for):
    headers = api_key_for(seller)
    base = {"consent_at": "2026-11-01T09:30:00Z", "source_url": "https://x.example.com",
            "default_country": "US"}
    cases = [({"phone": "12345"}, "invalid_phone"), ({"email": "nope"}, "invalid_email"),
             ({}, "no_contact"), ({"email": "a@mail.example.com", "age": 12}, "implausible_age")]
    for fields, code in cases:
        response = client.post("/api/v1/leads", headers=headers, json=base | fields)
        assert response.status_code == 422, fields
        assert response.json["error"]["code"] == code
        assert response.json["error"]["message"]
    missing = client.post("/api/v1/leads", headers=headers, json={"email": "a@mail.example.com"})
    assert missing.status_code == 422
    assert missing.json["error"]["code"] == "invalid_default_country"
    assert missing.json["error"]["details"]["field"] == "default_country"


def test_a_real_time_lead_needs_no_default_country_when_it_tells_its_own(client, seller,
                                                                         api_key_for):
    headers = api_key_for(seller)
    base = {"consent_at": "2026-11-01T09:30:00Z", "source_url": "https://x.example.com"}
    # The phone's +prefix: read as written, and its country is the lead's default.
    prefixed = client.post("/api/v1/leads", headers=headers,
                           json=base | {"phone": "+49 30 901820", "email": "a@mail.example.com"})
    assert prefixed.status_code == 201, prefixed.json
    # The country the lead names reads a number written without its prefix.
    named = client.post("/api/v1/leads", headers=headers,
                        json=base | {"phone": "912 345 678", "country": "Spain"})
    assert named.status_code == 201, named.json
    assert (db.session.get(Lead, prefixed.json["id"]).country,
            db.session.get(Lead, named.json["id"]).country) == ("DE", "ES")
    assert current_vault().open_contact(
        db.session.get(Lead, named.json["id"]).contact_enc)["phone"] == "+34912345678"
    # Neither: a national number cannot be read, and the answer says what to give.
    neither = client.post("/api/v1/leads", headers=headers, json=base | {"phone": "030 901820"})
    assert neither.status_code == 422
    assert neither.json["error"]["code"] == "invalid_default_country"
    assert "+country prefix" in neither.json["error"]["message"]
    unknown = client.post("/api/v1/leads", headers=headers,
                          json=base | {"phone": "030 901820", "country": "Narnia"})
    assert unknown.status_code == 422
    assert unknown.json["error"]["message"].startswith("“Narnia” is not a country we know.")


def test_a_real_time_lead_s_region_or_city_names_its_country_as_in_a_csv_row(
        client, seller, api_key_for):
    headers = api_key_for(seller)
    base = {"consent_at": "2026-11-01T09:30:00Z", "source_url": "https://x.example.com"}
    # A region's name, a region's code, a city: the lead's country, as a CSV row reads it.
    by_name = client.post("/api/v1/leads", headers=headers,
                          json=base | {"phone": "912 345 678", "region": "Madrid"})
    assert by_name.status_code == 201, by_name.json
    by_code = client.post("/api/v1/leads", headers=headers,
                          json=base | {"phone": "8 (495) 123-45-67", "region": "RU-MOW"})
    assert by_code.status_code == 201, by_code.json
    by_city = client.post("/api/v1/leads", headers=headers,
                          json=base | {"phone": "030 901820", "city": "Berlin"})
    assert by_city.status_code == 201, by_city.json
    stored = [db.session.get(Lead, r.json["id"]) for r in (by_name, by_code, by_city)]
    assert [(lead.country, lead.region) for lead in stored] == [
        ("ES", "ES-M"), ("RU", "RU-MOW"), ("DE", "DE-BE")]
    assert [current_vault().open_contact(lead.contact_enc)["phone"] for lead in stored] == [
        "+34912345678", "+74951234567", "+4930901820"]
    # A region we do not know names no country: the answer says so, and how to tell one.
    unknown = client.post("/api/v1/leads", headers=headers,
                          json=base | {"phone": "030 901820", "region": "Narnia"})
    assert unknown.status_code == 422
    assert unknown.json["error"]["code"] == "invalid_default_country"
    assert unknown.json["error"]["message"] == (
        "“Narnia” is not a region we know. Give default_country (a two-letter country code "
        "such as RU, ES or US), the lead's country or region, or its phone with its "
        "+country prefix: the lead's phone number and region are read in that country.")


def test_a_ping_s_region_names_its_country(client, seller, api_key_for):
    ping = {"has_email": True, "consent_at": "2026-11-01T09:30:00Z",
            "source_url": "https://x.example.com", "floor_price": 100, "cap": 1}
    answer = client.post("/api/v1/pings", headers=api_key_for(seller),
                         json=ping | {"region": "Catalonia"})
    assert answer.status_code == 200 and answer.json["reason"] == "no_buyer", answer.json


def test_a_real_time_lead_s_phone_verdict_names_the_default_country_it_sent(
        client, seller, api_key_for):
    """No batch the seller chose: the country a national number was read in is the
    default_country of the post (an upload's verdict names the batch's)."""
    lead = {"phone": "12345", "consent_at": "2026-11-01T09:30:00Z",
            "source_url": "https://x.example.com", "default_country": "US"}
    refused = client.post("/api/v1/leads", headers=api_key_for(seller), json=lead)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "invalid_phone"
    assert refused.json["error"]["message"] == (
        "The phone “12345” is not a valid phone number (numbers without a +country prefix "
        "are read as US, from the default_country you sent).")


def test_a_form_field_named_only_blanks_is_a_clear_error(client, seller, api_key_for):
    """Found by the schemathesis run: its name reached the error body keyed by None."""
    response = _upload(client, api_key_for(seller), csv_bytes([person(1)]), **{"\r": "x"})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert response.json["error"]["details"]["fields"]["form"][""] == ["Unknown field."]


def test_the_docs_say_which_lead_fields_a_lead_needs(client, seller, api_key_for):
    """The schema requires only default_country; the consent evidence is needed too, and
    the API document says so at those two fields."""
    headers = api_key_for(seller)
    documented = client.get("/api/v1/openapi.json").json["components"]["schemas"]["LeadInput"]
    lead = {"email": "a@mail.example.com", "consent_at": "2026-11-01T09:30:00Z",
            "source_url": "https://x.example.com", "default_country": "US"}
    for needed in ("consent_at", "source_url"):
        assert "needed" in documented["properties"][needed]["description"]
        response = client.post("/api/v1/leads", headers=headers,
                               json={k: v for k, v in lead.items() if k != needed})
        assert response.status_code == 422 and response.json["error"]["code"] == "no_consent"
    assert "own clock" in documented["properties"]["consent_at"]["description"]
    # Without an offset, 09:30 is read in California (17:30 UTC), as the document says.
    answer = client.post("/api/v1/leads", headers=headers, json=lead | {
        "consent_at": "2026-11-03T09:30", "region": "US-CA", "country": "US"})
    assert answer.status_code == 201, answer.json
    stored = db.session.get(Lead, answer.json["id"]).consent_at
    assert stored.astimezone(timezone.utc).hour == 17
