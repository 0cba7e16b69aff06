"""Display helpers shared by templates, notices, emails and exports: amounts, numbers,
percentages and moments in the reader's locale (Babel) and time zone.

Who the reader is: inside a request, the browser's (Accept-Language) and the signed-in
user's zone; within `reading_as(user)`, that user's, whoever's request or job writes
(a notice or an email stored for them: app.people.notifications, app.core.mail)."""
import re
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Iterator, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.numbers import (
    NumberFormatError, format_currency, format_decimal, get_decimal_symbol, get_group_symbol,
    parse_decimal, parse_pattern,
)
from flask import current_app, has_request_context, request
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from app.core import bounds
from app.services.exports import minor_digits

# The languages the exchange's pages speak to numbers in (Accept-Language picks one).
LANGUAGES = ("en", "ru", "es", "de", "fr", "it", "pt", "uk")
DEFAULT_LOCALE = "en_US"


_reader: ContextVar[Optional[tuple[Locale, tzinfo]]] = ContextVar("reader", default=None)


@contextmanager
def reading_as(user) -> Iterator[None]:
    """Format for `user` (their stored locale and their time zone) in this block."""
    token = _reader.set((locale_of(user), zone_of(user)))
    try:
        yield
    finally:
        _reader.reset(token)


def locale_of(user) -> Locale:
    """A user's locale, as their browser last said at sign-up or login; en_US if unknown."""
    return _parse_locale(getattr(user, "locale", None) or DEFAULT_LOCALE)


@lru_cache(maxsize=64)
def _parse_locale(tag: str) -> Locale:
    try:
        return Locale.parse(tag)
    except (ValueError, UnknownLocaleError):
        return Locale.parse(DEFAULT_LOCALE)


def user_locale() -> Locale:
    """The reader's locale: `reading_as`'s user's; else the first of their browser's
    languages (Accept-Language) that we speak, with its region ("ru-RU", "en-GB"); en_US
    outside a request or when none matches. Cached for the request."""
    reader = _reader.get()
    if reader is not None:
        return reader[0]
    return browser_locale()


def browser_locale() -> Locale:
    """The request's locale from Accept-Language (what a user's `locale` records)."""
    if not has_request_context():
        return _parse_locale(DEFAULT_LOCALE)
    locale = getattr(request, "reader_locale", None)  # the request's, not the app context's
    if locale is None:
        locale = request.reader_locale = _accepted_locale(
            request.headers.get("Accept-Language", ""))
    return locale


# Browsers send one of a few headers, every request: parsing the header and its locales
# each time was a visible part of a fast page's cost (bench/web.py, the order page).
@lru_cache(maxsize=256)
def _accepted_locale(header: str) -> Locale:
    """The first language of an Accept-Language header that we speak, as a Locale."""
    for tag, _ in parse_accept_header(header, LanguageAccept):
        try:
            found = Locale.parse(tag, sep="-")
        except (ValueError, UnknownLocaleError):
            continue
        if found.language in LANGUAGES:
            return found
    return _parse_locale(DEFAULT_LOCALE)


def user_language() -> str:
    return user_locale().language


