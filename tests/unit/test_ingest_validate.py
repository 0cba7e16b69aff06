"""Header mapping and row verdicts (SPEC §3): pure functions, no app or database."""
import base64
import json
import pickle
from datetime import date, datetime, timedelta, timezone

import pytest

from app.services.regions import resolve_country, resolve_region
from app.services.ingest.fields import (
    FIELDS, HeaderMappingError, map_headers,
)
from app.services.crypto import ContactVault
from app.services.ingest.validate import (
    FLAGS, VERDICTS, RowContext, parse_timestamp, validate_row, verdict_message,
)
from app.services.ingest.workers import validate_chunk

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=timezone.utc)
RU = RowContext("RU", NOW)
GOOD = {
    "first_name": "  Ivan  ", "last_name": "Petrov", "email": "Ivan.Petrov@Mail.RU",
    "phone": "8 (916) 123-45-67", "consent_at": "2025-06-01T10:00:00Z",
    "source_url": "https://landing.example.com/form?utm=1",
}


def verdict(ctx: RowContext = RU, **changes):
    return validate_row({**GOOD, **changes}, ctx)


def rejected(code: str, ctx: RowContext = RU, **changes) -> str:
    result = verdict(ctx, **changes)
    assert not result.accepted and result.lead is None
    assert result.code == code, result.message
    return result.message


# --- headers ------------------------------------------------------------------

def test_the_rejections_files_own_columns_are_ignored_without_asking():
    mapped = map_headers(["row", "codes", "Message", "email", "Row"])
    assert mapped.fields == (None, None, None, "email", None)
    assert mapped.unknown == ("Row",)  # only the first three are ours
    elsewhere = map_headers(["email", "row", "code", "message"])
    assert elsewhere.unknown == ("row", "code", "message")
    assert map_headers(["row", "code", "message", "email"], {"row": "sub_id"}).fields[0] == "sub_id"



def test_fields_are_those_of_the_spec():
    assert FIELDS == (
        "first_name", "last_name", "email", "phone", "age", "birth_date", "gender", "region",
        "country", "marital_status", "employed", "interests", "budget", "authority", "need",
        "timeframe", "consent_at", "source_url", "consent_text", "consent", "ip",
        "sub_id", "city", "postal_code", "trustedform_cert_url", "jornaya_leadid",
    )
    assert map_headers(FIELDS).fields == FIELDS


@pytest.mark.parametrize("header, field", [
    # English
    ("E-Mail Address", "email"), ("mail", "email"), ("e_mail", "email"), ("EMAIL", "email"),
    ("tel", "phone"), ("Telephone", "phone"), ("Mobile", "phone"), ("Phone Number", "phone"),
    ("First Name", "first_name"), ("firstname", "first_name"), ("given-name", "first_name"),
    ("Surname", "last_name"), ("city", "city"), ("State", "region"), ("province", "region"),
    ("ZIP", "postal_code"), ("Post code", "postal_code"), ("SubID", "sub_id"),
    ("Campaign", "sub_id"), ("xxTrustedFormCertUrl", "trustedform_cert_url"),
    ("Jornaya LeadiD", "jornaya_leadid"), ("Индекс", "postal_code"), ("Código postal", "postal_code"),
    ("DOB", "birth_date"), ("Date of Birth", "birth_date"), ("sex", "gender"),
    ("Consent Date", "consent_at"), ("Opt-in Time", "consent_at"), ("IP Address", "ip"),
    ("page", "source_url"), ("URL", "source_url"), ("  Marital   Status ", "marital_status"),
    # Russian
    ("Телефон", "phone"), ("имя", "first_name"), ("Фамилия", "last_name"), ("Почта", "email"),
    ("Электронная почта", "email"), ("Регион", "region"), ("Возраст", "age"), ("Пол", "gender"),
    ("Дата рождения", "birth_date"), ("Город", "city"), ("Семейное положение", "marital_status"),
    # Spanish
    ("correo", "email"), ("Correo electrónico", "email"), ("Teléfono", "phone"),
    ("telefono", "phone"), ("Nombre", "first_name"), ("Apellidos", "last_name"),
    ("Provincia", "region"), ("Edad", "age"), ("Sexo", "gender"), ("País", "country"),
])
def test_header_synonyms(header, field):
    assert map_headers([header]).fields == (field,)


