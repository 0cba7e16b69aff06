"""Row validation and normalisation (SPEC §3): one CSV row in, one verdict out.

Pure functions, no database: duplicates and suppression are checked later by the
pipeline, but every verdict text lives here (`VERDICTS`). `validate_row` runs in
worker processes, so its context is a small picklable value and every expensive
lookup is cached per process. It serves uploads and real-time leads alike, so both
lose control and invisible characters, and both refuse text that is not text.

Speed: the phone and email libraries cost ~25 µs a call, more than everything else in
a row together. Both have fast paths for the common shapes that are exact re-statements
of the library's own rules (for phones, checked against the library's own metadata);
when a fast path is unsure it declines and the library decides (so does IPv6's, before
ipaddress). A differential test (tests/unit/test_ingest_fastpaths.py) holds them to that.
"""
import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT, HOSTNAME_LABEL
from phonenumbers import PhoneMetadata

from app.services.regions_tz import consent_zone
from app.services.ingest.fields import (
    EMPLOYED, GENDERS, MARITAL_STATUSES, consent_flag, normalise_url, text_key,
)
from app.services.regions import resolve_country, resolve_region

MIN_AGE, MAX_AGE = 18, 100
CLOCK_SKEW = timedelta(minutes=5)

# Characters that only hide, reorder or garble text, removed from every value before
# anything else: C0 and C1 controls but tab and line breaks (whitespace, collapsed
# later), bidi marks, overrides and isolates, zero-width characters, the BOM.
_HIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e"
                     r"\u2060-\u2064\u2066-\u2069\ufeff]")
