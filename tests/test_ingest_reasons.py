"""Issue 15: consent flags and every reason of a rejected row, through the real upload
path, the seller's report and the API."""
import csv
import io

import pytest

from app.models import BatchStatus, Role, SuppressionEntry, TrustLevel
from app.extensions import db
from app.services.crypto import current_vault
from app.services.ingest import reports
from tests.conftest import make_user
from tests.ingest_helpers import csv_bytes, ingest, leads, person, rejections


@pytest.fixture
def verified_seller(app):
    return make_user(Role.SELLER, trust_level=TrustLevel.VERIFIED)


def _russian_export(consents: list[str]) -> bytes:
    """Windows-1251 and semicolons, with a "Согласие" column of да/нет, as in the issue."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Имя", "Телефон", "Почта", "Согласие", "Дата согласия", "Источник"])
    for i, consent in enumerate(consents):
        writer.writerow(["Ирина", f"+7 916 123-45-{i:02d}", f"irina{i}@mail.example.com",
                         consent, "01.10.2026 12:00", "https://landing.example.ru/form"])
    return out.getvalue().encode("cp1251")


def test_a_consent_column_that_says_no_is_never_sold(verified_seller):
    batch = ingest(verified_seller, _russian_export(["да", "нет", "Да", "не знаю", ""]),
                   country="RU")
    assert batch.status is BatchStatus.LIVE  # a verified seller: no spot-check first
    assert rejections(batch) == {3: "no_consent", 5: "unclear_consent", 6: "unclear_consent"}
    assert [lead.row_number for lead in leads(batch)] == [2, 4]
    assert all(lead.consent_text is None for lead in leads(batch))  # a flag is no text
    assert batch.mapping["headers"][3] == "Согласие"


@pytest.mark.parametrize("header, yes, no", [
    ("consent", "yes", "no"), ("Consentimiento", "sí", "no"), ("Einwilligung", "ja", "nein"),
    ("Opt-in", "TRUE", "FALSE"), ("Agreed", "✓", "✗"), ("Consentement", "oui", "non"),
    ("consent", "1", "0"),
])
def test_consent_flags_in_several_languages(seller, header, yes, no):
    data = csv_bytes([person(1, flag=yes), person(2, flag=no)],
                     header=["email", "phone", "consent_at", "source_url", "flag"])
    data = data.replace(b"flag", header.encode(), 1)
    batch = ingest(seller, data)
    assert rejections(batch) == {3: "no_consent"}
    assert batch.accepted == 1


def test_a_rejected_row_lists_every_reason_in_report_csv_and_api(
        app, client, seller, api_key_for):
    first = ingest(seller, csv_bytes([person(1)]))
    assert first.accepted == 1
    db.session.add(SuppressionEntry(kind="email", value_hash=current_vault().dedupe_hash(
        "email", "person7@mail.example.com")))
    db.session.commit()
    rows = [
        person(2),
        person(1, age="12"),  # underage and the seller's own earlier lead
        person(3, email="bad@", phone="12", consent_at="", region="Atlantis"),
        person(2, consent_at="2099-01-01T00:00:00Z"),  # repeats row 2 of this file
        person(7, age="150"),  # suppressed as well
    ]
    batch = ingest(seller, csv_bytes(rows), allow_same_file=True)
    codes = {number: codes for number, codes, _ in reports.rejection_preview(batch)}
    assert codes == {
        3: ["implausible_age", "duplicate_own"],
        4: ["invalid_email", "invalid_phone", "no_consent", "unknown_region"],
        5: ["consent_in_future", "duplicate_in_batch"],
        6: ["implausible_age", "suppressed"],
    }
    assert dict(reports.rejection_counts(batch)) == {
        "implausible_age": 2, "duplicate_own": 1, "invalid_email": 1, "invalid_phone": 1,
        "no_consent": 1, "unknown_region": 1, "consent_in_future": 1, "duplicate_in_batch": 1,
        "suppressed": 1}

    headers = api_key_for(seller)
    body = client.get(f"/api/v1/batches/{batch.id}", headers=headers).json
    assert body["rejection_counts"]["implausible_age"] == 2
    assert body["rejection_counts"]["duplicate_in_batch"] == 1
    text = client.get(f"/api/v1/batches/{batch.id}/rejections", headers=headers).get_data(
        as_text=True)
    table = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert table[1][:2] == ["3", "implausible_age;duplicate_own"]
    # The earlier lead named: the first batch's only row (its row 2, after the header).
    assert f"You already have this lead: row 2 of your batch #{first.id}." in table[1][2]
    assert "“12”" in table[1][2]
    assert table[3][1] == "consent_in_future;duplicate_in_batch"
    assert "repeats row 2" in table[3][2]


def test_the_report_page_shows_every_code_of_a_row(seller_client, seller):
    batch = ingest(seller, csv_bytes([person(1, email="bad@", age="5")]))
    page = seller_client.get(f"/seller/batches/{batch.id}").get_data(as_text=True)
    assert "<code>invalid_email</code> <code>implausible_age</code>" in page


def test_a_real_time_lead_gets_every_code_and_its_consent_flag(client, seller, api_key_for):
    headers = api_key_for(seller)
    base = {"consent_at": "2026-11-01T09:30:00Z", "source_url": "https://x.example.com",
            "default_country": "US", "email": "rt@mail.example.com"}
    refused = client.post("/api/v1/leads", headers=headers,
                          json=base | {"email": "nope", "age": 12, "consent": False})
    assert refused.status_code == 422
    error = refused.json["error"]
    assert error["code"] == "invalid_email"
    assert error["details"]["codes"] == ["invalid_email", "no_consent", "implausible_age"]
    assert client.post("/api/v1/leads", headers=headers,
                       json=base | {"consent": "maybe"}).json["error"]["code"] == "unclear_consent"
    assert client.post("/api/v1/leads", headers=headers,
                       json=base | {"consent": True}).status_code == 201


def test_night_consents_written_without_a_zone_are_seen_at_night(seller):
    """Issue 15 item 7: 02:30 in Moscow, written without a zone, was read as 02:30 UTC
    (05:30 in Moscow, past the night hours); it is read on Moscow's clock now."""
    from app.services import quality

    rows = [person(i, phone=f"+7 916 123-{i:04d}"[:16], region="Москва",
                   consent_at=f"0{1 + i % 3}.10.2026 02:{10 + i:02d}") for i in range(40)]
    batch = ingest(seller, csv_bytes(rows), country="RU")
    assert batch.accepted == 40
    assert {lead.consent_at.hour for lead in leads(batch)} == {23}  # 02:xx MSK is 23:xx UTC
    quality.assess_batch(batch.id)
    db.session.refresh(batch)
    night = next(s for s in batch.risk_signals if s["code"] == "night_consent")
    assert night["count"] == 40 and night["points"] > 0


def test_rejections_in_cp1251_spell_our_accented_words_without_question_marks(seller):
    """Our sentence for an unclear flag names "sí/no"; Windows-1251 has no "í", which
    came back as "s?/no" in the file the seller downloads."""
    batch = ingest(seller, _russian_export(["да", "не знаю"]), country="RU")
    download = reports.rejections_download(batch)
    text = b"".join(download.chunks).decode("cp1251")
    assert "unclear_consent" in text and "да/нет" in text
    assert "si/no" in text and "?" not in text