def test_unknown_and_blank_headers():
    mapped = map_headers(["Email", "Lieblingsfarbe", "", "Notes"])
    assert mapped.fields == ("email", None, None, None)
    assert mapped.unknown == ("Lieblingsfarbe", "Notes")
    assert mapped.known == frozenset({"email"})


def test_user_mapping_overrides_synonyms_and_can_ignore():
    mapped = map_headers(["Phone", "Mobile", "Kontakt"],
                         {"Phone": "", "mobile": "phone", "Kontakt": "email"})
    assert mapped.fields == (None, "phone", "email")
    assert mapped.unknown == ()


def test_mapping_to_an_unknown_field_is_an_error():
    with pytest.raises(HeaderMappingError) as caught:
        map_headers(["Kontakt"], {"Kontakt": "e-mail-address"})
    assert caught.value.code == "unknown_field"
    assert caught.value.status == 422
    assert "Kontakt" in caught.value.message and "e-mail-address" in caught.value.message


def test_two_columns_for_one_field_is_an_error():
    with pytest.raises(HeaderMappingError) as caught:
        map_headers(["Email", "E-mail"])
    assert caught.value.code == "duplicate_field"
    assert "Email" in caught.value.message and "E-mail" in caught.value.message
    with pytest.raises(HeaderMappingError):
        map_headers(["A", "B"], {"A": "phone", "B": "phone"})


def test_a_stronger_synonym_wins_and_the_other_is_left_to_map():
    mapped = map_headers(["City", "State", "Phone", "Mobile"])
    assert mapped.fields == ("city", "region", "phone", None)
    assert mapped.unknown == ("Mobile",)


def test_pick_pads_short_rows_and_drops_extra_columns():
    mapped = map_headers(["email", "junk", "phone"])
    assert mapped.pick(["a@b.co", "x", "+7", "extra"]) == {"email": "a@b.co", "phone": "+7"}
    assert mapped.pick(["a@b.co"]) == {"email": "a@b.co", "phone": ""}


# --- accepted rows ------------------------------------------------------------


def test_a_good_row_is_normalised():
    result = verdict(gender="муж", region="Москва", age="35", interests="Cars; travel| cars,",
                     ip="192.0.2.33", marital_status="Женат", employed="да",
                     budget="  100k  ", consent_text="I agree")
    assert result.accepted and result.code is None and result.message is None
    lead = result.lead
    assert lead.first_name == "Ivan" and lead.last_name == "Petrov"
    assert lead.email == "ivan.petrov@mail.ru"
    assert lead.phone == "+79161234567"
    assert (lead.age, lead.gender, lead.region, lead.country) == (35, "m", "RU-MOW", "RU")
    assert lead.interests == ["cars", "travel"]
    assert (lead.marital_status, lead.employed, lead.budget) == ("married", "yes", "100k")
    assert lead.consent_at == datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)
    assert lead.source_url == "https://landing.example.com/form?utm=1"
    assert (lead.consent_text, lead.ip) == ("I agree", "192.0.2.33")


def test_optional_fields_default_to_unknown():
    lead = validate_row({"email": "a@example.com", "consent_at": "2025-01-01",
                         "source_url": "https://example.com"}, RU).lead
    assert (lead.phone, lead.age, lead.region, lead.country) == (None, None, None, "RU")
    assert (lead.gender, lead.marital_status, lead.employed, lead.interests) == (
        "unknown", "unknown", "unknown", [])


def test_email_alone_or_phone_alone_is_enough():
    assert verdict(phone="").lead.phone is None
    assert verdict(email="").lead.email is None


@pytest.mark.parametrize("raw, expected", [
    ("Иван@Пример.рф", "иван@пример.рф"), ("  USER+tag@Gmail.COM ", "user+tag@gmail.com"),
])
def test_emails_are_lower_cased(raw, expected):
    assert verdict(email=raw).lead.email == expected


@pytest.mark.parametrize("raw, country, expected", [
    ("+7 916 123-45-67", "", "+79161234567"), ("79161234567", "", "+79161234567"),
    ("612 345 678", "ES", "+34612345678"), ("612 345 678", "", None),
    ("(415) 555-2671", "US", "+14155552671"), ("+44 7400 123456", "", "+447400123456"),
    ("+380 67 123 4567", "", "+380671234567"),
])
def test_phones_become_e164_using_the_rows_country(raw, country, expected):
    result = verdict(phone=raw, country=country)
    assert (result.lead.phone if result.accepted else None) == expected


