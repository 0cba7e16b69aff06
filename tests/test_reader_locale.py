"""Amounts, numbers, percentages, dates and region names as each reader writes them:
pages in the browser's locale, notices and emails in the reader's own (stored at
sign-up and login), whoever's request or job writes them (app/formatting.py)."""
import re
import unicodedata
from datetime import datetime, timezone

import pycountry
import pytest
import sqlalchemy as sa
from babel import Locale

from app.aftersale.delivery import emailing, engine, settings
from app.extensions import db
from app.formatting import (
    format_moment, format_money, format_number, format_rate, reading_as,
)
from app.models import EmailDelivery, Notification, NotificationKind, Role
from app.people import notifications
from app.services import ledger, outcomes
from app.services.regions import region_name
from tests.conftest import TEST_PASSWORD, csrf_token, log_in, make_user
from tests.market_helpers import place
from tests.smtp_server import bodies
from tests.test_outcomes_kpis import _market

NBSP = "\xa0"
RUSSIAN = {"Accept-Language": "ru-RU,ru;q=0.9,en-US;q=0.8"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}


def _reader(locale: str, zone: str = "UTC"):
    user = make_user(Role.BUYER)
    user.locale, user.timezone = locale, zone
    db.session.commit()
    return user


@pytest.mark.parametrize("locale, money, number, rate, moment", [
    ("en_US", "$1,234.50", "12,345", "22.0%", "Dec 6, 2026, 4:05\u202fAM MSK"),
    ("ru_RU", f"1{NBSP}234,50{NBSP}$", f"12{NBSP}345", f"22,0{NBSP}%",
     "6 дек. 2026\u202fг., 04:05 MSK"),
    ("de_DE", f"1.234,50{NBSP}$", "12.345", f"22,0{NBSP}%", "06.12.2026, 04:05 MSK"),
])
def test_a_reader_reads_amounts_numbers_rates_and_moments_in_their_locale(
        app, locale, money, number, rate, moment):
    reader = _reader(locale, "Europe/Moscow")
    # An English-speaking admin's request writes for this reader.
    with app.test_request_context(headers=ENGLISH), reading_as(reader):
        assert format_money(123_450) == money
        assert format_number(12_345) == number
        assert format_rate(0.22) == rate  # SPEC §9's worked case: CR 22%
        assert format_moment(datetime(2026, 12, 6, 1, 5, tzinfo=timezone.utc)) == moment
    with app.test_request_context(headers=ENGLISH):  # and for itself, in its own
        assert format_money(123_450) == "$1,234.50" and format_rate(-1) == "-100.0%"


def test_logging_in_records_the_browsers_locale(app, client):
    buyer = make_user(Role.BUYER, email="ru@example.com")
    assert buyer.locale is None
    client.post("/auth/login", headers=RUSSIAN, data={
        "email": "ru@example.com", "password": TEST_PASSWORD,
        "csrf_token": csrf_token(client)})
    db.session.expire_all()
    assert buyer.locale == "ru_RU"


def test_signing_up_records_it(app, client):
    client.post("/auth/signup", headers=RUSSIAN, data={
        "email": "new-ru@example.com", "password": "a long enough passphrase",
        "confirm": "a long enough passphrase",
        "role": "buyer", "display_name": "Иван", "timezone": "Europe/Moscow",
        "csrf_token": csrf_token(client, "/auth/signup")})
    from app.models import User

    user = db.session.scalar(sa.select(User).where(User.email == "new-ru@example.com"))
    assert user is not None and user.locale == "ru_RU"


def test_a_notice_and_its_email_show_amounts_in_the_readers_locale(app, smtp_server):
    ru, en = _reader("ru_RU", "Europe/Moscow"), _reader("en_US")
    for reader in (ru, en):
        reader.low_balance_threshold = 1_000_000
    db.session.commit()
    smtp_server.clear()
    # Raised inside another user's request, whose browser speaks English.
    with app.test_request_context(headers=ENGLISH):
        notifications.balance_fell(ru.id, 1_500_000, 123_450)
        notifications.balance_fell(en.id, 1_500_000, 123_450)
        db.session.commit()
    said = {ru.id: f"Your available balance is 1{NBSP}234,50{NBSP}$, below "
                   f"10{NBSP}000,00{NBSP}$",
            en.id: "Your available balance is $1,234.50, below $10,000.00"}
    for reader in (ru, en):
        notice = db.session.scalar(sa.select(Notification).where(
            Notification.user_id == reader.id, Notification.kind == NotificationKind.LOW_BALANCE))
        assert notice.title == said[reader.id]
    smtp_server.wait_for(2)
    for reader in (ru, en):
        [message] = smtp_server.to(reader.email)
        text, html = bodies(message)
        # (a subject in encoded words reads back with the space that folded it)
        assert message["Subject"].strip() == said[reader.id] and said[reader.id] in text


