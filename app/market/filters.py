"""Pure logic: an order's filters (SPEC §4) -- parsed and checked once, then tested
against a lead in memory (`matches`) or stated as SQL on the leads table
(`sql_conditions`), the two kept equal by tests/test_matching_properties.py."""
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional

from app.core import bounds
from app.errors import Refusals, ValidationFailed
from app.models import Lead
from app.services import regions, scoring
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


def _listed(values) -> list[str]:
    """A list, or text separated by commas or semicolons, as its non-empty items."""
    if isinstance(values, str):
        values = values.replace(";", ",").split(",")
    return [str(v).strip() for v in values or [] if str(v).strip()]


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
        """Validated filters, or ValidationFailed naming the field and what is wrong
        (every problem found, in `details["errors"]`)."""
        data = data or {}
        found = Refusals("invalid_filter")
        known = set(cls.__dataclass_fields__)
        for name in sorted(set(data) - known):
            found.add(name, f"Unknown filter {name!r}; filters are {', '.join(sorted(known))}.")
        age_min = found.check(whole_or_none, data, "age_min", MIN_AGE, MAX_AGE)
        age_max = found.check(whole_or_none, data, "age_max", MIN_AGE, MAX_AGE)
        if age_min is not None and age_max is not None and age_min > age_max:
            found.add("age_min", f"The minimum age ({age_min}) is above the maximum ({age_max}).")
        codes = set()
        for value in _listed(data.get("regions")):
            code = regions.resolve_region(value, None)
            if code is None:
                found.add("regions", f"“{value}” is not a region we know; pick it from the list, "
                                     "or type its name or ISO code such as RU-MOW or ES-M.")
            codes.add(code)
        countries = set()
        for value in _listed(data.get("countries")):
            code = regions.resolve_country(value)
            if code is None:
                found.add("countries", f"“{value}” is not a country we know; type its name "
                                       "or two-letter code such as ES.")
            countries.add(code)
        require = (data.get("require") or None)
        if require is not None and require not in REQUIRE:
            found.add("require", f"require must be one of {', '.join(REQUIRE)}.")
        employed = data.get("employed")
        if isinstance(employed, bool):
            employed = "yes" if employed else "no"
        employed = (str(employed).strip().lower() or None) if employed not in (None, "") else None
        if employed is not None and employed not in EMPLOYED:
            found.add("employed", "employed must be yes, no or unknown.")
        interests = data.get("interests") or []
        if isinstance(interests, str):
            interests = interests.replace(";", ",").split(",")
        interests = tuple(sorted({str(i).strip().lower() for i in interests if str(i).strip()}))
        min_temperature = data.get("min_temperature")
        min_temperature = str(min_temperature).strip().lower() if min_temperature else None
        if min_temperature is not None and min_temperature not in scoring.TEMPERATURES:
            found.add("min_temperature", "min_temperature must be hot, warm or cold.")
        exclusive = data.get("exclusive_only", False)
        if isinstance(exclusive, str):
            exclusive = exclusive.strip().lower() in ("1", "true", "yes", "on", "y")
        genders = found.check(_choices, data, "genders", GENDERS)
        marital_statuses = found.check(_choices, data, "marital_statuses", MARITAL_STATUSES)
        max_age_days = found.check(whole_or_none, data, "max_age_days", 1, MAX_DAYS)
        min_score = found.check(whole_or_none, data, "min_score", 0, scoring.MAX_SCORE)
        found.raise_any()
        return cls(
            age_min=age_min, age_max=age_max, genders=genders,
            regions=tuple(sorted(regions.with_parts(codes))),
            countries=tuple(sorted(countries)), require=require,
            marital_statuses=marital_statuses, employed=employed, interests=interests,
            max_age_days=max_age_days, exclusive_only=bool(exclusive),
            min_score=min_score or None,
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

    @property
    def timeless(self) -> bool:
        """`sql_conditions` does not read `now` (no freshness or score filter): the same
        SQL at any time."""
        return self.max_age_days is None and not self.score_threshold

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
            conditions.append(Lead.consented_since(now - timedelta(days=self.max_age_days)))
        if self.exclusive_only:
            conditions.append(Lead.cap == 1)
        if self.score_threshold:
            conditions.append(scoring.min_score_condition(self.score_threshold, now))
        return conditions