@pytest.mark.parametrize("raw, expected", [
    ("m", "m"), ("Male", "m"), ("М", "m"), ("мужской", "m"), ("hombre", "m"),
    ("F", "f"), ("female", "f"), ("Ж", "f"), ("Женский", "f"), ("mujer", "f"),
    ("other", "other"), ("non-binary", "other"), ("", "unknown"), ("?", "unknown"),
])
def test_gender(raw, expected):
    assert verdict(gender=raw).lead.gender == expected


@pytest.mark.parametrize("value, country, expected", [
    ("Moscow", "", "RU-MOW"), ("Москва", "", "RU-MOW"), ("г. Москва", "", "RU-MOW"),
    ("Saint Petersburg", "", "RU-SPE"), ("Санкт-Петербург", "", "RU-SPE"),
    ("RU-SPE", "", "RU-SPE"), ("Московская обл.", "", "RU-MOS"),
    ("California", "US", "US-CA"), ("CA", "US", "US-CA"), ("us-ca", "", "US-CA"),
    ("California", "", "US-CA"), ("Madrid", "", "ES-M"), ("Мадрид", "ES", "ES-M"),
    ("ES-M", "", "ES-M"), ("Barcelona", "Spain", "ES-B"),
])
def test_regions_resolve_to_iso_3166_2(value, country, expected):
    lead = verdict(region=value, country=country, phone="").lead
    assert lead.region == expected
    assert lead.country == expected[:2]


def test_country_comes_from_column_then_region_then_phone_then_default():
    assert verdict(country="Spain", phone="").lead.country == "ES"
    assert verdict(country="", region="California", phone="").lead.country == "US"
    assert verdict(phone="+34 612 345 678").lead.country == "ES"
    assert verdict(phone="").lead.country == "RU"
    assert verdict(RowContext("es", NOW), phone="").lead.country == "ES"


@pytest.mark.parametrize("value", ["Россия", "RU", "rus", "Russian Federation", "рф"])
def test_country_names_and_codes(value):
    assert resolve_country(value) == "RU"


def test_region_lookups_are_cached():
    resolve_region.cache_clear()
    for _ in range(3):
        resolve_region("Москва", None, "RU")
    assert resolve_region.cache_info().hits == 2


@pytest.mark.parametrize("raw, expected", [
    ("2025-06-01T10:00:00Z", datetime(2025, 6, 1, 10, 0)),
    ("2025-06-01T13:00:00+03:00", datetime(2025, 6, 1, 10, 0)),
    ("2025-06-01 13:00:00", datetime(2025, 6, 1, 10, 0)),  # no zone: Moscow's (RU)
    ("01.06.2025 13:00", datetime(2025, 6, 1, 10, 0)),
    ("1.6.2025 13:00:30", datetime(2025, 6, 1, 10, 0, 30)),
    ("13/05/2025 11:15", datetime(2025, 5, 13, 8, 15)),
    ("2025/06/01 13:00:00", datetime(2025, 6, 1, 10, 0)),
    ("2025-06-01", datetime(2025, 6, 1)),  # a date alone says nothing of the clock
    ("01.06.2025", datetime(2025, 6, 1)),
    ("1748772000", datetime(2025, 6, 1, 10, 0)),
    ("1748772000000", datetime(2025, 6, 1, 10, 0)),
])
def test_consent_time_formats(raw, expected):
    assert verdict(consent_at=raw).lead.consent_at == expected.replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("place, local, utc", [
    ({"region": "Новосибирская обл"}, "2025-06-01 03:00", datetime(2025, 5, 31, 20, 0)),
    ({"region": "US-CA", "phone": "+1 415 555 0100"}, "2025-01-15 02:00",
     datetime(2025, 1, 15, 10, 0)),  # winter: UTC-8
    ({"region": "US-CA", "phone": "+1 415 555 0100"}, "2024-07-15 02:00",
     datetime(2024, 7, 15, 9, 0)),  # summer: UTC-7
    ({"country": "ES", "phone": "+34 612 345 678"}, "15/07/2024 02:00",
     datetime(2024, 7, 15, 0, 0)),
    ({"country": "US", "phone": "+1 415 555 0100"}, "2025-01-15 02:00",
     datetime(2025, 1, 15, 8, 0)),  # no state: the middle of its zones (Chicago)
    ({"region": "US-CA", "phone": "+1 415 555 0100"}, "2025-01-15T02:00:00Z",
     datetime(2025, 1, 15, 2, 0)),  # a zone written down wins
])
def test_consent_times_without_a_zone_are_read_on_the_leads_clock(place, local, utc):
    lead = verdict(consent_at=local, **place).lead
    assert lead is not None and lead.consent_at == utc.replace(tzinfo=timezone.utc)


