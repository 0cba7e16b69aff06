"""Column-wise validation of a chunk: the common, clean rows decided a column at a
time. Pure functions, no database; runs in the ingest workers.

`validate_row` decides one row at a time and pays Python's overhead for every cell.
Most columns of a real file hold few distinct values (genders, countries, regions,
pages, names, ages), so here each distinct value of a column is worked out once per
chunk (the costlier ones once per worker: `memo`) and the rows look it up; emails are
checked in one regex pass over their column (normalise_emails), phones in the common
shapes too (normalise_phones), and only consent times and the other phones are read
one by one.
A row is accepted here only when every check passes. A row that fails one check
alone gets that check's verdict here, worded by validate.py's helpers; a row with more
problems, or whose text needs cleaning, is left to `validate_row`, which gives every
reason (taking the answers this pass has for the row, `Known`, rather than working them
out again). tests/unit/test_ingest_columns.py holds the accepted leads and the verdicts
to validate_row's, row for row. `decide_columns` hands the normalised
columns themselves to the workers, which build their stored rows from them without a
lead object per row; `validate_columns` makes the leads.

Not polars (measured December 2026, phones and emails as polars expressions): the cells
arrive and leave as Python objects, and crossing into polars costs more than these
passes do: ~100 ns a value into a Series, ~50 back out (~450 for an aware datetime), ~30
µs a call, and 40-120 µs a call for each of phonenumbers' long patterns, however short
the column. Its phones took 10 µs a row against 1.3 here, its emails 0.7 against 1.0
with no gain in a worker's total, and the library added ~44 MB PSS to each worker (an
upload's peak 357 MB against 271 at 300,000 rows, over the 300 MB limit).
"""
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timezone, tzinfo
from itertools import chain, compress, repeat
from operator import concat, is_, is_not, not_

from app.services.ingest.fields import (
    EMPLOYED, GENDERS, MARITAL_STATUSES, consent_flag, text_key,
)
from app.services.regions import resolve_country
from app.services.ingest.validate import (
    _AGE, _CERTIFICATES, _IPV4, _POSTAL_CODE, _SPECIAL_TLDS, CLOCK_SKEW, MAX_AGE, MIN_AGE,
    _PHONE_SHAPE, _PLANS, Known, NormalisedLead, RowContext, RowResult, _age_from_birth,
    _interests, _ip, _text, future_message, in_utc, invalid_phone_message,
    no_consent_message, normalise_email, normalise_phone, normalise_url, page_gap,
    parse_timestamp, phone_source, read_age, read_place, time_gap, verdict_message,
)
from app.services.regions_tz import consent_zone

_FAIL = object()  # a value with a problem: validate_row gives the row's reasons


# Answers of the costlier conversions kept from one chunk to the next (a file's places,
# pages and ages repeat), each memo MEMO_SIZE answers at most between chunks: cleared
# when a chunk would take it past that, so a file of ever new values costs no memory.
MEMO_SIZE = 2048
_memos: dict[tuple, dict] = {}


def memo(*purpose) -> dict:
    """This process's memo for a conversion (and whatever else its answers depend on)."""
    return _memos.setdefault(purpose, {})


def each_distinct(convert: Callable, column: Sequence, known: dict | None = None) -> list:
    """convert(value) for every value, computed once per distinct value; `known`: a
    memo of earlier chunks' answers (convert then depends on the value alone)."""
    distinct = set(column)
    if known is None:
        known = {value: convert(value) for value in distinct}
    else:
        new = distinct.difference(known)
        if len(known) + len(new) > MEMO_SIZE:
            known.clear()
            new = distinct
        for value in new:
            known[value] = convert(value)
    if len(distinct) == 1:  # one value (a column not given): no lookup per row
        return [known[column[0]]] * len(column)
    return list(map(known.__getitem__, column))


