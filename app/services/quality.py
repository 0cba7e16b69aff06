"""Authenticity of a batch (SPEC §7): fraud signals and the 0–100 risk score that
ranks the admins' spot-check queue.

Each signal measures one thing across the batch's leads, mostly the share of leads
that show it, and turns it into points:

    evidence = the one-sided 95% lower confidence bound of that share (Wilson), so
               2 odd leads out of 40 do not count as 5%: small batches must show more;
    points   = weight × (evidence − normal) / (certain − normal), clipped to 0..weight,
               where `normal` is what genuine traffic shows and `certain` is a share
               no honest source produces;
    risk     = the sum of the points, capped at 100.

So a signal's contribution is exactly its points, shown next to its sentence. The
thresholds come from what genuine lead traffic looks like (about 1% throwaway
addresses, 4–6% of consents in the small hours, a few percent of a seller's rows
repeating), not from the fakes the tests plant.

The batch is read from the database in chunks of CHUNK leads with the read closed
between chunks, so memory stays flat and SQLite's lock is never held for long;
contacts are decrypted in memory only. Consent-time signals are counted in SQL.
"""
import logging
import math
import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Optional

import sqlalchemy as sa

from app.extensions import db
from app.models import Batch, BatchSource, BatchStatus, ConsentCertificate, Lead, Rejection
from app.models.types import utcnow
from app.services.crypto import current_vault
from app.services.regions_tz import zones_for

log = logging.getLogger(__name__)

CHUNK = 2000
Z_95 = 1.6449  # one-sided 95%


@dataclass(frozen=True)
class Rule:
    title: str
    weight: int  # points at full strength
    normal: float  # evidence up to this is what genuine batches show: no points
    certain: float  # evidence from this on earns the full weight


RULES: dict[str, Rule] = {
    "disposable_email": Rule("Disposable email domains", 40, 0.02, 0.20),
    "sequential_phones": Rule("Sequential phone numbers", 40, 0.02, 0.20),
    "repeated_digit_phones": Rule("Repeated-digit phone numbers", 30, 0.01, 0.15),
    "identical_consent": Rule("Identical consent times", 35, 0.03, 0.30),
    "clustered_consent": Rule("Clustered consent times", 35, 0.05, 0.40),
    "night_consent": Rule("Consent at night, local time", 30, 0.08, 0.40),
    "consent_without_time": Rule("Consent dates without a time", 20, 0.05, 0.80),
    "implausible_demographics": Rule("Implausible demographics", 30, 0.02, 0.20),
    "non_name": Rule("Names that are not names", 40, 0.02, 0.20),
    "cross_seller_duplicates": Rule("Leads other sellers already hold", 30, 0.05, 0.40),
    "duplicate_rate": Rule("Duplicates far above the seller's normal", 30, 0.04, 0.25),
    # Leads of the exchange's hosted forms (app/consent): how the form was filled.
    "rushed_forms": Rule("Forms sent within a second", 40, 0.01, 0.15),
    "pasted_contacts": Rule("Contacts pasted into the form", 30, 0.15, 0.60),
}


def lower_bound(count: int, total: int, z: float = Z_95) -> float:
    """Wilson lower confidence bound of a share."""
    if total <= 0:
        return 0.0
    p = count / total
    denominator = 1 + z * z / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, (centre - margin) / denominator)


def points_for(code: str, evidence: float) -> int:
    rule = RULES[code]
    strength = (evidence - rule.normal) / (rule.certain - rule.normal)
    return round(rule.weight * min(max(strength, 0.0), 1.0))


@dataclass
class Signal:
    code: str
    value: float  # the measure the sentence states: a share 0..1
    count: int
    of: int
    evidence: float
    points: int
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "title": RULES[self.code].title,
                "value": round(self.value, 4), "count": self.count, "of": self.of,
                "evidence": round(self.evidence, 4), "points": self.points,
                "sentence": self.sentence}


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%" if share < 0.1 else f"{share * 100:.0f}%"


def _pct_of(part: int, whole: int) -> str:
    return _pct(part / whole if whole else 0)


def share_signal(code: str, count: int, total: int, sentence: str, *,
                 expected: float = 0.0) -> Signal:
    """A signal whose measure is `count` of `total`; `expected` is subtracted from the
    evidence when chance alone would produce some (identical consent seconds)."""
    value = count / total if total else 0.0
    evidence = max(0.0, lower_bound(count, total) - expected)
    return Signal(code, value, count, total, evidence, points_for(code, evidence), sentence)