def test_ambiguous_slash_dates_follow_the_country():
    assert parse_timestamp("05/06/2025") == datetime(2025, 6, 5, tzinfo=timezone.utc)
    assert parse_timestamp("05/06/2025", month_first=True) == datetime(
        2025, 5, 6, tzinfo=timezone.utc)
    us = RowContext("US", NOW)
    assert verdict(us, phone="", consent_at="05/06/2025").lead.consent_at.month == 5


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00",
                                   "01.01.0001 00:10"])
def test_times_beyond_the_calendar_in_utc_are_unreadable_not_a_crash(value):
    assert parse_timestamp(value, zone=timezone(timedelta(hours=5))) is None
    assert "is not a date and time we can read" in rejected(
        "no_consent", region="RU-SA", consent_at=value)
    assert validate_chunk([(2, [value, "https://example.com/f", "a@example.com"])],
                          ("consent_at", "source_url", "email"), RU,
                          ContactVault(base64.urlsafe_b64encode(bytes(32)).decode())
                          ).rejected[0][1] == "no_consent"


def test_consent_within_clock_skew_is_accepted():
    soon = (NOW + timedelta(minutes=4)).isoformat()
    assert verdict(consent_at=soon).accepted


@pytest.mark.parametrize("birth, born, age", [
    ("1990-06-15", date(1990, 6, 15), 35), ("1990-06-16", date(1990, 6, 16), 34),
    ("15.06.2007", date(2007, 6, 15), 18),
])
def test_age_comes_from_birth_date(birth, born, age):
    lead = verdict(birth_date=birth, age="99").lead
    assert (lead.birth_date, lead.age) == (born, age)


def test_eighteenth_birthday_tomorrow_is_too_young():
    assert "age of 17" in rejected("implausible_age", birth_date="16.06.2007")


@pytest.mark.parametrize("raw, expected", [
    ("18", 18), ("100", 100), ("35.0", 35), ("35 лет", 35), (" 42 years ", 42),
])
def test_age_values(raw, expected):
    assert verdict(age=raw).lead.age == expected


def test_names_and_text_are_trimmed_and_collapsed():
    lead = verdict(first_name="  Anna \t Maria ", need="\n call me \n").lead
    assert (lead.first_name, lead.need) == ("Anna Maria", "call me")


def test_ip_is_canonical_or_dropped():
    assert verdict(ip="2001:DB8:0:0::1").lead.ip == "2001:db8::1"
    assert verdict(ip="010.1.1.1").lead.ip is None
    assert verdict(ip="not an ip").accepted


def test_bare_domain_source_url_gets_https():
    lead = verdict(source_url="example.com/offer?x=1").lead
    assert lead.source_url == "https://example.com/offer?x=1"


# --- rejections -----------------------------------------------------------------


def test_no_contact():
    message = rejected("no_contact", email=" ", phone="")
    assert message == VERDICTS["no_contact"]


@pytest.mark.parametrize("value", [
    "ivan@", "ivan@@mail.ru", "ivan mail.ru", "a@b", "x@localhost", "x@site.test",
])
def test_invalid_email(value):
    assert f"“{value}”" in rejected("invalid_email", email=value)


@pytest.mark.parametrize("value", [
    "12345", "+7 916 123", "8 (916) 123-45-67-89", "phone me", "+999 123 456",
])
def test_invalid_phone(value):
    message = rejected("invalid_phone", phone=value)
    assert f"“{value}”" in message and ("RU" in message) == (value[0] != "+")


