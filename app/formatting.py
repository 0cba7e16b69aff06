"""Display helpers shared by templates and exports."""
import re
from decimal import ROUND_HALF_UP, Decimal

from flask import current_app

from app.core import bounds
from app.services.exports import minor_digits

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "RUB": "₽"}


def format_money(minor_units: int | None, currency: str | None = None) -> str:
    """1234 → "$12.34", 1234 JPY → "1,234 JPY" (each currency's own minor unit, as on
    receipts): integer arithmetic only, never a float."""
    if minor_units is None:
        return "—"
    currency = currency or current_app.config["CURRENCY"]
    sign = "-" if minor_units < 0 else ""
    digits = minor_digits(currency)
    major, minor = divmod(abs(int(minor_units)), 10 ** digits)
    symbol = CURRENCY_SYMBOLS.get(currency)
    amount = f"{major:,}.{minor:0{digits}d}" if digits else f"{major:,}"
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency}"


def money_input(minor_units: int) -> str:
    """1234 → "12.34": the form-field spelling that parse_money reads back."""
    major, minor = divmod(int(minor_units), 100)
    return f"{major}.{minor:02d}"


MONEY_RE = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?", re.ASCII)


def parse_money(text: str) -> int:
    """"12.34" or "1,234.5" → minor units, parsed as text so no float ever sees money."""
    match = MONEY_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"“{text.strip()}” is not an amount like 1,234.50")
    major, minor = match.groups()
    amount = int(major.replace(",", "")) * 100 + int((minor or "0").ljust(2, "0"))
    if amount > bounds.AMOUNT.maximum:
        raise ValueError(f"Amounts above {format_money(bounds.AMOUNT.maximum)} are refused.")
    return amount


def format_average(minor_units: Decimal | int | None, currency: str | None = None) -> str:
    """An average amount (CPL, CPA) in minor units, possibly fractional, to the cent."""
    if minor_units is None:
        return "—"
    return format_money(int(Decimal(minor_units).quantize(Decimal(1), ROUND_HALF_UP)), currency)


def format_rate(fraction: Decimal | float | None, places: int = 1) -> str:
    """0.22 → "22.0%"; None (nothing to divide by) → "—"."""
    if fraction is None:
        return "—"
    percent = (Decimal(str(fraction)) * 100).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return f"{percent}%"