# --- names -----------------------------------------------------------------------

KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890",
                 "йцукенгшщзхъ", "фывапролджэ", "ячсмитьбю")
_MASH_RUN = 5  # shorter row runs occur in real names: "Liberty" holds "erty"
_KEYBOARD_GRAMS = frozenset(
    gram for row in KEYBOARD_ROWS for line in (row, row[::-1])
    for gram in (line[i:i + _MASH_RUN] for i in range(len(line) - _MASH_RUN + 1)))
PLACEHOLDER_NAMES = frozenset("""test tester testing fake none null nil name firstname
    lastname first last unknown anonymous anon noname asdf qwer qwerty zxcv xxx xx abc abcd
    foo bar foobar sample demo user client customer lead n/a na nobody somebody тест имя
    фамилия неизвестно аноним клиент""".split())
VOWELS = frozenset("aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿаеёиоуыэюяєіїў")
_ALLOWED_MARKS = frozenset(" -'’.")
_TRIPLE = re.compile(r"(.)\1\1")
_REPEATED_CHUNK = re.compile(r"(..+?)\1\1")


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0]  # LATIN, CYRILLIC, GREEK, ...


def name_problem(name: Optional[str]) -> Optional[str]:
    """Why a first or last name is not a person's name, or None if it may be one."""
    text = (name or "").strip()
    if not text:
        return None
    low = text.casefold()
    if any(ch.isdigit() for ch in low):
        return "digits"
    if any(not ch.isalpha() and ch not in _ALLOWED_MARKS for ch in low):
        return "symbols"
    tokens = [t for t in re.split(r"[\s\-'’.]+", low) if t]
    if not tokens:
        return "no_letters"
    if low in PLACEHOLDER_NAMES or any(t in PLACEHOLDER_NAMES for t in tokens):
        return "placeholder"
    for token in tokens:
        if _TRIPLE.search(token) or _REPEATED_CHUNK.search(token):
            return "repeated_letters"
        if len(token) >= 2 and len(set(token)) == 1:
            return "repeated_letters"
        if len({_script(ch) for ch in token}) > 1:
            return "mixed_scripts"  # look-alike letters of two alphabets in one word
        if len(token) >= 4 and not VOWELS.intersection(token):
            return "no_vowels"
        if any(token[i:i + _MASH_RUN] in _KEYBOARD_GRAMS
               for i in range(len(token) - _MASH_RUN + 1)):
            return "keyboard_mash"
    return None


# --- demographics ----------------------------------------------------------------

def demographic_problem(age: Optional[int], marital_status: str) -> Optional[str]:
    """A combination real populations almost never show. Ages outside 18–100 are
    already refused at ingest; these are the ones that pass it but not a census:
    widowed before 23 and divorced before 20 are each under 0.2% of their age group,
    and people of 95 or more are about 0.2% of adults (fewer still fill in web forms),
    so a batch where they are common was made up."""
    if age is None:
        return None
    if marital_status == "widowed" and age < 23:
        return "young_widowed"
    if marital_status == "divorced" and age < 20:
        return "young_divorced"
    if age >= 95:
        return "very_old"
    return None


# --- phones ----------------------------------------------------------------------

PHONE_SAMPLE_CAP = 50_000  # phones kept in memory for the run detector
SEQUENCE_RUN = 5  # n, n+1, ..., n+4 all in one batch
_PHONE_BLOCK = 10_000


def phone_pattern(e164: str) -> bool:
    """The subscriber part (last 7 digits) made of at most two digits (777-7777,
    121-2121) or a straight run (123-4567, 765-4321)."""
    digits = e164.lstrip("+")[-7:]
    if len(digits) < 7:
        return False
    if len(set(digits)) <= 2:
        return True
    steps = {(int(b) - int(a)) % 10 for a, b in zip(digits, digits[1:])}
    return steps in ({1}, {9})


def sequential_share(numbers: list[int]) -> int:
    """How many of the numbers sit in runs of SEQUENCE_RUN or more consecutive numbers."""
    numbers = sorted(set(numbers))
    in_runs, start = 0, 0
    for i in range(1, len(numbers) + 1):
        if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
            if i - start >= SEQUENCE_RUN:
                in_runs += i - start
            start = i
    return in_runs


# --- scanning the leads ----------------------------------------------------------