@pytest.mark.parametrize("changes, said", [
    ({}, "read as RU, from the batch's default country"),
    ({"country": "Spain"}, "read as ES, from the row's country"),
    ({"region": "Москва"}, "read as RU, from the row's region"),
    ({"region": "Madrid"}, "read as ES, from the row's region"),
    ({"city": "Madrid"}, "read as ES, from the row's city"),
    ({"region": "Narnia"}, "read as RU, from the batch's default country"),
])
def test_an_invalid_phone_says_which_country_it_was_read_in_and_why(changes, said):
    assert said in validate_row({**GOOD, "phone": "12345", **changes}, RU).message


@pytest.mark.parametrize("phone", ["+49 30 12", "+4930 1", "+7 916 123", "+999 123 456"])
def test_an_invalid_phone_with_its_country_code_says_nothing_of_a_default_country(phone):
    message = rejected("invalid_phone", phone=phone)
    assert message == f"The phone “{phone}” is not a valid phone number."
    # Without its "+" the same digits are read in a country, and the sentence says so.
    assert "numbers without a +country prefix are read as RU" in rejected(
        "invalid_phone", phone=phone[1:])


@pytest.mark.parametrize("changes, fragment", [
    ({"consent_at": ""}, "consent_at"), ({"consent_at": "yesterday"}, "“yesterday”"),
    ({"consent_at": "31.02.2025 10:00"}, "31.02.2025"), ({"source_url": ""}, "source_url"),
    ({"source_url": "not a url"}, "“not a url”"),
    ({"source_url": "javascript:alert(1)"}, "javascript"),
    ({"source_url": "http://localhost/form"}, "localhost"),
    ({"source_url": "ftp://example.com/x"}, "ftp"),
])
def test_no_consent(changes, fragment):
    assert fragment in rejected("no_consent", **changes)


def test_consent_in_future():
    later = (NOW + timedelta(minutes=6)).isoformat()
    assert later in rejected("consent_in_future", consent_at=later)


def test_a_consent_time_in_the_future_names_the_clock_it_was_read_on():
    # 08:30 on Chicago's clock (the United States' middle zone) is 13:30 UTC: after NOW.
    message = rejected("consent_in_future", RowContext("US", NOW), region="", country="US",
                       phone="", consent_at="2025-06-15 08:30")
    assert "it is 2025-06-15 13:30 UTC" in message and "America/Chicago" in message


@pytest.mark.parametrize("changes, fragment", [
    ({"age": "17"}, "“17”"), ({"age": "101"}, "“101”"), ({"age": "abc"}, "not a number"),
    ({"birth_date": "2030-01-01"}, "in the future"), ({"birth_date": "2015-01-01"}, "age of 10"),
    ({"birth_date": "1900-01-01"}, "age of 125"), ({"birth_date": "someday"}, "not a date"),
])
def test_implausible_age(changes, fragment):
    assert fragment in rejected("implausible_age", **changes)


@pytest.mark.parametrize("changes, fragment", [
    ({"region": "Narnia"}, "region “Narnia”"), ({"country": "Atlantis"}, "country “Atlantis”"),
    ({"region": "California", "country": "RU"}, "California"),
    ({"region": "US-CA", "country": "ES"}, "US-CA"),
])
def test_unknown_region(changes, fragment):
    assert fragment in rejected("unknown_region", phone="", **changes)


def test_a_rejected_row_lists_every_reason():
    broken = {"email": "bad@", "phone": "123", "consent_at": "", "age": "5", "region": "Narnia"}
    result = validate_row(broken, RU)
    assert result.codes == ("invalid_email", "invalid_phone", "no_consent", "implausible_age",
                            "unknown_region")
    assert result.code == "invalid_email"
    for fragment in ("“bad@”", "“123”", "consent time", "source_url", "“5”", "“Narnia”"):
        assert fragment in result.message
    assert validate_row({**broken, "email": "", "phone": ""}, RU).codes[0] == "no_contact"
    fixed_consent = {**GOOD, "age": "5", "region": "Narnia"}
    assert validate_row(fixed_consent, RU).codes == ("implausible_age", "unknown_region")
    # The contacts that are valid travel with the verdict: their duplicates are reasons too.
    one_bad = validate_row({**GOOD, "age": "5"}, RU)
    assert (one_bad.email, one_bad.phone) == ("ivan.petrov@mail.ru", "+79161234567")