# U+FFFD stands where an upload had bytes that are not text (reader.py); a lone
# surrogate (a real-time post can carry one) cannot even be stored.
_UNREADABLE = re.compile(r"[\ufffd\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

# Machine code -> human sentence, its placeholders filled by `verdict_message`.
VERDICTS: dict[str, str] = {
    "bad_encoding": "The {field} “{value}” has characters we could not read (shown as �): "
                    "they are not valid UTF-8 text. Correct them and upload the row again.",
    "no_contact": "The row has neither an email address nor a phone number.",
    "invalid_email": "The email “{value}” is not a valid email address.",
    "invalid_phone": "The phone “{value}” is not a valid phone number{read_as}.",
    "no_consent": "The row has no usable consent evidence: {reason}.",
    "unclear_consent": "The consent (yes/no) column says {value}, which is neither a yes nor a "
                       "no we recognise; write yes or no (or да/нет, sí/no, 1/0, true/false).",
    "consent_in_future": "The consent time “{value}” is in the future: it is {utc} UTC (a "
                         "time without a zone is read on the lead's clock, {zone}).",
    "implausible_age": "The {field} “{value}” {problem}; leads must be 18 to 100 years old.",
    "unknown_region": "The {field} “{value}” is not one we recognise; use its name or ISO "
                      "code (such as RU-MOW, US-CA or ES).",
    "invalid_postal_code": "The postal code “{value}” is not one: 2 to 10 letters and digits "
                           "(such as 90210, SW1A 1AA or 119019).",
    "invalid_certificate": "The {field} “{value}” is not {shape}; leave it empty if the lead "
                           "has none.",
    "duplicate_in_batch": "This lead repeats row {first_row} of the same file.",
    "duplicate_own": "You already have this lead: row {row} of your batch #{batch}.",
    "suppressed": "This person is on the suppression list and must not be contacted.",
}
# invalid_phone's `read_as` for a number written without a "+": it was read in a
# country, which the sentence names, and says why.
PHONE_READ_AS = " (numbers without a +country prefix are read as {country}, from {source})"
# Accepted, but marked: counts against the batch's risk (SPEC §7).
FLAGS: dict[str, str] = {
    "cross_seller_duplicate": "Another seller already holds this lead.",
}


def _shown(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def verdict_message(code: str, **values) -> str:
    return VERDICTS[code].format(**{k: _shown(str(v)) for k, v in values.items()})


def invalid_phone_message(value: str, country: str, source: str) -> str:
    """invalid_phone's sentence for a number read as `country` (from `source`) unless
    it is written with its own "+" and country code."""
    read_as = "" if value[:1] == "+" else PHONE_READ_AS.format(country=country, source=source)
    return VERDICTS["invalid_phone"].format(value=_shown(value), read_as=read_as)


# Where a row's default country came from, as invalid_phone names it (RowContext.
# default_from): an upload's batch terms; a real-time post's default_country (said only
# of a lead whose place names no country; one taken from the phone's +prefix reads no
# national number); a consent form's; a ping's, which its post must repeat.
BATCH_DEFAULT = "the batch's default country"
SENT_DEFAULT = "the default_country you sent"
FORM_DEFAULT = "the form's default country"
PING_DEFAULT = "the ping's default_country"


@dataclass(frozen=True)
class RowContext:
    """What a row's verdict depends on besides the row: picklable and cheap."""

    default_country: str  # ISO alpha-2, for phone numbers without a prefix
    now: datetime  # aware; consent times after now + CLOCK_SKEW are refused
    # Where default_country came from, as invalid_phone names it: the batch's terms
    # for an upload; a real-time lead has no batch the seller chose (realtime.terms_of).
    default_from: str = BATCH_DEFAULT

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("RowContext.now must be timezone-aware")
        object.__setattr__(self, "default_country", self.default_country.strip().upper())


@dataclass(slots=True)  # not frozen: a frozen __init__ costs microseconds per row
class NormalisedLead:
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None  # E.164
    age: int | None
    birth_date: date | None
    gender: str  # f / m / other / unknown
    region: str | None  # ISO 3166-2
    country: str  # ISO alpha-2
    marital_status: str
    employed: str  # yes / no / unknown
    interests: list[str]
    budget: str | None
    authority: str | None
    need: str | None
    timeframe: str | None
    consent_at: datetime  # aware, UTC
    source_url: str
    consent_text: str | None
    ip: str | None
    sub_id: str | None
    city: str | None
    postal_code: str | None
    trustedform_cert_url: str | None
    jornaya_leadid: str | None  # upper case


@dataclass(slots=True)
class Known:
    """What the column pass (columns.py) already worked out of a row's cells: its email
    (None when empty or invalid), and its phone (normalise_phone's answer) and consent
    time (None when empty or unreadable) as read in the place (`home`, `region`) it took
    the row to be in. validate_row takes these answers instead of working them out
    again, the place-bound ones only where it finds the row in that same place."""

    email: str | None
    home: str
    region: str | None
    phone: tuple[str, str | None] | None
    consent_at: datetime | None


@dataclass(slots=True)
class RowResult:
    lead: NormalisedLead | None
    code: str | None = None  # the first reason; None when accepted
    message: str | None = None  # every reason's sentence
    codes: tuple[str, ...] = ()  # every reason, in the order of VERDICTS
    # A rejected row's contacts, normalised where valid: its duplicates are reasons too.
    email: str | None = None
    phone: str | None = None

    @property
    def accepted(self) -> bool:
        return self.lead is not None


def _reject(code: str, **values) -> RowResult:
    return RowResult(None, code, verdict_message(code, **values), (code,))


def _rejected(problems: list[tuple[str, str]], email: str | None,
              phone: str | None) -> RowResult:
    """One result for all of a row's problems (a code given twice is listed once)."""
    codes = tuple(dict.fromkeys(code for code, _ in problems))
    return RowResult(None, codes[0], " ".join(message for _, message in problems), codes,
                     email, phone)


def storable(text: str) -> str:
    """`text` with lone surrogates, which no UTF-8 column or file can hold, as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _readable(values: dict[str, str]) -> dict[str, str] | RowResult:
    """The values without hidden characters, or the verdict on those that are not text
    (other checks are not run on them: garbled text fails them for no real reason)."""
    problems = [("bad_encoding", verdict_message("bad_encoding", field=name.replace("_", " "),
                                                 value=storable(value)))
                for name, value in values.items() if _UNREADABLE.search(value)]
    if problems:
        return _rejected(problems, None, None)
    return {name: _HIDDEN.sub("", value) for name, value in values.items()}


# --- email ------------------------------------------------------------------------
# A dot-atom of plain characters at a hostname ending in a letters-only TLD: the
# library accepts all of these unchanged (bar the checks in email_fast_path).
_HOST = r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
_EMAIL_FAST = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*" + _HOST)
# The same with letters and digits of any script before the @ (Иван.Петров@mail.ru):
# the library takes them as they are when they are in Unicode's composed form (NFC),
# which it would otherwise write them in.
_EMAIL_FAST_INTL = re.compile(r"[\w%+-]+(?:\.[\w%+-]+)*" + _HOST)
_SPECIAL_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


def email_fast_path(raw: str) -> str | None:
    """The lower-cased address if it is plainly valid, else None (ask the library)."""
    if len(raw) > 254:
        return None
    if raw.isascii():
        if not _EMAIL_FAST.fullmatch(raw):
            return None
    elif (not _EMAIL_FAST_INTL.fullmatch(raw) or len(raw.encode()) > 254
          or not unicodedata.is_normalized("NFC", raw)):
        return None
    local, _, domain = raw.rpartition("@")
    # Long local parts, R-LDH labels ("ab--c") and special-use TLDs: library decides.
    tld = domain[domain.rfind(".") + 1 :].lower()
    if len(local) > 64 or "--" in domain or tld in _SPECIAL_TLDS:
        return None
    return raw.lower()


# email-validator's own definitions of a dot-atom and of a hostname's label.
_DOTTED_HOSTNAME = re.compile(rf"{HOSTNAME_LABEL}(?:\.{HOSTNAME_LABEL})+")


def email_refused(raw: str) -> bool:
    """Whether email-validator certainly refuses the address, told without it (a
    refusal costs it tens of µs, and broken addresses are a few % of a file): ASCII
    with no quote or angle bracket (neither a quoted local part nor a display name),
    whose part before its first @ is not a dot-atom, or whose part after it is not
    hostname labels with one dot at least. False says nothing: ask the library."""
    if not raw.isascii() or '"' in raw or "<" in raw:
        return False
    local, at, domain = raw.partition("@")
    return not at or not DOT_ATOM_TEXT.match(local) or not _DOTTED_HOSTNAME.fullmatch(domain)


def normalise_email(raw: str) -> str | None:
    """Lower-cased, syntax-checked address (no network), or None if invalid."""
    fast = email_fast_path(raw)
    if fast is not None:
        return fast
    if len(raw) > 1000 or email_refused(raw):  # spare the library the work
        return None
    return _library_email(raw)


# The libraries' answers are kept for a while: a rejected row is read again by
# validate_row after the column-wise pass, and its contacts are the slow shapes.
@lru_cache(maxsize=2048)
def _library_email(raw: str) -> str | None:
    try:
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


# --- phone ------------------------------------------------------------------------
FAST_PHONE_REGIONS = ("RU", "US", "ES", "GB", "DE")
_PHONE_SHAPE = re.compile(r"\+?[0-9 ()./-]{4,40}")
_PHONE_PUNCT = b" ()./-+"  # deleted by bytes.translate: str.translate looks up each character


@dataclass(frozen=True)
class _PhonePlan:
    """One region's numbering rules, taken from phonenumbers' own metadata."""

    region: str
    cc: str
    general: re.Pattern
    lengths: tuple[int, ...]  # sorted possible lengths of a national number
    local_only: frozenset[int]
    types: dict[int, re.Pattern]  # length -> any number type possible at that length
    national_prefix: re.Pattern | None
    idd: re.Pattern
    leading: re.Pattern | None

    def too_long(self, number: str) -> bool:
        return len(number) > self.lengths[-1] and len(number) not in self.local_only

    def strip_prefix(self, number: str) -> str:
        """The library's national-prefix strip (kept unless the rest is still viable)."""
        found = self.national_prefix.match(number) if self.national_prefix else None
        if found is None:
            return number
        rest = number[found.end():]
        if self.general.fullmatch(number) and not self.general.fullmatch(rest):
            return number
        return rest

    def national(self, number: str) -> str:
        """parse()'s last step: strip a national prefix if what is left may be a number."""
        rest = self.strip_prefix(number)
        n = len(rest)
        if n in self.local_only or n < self.lengths[0]:
            return number
        return rest if n in self.lengths or n > self.lengths[-1] else number

    def valid(self, nsn: str) -> bool:
        """is_valid_number for a national number of this region."""
        n = len(nsn)
        if n not in self.lengths or not self.general.fullmatch(nsn):
            return False
        if self.leading is not None and not self.leading.match(nsn):
            return False  # the number belongs to another region sharing the code
        pattern = self.types.get(n)
        return pattern is not None and pattern.fullmatch(nsn) is not None


def _plan(region: str) -> _PhonePlan:
    md = PhoneMetadata.metadata_for_region(region)
    # The shortcuts hold only for a code's main region, without prefix rewriting.
    assert phonenumbers.COUNTRY_CODE_TO_REGION_CODE[md.country_code][0] == region
    assert not md.national_prefix_transform_rule
    descs = [d for d in (md.mobile, md.fixed_line, md.toll_free, md.premium_rate,
                         md.shared_cost, md.voip, md.personal_number, md.pager, md.uan,
                         md.voicemail) if d is not None and d.national_number_pattern]
    lengths = sorted(md.general_desc.possible_length)
    # One alternation per length instead of a loop over types: same answer, one call.
    types = {n: re.compile("|".join(f"(?:{d.national_number_pattern})" for d in descs
                                     if not d.possible_length or n in d.possible_length))
             for n in lengths}
    return _PhonePlan(
        region=region,
        cc=str(md.country_code),
        general=re.compile(md.general_desc.national_number_pattern),
        lengths=tuple(lengths),
        local_only=frozenset(md.general_desc.possible_length_local_only),
        types={n: pattern for n, pattern in types.items() if pattern.pattern},
        national_prefix=(re.compile(md.national_prefix_for_parsing)
                         if md.national_prefix_for_parsing else None),
        idd=re.compile(md.international_prefix),
        leading=re.compile(md.leading_digits) if md.leading_digits else None,
    )


_PLANS = {region: _plan(region) for region in FAST_PHONE_REGIONS}
_PLANS_BY_CC = {plan.cc: plan for plan in _PLANS.values()}


def phone_fast_path(raw: str, region: str | None) -> tuple[str, str] | None:
    """(E.164, region) for plain digit shapes of a few countries, else None.

    A step-by-step restatement of phonenumbers.parse + is_valid_number for input made
    only of ASCII digits, spaces, dashes, dots, slashes, parentheses and a leading +;
    shapes it is unsure of (a leading zero left over) are declined.
    """
    if not _PHONE_SHAPE.fullmatch(raw):
        return None
    digits = raw.encode().translate(None, _PHONE_PUNCT).decode()  # ASCII: the shape says so
    home = _PLANS.get(region)  # type: ignore[arg-type]
    international = raw[0] == "+"
    if not international and home is not None and (idd := home.idd.match(digits)):
        # 00, 810, 011 dial abroad like "+" (a 0 after them finds no plan: declined).
        digits, international = digits[idd.end() :], True
    if international:
        plan = _PLANS_BY_CC.get(digits[:1]) or _PLANS_BY_CC.get(digits[:2])
        if plan is None:
            return None
        nsn = plan.national(digits[len(plan.cc) :])
    elif home is None:
        return None
    else:
        plan, nsn = home, None
        if digits.startswith(plan.cc):
            # The default country's code written without "+": the library drops it
            # when the number only makes sense without it.
            rest = plan.strip_prefix(digits[len(plan.cc) :])
            if ((not plan.general.fullmatch(digits) and plan.general.fullmatch(rest))
                    or plan.too_long(digits)):
                nsn = plan.national(rest)
        if nsn is None:
            nsn = plan.national(digits)
    # A leading 0 would not survive the library's integer national number.
    if nsn[:1] == "0" or not plan.valid(nsn):
        return None
    return f"+{plan.cc}{nsn}", plan.region


# Country codes none of whose regions has a national number that starts with 0 or a
# national prefix that does (numbers in the North American plan start with 2-9, Russia's
# and Kazakhstan's with 3-9, and their prefixes are 1 and 8): phonenumbers can make no
# valid number of a national "0...", as tests/unit/test_ingest_fastpaths.py checks
# against its metadata and its answers.
NO_LEADING_ZERO = frozenset({"1", "7"})


def phone_refused(raw: str, region: str | None) -> bool:
    """Whether phonenumbers certainly refuses the number, told without it (a refusal
    costs it tens of µs): a plain digit shape, not international and not dialled
    abroad by the home's prefix, that starts with 0 where the home's country code has
    no national number that does (US, RU: an export's foreign numbers without their
    "+"). False says nothing: ask the library."""
    plan = _PLANS.get(region)  # type: ignore[arg-type]
    if plan is None or plan.cc not in NO_LEADING_ZERO or not _PHONE_SHAPE.fullmatch(raw):
        return False
    digits = raw.encode().translate(None, _PHONE_PUNCT).decode()
    return raw[0] != "+" and digits[:1] == "0" and not plan.idd.match(digits)


def normalise_phone(raw: str, region: str | None) -> tuple[str, str | None] | None:
    """(E.164, region of the number) or None if it is not a valid number."""
    fast = phone_fast_path(raw, region)
    if fast is not None:
        return fast
    if phone_refused(raw, region):
        return None
    return _library_phone(raw, region)


@lru_cache(maxsize=2048)
def _library_phone(raw: str, region: str | None) -> tuple[str, str | None] | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    found = phonenumbers.region_code_for_number(number)
    return (phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
            found if found and found.isalpha() else None)


# --- dates, URLs, the rest ---------------------------------------------------------
_UNIX = re.compile(r"(\d{9,10}|\d{12,13})(?:\.\d+)?")
_DMY = re.compile(
    r"(\d{1,2})([./-])(\d{1,2})\2(\d{4})(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?"
)
_YMD_SLASH = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_AGE = re.compile(r"(\d{1,3})(?:[.,]0+)?\s*(?:years?|yrs?|y|лет|год|года|años|anos)?", re.I)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # ASCII only, like ipaddress
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def parse_timestamp(raw: str, *, month_first: bool = False,
                    zone: tzinfo = timezone.utc) -> datetime | None:
    """An aware UTC datetime from ISO-8601, d.m.Y [H:M[:S]], Y/m/d or unix time.

    A time of day without a zone is read in `zone` (the lead's own, regions_tz); a date
    alone stays midnight UTC, as it says nothing of the clock (the risk signals count
    such dates). `month_first` reads an ambiguous 01/02/2024 the American way.
    """
    value = raw.strip()
    if value[4:5] == "-":
        parsed = _iso(value)
        timed = len(value) > 10
    elif _UNIX.fullmatch(value):
        seconds = float(value) / (1000 if len(value.split(".")[0]) > 10 else 1)
        return datetime.fromtimestamp(seconds, timezone.utc)
    else:  # numeric shapes first: a failed fromisoformat costs an exception
        parsed = _parse_numeric_date(value, month_first) or _iso(value)
        timed = ":" in value
    if parsed is None:
        return None
    return in_utc(parsed, timed, zone)


_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)


def in_utc(parsed: datetime, timed: bool, zone: tzinfo) -> datetime | None:
    """parse_timestamp's last step: a time of day without a zone read in `zone`; None
    when it falls outside the years 1-9999 in UTC (0001-01-01T00:00+05:00)."""
    try:
        if parsed.tzinfo is None:
            # parsed.replace(tzinfo=zone).astimezone(timezone.utc), as the epoch in UTC
            # plus the time since it: the same datetime, without two datetimes made
            # through keyword arguments (a µs per consent time).
            if timed and zone is not timezone.utc:
                return _EPOCH_UTC + (parsed - _EPOCH - zone.utcoffset(parsed))
            return _EPOCH_UTC + (parsed - _EPOCH)
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        return None


def _iso(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _parse_numeric_date(value: str, month_first: bool) -> datetime | None:
    if found := _DMY.fullmatch(value):
        first, sep, second, year, hour, minute, sec = found.groups()
        day, month = int(first), int(second)
        if sep == "/" and (int(second) > 12 or (month_first and int(first) <= 12)):
            day, month = int(second), int(first)
        parts = (int(year), month, day)
    elif found := _YMD_SLASH.fullmatch(value):
        year, month, day, hour, minute, sec = found.groups()
        parts = (int(year), int(month), int(day))
    else:
        return None
    try:
        return datetime(*parts, int(hour or 0), int(minute or 0), int(sec or 0))
    except ValueError:
        return None


def _ip(raw: str) -> str | None:
    value = raw.strip()
    if _IPV4.fullmatch(value):
        return value  # already canonical; ipaddress would take 4 µs to say so
    if (fast := _ipv6_fast_path(value)) is not None:
        return fast
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None  # optional evidence: a garbled address is dropped, not fatal


_IPV6_SHAPE = re.compile(r"[0-9A-Fa-f:]{2,39}")


def _ipv6_fast_path(value: str) -> str | None:
    """str(ipaddress.ip_address(value)) for an IPv6 address of hex groups alone, by the
    C library (inet_pton/inet_ntop: 0.3 µs where ipaddress takes 4), or None to ask
    ipaddress: an address with an IPv4 tail or a zone, or one the C library writes with
    an IPv4 tail (::ffff:1.2.3.4, which ipaddress writes ::ffff:102:304). Both write
    RFC 5952's form; tests/unit/test_ingest_fastpaths.py holds them to it."""
    if not _IPV6_SHAPE.fullmatch(value):
        return None
    try:
        text = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, value))
    except OSError:
        return None
    return None if "." in text else text