NIGHT_HOURS = frozenset(range(1, 5))  # 01:00–04:59 local time


@dataclass
class Scan:
    """Running counts over the leads, in bounded memory."""

    phone_keep_every: int  # keep the phones of 1 in this many number blocks
    leads: int = 0
    emails: int = 0
    disposable: int = 0
    disposable_domains: Counter = field(default_factory=Counter)
    phones: int = 0
    patterned: int = 0
    kept_phones: list[int] = field(default_factory=list)
    named: int = 0
    bad_names: int = 0
    name_reasons: Counter = field(default_factory=Counter)
    aged: int = 0
    implausible: int = 0
    demographic_reasons: Counter = field(default_factory=Counter)
    clocked: int = 0
    night: int = 0
    cross: int = 0

    def add(self, row, open_contact, default_country: str) -> None:
        self.leads += 1
        self.cross += bool(row.cross_seller_duplicate)
        contact = open_contact(row.contact_enc)
        if contact["email"] is not None:
            self.emails += 1
            domain = contact["email"].rpartition("@")[2]
            found = _disposable_domain(domain)
            if found:
                self.disposable += 1
                self.disposable_domains[found] += 1
        if contact["phone"] is not None:
            phone = contact["phone"]
            self.phones += 1
            self.patterned += phone_pattern(phone)
            number = int(phone.lstrip("+"))
            # Whole blocks of numbers are kept or skipped together, so a run inside a
            # kept block is seen whole while memory stays under PHONE_SAMPLE_CAP.
            if self.phone_keep_every == 1 or zlib.crc32(
                    (number // _PHONE_BLOCK).to_bytes(8, "big")) % self.phone_keep_every == 0:
                self.kept_phones.append(number)
        names = [v for v in (contact["first_name"], contact["last_name"]) if v is not None]
        if names:
            self.named += 1
            reason = next(filter(None, map(name_problem, names)), None)
            if reason:
                self.bad_names += 1
                self.name_reasons[reason] += 1
        if row.age is not None:
            self.aged += 1
            reason = demographic_problem(row.age, row.marital_status)
            if reason:
                self.implausible += 1
                self.demographic_reasons[reason] += 1
        consent = row.consent_at
        if consent.hour or consent.minute or consent.second or consent.microsecond:
            zones = zones_for(row.region, row.country or default_country)
            if zones:
                self.clocked += 1
                self.night += all(consent.astimezone(z).hour in NIGHT_HOURS for z in zones)


def _disposable_domain(domain: str) -> Optional[str]:
    """The listed domain the address belongs to (sub-domains included), or None."""
    # 1.5 MB of domains, loaded by the first scan rather than by every process.
    from disposable_email_domains import blocklist as DISPOSABLE_DOMAINS

    parts = domain.lower().split(".")
    for i in range(len(parts) - 1):
        candidate = ".".join(parts[i:])
        if candidate in DISPOSABLE_DOMAINS:
            return candidate
    return None


SCAN_COLUMNS = (Lead.id, Lead.row_number, Lead.contact_enc, Lead.age, Lead.marital_status,
                Lead.region,
                Lead.country, Lead.consent_at, Lead.cross_seller_duplicate)


def stream_leads(batch_id: int, chunk: int = CHUNK) -> Iterator[list]:
    """The batch's leads in row order, one chunk per short read."""
    after = (-1, -1)
    while True:
        rows = db.session.execute(
            sa.select(*SCAN_COLUMNS)
            .where(Lead.batch_id == batch_id, sa.tuple_(Lead.row_number, Lead.id) > after)
            .order_by(Lead.row_number, Lead.id).limit(chunk)).all()
        db.session.commit()  # end the read: no lock held while the chunk is examined
        if not rows:
            return
        yield rows
        after = (rows[-1].row_number, rows[-1].id)


# --- consent times, counted in SQL ------------------------------------------------

BURST_WINDOW = 600  # seconds
PEAK_FACTOR = 4  # busiest hours of genuine traffic run at up to ~4× the day's average
MIN_SPAN = 86_400  # a genuine batch's consents are read as spread over a day at least
MIN_BURST = 5


def _epoch(column):
    if db.session.get_bind().dialect.name == "sqlite":
        return sa.cast(sa.func.strftime("%s", column), sa.Integer)
    return sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger)


def poisson_upper(mean: float, tail: float = 1e-4) -> int:
    """Smallest k with P(X > k) <= tail for X ~ Poisson(mean)."""
    if mean <= 0:
        return 0
    k, pmf = 0, math.exp(-mean)
    cdf = pmf
    if pmf == 0.0:  # large means: the normal approximation is exact enough here
        return math.ceil(mean + 3.72 * math.sqrt(mean))
    while 1 - cdf > tail:
        k += 1
        pmf *= mean / k
        cdf += pmf
    return k


@dataclass
class ConsentTimes:
    timed: int  # leads whose consent carries a time of day
    midnight: int  # consent exactly at 00:00:00 UTC: a date without a time
    shared_second: int  # leads whose consent second another lead shares
    expected_shared: float  # the share of that chance alone would give
    in_bursts: int
    burst_threshold: int
    span_seconds: int


def consent_times(batch_id: int) -> ConsentTimes:
    epoch = _epoch(Lead.consent_at).label("epoch")
    leads = sa.select(epoch).where(Lead.batch_id == batch_id).subquery()
    timed_only = leads.c.epoch % 86_400 != 0
    total, timed, first, last = db.session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(timed_only),
                  sa.func.min(leads.c.epoch).filter(timed_only),
                  sa.func.max(leads.c.epoch).filter(timed_only))).one()
    span = int((last or 0) - (first or 0))
    if not timed:
        db.session.commit()
        return ConsentTimes(0, total, 0, 0.0, 0, 0, span)
    effective_span = max(span, MIN_SPAN)
    repeated = (sa.select(sa.func.count().label("n")).where(timed_only)
                .group_by(leads.c.epoch).having(sa.func.count() > 1).subquery())
    shared = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(repeated.c.n), 0)))
    # Chance alone: each lead shares its second with another with probability
    # 1 − exp(−(timed − 1) × PEAK_FACTOR / span).
    expected = 1 - math.exp(-(timed - 1) * PEAK_FACTOR / effective_span)
    threshold = max(MIN_BURST, poisson_upper(timed * BURST_WINDOW / effective_span * PEAK_FACTOR))
    in_bursts = 0
    for offset in (0, BURST_WINDOW // 2):  # two alignments: a burst astride a boundary
        window = (leads.c.epoch + offset) // BURST_WINDOW
        counted = (sa.select(sa.func.count().label("n")).where(timed_only).group_by(window)
                   .having(sa.func.count() > threshold).subquery())
        in_bursts = max(in_bursts, int(db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(counted.c.n), 0))) or 0))
    db.session.commit()
    return ConsentTimes(timed, total - timed, int(shared or 0), expected, in_bursts, threshold,
                        span)