def test_a_job_writes_an_order_filled_notice_in_the_buyers_locale(app):
    buyer = _reader("ru_RU")
    order, _ = _market(3, 123_456, buyer, name="Поиск")
    notifications.order_filled(order.id)  # as app.people.notification_jobs does
    db.session.commit()
    notice = db.session.scalar(sa.select(Notification).where(
        Notification.user_id == buyer.id, Notification.kind == NotificationKind.ORDER_FILLED))
    assert f"leads delivered for 3{NBSP}703,68{NBSP}$." in notice.body


def test_the_kpi_page_in_russian_and_in_english(app, client, buyer):
    buyer.locale = "ru_RU"
    order, sales = _market(50, 600, buyer, name="Worked case")
    for sale_id in sales[:11]:
        outcomes.record(buyer, sale_id, "converted")
    db.session.commit()
    log_in(client, buyer)
    cells = {}
    for name, headers in (("ru", RUSSIAN), ("en", ENGLISH)):
        page = client.get("/buyer/kpis", headers=headers).get_data(as_text=True)
        row = re.search(rf'<tr data-order-id="{order.id}">(.*?)</tr>', page, re.S).group(1)
        cells[name] = re.findall(r'<td class="num">([^<]*)</td>', row)
        assert f'data-locale="{"ru-RU" if name == "ru" else "en-US"}"' in page
    # SPEC §9: 50 leads at 6.00, 11 converted: CPL 6.00, CR 22%, CPA 27.27.
    assert cells["en"][:6] == ["50", "$300.00", "$6.00", "11", "22.0%", "$27.27"]
    assert cells["ru"][:6] == ["50", f"300,00{NBSP}$", f"6,00{NBSP}$", "11", f"22,0{NBSP}%",
                               f"27,27{NBSP}$"]
    assert cells["ru"][7] == f"-100,0{NBSP}%"


def _scripts(text: str) -> set[str]:
    return {unicodedata.name(c).split()[0] for c in text
            if unicodedata.category(c).startswith("L") and unicodedata.category(c) != "Lm"}


@pytest.mark.parametrize("language, script", [("en", "LATIN"), ("de", "LATIN"),
                                              ("ru", "CYRILLIC"), ("uk", "CYRILLIC")])
def test_every_region_is_named_in_one_script_per_language(language, script):
    mixed = {sub.code: region_name(sub.code, language) for sub in pycountry.subdivisions
             if _scripts(region_name(sub.code, language)) - {script}}
    assert mixed == {}
    # Names a language has keep their spelling; others are written in its letters.
    assert region_name("RU-KGD", "ru") == "Калининградская область"
    assert region_name("US-CA", "ru") == "Калифорния"
    assert region_name("TR-01", "ru") == "Адана" and region_name("TR-01", "en") == "Adana"


def test_the_notification_list_dates_each_notice_as_the_browser_writes_dates(app, client):
    reader = _reader("en_US", "Europe/Moscow")
    notice = notifications.notify(reader.id, NotificationKind.LOW_BALANCE, "A notice")
    notice.created_at = datetime(2026, 12, 6, 1, 5, tzinfo=timezone.utc)
    db.session.commit()
    log_in(client, reader)
    russian = client.get("/notifications/", headers=RUSSIAN).get_data(as_text=True)
    english = client.get("/notifications/", headers=ENGLISH).get_data(as_text=True)
    assert "6 дек. 2026\u202fг., 04:05 MSK" in russian
    assert "Dec 6, 2026, 4:05\u202fAM MSK" in english


def test_leads_by_email_show_price_and_time_as_the_buyer_reads_them(app):
    buyer = _reader("ru_RU", "Europe/Moscow")
    ledger.manual_credit(buyer, 1_000_000, reason="test funds", actor=None)
    order = place(buyer, 123_456, 1)
    settings.use_email(order, addresses="crm@buyer.example", mode="lead", digest="daily")
    db.session.commit()
    sale = engine.sample_sale(order) | {"sold_at": "2026-12-06T01:05:00+00:00"}
    message = emailing.message_for(order, db.session.get(EmailDelivery, order.id), [sale],
                                   test=True)
    said = f"1{NBSP}234,56{NBSP}$ · sold 6 дек. 2026\u202fг., 04:05 MSK"
    assert said in message.body and said in message.alternatives[0][0]


def test_the_order_page_reads_the_readers_locale_once_not_on_every_request(
        app, client, monkeypatch):
    """The browser's locale and the counts a page shows are worked out by Babel once
    per header and locale, not on every request: parsing them again for each request
    was 2% of the buyer's order page (bench/web.py), what took it under 10% of bare."""
    buyer = make_user(Role.BUYER)
    order, _ = _market(3, 700, buyer)
    log_in(client, buyer)
    path = f"/buyer/orders/{order.id}"
    first = client.get(path, headers=RUSSIAN).get_data(as_text=True)
    assert 'id="worklist-summary">3 leads' in first and f"7,00{NBSP}$" in first
    parse, parsed = Locale.parse, []
    monkeypatch.setattr(Locale, "parse", lambda *a, **k: parsed.append(a) or parse(*a, **k))
    again = client.get(path, headers=RUSSIAN).get_data(as_text=True)
    assert parsed == []
    assert again.count(f"7,00{NBSP}$") == first.count(f"7,00{NBSP}$")
    assert 'id="worklist-summary">3 leads' in again
