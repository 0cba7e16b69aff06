"""Pure logic: an order's weekly schedule of delivery windows (SPEC §4, §11), read
from what a buyer sends and from what is stored. Which window is open, and at what
price, is the fill rule `rules.price_in_effect`; this module only says what a
schedule is.

A window is days of the week and a start and end time in the order's time zone,
optionally with its own price. One that ends at or before it starts runs past
midnight into the next day (22:00–06:00); "24:00" ends at midnight. Windows may not
overlap, so at any moment at most one is open and its price is unambiguous.
"""
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import ValidationFailed
from app.formatting import format_money

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_WINDOWS = 50
DAY_MINUTES = 24 * 60
WEEK_MINUTES = 7 * DAY_MINUTES
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True)
class Window:
    days: tuple[int, ...]  # 0 = Monday
    start: int  # minutes after midnight, 0..1439
    end: int  # 1..1440; at or before `start`: the window runs past midnight
    price: Optional[int] = None

    def spans(self) -> list[tuple[int, int]]:
        """The minutes of the week it covers, as [low, high) ranges."""
        out = []
        for day in self.days:
            low = day * DAY_MINUTES + self.start
            high = day * DAY_MINUTES + (self.end if self.end > self.start
                                        else DAY_MINUTES + self.end)
            if high > WEEK_MINUTES:  # Sunday night runs into Monday morning
                out += [(low, WEEK_MINUTES), (0, high - WEEK_MINUTES)]
            else:
                out.append((low, high))
        return out

    def covers(self, minute: int) -> bool:
        return any(low <= minute < high for low, high in self.spans())

    def to_dict(self) -> dict:
        return {"days": [DAYS[d] for d in self.days], "start": _clock(self.start),
                "end": _clock(self.end), "price": self.price}

    def describe(self) -> str:
        days = ", ".join(DAYS[d].capitalize() for d in self.days)
        return f"{days} {_clock(self.start)}–{_clock(self.end)}"


def zone(name: Optional[str]) -> ZoneInfo:
    """The time zone an order counts its caps and reads its schedule in (refused, with
    the field named, if no such zone exists)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"Unknown time zone {name!r}; use a name like Europe/Madrid.",
                               code="invalid_filter", details={"field": "timezone"}) from None


def _refuse(message: str):
    raise ValidationFailed(message, code="invalid_schedule", details={"field": "schedule"})


def minute_of_week(local: datetime) -> int:
    return local.weekday() * DAY_MINUTES + local.hour * 60 + local.minute


def next_opening(windows: tuple[Window, ...], local: datetime) -> Optional[datetime]:
    """When the next window opens after `local` (its time zone's wall clock), or None
    if one is open now."""
    minute = minute_of_week(local)
    spans = [span for w in windows for span in w.spans()]
    if any(low <= minute < high for low, high in spans):
        return None
    ahead = min((low - minute) % WEEK_MINUTES for low, _ in spans)
    return (local.replace(second=0, microsecond=0) + timedelta(minutes=ahead))


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _minutes(value: Any, field: str, index: int) -> int:
    match = _TIME.match(value) if isinstance(value, str) else None
    minutes = int(match[1]) * 60 + int(match[2]) if match else -1
    if not 0 <= minutes <= DAY_MINUTES:
        _refuse(f"Window {index + 1}: {field} must be a time like 09:00 "
                           "(00:00 to 24:00).")
    return minutes


def parse(raw: Any, *, min_price: int, max_price: int) -> tuple[Window, ...]:
    """A buyer's schedule (`[{days, start, end, price?}]`) as windows, or a clear
    refusal naming the window at fault. None or [] is no schedule: always open."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_WINDOWS:
        _refuse(f"The schedule is a list of at most {MAX_WINDOWS} windows.")
    windows = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"days", "start", "end", "price"}:
            _refuse(f"Window {index + 1}: give days, start, end and optionally price.")
        days = item.get("days")
        if (not isinstance(days, list) or not days
                or any(not isinstance(d, str) or d.lower() not in DAYS for d in days)
                or len({d.lower() for d in days}) != len(days)):
            _refuse(f"Window {index + 1}: days are some of {', '.join(DAYS)}, "
                               "each once.")
        start = _minutes(item.get("start"), "start", index)
        end = _minutes(item.get("end"), "end", index)
        if start == DAY_MINUTES or start == end:
            _refuse(f"Window {index + 1}: it must start before 24:00 and end at "
                               "another time.")
        price = item.get("price")
        if price is not None and (type(price) is not int or not min_price <= price <= max_price):
            _refuse(f"Window {index + 1}: its price must be at least "
                    f"{format_money(min_price)}.")
        windows.append(Window(tuple(sorted(DAYS.index(d.lower()) for d in days)), start, end,
                              price))
    spans = sorted((low, high, i) for i, w in enumerate(windows) for low, high in w.spans())
    for (_, high, first), (low, _, second) in zip(spans, spans[1:]):
        if low < high:
            _refuse(f"Windows {min(first, second) + 1} and {max(first, second) + 1} "
                               "overlap; at any time at most one window may be open.")
    return tuple(windows)


def stored(raw: Optional[list]) -> tuple[Window, ...]:
    """The windows of a stored schedule (validated when it was stored)."""
    return tuple(Window(tuple(DAYS.index(d) for d in w["days"]), _stored_minutes(w["start"]),
                        _stored_minutes(w["end"]), w.get("price")) for w in raw or ())


def _stored_minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def to_json(windows: tuple[Window, ...]) -> Optional[list]:
    return [w.to_dict() for w in windows] or None


def calling_hours(raw: Any, default: tuple[int, int]) -> Optional[tuple[int, int]]:
    """SPEC §14 quiet hours as a buyer sends them: null or false (phone leads are not
    held), true or {} (`default`), or {start, end} on the person's clock, start before
    end -> (start, end) in minutes after midnight."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return default
    if not isinstance(raw, dict):
        raise ValidationFailed("calling_hours is {start, end} (times like 08:00), true for "
                               "08:00–21:00, or null.", code="invalid_filter",
                               details={"field": "calling_hours"})
    hours = []
    for field, fallback in zip(("start", "end"), default):
        value = raw.get(field)
        match = _TIME.match(value) if isinstance(value, str) else None
        if value is None:
            hours.append(fallback)
        elif match is None or not 0 <= int(match[1]) * 60 + int(match[2]) <= DAY_MINUTES:
            raise ValidationFailed(f"calling_hours.{field} must be a time like 08:00.",
                                   code="invalid_filter",
                                   details={"field": f"calling_hours.{field}"})
        else:
            hours.append(int(match[1]) * 60 + int(match[2]))
    if hours[0] >= hours[1]:
        raise ValidationFailed("The calling hours must start before they end (on the person's "
                               "clock, the same day).", code="invalid_filter",
                               details={"field": "calling_hours"})
    return hours[0], hours[1]


def clock(minutes: int) -> str:
    """Minutes after midnight as HH:MM."""
    return _clock(minutes)