# --- duplicates against the seller's history ---------------------------------------

DUPLICATE_CODES = ("duplicate_in_batch", "duplicate_own")
PRIOR_DUPLICATE_RATE = 0.03  # a seller without history is assumed to be typical
PRIOR_ROWS = 500  # ... with the weight of this many rows


@dataclass
class DuplicateHistory:
    batch_duplicates: int
    batch_rows: int
    seller_duplicates: int
    seller_rows: int

    @property
    def baseline(self) -> float:
        return ((self.seller_duplicates + PRIOR_DUPLICATE_RATE * PRIOR_ROWS)
                / (self.seller_rows + PRIOR_ROWS))


def duplicate_history(batch: Batch) -> DuplicateHistory:
    def duplicates(*where):
        return db.session.scalar(
            sa.select(sa.func.count()).select_from(Rejection).join(Batch, Batch.id == Rejection.batch_id)
            .where(Rejection.code.in_(DUPLICATE_CODES), *where)) or 0

    earlier = (Batch.seller_id == batch.seller_id, Batch.id != batch.id,
               Batch.status.in_([BatchStatus.HELD, BatchStatus.LIVE, BatchStatus.REJECTED]))
    seller_rows = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Batch.rows_total), 0))
                                    .where(*earlier)) or 0
    history = DuplicateHistory(duplicates(Batch.id == batch.id), batch.rows_total,
                               duplicates(*earlier), int(seller_rows))
    db.session.commit()
    return history


# --- hosted forms' behaviour ---------------------------------------------------------

FORM_RULES = ("rushed_forms", "pasted_contacts")  # shown only for batches with such leads
RUSHED_MS = 1000  # no person reads a consent text and fills a form in under a second
CONTACT_INPUTS = ("email", "phone")


@dataclass
class FormBehaviour:
    certified: int = 0  # leads with the exchange's consent certificate
    rushed: int = 0
    pasted: int = 0  # every contact they gave was pasted, none typed