# validate.email_fast_path's pattern for each line of a column joined by line breaks,
# with its special-use TLDs refused, in one pass: a run of one part's characters always
# ends where the next separator must be, so possessive runs never need to backtrack.
# Group 1 is the line when it matches, else empty.
_ATOM, _LABEL = r"[A-Za-z0-9_%+-]", r"[A-Za-z0-9-]"
_EMAIL_LINES = re.compile(
    rf"^(?:({_ATOM}++(?:\.{_ATOM}++)*+@(?:(?=[A-Za-z0-9]){_LABEL}{{1,63}}+(?<=[A-Za-z0-9])\.)++"
    rf"[A-Za-z]{{2,63}}+" + "".join(rf"(?<!\.(?i:{tld}))" for tld in sorted(_SPECIAL_TLDS))
    + r")|[^\n]*)$", re.M | re.A)


def normalise_emails(values: list[str]) -> list[str | None]:
    """normalise_email of each stripped value (None where empty or invalid): the fast
    path for the whole column in one regex pass, normalise_email for the rest."""
    joined = "\n".join(values)
    if joined.count("\n") != len(values) - 1:  # a value holds a line break
        return [normalise_email(value) if value else None for value in values]
    found = _EMAIL_LINES.findall(joined)
    # email_fast_path's length limits certainly hold for 64 characters or fewer; an
    # R-LDH label ("ab--c") is the library's to judge.
    if max(map(len, found), default=0) > 64 or "--" in (emails := "\n".join(found)):
        found = [email if len(email) <= 64 and "--" not in email else "" for email in found]
        emails = "\n".join(found)
    lowered = emails.lower().split("\n")  # ASCII: lower-casing keeps the lines
    if found.count("") != values.count(""):  # some are the library's
        return [email or (normalise_email(value) if value else None)
                for email, value in zip(lowered, values)]
    return [email or None for email in lowered]


# phone_fast_path for a column: which lines are of its plain shape, then, with the home
# region written before each line's digits ("US|2125550123"), one pass that finds the
# national number of the lines phone_fast_path certainly reads the simple way: a
# national number, or "+" and a country code and one, with its national prefix (the
# first match, as re.match finds it: an atomic group) stripped when the rest is valid,
# or none to strip and valid as it is; not starting with an international prefix or
# the country code. Every other line is phone_fast_path's (or the library's) one by one.
_PHONE_LINES = re.compile(rf"^(?:({_PHONE_SHAPE.pattern})|[^\n]*)$", re.M | re.A)


def _valid_nsn(plan, stripped: bool) -> str:
    """A pattern that matches exactly the national numbers plan.valid() accepts (not
    starting with 0, which the library would not keep), to the end of the line. After a
    stripped prefix, a length only possible locally is left out (national() keeps the
    prefix then)."""
    by_length = "|".join(rf"(?=[0-9]{{{n}}}$)(?:{pattern.pattern})$"
                         for n, pattern in sorted(plan.types.items())
                         if not (stripped and n in plan.local_only))
    leading = rf"(?={plan.leading.pattern})" if plan.leading else ""
    return rf"(?!0)(?=(?:{plan.general.pattern})$){leading}(?:{by_length})"


def _nsn_at(plan) -> str:
    """Where the national number starts (what national() keeps of the rest) when it is
    valid; the pattern's group then takes it."""
    if plan.national_prefix is None:
        return rf"(?={_valid_nsn(plan, False)})"
    prefix = plan.national_prefix.pattern
    return (rf"(?:(?>{prefix})(?={_valid_nsn(plan, True)})"
            rf"|(?!{prefix})(?={_valid_nsn(plan, False)}))")


def _valid_phone_lines() -> re.Pattern:
    national = [rf"{region}\|(?!{plan.idd.pattern})(?!{plan.cc}){_nsn_at(plan)}"
                for region, plan in _PLANS.items()]
    international = "|".join(rf"{plan.cc}{_nsn_at(plan)}" for plan in _PLANS.values())
    pattern = re.compile(rf"^(?:{'|'.join(national)}|[^|\n]*\|\+(?:{international}))"
                         r"([0-9]+)$|^[^\n]*$", re.M | re.A)
    assert pattern.groups == 1  # findall gives each line's national number or ""
    return pattern


_VALID_PHONE_LINES = _valid_phone_lines()
_PLAN_BY_CC = {plan.cc: plan for plan in _PLANS.values()}
_PLUS_CC = {region: f"+{plan.cc}" for region, plan in _PLANS.items()}


