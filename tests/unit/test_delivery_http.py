"""The buyer's format (app.aftersale.delivery.http): mappings rendered as JSON, form
and XML, transforms, and replies read by each kind of reply rule."""
import json
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import pytest

from app.aftersale.delivery import http

SALE = {"sale_id": 41, "order_id": 7, "price": 700, "currency": "EUR",
        "sold_at": "2026-12-05T03:00:00+00:00",
        "lead": {"id": 9, "first_name": "Ana María", "last_name": "de la Cruz",
                 "email": "ana@example.com", "phone": "+34600111222", "age": 41,
                 "employed": True, "interests": ["car", "home"], "city": None,
                 "consent_at": "2026-11-30T18:45:00+00:00"}}
RECORD = http.record_of(SALE)


def render(body_format, mapping):
    return http.render(body_format, http.parse_mapping(mapping), RECORD)


def test_json_nests_dotted_names_and_keeps_types():
    content_type, body = render("json", 'lead.email = email\nlead.age = age\nsource = "LeadX"\n'
                                        "id = sale_id\nemployed = employed\ncity = city")
    assert content_type == "application/json"
    assert json.loads(body) == {"lead": {"email": "ana@example.com", "age": 41},
                                "source": "LeadX", "id": 41, "employed": True, "city": None}


def test_form_encodes_text_of_every_value():
    content_type, body = render("form", "EMAIL = upper(email)\nTags = interests\nwork = employed\n"
                                        "city = city")
    assert content_type == "application/x-www-form-urlencoded"
    assert parse_qsl(body.decode(), keep_blank_values=True) == [
        ("EMAIL", "ANA@EXAMPLE.COM"), ("Tags", "car,home"), ("work", "true"), ("city", "")]


def test_xml_puts_each_field_under_lead_nests_dotted_names_and_escapes():
    content_type, body = render("xml", 'Name = full_name\nNote = "<b>&"\n'
                                       "contact.email = email\ncontact.phone = phone")
    assert content_type == "application/xml" and body.startswith(b"<?xml")
    root = ElementTree.fromstring(body)
    assert root.tag == "lead" and root.findtext("Name") == "Ana María de la Cruz"
    assert root.findtext("Note") == "<b>&"
    assert [(e.tag, e.text) for e in root.find("contact")] == [("email", "ana@example.com"),
                                                                ("phone", "+34600111222")]


@pytest.mark.parametrize("source, expected", [
    ("first(full_name)", "Ana"),
    ("last(full_name)", "María de la Cruz"),
    ("last(email)", ""),
    ("digits(phone)", "34600111222"),
    ("no_plus(phone)", "34600111222"),
    ("lower(first_name)", "ana maría"),
    ('date(consent_at, "%d/%m/%Y %H:%M")', "30/11/2026 18:45"),
    ('date(city, "%Y")', ""),
])
def test_transforms(source, expected):
    assert json.loads(render("json", f"x = {source}")[1]) == {"x": expected}


@pytest.mark.parametrize("mapping, message", [
    ("", "The mapping has no fields."),
    ("email", "Line 1: write it as  target = source."),
    ("\nx = password", "Line 2: password is not one of our fields."),
    ("x = shout(email)", "Line 1: shout is not a transform"),
    ('x = upper(email, "%Y")', 'Line 1: only date(field, "pattern") takes a pattern.'),
    ("a:b = email", "Line 1: write it as  target = source."),
    ("x = email\nx = phone", "Line 2: x is given twice"),
    ("a = email\na.b = phone", "Line 2: a.b is given twice, or both as a field"),
    ("a.b = email\na = phone", "Line 2: a is given twice, or both as a field"),
    ("x = date(consent_at)", 'Line 1: only date(field, "pattern") takes a pattern.'),
])
def test_mapping_errors_say_which_line(mapping, message):
    with pytest.raises(http.TemplateError) as error:
        http.parse_mapping(mapping)
    assert str(error.value).startswith(message)


def read(rule, body, status=200):
    return http.read_reply(rule, status, body, "crm.example.com")


def test_status_rule_accepts_any_2xx_and_quotes_a_failure():
    rule = http.ReplyRule()
    assert read(rule, b"whatever", 201) == http.Verdict(True, None)
    assert read(rule, b"  Internal error " + b"x" * 300, 500) == http.Verdict(
        False, "crm.example.com answered HTTP 500: Internal error " + "x" * 185)
    assert read(rule, b"", 404) == http.Verdict(False, "crm.example.com answered HTTP 404")


def test_json_path_rule_with_a_value_and_a_reason():
    rule = http.ReplyRule("json", "$.result.status", "OK", "$.result.message")
    assert read(rule, b'{"result": {"status": "ok", "message": "queued"}}') == \
        http.Verdict(True, "queued")
    assert read(rule, b'{"result": {"status": "error", "message": "duplicate lead"}}') == \
        http.Verdict(False, "duplicate lead")
    assert read(http.ReplyRule("json", "$.status", "ok"), b'{"status": "error"}') == \
        http.Verdict(False, 'crm.example.com answered "error" where $.status should be "ok"')
    assert read(rule, b"<html>not json</html>") == http.Verdict(
        False, 'crm.example.com answered nothing where $.result.status should be "OK"')
    # A 4xx still gives the CRM's own reason when the reason path finds one.
    assert read(rule, b'{"result": {"message": "bad phone"}}', 422) == \
        http.Verdict(False, "crm.example.com answered HTTP 422: bad phone")


def test_json_path_without_a_value_accepts_anything_there():
    rule = http.ReplyRule("json", "$.id")
    assert read(rule, b'{"id": "0031x"}').accepted
    assert read(rule, b'{"errors": []}') == http.Verdict(
        False, "crm.example.com's reply has nothing at $.id")


def test_xpath_rule():
    rule = http.ReplyRule("xpath", "/response/status", "accepted", "/response/reason")
    assert read(rule, b"<response><status>accepted</status></response>").accepted
    assert read(rule, b"<response><status>rejected</status><reason>Duplicate</reason>"
                      b"</response>") == http.Verdict(False, "Duplicate")
    assert not read(rule, b"{not xml").accepted
    # defusedxml: an entity bomb is refused, not expanded.
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><response>&a;</response>'
    assert not read(http.ReplyRule("xpath", "/response"), bomb).accepted


def test_regex_rule_matches_or_compares_its_group():
    assert read(http.ReplyRule("regex", r"^OK\b"), b"OK lead 77").accepted
    rule = http.ReplyRule("regex", r"status=(\w+)", "success", r"reason=([^&]+)")
    assert read(rule, b"status=success&id=4").accepted
    assert read(rule, b"status=failed&reason=Out of area") == http.Verdict(False, "Out of area")


@pytest.mark.parametrize("rule", [
    http.ReplyRule("wait"), http.ReplyRule("json", ""), http.ReplyRule("json", "$[?(@.a"),
    http.ReplyRule("xpath", "/a[", ""), http.ReplyRule("regex", "(", ""),
])
def test_unreadable_rules_are_refused(rule):
    with pytest.raises(http.TemplateError):
        rule.check()


def test_presets_are_valid_templates():
    for preset in http.PRESETS.values():
        http.parse_mapping(preset["mapping"])
        http.ReplyRule(preset["reply_kind"], preset.get("reply_path", ""), "",
                       preset.get("reply_reason", "")).check()