def test_consent_problems_are_one_code_and_one_sentence_naming_each():
    result = verdict(consent_at="", source_url="", consent="нет", age="5")
    assert result.codes == ("no_consent", "implausible_age")
    assert result.message.count("no usable consent evidence") == 1
    assert result.message.startswith(
        "The row has no usable consent evidence: its consent column says “нет”; the consent "
        "time (consent_at) is empty; the consent page (source_url) is empty. The age “5”")
    long_url = "not a url " * 10
    message = rejected("no_consent", consent_at="yesterday-ish", source_url=long_url)
    assert message.count("no usable consent evidence") == 1
    assert "“yesterday-ish” is not a date" in message and message.endswith("is not a web address.")


# --- the consent flag (issue 15) ---------------------------------------------------


@pytest.mark.parametrize("value", [
    "yes", "Yes", "Y", "TRUE", "1", "да", "Да", "д", "sí", "si", "ja", "oui", "sim", "так",
    "✓", "✔", "x", "+", "согласен", "agreed", "opt-in",
])
def test_a_consent_flag_that_says_yes_is_accepted(value):
    assert verdict(consent=value).accepted


@pytest.mark.parametrize("value", [
    "no", "NO", "n", "false", "0", "нет", "Нет", "не согласен", "отказ", "nein", "non", "não",
    "ні", "✗", "-", "declined", "opt-out",
])
def test_a_consent_flag_that_says_no_rejects_the_row(value):
    message = rejected("no_consent", consent=value, consent_text="I agree to be called")
    assert "consent column" in message


@pytest.mark.parametrize("value", ["maybe", "", "  ", "2024-01-01", "Я согласен на обработку"])
def test_an_unreadable_consent_flag_is_its_own_rejection(value):
    message = rejected("unclear_consent", consent=value)
    assert "yes or no" in message


@pytest.mark.parametrize("header, cells, field", [
    ("Согласие", ["да", "нет", "Да"], "consent"),  # the defect of issue 15
    ("Согласие", ["Я даю согласие на обработку персональных данных"], "consent_text"),
    ("Consent", ["TRUE", "FALSE"], "consent"),
    ("consent", ["I agree to be contacted by phone"], "consent_text"),
    ("Consentimiento", ["sí", "no"], "consent"),
    ("Einwilligung", ["ja", "nein", ""], "consent"),
    ("Consentement", ["oui", "non"], "consent"),
    ("Згода", ["так", "ні"], "consent"),
    ("consent", [], "consent"),  # nothing to go by: the header's meaning
    ("Consent text", [], "consent_text"),
    ("Opt-in", ["yes", "no"], "consent"),
    ("Agreed", ["✓", "✗"], "consent"),
    ("GDPR consent", [], "consent"),
    ("Согласие получено", ["да"], "consent"),
    ("Consent text", ["yes"], "consent"),  # yes/no cells are a flag whatever the header
])
def test_consent_columns_are_told_apart_by_header_and_values(header, cells, field):
    mapped = map_headers(["email", header], sample=[["a@example.com", c] for c in cells])
    assert mapped.fields == ("email", field)


def test_a_source_column_of_web_addresses_is_the_page_and_of_names_the_sellers_source():
    # A Russian export: "Источник" holds ad channels, "Страница" the form's page.
    mapped = map_headers(["Телефон", "Источник", "Страница", "Дата согласия"], sample=[
        ["+79161234567", "vk_ads", "https://blog.example.ru/form", "2026-11-01"],
        ["+79161234568", "yandex_direct", "blog.example.ru/form", "2026-11-02"]])
    assert mapped.fields == ("phone", "sub_id", "source_url", "consent_at")
    assert mapped.unknown == ()
    # Beside a column named for the seller's source, a moved one is left to map.
    mapped = map_headers(["phone", "source", "campaign"], sample=[["1", "fb", "spring"]])
    assert mapped.fields == ("phone", None, "sub_id") and mapped.unknown == ("source",)
    # A source column with one web address among its cells stays the page (its other
    # cells are rejected with their reason), and no sample leaves the header to decide.
    assert map_headers(["source"], sample=[["fb"], ["https://a.example/f"]]).fields == (
        "source_url",)
    assert map_headers(["source"]).fields == ("source_url",)