def normalise_phones(values: list[str], homes: list[str | None]
                     ) -> tuple[list[str | None], list[str | None]]:
    """normalise_phone(value, home) of each stripped value, as two columns: the numbers
    (None where empty or invalid) and the regions they belong to. The common shapes
    for the whole column in two regex passes, the rest one by one."""
    count = len(values)
    joined = "\n".join(values)
    shaped = _PHONE_LINES.findall(joined)
    if joined.count("\n") != count - 1 or len(shaped) != count:  # a value holds a line break
        return _unzipped([normalise_phone(value, home) if value else None
                          for value, home in zip(values, homes)])
    digits = "\n".join(shaped).encode().translate(None, b" ()./-").decode().split("\n")
    tags = {home: f"{home}|" for home in set(homes)}
    found = _VALID_PHONE_LINES.findall("\n".join(map(concat, map(tags.__getitem__, homes),
                                                     digits)))
    numbers: list[str | None] = []
    regions: list[str | None] = []
    plus_cc = _PLUS_CC
    for nsn, value, home, number in zip(found, values, homes, digits):
        if not nsn:
            phone = normalise_phone(value, home) if value else None
            numbers.append(phone and phone[0])
            regions.append(phone and phone[1])
        elif number[0] != "+":  # a national number of its home
            numbers.append(plus_cc[home] + nsn)
            regions.append(home)
        else:
            plan = _PLAN_BY_CC.get(number[1]) or _PLAN_BY_CC[number[1:3]]
            numbers.append(f"+{plan.cc}{nsn}")
            regions.append(plan.region)
    return numbers, regions


def _unzipped(phones: list[tuple | None]) -> tuple[list[str | None], list[str | None]]:
    return ([phone and phone[0] for phone in phones],
            [phone and phone[1] for phone in phones])


def _as_iso(value: str) -> str | None:
    """The ISO text of a consent time in the usual day-first ("17.05.2025 10:00", _DMY
    with dots) or year-first ("2025/05/17 10:00", _YMD_SLASH) shape, two digits a part,
    with or without seconds; None for any other shape. Where the ISO parser reads it,
    the datetime is parse_timestamp's; where it cannot, parse_timestamp decides."""
    size = len(value)
    if size != 10 and not ((size == 16 or (size == 19 and value[16] == ":"))
                           and value[10] == " " and value[13] == ":"):
        return None
    if value[2] == "." and value[5] == ".":
        return f"{value[6:10]}-{value[3:5]}-{value[:2]}{value[10:]}"
    if value[4] == "/" and value[7] == "/":
        return f"{value[:4]}-{value[5:7]}-{value[8:10]}{value[10:]}"
    return None


def consent_times_of(values: list[str], month_firsts: list[bool],
                     zones: list[tzinfo]) -> list[datetime | None]:
    """parse_timestamp of each stripped value (None where empty), each on its row's
    clock: the ISO shapes, unix times and the usual numeric ones read here without a
    call to it."""
    iso, utc, timestamp = datetime.fromisoformat, timezone.utc, datetime.fromtimestamp
    times: list[datetime | None] = []
    add = times.append
    for value, month_first, zone in zip(values, month_firsts, zones):
        if value[4:5] == "-":  # parse_timestamp's first branch
            try:
                when = iso(value)
            except ValueError:
                add(None)
                continue
            # In UTC already: in_utc would give the same datetime back.
            add(when if when.tzinfo is utc else in_utc(when, len(value) > 10, zone))
        elif len(value) == 10 and value.isascii() and value.isdigit():  # unix seconds
            add(timestamp(float(value), utc))
        elif value:
            if (text := _as_iso(value)) is not None:
                try:
                    add(in_utc(iso(text), len(value) > 10, zone))
                    continue
                except ValueError:
                    pass
            add(parse_timestamp(value, month_first=month_first, zone=zone))
        else:
            add(None)
    return times


def _at(values: Sequence, value: object) -> Iterator[int]:
    """The positions of `value` itself in `values`, found without a Python step per value
    (an `in` test compares: a tuple with a marker, slowly)."""
    return compress(range(len(values)), map(is_, values, repeat(value)))


def _stripped(value: str | None) -> str:
    return (value or "").strip()


