"""The real-time routes' JSON fast path (app.api.fast_json) against webargs+marshmallow:
whatever body it takes, it loads exactly as the schema does (a property test over
random bodies), it takes the bodies sellers send, and every answer -- the errors of
bodies it leaves to marshmallow included -- is the one the routes gave without it."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from webargs.core import parse_json

from app.api.fast_json import FastLoader
from app.api.pingpost import PingInputSchema, PostInputSchema
from app.api.schemas import LeadInputSchema
from tests.market_helpers import funded_buyer, place, verified_seller
from tests.test_realtime_groups import TERMS, visitor

SCHEMAS = [LeadInputSchema(), PingInputSchema(), PostInputSchema()]
NAMES = sorted({name for schema in SCHEMAS for name in schema.load_fields}) + ["unknown", "id"]

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2, max_value=25)
    | st.integers(min_value=-2**70, max_value=2**70) | st.sampled_from([0, 1, 20, 21, 10**13, 10**13 + 1])
    | st.floats(allow_nan=False) | st.text(max_size=8) | st.sampled_from(["US", "true", "1", "abc_-9"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(NAMES), values, max_size=8).map(json.dumps),
    st.fixed_dictionaries({"default_country": st.sampled_from(["US", "us", 1, None])},
                          optional={n: values for n in NAMES if n != "default_country"}).map(json.dumps),
    values.map(json.dumps),
    st.sampled_from(["", "{", "[]", "null", '{"default_country": "US"', "NaN", '{"a": 1e999}']),
).map(str.encode) | st.binary(max_size=20)


def _marshmallow(schema, body: bytes):
    try:
        return schema.load(parse_json(body))
    except (ValidationError, ValueError):
        return "refused"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=st.sampled_from(SCHEMAS), body=bodies)
def test_what_the_fast_path_takes_it_loads_as_marshmallow_does(schema, body):
    fast = FastLoader(schema).load("application/json", body)
    if fast is not None:
        expected = _marshmallow(schema, body)
        assert fast == expected
        assert list(fast) == list(expected)  # the schema's order
        assert [type(v) for v in fast.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_the_bodies_sellers_send_take_the_fast_path(schema):
    lead = {**visitor(1, phone="+1 415 555 0100", age=41, interests=["cars"], consent=True), **TERMS}
    if "ping_id" in schema.load_fields:
        lead["ping_id"] = "AbC_-12"
    lead = {k: v for k, v in lead.items() if k in schema.load_fields}
    loader = FastLoader(schema)
    body = json.dumps(lead).encode()
    assert loader.load("application/json", body) == schema.load(lead)
    assert loader.load("text/plain", body) is None  # webargs reads no JSON from it
    without_terms = {k: v for k, v in lead.items() if k not in ("floor_price", "cap")}
    assert loader.load("application/json", json.dumps(without_terms).encode()) == schema.load(without_terms)


ERROR_BODIES = [
    (None, "application/json"), ('{"default_country": "US"', "application/json"),
    ("[1, 2]", "application/json"), ("null", "application/json"), ("", "application/json"),
    (json.dumps({**visitor(1), **TERMS}), "text/plain"),
    (json.dumps({**visitor(1), **TERMS, "unknown": 1}), "application/json"),
    (json.dumps({**visitor(1), **TERMS, "email": None}), "application/json"),
    (json.dumps({**visitor(1), **TERMS, "email": 7}), "application/json"),
    (json.dumps({**visitor(1), **TERMS, "cap": 21}), "application/json"),
    (json.dumps({**visitor(1), **TERMS, "cap": True}), "application/json"),
    (json.dumps({**visitor(1), **TERMS, "floor_price": 1.5}), "application/json"),
    (json.dumps({**visitor(1), **TERMS, "floor_price": -1}), "application/json"),
    (json.dumps(visitor(1)), "application/json"),  # no default_country
    (json.dumps({**visitor(1), **TERMS, "default_country": "XX"}), "application/json"),
    (json.dumps({**visitor(1, consent_at="yesterday"), **TERMS}), "application/json"),
    (json.dumps({**visitor(1, email="not an address"), **TERMS}), "application/json"),
    (json.dumps({**visitor(1, age=7), **TERMS}), "application/json"),
    (json.dumps({**visitor(1), **TERMS, "has_email": "yes"}), "application/json"),
    (json.dumps({**visitor(1), **TERMS, "ping_id": "no such"}), "application/json"),
]


@pytest.mark.parametrize("path", ["/api/v1/leads", "/api/v1/pings", "/api/v1/posts"])
def test_every_answer_is_the_one_given_without_the_fast_path(client, api_key_for, monkeypatch, path):
    seller = verified_seller()
    place(funded_buyer(amount=50 * 500), 500, quantity=50)
    headers = api_key_for(seller)

    def answers(n: int):
        out = []
        for body, content_type in ERROR_BODIES:
            reply = client.post(path, headers=headers, data=body, content_type=content_type)
            out.append((reply.status_code, reply.get_json()))
        valid = {**visitor(500 + n), **TERMS}
        if path == "/api/v1/posts":
            valid["ping_id"] = "unknownping"
        elif path == "/api/v1/pings":
            valid = {k: v for k, v in valid.items() if k in PingInputSchema().load_fields}
        reply = client.post(path, headers=headers, json=valid)
        out.append((reply.status_code, sorted(reply.get_json())))
        return out

    fast = answers(0)
    monkeypatch.setattr(FastLoader, "load", lambda self, mimetype, body: None)
    slow = answers(1)
    assert fast == slow
    assert {status for status, _ in fast} >= {400, 422}