def zone_of(user) -> ZoneInfo | timezone:
    """A user's time zone: their account's (set from the browser at sign-up, changed on
    the account page); UTC when unset or dropped from the system's zone database."""
    try:
        return ZoneInfo(user.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def user_zone() -> tzinfo:
    """The reader's time zone: `reading_as`'s user's, else the signed-in user's; UTC
    outside a request and for visitors."""
    from flask_login import current_user

    reader = _reader.get()
    if reader is not None:
        return reader[1]
    if has_request_context() and current_user.is_authenticated:
        return zone_of(current_user)
    return timezone.utc


def format_when(moment: datetime | None, pattern: str = "%Y-%m-%d %H:%M",
                zone: ZoneInfo | timezone | None = None) -> str:
    """A stored (UTC) moment as the reader's wall-clock time (or `zone`'s: a notice
    written for a user outside their request); %Z in the pattern names the zone ("MSK",
    "CET"). Formal documents (statements, receipts, consent certificates) keep UTC and
    say so."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:  # SQLite's aggregates hand back naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(zone or user_zone()).strftime(pattern)


def format_moment(moment: datetime | str | None) -> str:
    """A stored (UTC) moment as the reader writes a date and time, on their clock, with
    its zone: "Dec 6, 2026, 4:05 AM MSK" (en), "6 дек. 2026 г., 04:05 MSK" (ru). For
    what notices and emails name; pages' tables keep `format_when`'s fixed columns."""
    if moment is None:
        return "—"
    if isinstance(moment, str):  # ISO 8601, as a sale's record carries it to webhooks
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    locale, zone = user_locale(), user_zone()
    local = moment.astimezone(zone)
    when = locale.datetime_formats["medium"].format(
        format_time(local, "short", locale=locale), format_date(local, "medium", locale=locale))
    return f"{when} {local.strftime('%Z')}"  # the zone's abbreviation: "MSK", "CET"


def format_number(number: int | Decimal | None) -> str:
    """1234 → "1,234" (en), "1 234" (ru)."""
    if number is None:
        return "—"
    return _format_number(number, user_locale())


# Pages show the same counts request after request; Babel looks up the locale's pattern
# and symbols for each (a tenth of a millisecond, 2% of the buyer's order page).
@lru_cache(maxsize=4096)
def _format_number(number: int | Decimal, locale: Locale) -> str:
    return format_decimal(number, locale=locale)


SYMBOL_CURRENCIES = frozenset({"USD", "EUR", "GBP", "RUB"})  # shown by their sign


def _major(minor_units: int, currency: str) -> Decimal:
    return Decimal(int(minor_units)).scaleb(-minor_digits(currency))


def format_money(minor_units: int | None, currency: str | None = None) -> str:
    """1234 → "$12.34" (en), "12,34 $" (ru); each currency's own minor unit, as on
    receipts: integers and Decimals only, never a float."""
    if minor_units is None:
        return "—"
    currency = currency or current_app.config["CURRENCY"]
    return _format_money(int(minor_units), currency, user_locale())


# Pages show the same few prices and totals again and again, and Babel spends most of a
# page's formatting time looking up the currency's plural names for every amount.
@lru_cache(maxsize=16384)
def _format_money(minor_units: int, currency: str, locale: Locale) -> str:
    if currency in SYMBOL_CURRENCIES:
        return format_currency(_major(minor_units, currency), currency, locale=locale)
    # Others by their code ("5,000 JPY"): a symbol such as ¥ is shared by two currencies.
    digits = minor_digits(currency)
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return f"{format_decimal(_major(minor_units, currency), pattern, locale=locale)} {currency}"


def money_input(minor_units: int) -> str:
    """1234 → "12.34" (en), "12,34" (ru): the form-field spelling parse_money reads back."""
    major = Decimal(int(minor_units)).scaleb(-2)
    return format_decimal(major, format="0.00", locale=user_locale())


_PLAIN = re.compile(r"\d+(?:\.\d{1,2})?", re.ASCII)  # "12.34" reads the same everywhere
_NUMBER = re.compile(r"[\d\s.,'\u00a0\u202f\u2019]+")
_DECIMAL_COMMA = re.compile(r"\d+,\d{1,2}", re.ASCII)  # "2,50" where cents follow a dot
_SPACES = dict.fromkeys(map(ord, " \u00a0\u202f"))


def parse_money(text: str, locale: Locale | str | None = None) -> int:
    """An amount as the reader types it → minor units: "1,50" and "1 500,00" in Russian,
    "1,234.50" in English, and "12.34" everywhere; parsed as text, never by a float.
    A refusal (ValueError) names the text and what is wrong, without a full stop."""
    locale = Locale.parse(locale) if locale else user_locale()
    raw = text.strip()
    example = format_decimal(Decimal("1234.50"), format="#,##0.00", locale=locale)
    refusal = f"“{raw}” is not an amount like {example}"
    if raw[:1] in "-\u2212" and _NUMBER.fullmatch(raw[1:].lstrip()):
        raise ValueError(f"“{raw}” is below zero: an amount here is zero or more")
    if not _NUMBER.fullmatch(raw):
        raise ValueError(refusal)
    group = get_group_symbol(locale)
    if ord(group) in _SPACES:  # people type a plain space where the locale has a thin one
        raw = raw.translate({k: group for k in _SPACES})
    try:
        value = parse_decimal(raw, locale=locale, strict=True)
    except NumberFormatError:
        if not _PLAIN.fullmatch(raw):
            if _DECIMAL_COMMA.fullmatch(raw) and get_decimal_symbol(locale) != ",":
                raise ValueError(f"{refusal}: the cents follow a “{get_decimal_symbol(locale)}” "
                                 "here") from None
            raise ValueError(refusal) from None
        value = Decimal(raw)
    if value > Decimal(bounds.AMOUNT.maximum).scaleb(-2):
        raise ValueError(f"“{raw}” is too large: the most is {format_money(bounds.AMOUNT.maximum)}")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(f"{refusal}: two decimals at most")
    return int(value.scaleb(2))


def format_average(minor_units: Decimal | int | None, currency: str | None = None) -> str:
    """An average amount (CPL, CPA) in minor units, possibly fractional, to the cent."""
    if minor_units is None:
        return "—"
    return format_money(int(Decimal(minor_units).quantize(Decimal(1), ROUND_HALF_UP)), currency)


def format_rate(fraction: Decimal | float | None, places: int = 1) -> str:
    """0.22 → "22.0%" (en), "22,0 %" (ru); None (nothing to divide by) → "—"."""
    if fraction is None:
        return "—"
    value = Decimal(str(fraction)).quantize(Decimal(1).scaleb(-places - 2), ROUND_HALF_UP)
    return _percent_pattern(user_locale(), places).apply(value, user_locale())


@lru_cache(maxsize=64)
def _percent_pattern(locale: Locale, places: int):
    """The locale's own percent pattern ("#,##0 %" in Russian) with `places` decimals."""
    pattern = parse_pattern(locale.percent_formats[None].pattern)
    pattern.frac_prec = (places, places)
    return pattern