# Values that repeat across a file's chunks and cost microseconds each: worked out once
# per process, in a small cache (4,096 entries made each worker ~1 MB bigger at 1M rows,
# its IPv6 addresses all different).
@lru_cache(maxsize=1024)
def _ip_of(cell: str | None) -> str | None:
    return _ip(cell) if cell else None


# validate._IPV4 for each line of values joined by line breaks: group 1 is the line
# when it is such an address, which _ip gives back as it is, else empty.
_IPV4_LINES = re.compile(rf"^(?:({_IPV4.pattern})|[^\n]*)$", re.M | re.A)


def ips_of(column: Sequence[str | None]) -> list[str | None]:
    """_ip_of of each value, once per distinct value: the plain IPv4 addresses (most of
    a file's) found in one regex pass over them, the others one by one."""
    distinct = [value for value in set(column) if value]
    joined = "\n".join(distinct)
    if joined.count("\n") != len(distinct) - 1:  # none, or a value holds a line break
        return each_distinct(_ip_of, column)
    known = {value: address or _ip_of(value)
             for value, address in zip(distinct, _IPV4_LINES.findall(joined), strict=True)}
    known[None] = known[""] = None
    return list(map(known.__getitem__, column))


def interest_words(raw: str | None) -> tuple[str, ...]:
    """_interests as a tuple: hashable, shared by the rows that hold `raw`."""
    return tuple(_interests(raw))


# Whitespace other than single spaces between words (a line break aside: it parts the
# values in interests_of's text).
_UNEVEN_SPACE = re.compile(r"[^\S \n]|  ")


def interests_of(column: Sequence[str | None]) -> list[tuple[str, ...]]:
    """interest_words of each value, once per distinct value, the distinct values
    lower-cased and split in one pass over their joined text. Where every space is a
    single one between words, _interests' trimming of each part is the removal of the
    spaces beside a comma and at the ends."""
    distinct = list(set(column))
    text = "\n".join([value or "" for value in distinct])
    text = text.replace(";", ",").replace("|", ",").lower()
    lines = text.replace(" ,", ",").replace(", ", ",").split("\n")
    if len(lines) != len(distinct) or _UNEVEN_SPACE.search(text):  # rare: one by one
        return each_distinct(interest_words, column)
    known = {value: tuple(dict.fromkeys(filter(None, line.strip(" ").split(","))))
             for value, line in zip(distinct, lines)}
    return list(map(known.__getitem__, column))


def _place(cells: tuple[str, str, str | None], default_country: str):
    """(country, region, home) as validate_row reads them, or _FAIL."""
    country_cell, region_cell, city_cell = cells
    country, region, bad = read_place(_stripped(country_cell), _stripped(region_cell),
                                      _text(city_cell), default_country)
    if bad is not None:
        return _FAIL
    return country, region, country or (region[:2] if region else default_country)


