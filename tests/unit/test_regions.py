"""The one home of region names and codes: what the ingest and the order filters
resolve, and what the picker shows and finds."""
from datetime import datetime, timezone

import pytest

from app.services.regions import (
    chosen_regions, country_name, region_name, resolve_country, resolve_region, search_regions,
)


@pytest.mark.parametrize("value, expected", [
    ("Москва", "RU-MOW"), ("Moscow", "RU-MOW"), ("Moskva", "RU-MOW"), ("RU-MOW", "RU-MOW"),
    ("ru_mow", "RU-MOW"), ("Kaliningrad", "RU-KGD"), ("Kaliningrad Oblast", "RU-KGD"),
    ("Калининград", "RU-KGD"), ("Калининградская обл.", "RU-KGD"),
    ("Московская область", "RU-MOS"), ("Татарстан", "RU-TA"), ("Tatarstan", "RU-TA"),
    ("Madrid", "ES-M"), ("Catalonia", "ES-CT"), ("California", "US-CA"), ("Bayern", "DE-BY"),
    ("Bavaria", "DE-BY"),
])
def test_names_in_russian_english_and_the_local_language_and_codes(value, expected):
    assert resolve_region(value, None) == expected


@pytest.mark.parametrize("value", ["Nowhereland", "Atlantis", "XX-YY", "", "Mosk", "Kal"])
def test_unknown_names_and_starts_too_short_to_mean_one_region_are_refused(value):
    assert resolve_region(value, None) is None


def test_a_known_country_keeps_its_regions_and_a_default_country_breaks_ties():
    assert resolve_region("Kaliningrad", "ES") is None
    assert resolve_region("RU-MOW", "ES") is None
    assert resolve_region("CA", None, "US") == "US-CA"  # a bare subdivision code
    assert resolve_region("M", None, "ES") == "ES-M"


@pytest.mark.parametrize("value", ["Россия", "RU", "rus", "Russian Federation", "рф"])
def test_country_names_and_codes(value):
    assert resolve_country(value) == "RU"


def test_names_are_shown_in_the_readers_language_else_the_local_one():
    assert region_name("RU-KGD", "ru") == "Калининградская область"
    assert region_name("RU-MOW", "ru") == "Москва"
    assert region_name("RU-MOW", "en") == "Moskva"  # ISO's romanised local name
    assert region_name("US-CA", "en") == "California"  # no nicknames ("The Golden State")
    assert region_name("ES-MD", "en") == "Comunidad de Madrid"  # not "Madrid, Comunidad de"
    assert region_name("XX-YY", "en") == "XX-YY"
    assert (country_name("ES", "ru"), country_name("ES", "en")) == ("Испания", "Spain")


@pytest.mark.parametrize("query, language, first", [
    ("калин", "ru", "RU-KGD"), ("kalin", "en", "RU-KGD"), ("моск", "ru", "RU-MOW"),
    ("Москва", "en", "RU-MOW"), ("ES-M", "en", "ES-M"), ("madrid", "es", "ES-MD"),
])
def test_search_finds_regions_by_any_of_their_names(query, language, first):
    found = search_regions(query, language)
    assert found and found[0].code == first
    assert search_regions("zzzzqq", language) == []


def test_search_shows_the_name_the_local_name_and_the_country():
    match = search_regions("Kaliningrad", "en")[0]
    assert (match.code, match.name, match.local_name, match.country) == (
        "RU-KGD", "Kaliningradskaya oblast'", "Калининградская область", "Russia")


def test_the_picker_shows_typed_values_resolved_and_keeps_what_it_cannot_read():
    assert chosen_regions("Москва; RU-MOW, Kaliningrad, Atlantis", "ru") == [
        {"code": "RU-MOW", "name": "Москва"},
        {"code": "RU-KGD", "name": "Калининградская область"},
        {"code": "Atlantis", "name": "Atlantis"}]


def test_a_name_that_is_the_query_comes_before_names_that_start_with_it():
    assert search_regions("Moscow")[0].code == "RU-MOW"  # not Moscow Oblast
    assert search_regions("Madrid")[0].code in ("ES-MD", "ES-M")


def test_a_region_asked_for_holds_the_regions_iso_lists_inside_it():
    from types import SimpleNamespace

    from app.labels import describe_filters
    from app.market.filters import Filters
    from app.services.regions import outermost, with_parts

    assert with_parts({"ES-MD"}) == {"ES-MD", "ES-M"}  # the community holds the province
    assert with_parts({"RU-MOW"}) == {"RU-MOW"}
    filters = Filters.parse({"regions": ["Comunidad de Madrid"]})
    # Uploads place "Madrid" in the province: the community's order must take it.
    assert resolve_region("Madrid", None) == "ES-M"
    lead = SimpleNamespace(region="ES-M", age=30, gender="f", country="ES", has_phone=True,
                           has_email=True, cap=1)
    assert filters.matches(lead, datetime.now(timezone.utc))
    assert not filters.matches(SimpleNamespace(**{**vars(lead), "region": "ES-B"}),
                               datetime.now(timezone.utc))
    assert outermost(list(filters.regions)) == ["ES-MD"]
    assert describe_filters(filters.to_dict()) == [("regions", "Comunidad de Madrid")]
