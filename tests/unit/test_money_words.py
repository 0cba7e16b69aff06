"""Money typed and shown in the reader's locale, and the words for every code."""
from decimal import Decimal

import pytest

from app.formatting import format_money, money_input, parse_money, user_locale
from app.labels import LABELS, choices, describe_filters, label
from app.models import OrderStatus


@pytest.mark.parametrize("text, locale, minor", [
    ("1,50", "ru", 150), ("1 500,00", "ru", 150_000), ("1\u00a0500,00", "ru", 150_000),
    ("1500", "ru", 150_000), ("12.34", "ru", 1_234),  # the plain spelling reads everywhere
    ("1,234.50", "en_US", 123_450), ("1234.5", "en_US", 123_450), ("0.01", "en_US", 1),
    ("1.500,00", "de", 150_000), ("1,5", "es", 150), ("0", "en_US", 0),
])
def test_amounts_as_each_locale_writes_them(text, locale, minor):
    assert parse_money(text, locale) == minor


@pytest.mark.parametrize("text, locale", [
    ("1,50", "en_US"), ("1,2,3", "en_US"), ("12.345", "en_US"), ("1,234.50", "ru"),
    ("-5", "en_US"), ("1e5", "en_US"), ("5 USD", "en_US"), ("", "ru"), ("abc", "ru"),
    ("NaN", "en_US"), ("10000000000000000", "en_US"),
])
def test_what_is_not_an_amount_is_refused_with_an_example_in_the_locale(text, locale):
    with pytest.raises(ValueError) as refused:
        parse_money(text, locale)
    assert "minor units" not in str(refused.value)


@pytest.mark.parametrize("text, locale, says", [
    ("-5", "en_US", "“-5” is below zero"), ("\u22122,50", "ru", "below zero"),
    ("2,50", "en_US", "“2,50” is not an amount like 1,234.50: the cents follow a “.” here"),
    ("1,2,3", "en_US", "“1,2,3” is not an amount like 1,234.50"),
])
def test_a_refusal_says_what_is_wrong_with_the_amount(text, locale, says):
    with pytest.raises(ValueError) as refused:
        parse_money(text, locale)
    assert says in str(refused.value)


def test_the_refusal_shows_an_amount_as_the_reader_writes_it():
    with pytest.raises(ValueError, match="like 1\u00a0234,50"):
        parse_money("abc", "ru")
    with pytest.raises(ValueError, match="like 1,234.50"):
        parse_money("abc", "en_US")


def _shown(app, accept_language, minor, currency=None):
    with app.test_request_context(headers={"Accept-Language": accept_language}):
        return format_money(minor, currency), money_input(minor), str(user_locale())


def test_money_is_shown_in_the_readers_locale(app):
    assert _shown(app, "ru-RU,ru;q=0.9", 123_450) == ("1\u00a0234,50\u00a0$", "1234,50", "ru_RU")
    assert _shown(app, "en-US", -1_234) == ("-$12.34", "-12.34", "en_US")
    assert _shown(app, "de-DE", 123_450, "EUR")[0] == "1.234,50\u00a0€"
    assert _shown(app, "xx, ja;q=0.5", 500) == ("$5.00", "5.00", "en_US")  # none we speak
    assert _shown(app, "", 500, "JPY")[0] == "500 JPY"  # its own minor unit, by its code
    assert _shown(app, "ru", 500_000, "JPY")[0] == "500\u00a0000 JPY"
    with app.test_request_context():
        assert parse_money(money_input(123_456)) == 123_456


def test_outside_a_request_money_reads_in_english(app):
    assert format_money(150) == "$1.50" and parse_money("1,234.50") == 123_450
    assert Decimal(money_input(5)) == Decimal("0.05")


def test_every_code_has_words():
    assert label("f", "gender") == "Female" and label(OrderStatus.CANCELLED, "order") == "Cancelled"
    assert label("married", "marital_status") == "Married"
    assert label("awaiting_seller", "return") == "Awaiting the seller"
    assert label("consent_at", "field") == "Consent date and time"
    assert label(None, "gender") == "" and label("requires_nothing", "topup") == "Requires nothing"
    assert [(c.value, c.label) for c in choices("employed")] == [
        ("yes", "Employed"), ("no", "Not employed"), ("unknown", "Not given")]
    from app.models import BatchStatus, ReturnStatus
    from app.services.ingest.fields import FIELDS
    for kind, codes in (("order", OrderStatus), ("batch", BatchStatus), ("return", ReturnStatus),
                        ("field", FIELDS)):
        assert {getattr(c, "value", c) for c in codes} <= set(LABELS[kind]), kind


def test_an_orders_filters_in_words():
    filters = {"age_min": 25, "genders": ["f"], "regions": ["RU-KGD", "RU-MOW"],
               "countries": ["ES"], "employed": "yes", "exclusive_only": True, "interests": [],
               "min_score": None}
    assert describe_filters(filters, "ru") == [
        ("age from", "25"), ("gender", "Female"),
        ("regions", "Калининградская область, Москва"), ("countries", "Испания"),
        ("employment", "Employed"), ("exclusive only", "yes")]