def _iso_date(value: str) -> date | None:
    """A bare ISO date, read as parse_timestamp reads it (the same ISO parser), without
    the datetime it would build around it."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


# The day-first, month-first and year-first dates parse_timestamp reads (_DMY and
# _YMD_SLASH), in their two-digit, ASCII form: the usual birth dates of an export.
_NUMERIC_DATE = re.compile(r"(\d\d)([./-])(\d\d)\2(\d{4})|(\d{4})/(\d\d)/(\d\d)", re.A)


def _numeric_date(value: str, month_first: bool) -> date | None:
    """The date parse_timestamp reads in a bare numeric date of these shapes, without
    the datetime it would build around it; None when it is of another shape or not a
    real date (parse_timestamp decides those)."""
    if (found := _NUMERIC_DATE.fullmatch(value)) is None:
        return None
    first, separator, second, year, year_first, month, day = found.groups()
    if year:
        day, month = int(first), int(second)
        if separator == "/" and (month > 12 or (month_first and day <= 12)):
            day, month = month, day
    else:
        year, month, day = year_first, int(month), int(day)
    try:
        return date(int(year), month, day)
    except ValueError:
        return None


def _born(birth_raw: str, month_first: bool, today: date) -> tuple | object:
    """(age, birth date) from a birth date, or _FAIL."""
    born = None
    if len(birth_raw) == 10:
        born = (_iso_date(birth_raw) if birth_raw[4] == "-"
                else _numeric_date(birth_raw, month_first))
    if born is None:
        stamp = parse_timestamp(birth_raw, month_first=month_first)
        born = stamp.date() if stamp is not None else None
    if born is None or born > today:
        return _FAIL
    age = _age_from_birth(born, today)
    return (age, born) if MIN_AGE <= age <= MAX_AGE else _FAIL


def _births(cell: str | None, today: date) -> tuple | None:
    """_born of a birth date cell read day first and read month first (only a date
    that starts with a day or month and a slash can differ), or None when the cell is
    empty."""
    if not (birth_raw := _stripped(cell)):
        return None
    day_first = _born(birth_raw, False, today)
    return day_first, _born(birth_raw, True, today) if "/" in birth_raw[1:3] else day_first


def _url(cell: str | None) -> str | None:
    return normalise_url(raw) if (raw := _stripped(cell)) else None


def _aged(cell: str | None) -> tuple | object:
    """(age, None) from an age cell (None, None when empty), or _FAIL."""
    if age_raw := _stripped(cell):
        found = _AGE.fullmatch(age_raw)
        if found is None or not MIN_AGE <= (age := int(found.group(1))) <= MAX_AGE:
            return _FAIL
        return age, None
    return None, None


def _postal(cell: str | None):
    if not cell:
        return None
    code = " ".join(cell.upper().split()) or None
    return _FAIL if code and not _POSTAL_CODE.fullmatch(code) else code


def _certificate(name: str) -> Callable:
    shape = _CERTIFICATES[name][0]

    def check(cell: str | None):
        raw = _stripped(cell)
        return (raw if shape.fullmatch(raw) else _FAIL) if raw else None
    return check


def _readable(column: Sequence[str]) -> list[bool] | None:
    """Per row, whether the value is printable and has nothing unreadable; None when
    the whole column is (the usual case, checked in one pass)."""
    joined = "".join(column)
    if joined.isprintable() and "\ufffd" not in joined:
        return None
    return [value.isprintable() and "\ufffd" not in value for value in column]


def printable_lines(lines: Sequence[str], records: int) -> bool:
    """Whether every cell of the records read from `lines` (Block.lines: one record a
    line, without its line break) is printable with nothing unreadable: their text is.
    A cheaper check than one over the cells (one join of whole lines), and a stricter
    one (it reads the columns no field takes, the quotes and delimiters too, and any
    carriage return left in a line): when it fails, decide_columns checks the cells
    themselves."""
    if len(lines) != records:
        return False
    text = "".join(lines)
    return text.isprintable() and "\ufffd" not in text


def _one_reason(reason: str, *, email_raw: str, phone_raw: str, place, region_raw: str,
                country_raw: str, default: str, default_from: str, consent_raw: str, consent_at: datetime | None,
                zone: tzinfo, url_raw: str, birth_raw: str, age_raw: str, month_first: bool,
                today: date) -> tuple[str, str] | None:
    """validate_row's (code, sentence) for a row (its stripped cells, and what this pass
    read of them) that failed this pass's checks for one reason alone, each one verdict
    of validate_row's, worded by validate.py's helpers; None where validate_row must
    tell: a place that fails where validate_row would read the phone and consent time
    in another country than the batch's."""
    if reason == "email":
        return "invalid_email", verdict_message("invalid_email", value=email_raw)
    if reason == "phone":
        country, region, home = place
        return "invalid_phone", invalid_phone_message(
            phone_raw, home, phone_source(country, region, region_raw, default_from))
    if reason == "contact":
        return "no_contact", verdict_message("no_contact")
    if reason == "time":
        return "no_consent", no_consent_message([time_gap(consent_raw)])
    if reason == "future":
        return "consent_in_future", future_message(consent_raw, consent_at, zone)
    if reason == "page":
        return "no_consent", no_consent_message([page_gap(url_raw)])
    if reason == "age":
        return "implausible_age", read_age(birth_raw, age_raw, month_first, today)[2]
    country = resolve_country(country_raw) if country_raw else None  # the place
    if country_raw and country is None:
        return "unknown_region", verdict_message("unknown_region", field="country",
                                                 value=country_raw)
    if country in (None, default):
        return "unknown_region", verdict_message("unknown_region", field="region",
                                                 value=region_raw)
    return None