def form_behaviour(batch_id: int) -> FormBehaviour:
    """How the batch's hosted-form leads were filled, from their certificates. The
    time is the exchange's own (form served to form received): a script can lie about
    the browser's clock, not about when the form was fetched."""
    found = FormBehaviour()
    for served_ms, inputs in db.session.execute(
            sa.select(ConsentCertificate.served_ms, ConsentCertificate.inputs)
            .join(Lead, Lead.id == ConsentCertificate.lead_id)
            .where(Lead.batch_id == batch_id)):
        found.certified += 1
        found.rushed += served_ms < RUSHED_MS
        ways = [inputs.get(name) for name in CONTACT_INPUTS if inputs.get(name)]
        found.pasted += bool(ways) and all(way == "pasted" for way in ways)
    return found


def _form_signals(forms: FormBehaviour) -> list[Signal]:
    if not forms.certified:
        return []
    return [
        share_signal("rushed_forms", forms.rushed, forms.certified,
                     f"{forms.rushed} of {forms.certified} hosted-form leads "
                     f"({_pct_of(forms.rushed, forms.certified)}) sent the form within a "
                     "second of loading it: faster than anyone reads a consent text."),
        share_signal("pasted_contacts", forms.pasted, forms.certified,
                     f"{forms.pasted} of {forms.certified} hosted-form leads "
                     f"({_pct_of(forms.pasted, forms.certified)}) pasted every contact "
                     "detail they gave and typed none, as lists copied into forms do."),
    ]


# --- the assessment ------------------------------------------------------------------

@dataclass
class Assessment:
    batch_id: int
    leads: int
    signals: list[Signal]

    @property
    def risk_score(self) -> int:
        return min(100, sum(s.points for s in self.signals))


def _examples(counter: Counter, limit: int = 3) -> str:
    return ", ".join(name for name, _ in counter.most_common(limit))


NAME_REASONS = {"digits": "digits", "symbols": "symbols", "placeholder": "placeholders like “Test”",
                "repeated_letters": "repeated letters", "mixed_scripts": "mixed alphabets",
                "no_vowels": "no vowels", "keyboard_mash": "keyboard runs like “qwert”",
                "no_letters": "no letters"}
DEMOGRAPHIC_REASONS = {"young_widowed": "widowed before 23", "young_divorced": "divorced before 20",
                       "very_old": "aged 95 or more"}