def test_the_one_unknown_column_of_web_addresses_is_the_page_when_no_header_names_one():
    sample = [["Ana", "https://formas.example.es/alta", "ok"],
              ["Luis", "formas.example.es/alta", "ok"]]
    mapped = map_headers(["Nombre", "Enlace raro", "Resultado"], sample=sample)
    assert mapped.fields == ("first_name", "source_url", None)
    assert mapped.unknown == ("Resultado",)
    two = [["https://a.example/f", "https://b.example/f"]]
    assert map_headers(["Uno", "Dos"], sample=two).fields == (None, None)  # which one?
    assert map_headers(["URL formulario"]).fields == ("source_url",)
    # A first row of data is not taken for a header naming the page.
    row = ["Ana", "https://formas.example.es/alta"]
    assert map_headers(row, sample=[row]).fields == (None, None)


def test_the_sellers_mapping_of_a_consent_column_stands():
    mapped = map_headers(["Согласие"], {"Согласие": "consent_text"}, sample=[["да"]])
    assert mapped.fields == ("consent_text",)


def test_long_values_are_shortened_in_messages():
    message = rejected("invalid_email", email="x" * 500)
    assert len(message) < 200 and "…" in message


# --- unreadable and hidden characters (issue 13) ----------------------------------


def test_a_value_with_bytes_that_were_not_text_is_rejected():
    message = rejected("bad_encoding", first_name="Jos\ufffd")
    assert "first name" in message and "“Jos\ufffd”" in message and "UTF-8" in message


def test_bad_encoding_is_the_first_verdict():
    assert verdict(email="ivan\ufffd@mail.ru", phone="").code == "bad_encoding"
    assert verdict(email="", phone="", need="\ufffd").code == "bad_encoding"


def test_lone_surrogates_are_rejected_and_never_reach_the_message():
    message = rejected("bad_encoding", last_name="Petr\udcff")
    assert "Petr\ufffd" in message
    message.encode("utf-8")  # a surrogate would raise here, and in the database


HIDDEN = ["\x00", "\x07", "\x08", "\x1b", "\x0b", "\x0c", "\x1f", "\x7f", "\x85", "\x9b",
          "\u200b", "\u200d", "\u200e", "\u202e", "\u2066", "\u2069", "\u2060", "\ufeff", "\u061c"]


@pytest.mark.parametrize("char", HIDDEN)
def test_control_and_invisible_characters_are_removed_from_every_field(char):
    values = {
        "first_name": f"Iv{char}an", "last_name": f"{char}Petrov", "email": f"Ivan.Pe{char}trov@Mail.RU",
        "phone": f"8 (916) 123-45-6{char}7", "gender": f"муж{char}", "region": f"Моск{char}ва",
        "marital_status": f"married{char}", "interests": f"cars{char}, tra{char}vel",
        "budget": f"{char}5000", "authority": f"C{char}EO", "need": f"a{char}b",
        "timeframe": f"Q{char}3", "consent_at": f"2025-06-01T10:00{char}:00Z",
        "source_url": f"https://landing.example.com/fo{char}rm", "consent_text": f"I agree{char}",
        "ip": f"10.0.0.{char}1", "age": f"3{char}4",
    }
    result = validate_row(values, RU)
    assert result.accepted, result.message
    lead = result.lead
    texts = [lead.first_name, lead.last_name, lead.email, lead.phone, lead.gender, lead.region,
             lead.marital_status, *lead.interests, lead.budget, lead.authority, lead.need,
             lead.timeframe, lead.source_url, lead.consent_text, lead.ip]
    assert not any(char in text for text in texts)
    assert (lead.first_name, lead.last_name, lead.email, lead.phone) == (
        "Ivan", "Petrov", "ivan.petrov@mail.ru", "+79161234567")
    assert (lead.gender, lead.region, lead.marital_status, lead.interests) == (
        "m", "RU-MOW", "married", ["cars", "travel"])
    assert (lead.budget, lead.authority, lead.need, lead.timeframe, lead.consent_text) == (
        "5000", "CEO", "ab", "Q3", "I agree")
    assert (lead.source_url, lead.ip, lead.age) == ("https://landing.example.com/form", "10.0.0.1", 34)