# NormalisedLead's fields in its order: the columns `decide_columns` fills.
LEAD_FIELDS = tuple(NormalisedLead.__slots__)


@dataclass(slots=True)
class Decided:
    """A chunk decided column-wise: whether each row passed every check, and each
    field's normalised values (meaningful where the row passed)."""

    ok: list[bool]
    values: dict[str, Sequence]  # LEAD_FIELDS -> one value per row
    # The rows that did not pass, by position: those whose one reason this pass told
    # with their verdicts, the others with what was worked out of them (validate_row
    # tells theirs).
    known: dict[int, Known]
    rejected: dict[int, RowResult]


def decide_columns(rows: Sequence[Sequence[str]], fields: Sequence[str | None],
                   ctx: RowContext, printable: bool = False) -> Decided:
    """Every row's checks, a column at a time; see `validate_columns`. `printable`:
    the caller knows every cell is printable and readable (printable_lines)."""
    count = len(rows)
    width = len(fields)
    padded = rows if min(map(len, rows), default=width) >= width else [
        cells if len(cells) >= width else list(cells) + [""] * (width - len(cells))
        for cells in rows]
    by_column = list(zip(*padded)) if width and count else [()] * width
    columns: dict[str, Sequence[str]] = {}
    for i, name in enumerate(fields):
        if name:  # a field mapped twice: the later column wins, as in validate_row
            columns[name] = by_column[i]
    absent = (None,) * count

    def column(name: str) -> Sequence[str | None]:
        return columns.get(name, absent)

    def stripped(name: str) -> list[str]:
        """The column's values stripped ("" for a column the file lacks)."""
        return list(map(str.strip, columns[name])) if name in columns else [""] * count

    ok = [True] * count
    # Each failed row's one reason (see _one_reason), or None: it has more than one, or
    # one validate_row words (it then reads the row again with what `known` holds).
    reasons: dict[int, str | None] = {}

    def fail(positions: Iterator[int], reason: str | None) -> None:
        for i in positions:
            ok[i] = False
            reasons[i] = None if i in reasons else reason

    cells = [] if printable else list(chain.from_iterable(columns.values()))
    if _readable(cells) is not None:  # rare: by column
        for values in columns.values():
            if (readable := _readable(values)) is not None:
                fail(compress(range(count), map(not_, readable)), None)

    def checked(values: Sequence, reason: str | None) -> Sequence:
        fail(_at(values, _FAIL), reason)
        return values

    default = ctx.default_country

    def where(cells: tuple) -> tuple:
        """The row's place (or _FAIL), home country, region, the country its place
        names (None if none), the clock of its consent time and whether that clock
        reads a date month first."""
        place = _place(cells, default)
        if place is _FAIL:
            return place, default, None, None, consent_zone(None, default), default == "US"
        country, region, home = place
        return (place, home, region, country or (region[:2] if region else None),
                consent_zone(region, home), home == "US")

    places, homes, regions, place_countries, zones, month_firsts = zip(*each_distinct(
        where, list(zip(column("country"), column("region"), column("city"))),
        memo("where", default))) if count else ((),) * 6
    checked(places, "place")

    given = stripped("email")
    emails = normalise_emails(given) if "email" in columns else list(absent)
    fail((i for i in _at(emails, None) if given[i]), "email")
    phone_cells = stripped("phone")
    phones, phone_countries = normalise_phones(phone_cells, homes)
    no_phone = list(_at(phones, None))
    fail((i for i in no_phone if phone_cells[i]), "phone")
    # No contact at all (an invalid email failed above).
    fail((i for i in no_phone if not phone_cells[i] and not given[i]), "contact")

    if "consent" in columns:
        flags = each_distinct(consent_flag, columns["consent"])
        fail(compress(range(count), map(is_not, flags, repeat(True))), None)

    latest = ctx.now + CLOCK_SKEW
    consent_cells = stripped("consent_at")
    consent_times = consent_times_of(consent_cells, month_firsts, zones)
    fail(_at(consent_times, None), "time")
    if max(filter(None, consent_times), default=latest) > latest:
        fail((i for i, when in enumerate(consent_times) if when and when > latest), "future")
    urls = each_distinct(_url, column("source_url"), memo("source_url"))
    fail(_at(urls, None), "page")
    today = ctx.now.date()
    # The birth date, or else the age: each distinct cell read once (both ways where
    # the row's clock picks day or month first).
    born = each_distinct(lambda cell: _births(cell, today), column("birth_date"))
    aged = each_distinct(_aged, column("age"), memo("age"))
    births = checked(aged if born.count(None) == count else [
        age if birth is None else birth[month_first]
        for birth, age, month_first in zip(born, aged, month_firsts)], "age")
    postal_codes = checked(each_distinct(_postal, column("postal_code")), None)
    trustedform = checked(each_distinct(_certificate("trustedform_cert_url"),
                                         column("trustedform_cert_url")), None)
    jornaya = checked(each_distinct(_certificate("jornaya_leadid"), column("jornaya_leadid")),
                      None)
    known: dict[int, Known] = {}
    rejected: dict[int, RowResult] = {}
    for i, reason in sorted(reasons.items()):
        verdict = reason and _one_reason(
            reason, email_raw=given[i], phone_raw=phone_cells[i],
            place=places[i], region_raw=_stripped(column("region")[i]),
            country_raw=_stripped(column("country")[i]), default=default,
            default_from=ctx.default_from,
            consent_raw=consent_cells[i], consent_at=consent_times[i], zone=zones[i],
            url_raw=_stripped(column("source_url")[i]),
            birth_raw=_stripped(column("birth_date")[i]), age_raw=_stripped(column("age")[i]),
            month_first=month_firsts[i], today=today)
        if verdict is not None:
            code, message = verdict
            rejected[i] = RowResult(None, code, message, (code,), emails[i], phones[i])
        else:
            known[i] = Known(emails[i], homes[i], regions[i],
                             phones[i] and (phones[i], phone_countries[i]), consent_times[i])
    values: dict[str, Sequence] = {}
    if any(ok):
        def texts(name: str) -> list[str | None]:
            return each_distinct(_text, column(name))

        def vocabulary(name: str, words: dict) -> list[str]:
            return each_distinct(lambda cell: words.get(text_key(cell or ""), "unknown"),
                                  column(name))

        fallback = ctx.default_country
        values = {
            "first_name": texts("first_name"), "last_name": texts("last_name"),
            "email": emails, "phone": phones,
            "age": [birth[0] if birth is not _FAIL else None for birth in births],
            "birth_date": [birth[1] if birth is not _FAIL else None for birth in births],
            "gender": vocabulary("gender", GENDERS),
            "region": regions,
            "country": [country or phone_country or fallback
                        for country, phone_country in zip(place_countries, phone_countries)],
            "marital_status": vocabulary("marital_status", MARITAL_STATUSES),
            "employed": vocabulary("employed", EMPLOYED),
            # One tuple per distinct value: validate_columns makes each lead its list.
            "interests": interests_of(column("interests")),
            "budget": texts("budget"), "authority": texts("authority"), "need": texts("need"),
            "timeframe": texts("timeframe"), "consent_at": consent_times, "source_url": urls,
            "consent_text": texts("consent_text"),
            "ip": ips_of(column("ip")),
            "sub_id": texts("sub_id"), "city": texts("city"), "postal_code": postal_codes,
            "trustedform_cert_url": trustedform,
            "jornaya_leadid": each_distinct(lambda leadid: (
                leadid if leadid is _FAIL else (leadid or "").upper() or None), jornaya),
        }
    return Decided(ok, values, known, rejected)


def validate_columns(rows: Sequence[Sequence[str]], fields: Sequence[str | None],
                     ctx: RowContext) -> list[NormalisedLead | None]:
    """For each row (its cells, in `fields` order), its lead when the row passes every
    check, else None: validate_row must decide it (and give its reasons)."""
    decided = decide_columns(rows, fields, ctx)
    if not any(decided.ok):
        return [None] * len(rows)
    interests_at = LEAD_FIELDS.index("interests")
    leads: list[NormalisedLead | None] = []
    for passed, values in zip(decided.ok, zip(*(decided.values[name] for name in LEAD_FIELDS))):
        if passed:
            values = list(values)
            values[interests_at] = list(values[interests_at])
            leads.append(NormalisedLead(*values))
        else:
            leads.append(None)
    return leads