def _signals(scan: Scan, times: ConsentTimes, history: DuplicateHistory,
             phones_seen: int) -> list[Signal]:
    signals = [
        share_signal("disposable_email", scan.disposable, scan.emails,
                     f"{scan.disposable} of {scan.emails} email addresses ({_pct_of(scan.disposable, scan.emails)}) "
                     f"are at throwaway-inbox services"
                     + (f" ({_examples(scan.disposable_domains)})" if scan.disposable else "")
                     + "; genuine sign-ups show about 1%."),
    ]
    sequential = sequential_share(scan.kept_phones)
    sampled = len(scan.kept_phones)
    signals.append(share_signal(
        "sequential_phones", sequential, sampled,
        f"{sequential} of {sampled} phone numbers{' looked at' if sampled < phones_seen else ''} "
        f"({_pct_of(sequential, sampled)}) sit in runs of {SEQUENCE_RUN} or more "
        "consecutive numbers (…01, …02, …03), as a generator writes them; real people's "
        "numbers are scattered."))
    signals.append(share_signal(
        "repeated_digit_phones", scan.patterned, scan.phones,
        f"{scan.patterned} of {scan.phones} phone numbers "
        f"({_pct_of(scan.patterned, scan.phones)}) end in a pattern such as "
        "777-7777 or 123-4567, which few real lines have."))
    signals.append(share_signal(
        "identical_consent", times.shared_second, times.timed,
        f"{times.shared_second} of {times.timed} consents "
        f"({_pct_of(times.shared_second, times.timed)}) share their exact "
        f"second with another lead; spread as these are, chance explains about "
        f"{_pct(times.expected_shared)}.", expected=times.expected_shared))
    signals.append(share_signal(
        "clustered_consent", times.in_bursts, times.timed,
        f"{times.in_bursts} of {times.timed} consents "
        f"({_pct_of(times.in_bursts, times.timed)}) fall in bursts of more "
        f"than {times.burst_threshold} within 10 minutes, far above this batch's own pace."))
    signals.append(share_signal(
        "night_consent", scan.night, scan.clocked,
        f"{scan.night} of {scan.clocked} consents ({_pct_of(scan.night, scan.clocked)}) "
        "were given between 01:00 and 05:00 in the lead's own region; genuine traffic has "
        "about 5% then."))
    total_consents = times.timed + times.midnight
    signals.append(share_signal(
        "consent_without_time", times.midnight, total_consents,
        f"{times.midnight} of {total_consents} consents "
        f"({_pct_of(times.midnight, total_consents)}) have a date but no "
        "time of day, which weakens them as evidence (and hides them from the time checks)."))
    signals.append(share_signal(
        "implausible_demographics", scan.implausible, scan.aged,
        f"{scan.implausible} of {scan.aged} leads ({_pct_of(scan.implausible, scan.aged)}) "
        "have a combination real populations almost never show"
        + (f" ({', '.join(DEMOGRAPHIC_REASONS[r] for r, _ in scan.demographic_reasons.most_common())})"
           if scan.implausible else "") + "."))
    signals.append(share_signal(
        "non_name", scan.bad_names, scan.named,
        f"{scan.bad_names} of {scan.named} names ({_pct_of(scan.bad_names, scan.named)}) "
        "are not names"
        + (f" ({', '.join(NAME_REASONS[r] for r, _ in scan.name_reasons.most_common())})"
           if scan.bad_names else "") + "."))
    signals.append(share_signal(
        "cross_seller_duplicates", scan.cross, scan.leads,
        f"{scan.cross} of {scan.leads} leads ({_pct_of(scan.cross, scan.leads)}) "
        "are people another seller already listed: resold or scraped lists show up this way."))
    baseline = history.baseline
    rate = history.batch_duplicates / history.batch_rows if history.batch_rows else 0.0
    duplicate = share_signal(
        "duplicate_rate", history.batch_duplicates, history.batch_rows,
        f"{history.batch_duplicates} of {history.batch_rows} rows ({_pct(rate)}) repeated a lead "
        f"of this file or of the seller's earlier uploads; this seller's normal is "
        f"{_pct(baseline)}" + ("" if history.seller_rows else " (no history yet: a typical seller's)")
        + ".", expected=baseline)
    signals.append(duplicate)
    return signals


def assess(batch: Batch) -> Assessment:
    """Read the batch's leads and compute its signals (stores nothing)."""
    batch_id, default_country, expected = batch.id, batch.default_country, batch.accepted
    history = duplicate_history(batch)
    scan = Scan(phone_keep_every=max(1, math.ceil(expected / PHONE_SAMPLE_CAP)))
    open_contact = current_vault().open_contact
    for rows in stream_leads(batch_id):
        for row in rows:
            scan.add(row, open_contact, default_country)
    times = consent_times(batch_id)
    return Assessment(batch_id, scan.leads, _signals(scan, times, history, scan.phones)
                      + _form_signals(form_behaviour(batch_id)))


def assess_batch(batch_id: int) -> Optional[Assessment]:
    """Assess a processed batch and store its risk score and signals on it."""
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.status in (BatchStatus.PROCESSING, BatchStatus.FAILED):
        return None
    assessment = assess(batch)
    db.session.execute(
        sa.update(Batch).where(Batch.id == batch_id)
        .values(risk_score=assessment.risk_score,
                risk_signals=[s.as_dict() for s in assessment.signals],
                risk_assessed_at=utcnow(), risk_leads=assessment.leads)
        .execution_options(synchronize_session=False))
    db.session.commit()
    db.session.expire_all()
    return assessment


def stale_realtime_batches() -> list[int]:
    """Real-time batches that gained leads since they were last assessed."""
    return list(db.session.scalars(
        sa.select(Batch.id).where(Batch.source == BatchSource.API,
                                  Batch.status.in_([BatchStatus.HELD, BatchStatus.LIVE]),
                                  Batch.accepted != sa.func.coalesce(Batch.risk_leads, -1))
        .order_by(Batch.id)))


def top_signals(batch: Batch, limit: int = 3) -> list[dict[str, Any]]:
    """The signals that gave the batch points, strongest first."""
    scored = [s for s in (batch.risk_signals or []) if s.get("points")]
    return sorted(scored, key=lambda s: -s["points"])[:limit]


def assessed_at_text(value: Optional[datetime]) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "not assessed yet"