_POSTAL_CODE = re.compile(r"[A-Z0-9](?:[A-Z0-9 -]{0,8}[A-Z0-9])")
# Third-party consent certificates (SPEC §3): shapes only, nothing is fetched.
_CERTIFICATES = {
    "trustedform_cert_url": (
        re.compile(r"https?://cert\.trustedform\.com/[0-9a-f]{40}", re.I),
        "a TrustedForm certificate URL (https://cert.trustedform.com/ and 40 hexadecimal "
        "characters)"),
    "jornaya_leadid": (
        re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I),
        "a Jornaya LeadiD (a UUID such as 0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D)"),
}


def _text(raw: str | None) -> str | None:
    """Trimmed, inner whitespace collapsed; None when empty."""
    return " ".join(raw.split()) or None if raw else None


def _age_from_birth(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _interests(raw: str | None) -> list[str]:
    if not raw:
        return []
    parts = raw.replace(";", ",").replace("|", ",").lower().split(",")
    return list(dict.fromkeys(filter(None, [" ".join(part.split()) for part in parts])))


# The sentences of a row's verdicts, each made in one place: validate_row and the
# column pass (columns.py), which tells a row's one reason itself, write them alike.
def phone_source(country: str | None, region: str | None, region_raw: str,
                 default_from: str) -> str:
    """Where invalid_phone says a number without a "+" took its country from;
    `default_from`: where the default country came from (RowContext.default_from)."""
    return ("the row's country" if country else default_from
            if region is None else "the row's region" if region_raw else "the row's city")


def read_place(country_raw: str, region_raw: str, city: str | None,
               default_country: str | None) -> tuple[str | None, str | None, tuple | None]:
    """(country, region, the (field, value) not recognised or None) that a row's
    stripped country and region cells and its city name. The region is looked for in
    the country, else first in `default_country`; without a region the city stands
    for one (Москва, Madrid). A country not recognised leaves the region unread. The
    one reading of a row's place: validate_row, the column pass and a real-time
    lead's default country (realtime.default_country_of) all use it."""
    country = region = None
    if country_raw and (country := resolve_country(country_raw)) is None:
        return None, None, ("country", country_raw)
    if region_raw:
        if (region := resolve_region(region_raw, country, default_country)) is None:
            return country, None, ("region", region_raw)
    elif city:
        region = resolve_region(city, country, default_country)
    return country, region, None


def time_gap(consent_raw: str) -> str:
    """What no_consent says of a consent time that is empty or that cannot be read."""
    if not consent_raw:
        return "the consent time (consent_at) is empty"
    return f"the consent time “{_shown(consent_raw, 40)}” is not a date and time we can read"


def page_gap(url_raw: str) -> str:
    """What no_consent says of a consent page that is empty or not a web address."""
    if not url_raw:
        return "the consent page (source_url) is empty"
    return f"the consent page “{_shown(url_raw, 40)}” is not a web address"


def no_consent_message(gaps: list[str]) -> str:
    # Each part is shortened already: the joined reason is not.
    return VERDICTS["no_consent"].format(reason="; ".join(gaps))


def future_message(consent_raw: str, consent_at: datetime, zone: tzinfo) -> str:
    return verdict_message("consent_in_future", value=consent_raw, zone=zone,
                           utc=consent_at.strftime("%Y-%m-%d %H:%M"))


def read_age(birth_raw: str, age_raw: str, month_first: bool,
             today: date) -> tuple[int | None, date | None, str | None]:
    """(age, birth date, implausible_age's sentence or None) of a row's stripped birth
    date or, without one, its age."""
    age = born = None
    problem: tuple[str, str, str] | None = None
    if birth_raw:
        stamp = parse_timestamp(birth_raw, month_first=month_first)
        if stamp is None:
            problem = ("birth date", birth_raw, "is not a date we can read")
        elif (born := stamp.date()) > today:
            problem = ("birth date", birth_raw, "is in the future")
        else:
            age = _age_from_birth(born, today)
            if not MIN_AGE <= age <= MAX_AGE:
                problem = ("birth date", birth_raw, f"gives an age of {age}")
    elif age_raw:
        found = _AGE.fullmatch(age_raw)
        if found is None:
            problem = ("age", age_raw, "is not a number")
        else:
            age = int(found.group(1))
            if not MIN_AGE <= age <= MAX_AGE:
                problem = ("age", age_raw, "is out of range")
    if problem is None:
        return age, born, None
    field, value, problem_text = problem
    return age, born, verdict_message("implausible_age", field=field, value=value,
                                      problem=problem_text)


def validate_row(values: dict[str, str], ctx: RowContext, *, contact_required: bool = True,
                 known: Known | None = None) -> RowResult:
    """The verdict for one row of field -> raw text (missing fields count as empty).

    A rejected row carries every reason it has (SPEC §3): unreadable text alone stops
    the checks; otherwise contact, consent, age and region are all checked. A ping
    (SPEC §11) is a lead's attributes without its contacts: `contact_required=False`.
    `known`: answers the column pass has for these very cells (not for cleaned ones).
    """
    joined = "".join(values.values())
    if not joined.isprintable() or "\ufffd" in joined:  # rare: the exact check is slower
        readable = _readable(values)
        if isinstance(readable, RowResult):
            return readable
        values, known = readable, None
    get = values.get
    problems: list[tuple[str, str]] = []
    email_raw = (get("email") or "").strip()
    phone_raw = (get("phone") or "").strip()
    if contact_required and not email_raw and not phone_raw:
        problems.append(("no_contact", verdict_message("no_contact")))

    email = None
    if email_raw and (email := known.email if known else normalise_email(email_raw)) is None:
        problems.append(("invalid_email", verdict_message("invalid_email", value=email_raw)))

    # Place comes before the phone: a row's own country says how to read its number.
    region_raw = (get("region") or "").strip()
    country, region, bad_place = read_place((get("country") or "").strip(), region_raw,
                                            _text(get("city")), ctx.default_country)
    home = country or (region[:2] if region else ctx.default_country)
    if known is not None and (known.home != home or known.region != region):
        known = None  # read elsewhere: its phone and consent time may read otherwise here

    phone = phone_country = None
    if phone_raw:
        parsed = known.phone if known else normalise_phone(phone_raw, home)
        if parsed is None:
            problems.append(("invalid_phone", invalid_phone_message(
                phone_raw, home, phone_source(country, region, region_raw, ctx.default_from))))
        else:
            phone, phone_country = parsed

    # What the row lacks as consent evidence makes one no_consent sentence, told where
    # the first gap is found.
    consent_gaps: list[str] = []
    gaps_at = 0
    # A consent flag that says no rejects the row whatever else it carries (SPEC §3).
    if (flag_raw := get("consent")) is not None:
        flag = consent_flag(flag_raw)
        if flag is False:
            gaps_at = len(problems)
            consent_gaps.append(f"its consent column says “{_shown(flag_raw.strip(), 40)}”")
        elif flag is None:
            shown = f"“{_shown(flag_raw.strip(), 40)}”" if flag_raw.strip() else "nothing"
            problems.append(("unclear_consent", verdict_message("unclear_consent", value=shown)))

    month_first = home == "US"
    consent_at = None
    consent_raw = (get("consent_at") or "").strip()
    if not consent_raw or (consent_at := known.consent_at if known else parse_timestamp(
            consent_raw, month_first=month_first, zone=consent_zone(region, home))) is None:
        gaps_at = gaps_at if consent_gaps else len(problems)
        consent_gaps.append(time_gap(consent_raw))
    elif consent_at > ctx.now + CLOCK_SKEW:
        problems.append(("consent_in_future", future_message(
            consent_raw, consent_at, consent_zone(region, home))))
    source_url = None
    url_raw = (get("source_url") or "").strip()
    if not url_raw or (source_url := normalise_url(url_raw)) is None:
        gaps_at = gaps_at if consent_gaps else len(problems)
        consent_gaps.append(page_gap(url_raw))
    if consent_gaps:
        problems.insert(gaps_at, ("no_consent", no_consent_message(consent_gaps)))

    age, born, age_problem = read_age((get("birth_date") or "").strip(),
                                      (get("age") or "").strip(), month_first, ctx.now.date())
    if age_problem is not None:
        problems.append(("implausible_age", age_problem))

    if bad_place is not None:
        problems.append(("unknown_region", verdict_message(
            "unknown_region", field=bad_place[0], value=bad_place[1])))

    postal_code = None
    if postal_raw := get("postal_code"):
        postal_code = " ".join(postal_raw.upper().split()) or None
        if postal_code and not _POSTAL_CODE.fullmatch(postal_code):
            problems.append(("invalid_postal_code", verdict_message(
                "invalid_postal_code", value=postal_raw.strip())))
    certificates = {}
    for name, (shape, wording) in _CERTIFICATES.items():
        if raw := (get(name) or "").strip():
            if shape.fullmatch(raw):
                certificates[name] = raw
            else:
                problems.append(("invalid_certificate", verdict_message(
                    "invalid_certificate", field=name, value=raw, shape=wording)))
    if problems:
        return _rejected(problems, email, phone)

    return RowResult(NormalisedLead(
        first_name=_text(get("first_name")),
        last_name=_text(get("last_name")),
        email=email,
        phone=phone,
        age=age,
        birth_date=born,
        gender=GENDERS.get(text_key(get("gender") or ""), "unknown"),
        region=region,
        country=country or (region[:2] if region else None) or phone_country or ctx.default_country,
        marital_status=MARITAL_STATUSES.get(text_key(get("marital_status") or ""), "unknown"),
        employed=EMPLOYED.get(text_key(get("employed") or ""), "unknown"),
        interests=_interests(get("interests")),
        budget=_text(get("budget")),
        authority=_text(get("authority")),
        need=_text(get("need")),
        timeframe=_text(get("timeframe")),
        consent_at=consent_at,
        source_url=source_url,
        consent_text=_text(get("consent_text")),
        ip=_ip(ip_raw) if (ip_raw := get("ip")) else None,
        sub_id=_text(get("sub_id")),
        city=_text(get("city")),
        postal_code=postal_code,
        trustedform_cert_url=certificates.get("trustedform_cert_url"),
        jornaya_leadid=(certificates.get("jornaya_leadid") or "").upper() or None,
    ))
