"""Pure logic: an order's filters (SPEC §4) -- parsed and checked once, then tested
against a lead in memory (`matches`) or stated as SQL on the leads table
(`sql_conditions`), the two kept equal by tests/test_matching_properties.py."""
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional

import pycountry

from app.core import bounds
from app.errors import ValidationFailed
from app.models import Lead
from app.services import scoring
from app.services.ingest.validate import MAX_AGE, MIN_AGE

GENDERS = ("f", "m", "other", "unknown")
MARITAL_STATUSES = ("single", "partnered", "married", "divorced", "widowed", "unknown")
EMPLOYED = ("yes", "no", "unknown")
REQUIRE = ("phone", "email", "both")
MAX_QUANTITY = bounds.COUNT.maximum  # leads in one order, a cap per period
MAX_DAYS = 3650  # freshness and lookback windows: ten years


def refuse(field_name: str, message: str):
    raise ValidationFailed(message, code="invalid_filter", details={"field": field_name})


def _choices(data: Mapping, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    values = data.get(name) or []
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    cleaned = tuple(sorted({str(v).strip().lower() for v in values}))
    unknown = [v for v in cleaned if v not in allowed]
    if unknown:
        refuse(name, f"Unknown {name.replace('_', ' ')}: {', '.join(unknown)}; "
                    f"use {', '.join(allowed)}.")
    return cleaned


def whole_or_none(data: Mapping, name: str, low: int, high: int) -> Optional[int]:
    return bounds.IntRange(low, high).optional(data.get(name), name)


@dataclass(frozen=True)
class Filters:
    """Which leads an order wants. Empty means "any"."""

    age_min: Optional[int] = None
    age_max: Optional[int] = None
    genders: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    require: Optional[str] = None
    marital_statuses: tuple[str, ...] = ()
    employed: Optional[str] = None
    interests: tuple[str, ...] = ()
    max_age_days: Optional[int] = None
    exclusive_only: bool = False
    min_score: Optional[int] = None  # SPEC §6: 0–100 at the time of the sale
    min_temperature: Optional[str] = None  # hot, warm or cold (cold = any)

    def __post_init__(self):
        # The lowest lead score the order takes (0: any); the matcher asks per lead.
        object.__setattr__(self, "score_threshold",
                           scoring.threshold(self.min_score, self.min_temperature))

    @classmethod
    def parse(cls, data: Optional[Mapping[str, Any]]) -> "Filters":
        """Validated filters, or ValidationFailed naming the field and what is wrong."""
        data = data or {}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            refuse(unknown[0], f"Unknown filter {unknown[0]!r}; filters are {', '.join(sorted(known))}.")
        age_min = whole_or_none(data, "age_min", MIN_AGE, MAX_AGE)
        age_max = whole_or_none(data, "age_max", MIN_AGE, MAX_AGE)
        if age_min is not None and age_max is not None and age_min > age_max:
            refuse("age_min", f"The minimum age ({age_min}) is above the maximum ({age_max}).")
        regions = data.get("regions") or []
        if isinstance(regions, str):
            regions = [r for r in regions.split(",") if r.strip()]
        regions = tuple(sorted({str(r).strip().upper() for r in regions}))
        for code in regions:
            if pycountry.subdivisions.get(code=code) is None:
                refuse("regions", f"“{code}” is not an ISO 3166-2 region code such as RU-MOW, "
                                 "ES-M or US-CA.")
        countries = data.get("countries") or []
        if isinstance(countries, str):
            countries = [c for c in countries.split(",") if c.strip()]
        countries = tuple(sorted({str(c).strip().upper() for c in countries}))
        for code in countries:
            if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
                refuse("countries", f"“{code}” is not a two-letter country code.")
        require = (data.get("require") or None)
        if require is not None and require not in REQUIRE:
            refuse("require", f"require must be one of {', '.join(REQUIRE)}.")
        employed = data.get("employed")
        if isinstance(employed, bool):
            employed = "yes" if employed else "no"
        employed = (str(employed).strip().lower() or None) if employed not in (None, "") else None
        if employed is not None and employed not in EMPLOYED:
            refuse("employed", "employed must be yes, no or unknown.")
        interests = data.get("interests") or []
        if isinstance(interests, str):
            interests = interests.replace(";", ",").split(",")
        interests = tuple(sorted({str(i).strip().lower() for i in interests if str(i).strip()}))
        min_temperature = data.get("min_temperature")
        min_temperature = str(min_temperature).strip().lower() if min_temperature else None
        if min_temperature is not None and min_temperature not in scoring.TEMPERATURES:
            refuse("min_temperature", "min_temperature must be hot, warm or cold.")
        exclusive = data.get("exclusive_only", False)
        if isinstance(exclusive, str):
            exclusive = exclusive.strip().lower() in ("1", "true", "yes", "on", "y")
        return cls(
            age_min=age_min, age_max=age_max,
            genders=_choices(data, "genders", GENDERS), regions=regions, countries=countries,
            require=require, marital_statuses=_choices(data, "marital_statuses", MARITAL_STATUSES),
            employed=employed, interests=interests,
            max_age_days=whole_or_none(data, "max_age_days", 1, MAX_DAYS),
            exclusive_only=bool(exclusive),
            min_score=whole_or_none(data, "min_score", 0, scoring.MAX_SCORE) or None,
            min_temperature=None if min_temperature == "cold" else min_temperature,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def matches(self, lead, now: datetime) -> bool:
        """The in-memory test; `sql_conditions` states the same rules for the database."""
        if self.age_min is not None and (lead.age is None or lead.age < self.age_min):
            return False
        if self.age_max is not None and (lead.age is None or lead.age > self.age_max):
            return False
        if self.genders and lead.gender not in self.genders:
            return False
        if self.regions and lead.region not in self.regions:
            return False
        if self.countries and lead.country not in self.countries:
            return False
        if self.require in ("phone", "both") and not lead.has_phone:
            return False
        if self.require in ("email", "both") and not lead.has_email:
            return False
        if self.marital_statuses and lead.marital_status not in self.marital_statuses:
            return False
        if self.employed is not None and lead.employed != self.employed:
            return False
        if self.interests and not set(self.interests).intersection(lead.interests or ()):
            return False
        if self.max_age_days is not None and lead.consent_at < now - timedelta(days=self.max_age_days):
            return False
        if self.exclusive_only and lead.cap != 1:
            return False
        if self.score_threshold and (
                scoring.score_at(lead.score_points, lead.consent_at, now) < self.score_threshold):
            return False
        return True

    def sql_conditions(self, now: datetime) -> list:
        """Everything but interests (a JSON list), as SQL on the leads table."""
        conditions = []
        if self.age_min is not None:
            conditions.append(Lead.age >= self.age_min)
        if self.age_max is not None:
            conditions.append(Lead.age <= self.age_max)
        if self.genders:
            conditions.append(Lead.gender.in_(self.genders))
        if self.regions:
            conditions.append(Lead.region.in_(self.regions))
        if self.countries:
            conditions.append(Lead.country.in_(self.countries))
        if self.require in ("phone", "both"):
            conditions.append(Lead.has_phone.is_(True))
        if self.require in ("email", "both"):
            conditions.append(Lead.has_email.is_(True))
        if self.marital_statuses:
            conditions.append(Lead.marital_status.in_(self.marital_statuses))
        if self.employed is not None:
            conditions.append(Lead.employed == self.employed)
        if self.max_age_days is not None:
            conditions.append(Lead.consent_at >= now - timedelta(days=self.max_age_days))
        if self.exclusive_only:
            conditions.append(Lead.cap == 1)
        if self.score_threshold:
            conditions.append(scoring.min_score_condition(self.score_threshold, now))
        return conditions
