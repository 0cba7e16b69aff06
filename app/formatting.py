"""Display helpers shared by templates and exports."""
from flask import current_app

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "RUB": "₽"}


def format_money(minor_units: int | None, currency: str | None = None) -> str:
    """1234 → "$12.34": integer arithmetic only, never a float."""
    if minor_units is None:
        return "—"
    currency = currency or current_app.config["CURRENCY"]
    sign = "-" if minor_units < 0 else ""
    major, minor = divmod(abs(int(minor_units)), 100)
    symbol = CURRENCY_SYMBOLS.get(currency)
    amount = f"{major:,}.{minor:02d}"
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency}"


def parse_money(text: str) -> int:
    """"12.34" or "1,234.5" → minor units, parsed as text so no float ever sees money."""
    cleaned = text.strip().replace(",", "").replace(" ", "")
    major, dot, minor = cleaned.partition(".")
    if not major.isdigit() or (dot and not (minor.isdigit() and len(minor) <= 2)):
        raise ValueError(f"{text!r} is not an amount like 12.34")
    return int(major) * 100 + int((minor or "0").ljust(2, "0"))