def test_tabs_and_line_breaks_in_text_become_single_spaces():
    lead = verdict(consent_text="I agree\r\nto be\tcalled", first_name="Ann\n").lead
    assert (lead.consent_text, lead.first_name) == ("I agree to be called", "Ann")


def test_a_rejected_row_with_lone_surrogates_can_be_stored():
    """validate_chunk encrypts the raw row of every rejection; a real-time post may hold
    lone surrogates, which UTF-8 cannot encode."""
    vault = ContactVault(base64.urlsafe_b64encode(b"k" * 32).decode())
    result = validate_chunk([(1, ["Petr\udcff", "petr@example.com", "\udc00"])],
                            ("first_name", "email", None), RU, vault)
    [(number, code, codes, message_enc, raw_enc)] = result.rejected
    assert (number, code, codes) == (1, "bad_encoding", "bad_encoding")
    assert json.loads(vault.decrypt(raw_enc)) == ["Petr\ufffd", "petr@example.com", "\ufffd"]
    assert "Petr\ufffd" in vault.decrypt(message_enc)


# --- verdict texts and the worker contract ---------------------------------------


def test_every_verdict_has_a_sentence():
    codes = {"invalid_phone", "invalid_email", "no_contact", "no_consent", "consent_in_future",
             "implausible_age", "unknown_region", "duplicate_in_batch", "duplicate_own",
             "suppressed", "bad_encoding", "unclear_consent", "invalid_postal_code",
             "invalid_certificate"}
    assert set(VERDICTS) == codes
    assert set(FLAGS) == {"cross_seller_duplicate"}
    samples = {"value": "v", "country": "RU", "reason": "r", "field": "age", "problem": "p",
               "first_row": 7, "shape": "s", "source": "the row's region",
               "zone": "UTC", "utc": "2025-06-15 12:00", "read_as": "", "row": 3, "batch": 9}
    for code in codes:
        message = verdict_message(code, **samples)
        assert message.endswith(".") and "{" not in message
    assert "row 7" in verdict_message("duplicate_in_batch", first_row=7)
    assert "row 3 of your batch #9" in verdict_message("duplicate_own", row=3, batch=9)


def test_context_and_results_pickle_for_worker_processes():
    ctx = pickle.loads(pickle.dumps(RowContext(" es ", NOW)))
    assert ctx == RowContext("ES", NOW)
    result = validate_row(GOOD, ctx)
    assert pickle.loads(pickle.dumps(result)) == result
    rejection = validate_row({}, ctx)
    assert pickle.loads(pickle.dumps(rejection)) == rejection


def test_context_needs_an_aware_now():
    with pytest.raises(ValueError):
        RowContext("RU", datetime(2025, 1, 1))


# --- sub_id, location and certificates (issue 15, item 5) -------------------------

CERT = "https://cert.trustedform.com/" + "0123456789abcdef" * 2 + "01234567"
LEADID = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"


def test_sub_id_location_and_certificates_are_kept():
    lead = verdict(sub_id="  spring  promo ", city=" Санкт-Петербург ", postal_code="sw1a 1aa",
                   trustedform_cert_url=CERT, jornaya_leadid=LEADID).lead
    assert (lead.sub_id, lead.city, lead.postal_code) == ("spring promo", "Санкт-Петербург",
                                                           "SW1A 1AA")
    assert lead.trustedform_cert_url == CERT and lead.jornaya_leadid == LEADID.upper()
    assert lead.region == "RU-SPE"  # a city with no region column gives the region


def test_a_city_that_is_no_region_is_kept_and_rejects_nothing():
    lead = verdict(city="Springfield").lead
    assert lead.city == "Springfield" and lead.region is None


@pytest.mark.parametrize("changes, code, fragment", [
    ({"postal_code": "!!"}, "invalid_postal_code", "“!!”"),
    ({"postal_code": "12345678901"}, "invalid_postal_code", "12345678901"),
    ({"trustedform_cert_url": "https://example.com/cert"}, "invalid_certificate", "TrustedForm"),
    ({"trustedform_cert_url": CERT[:-1]}, "invalid_certificate", "40 hexadecimal"),
    ({"jornaya_leadid": "12345"}, "invalid_certificate", "Jornaya"),
])
def test_bad_postal_codes_and_certificates_are_rejected(changes, code, fragment):
    assert fragment in rejected(code, **changes)
