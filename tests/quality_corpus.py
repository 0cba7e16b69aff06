"""A corpus of invented batches for the fraud signals (issue 6): clean batches that look
like real sellers' exports, with the small share of oddities real data has, and
batches where a share of the rows are fakes of one kind. Used by
tests/test_quality_corpus.py and bench/quality.py.

Clean rows: names from real name lists (Latin, Spanish accents, Cyrillic, hyphens and
apostrophes), addresses at common providers (1% at throwaway services, as in real
sign-ups), random valid mobile/landline numbers, ages and marital statuses drawn the
way populations have them, consent times over the last 30 days following a daily
traffic curve in the lead's own time zone (about 4% between 01:00 and 05:00), 1% of
rows repeated in the file, 2% people another seller already listed, 0.5% junk names.
"""
import csv
import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

HEADER = ["first_name", "last_name", "email", "phone", "age", "marital_status", "gender",
          "region", "country", "consent_at", "source_url"]

FIRST = {
    "US": ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
           "David", "Elizabeth", "William", "Barbara", "Anne-Marie", "Chloe", "Zoe", "Liam",
           "Noah", "Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia", "Ethan", "Jayden",
           "Nguyen", "Xavier", "Brooklyn", "Kyle", "Ng"],
    "ES": ["José", "María", "Lucía", "Javier", "Carmen", "Álvaro", "Sofía", "Pablo", "Iñigo",
           "Núria", "Jordi", "Mónica", "Ángel", "Raúl", "Inés"],
    "RU": ["Анна", "Мария", "Иван", "Дмитрий", "Сергей", "Ольга", "Елена", "Алексей",
           "Наталья", "Юлия", "Артём", "Ксения", "Пётр", "Андрей", "Татьяна"],
}
LAST = {
    "US": ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
           "O'Brien", "McDonald", "Schwartz", "Hirschsprung", "Rothschild", "Lee", "Kowalski",
           "Van der Berg", "Washington", "Liberty", "Young", "Wright"],
    "ES": ["García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez",
           "Pérez", "Núñez", "Muñoz", "de la Fuente", "Iglesias"],
    "RU": ["Иванова", "Петров", "Смирнов", "Кузнецова", "Попов", "Соколова", "Мкртчян",
           "Лебедев", "Козлов", "Новикова", "Морозов", "Волкова"],
}
HANDLES = ["sun", "star", "blue", "cat", "wolf", "rose", "sky", "fox", "mila", "alex"]
PROVIDERS = {"US": ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com"],
             "ES": ["gmail.com", "hotmail.es", "yahoo.es", "outlook.es"],
             "RU": ["mail.ru", "yandex.ru", "gmail.com", "rambler.ru"]}
DISPOSABLE = ["mailinator.com", "yopmail.com", "guerrillamail.com", "10minutemail.com",
              "trashmail.com", "sharklasers.com", "throwawaymail.com", "getnada.com",
              "maildrop.cc", "dispostable.com"]
# (country, region, zone, area codes or mobile prefixes)
PLACES = [
    ("US", "US-CA", "America/Los_Angeles", [213, 310, 415, 510, 619, 714, 818, 909]),
    ("US", "US-NY", "America/New_York", [212, 315, 347, 516, 585, 646, 718, 914]),
    ("US", "US-TX", "America/Chicago", [214, 281, 512, 713, 817, 915, 972]),
    ("ES", "ES-M", "Europe/Madrid", list(range(600, 700))),
    ("RU", "RU-MOW", "Europe/Moscow", list(range(900, 1000))),
    ("RU", "RU-NVS", "Asia/Novosibirsk", list(range(900, 1000))),
]
# Share of a day's genuine form fills per local hour (01:00–04:59: about 4%).
HOURLY = [2.4, 1.6, 1.2, 1.0, 1.0, 1.5, 2.5, 3.5, 4.5, 5.0, 5.5, 5.5, 5.5, 5.5, 5.5, 5.5,
          5.5, 6.0, 6.5, 7.0, 7.0, 6.5, 5.0, 3.5]
JUNK_NAMES = ["Test", "asdf", "Xxx", "Name"]

KINDS = ["disposable_email", "sequential_phones", "repeated_digit_phones", "identical_consent",
         "clustered_consent", "night_consent", "implausible_demographics", "non_name",
         "cross_seller_duplicates", "duplicate_rate"]


def _marital(rng: random.Random, age: int) -> str:
    if rng.random() < 0.2:
        return ""
    if age < 25:
        table = [("single", 85), ("married", 9), ("partnered", 6)]
    elif age < 40:
        table = [("single", 35), ("married", 45), ("partnered", 12), ("divorced", 8)]
    elif age < 65:
        table = [("married", 60), ("divorced", 15), ("single", 15), ("widowed", 5),
                 ("partnered", 5)]
    else:
        table = [("married", 50), ("widowed", 30), ("divorced", 10), ("single", 10)]
    return rng.choices([m for m, _ in table], [w for _, w in table])[0]


def _phone(rng: random.Random, country: str, prefixes: list[int]) -> str:
    prefix = rng.choice(prefixes)
    if country == "US":
        return f"+1 {prefix} {rng.randrange(200, 1000)} {rng.randrange(0, 10000):04d}"
    if country == "ES":
        return f"+34 {prefix} {rng.randrange(0, 1000):03d} {rng.randrange(0, 1000):03d}"
    return f"+7 {prefix} {rng.randrange(0, 1000):03d} {rng.randrange(0, 100):02d} {rng.randrange(0, 100):02d}"


def _local_consent(rng: random.Random, zone: str, now: datetime, hours=None) -> datetime:
    day = (now - timedelta(days=rng.randrange(1, 31))).astimezone(ZoneInfo(zone)).date()
    hour = rng.choice(hours) if hours else rng.choices(range(24), HOURLY)[0]
    local = datetime(day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60),
                     tzinfo=ZoneInfo(zone))
    return local.astimezone(timezone.utc)


def person(rng: random.Random, n: int, now: datetime, *, quirks: bool = True) -> dict:
    country, region, zone, prefixes = rng.choice(PLACES)
    first, last = rng.choice(FIRST[country]), rng.choice(LAST[country])
    if quirks and rng.random() < 0.005:
        first = rng.choice(JUNK_NAMES)
    domain = rng.choice(PROVIDERS[country])
    if quirks and rng.random() < 0.01:
        domain = rng.choice(DISPOSABLE)
    age = int(rng.triangular(18, 85, 34))
    return {
        "first_name": first, "last_name": last,
        "email": f"{rng.choice(HANDLES)}.{n}.{rng.randrange(10**6)}@{domain}",
        "phone": _phone(rng, country, prefixes), "age": age,
        "marital_status": _marital(rng, age), "gender": rng.choice(["f", "m", "f", "m", ""]),
        "region": region, "country": country, "_zone": zone,
        "consent_at": _local_consent(rng, zone, now).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source_url": "https://offers.example.com/form",
    }


def _keyboard_mash(rng: random.Random) -> str:
    row = rng.choice(["qwertyuiop", "asdfghjkl", "zxcvbnm", "фывапролдж", "йцукенгшщз"])
    length = rng.randrange(5, 8)
    start = rng.randrange(0, len(row) - length + 1)
    text = row[start:start + length]
    return (text if rng.random() < 0.5 else text[::-1]).capitalize()


def _non_name(rng: random.Random, i: int) -> str:
    kind = i % 5
    if kind == 0:
        return _keyboard_mash(rng)
    if kind == 1:
        return rng.choice(FIRST["US"]) + str(rng.randrange(1, 999))
    if kind == 2:
        return rng.choice(["Aaaa", "Lalala", "Ssss", "Jjjjj", "Bbbb"])
    if kind == 3:
        return rng.choice(["Xkcd", "Bdfghk", "Grrr", "Prst", "Mnbv"])
    return rng.choice(["Test", "Fake", "Name", "Unknown", "Qwerty"])


def _patterned_phone(rng: random.Random, i: int) -> str:
    prefix = 900 + (i * 7) % 100
    a, b = rng.randrange(10), rng.randrange(10)
    subscriber = rng.choice([f"{a}" * 7, f"{a}{b}" * 3 + f"{a}",
                             "".join(str((a + k) % 10) for k in range(7)),
                             "".join(str((a - k) % 10) for k in range(7))])
    return f"+7 {prefix} {subscriber[:3]} {subscriber[3:5]} {subscriber[5:]}"


def plant(rng: random.Random, kind: str, rows: list[dict], fakes: list[int], now: datetime,
          market: list[dict]) -> None:
    """Turn rows[i] for i in `fakes` into fakes of one kind (in place)."""
    base_phone = rng.randrange(200, 900) * 10_000 + rng.randrange(0, 5000)
    stamps = [_local_consent(rng, "America/New_York", now) for _ in range(2)]
    burst = _local_consent(rng, "Europe/Moscow", now)
    for j, i in enumerate(fakes):
        row = rows[i]
        if kind == "disposable_email":
            row["email"] = row["email"].rpartition("@")[0] + "@" + rng.choice(DISPOSABLE)
        elif kind == "sequential_phones":
            number = base_phone + j
            row["phone"] = f"+1 415 {number // 10_000} {number % 10_000:04d}"
        elif kind == "repeated_digit_phones":
            row["phone"] = _patterned_phone(rng, j)
        elif kind == "identical_consent":
            row["consent_at"] = stamps[j % 2].strftime("%Y-%m-%dT%H:%M:%SZ")
        elif kind == "clustered_consent":
            moment = burst + timedelta(seconds=rng.randrange(0, 480))
            row["consent_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif kind == "night_consent":
            row["consent_at"] = _local_consent(rng, row["_zone"], now, hours=[1, 2, 3, 4]
                                               ).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif kind == "implausible_demographics":
            age, status = rng.choice([(rng.randrange(18, 23), "widowed"),
                                      (rng.randrange(18, 20), "divorced"),
                                      (rng.randrange(95, 101), rng.choice(["married", "widowed", ""]))])
            row["age"], row["marital_status"] = age, status
        elif kind == "non_name":
            row["first_name"] = _non_name(rng, j)
            if j % 3 == 0:
                row["last_name"] = _non_name(rng, j + 1)
        elif kind == "cross_seller_duplicates":
            rows[i] = dict(rng.choice(market))
        elif kind == "duplicate_rate":
            rows[i] = dict(rows[rng.randrange(0, len(rows))])
        else:
            raise ValueError(kind)


@dataclass(frozen=True)
class CorpusBatch:
    label: str  # "clean" or the planted kind
    size: int
    seed: int
    data: bytes


def to_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow([row.get(h, "") for h in HEADER])
    return out.getvalue().encode("utf-8")


def market_rows(seed: int, size: int, now: datetime) -> list[dict]:
    rng = random.Random(f"market-{seed}")
    return [person(rng, 900_000 + n, now, quirks=False) for n in range(size)]


def batch_rows(label: str, size: int, seed: int, now: datetime, market: list[dict],
               fake_share: float) -> list[dict]:
    rng = random.Random(f"{label}-{size}-{seed}")
    rows = [person(rng, seed * 100_000 + n, now) for n in range(size)]
    for i in range(size):  # the natural oddities of a real export
        roll = rng.random()
        if roll < 0.01 and i:
            rows[i] = dict(rows[rng.randrange(0, i)])
        elif roll < 0.03:
            rows[i] = dict(rng.choice(market))
    if label != "clean":
        fakes = rng.sample(range(size), round(size * fake_share))
        plant(rng, label, rows, fakes, now, market)
    return rows


def corpus(sizes=(50, 200, 1000), clean_per_size: int = 8, fake_share: float = 0.2,
           seed: int = 1, now: datetime | None = None,
           market: list[dict] | None = None) -> list[CorpusBatch]:
    now = now or datetime.now(timezone.utc)
    market = market if market is not None else market_rows(seed, 3000, now)
    batches = []
    for size in sizes:
        for k in range(clean_per_size):
            batches.append(CorpusBatch("clean", size, seed * 1000 + k,
                                       to_csv(batch_rows("clean", size, seed * 1000 + k, now,
                                                         market, fake_share))))
        for kind in KINDS:
            batches.append(CorpusBatch(kind, size, seed, to_csv(
                batch_rows(kind, size, seed, now, market, fake_share))))
    return batches


@dataclass(frozen=True)
class Scored:
    label: str
    size: int
    batch_id: int
    risk: int
    points: dict


def score_corpus(batches: list[CorpusBatch], market: list[dict]) -> list[Scored]:
    """Upload each batch through the real pipeline (as its own verified seller, after a
    market seller listed the `market` people) and assess it. Needs an app context."""
    from app.extensions import db
    from app.models import Role, TrustLevel, User
    from app.services import accounts, ledger, quality
    from tests.ingest_helpers import ingest

    def seller(name: str) -> User:
        user = accounts.create_user(f"{name}@corpus.example.com", "corpus-password-1",
                                    Role.SELLER)
        user.trust_level = TrustLevel.VERIFIED
        ledger.open_accounts_for(user)
        db.session.commit()
        return user

    ingest(seller("market"), to_csv(market))
    results = []
    for n, item in enumerate(batches):
        batch = ingest(seller(f"s{n}"), item.data)
        assessment = quality.assess_batch(batch.id)
        results.append(Scored(item.label, item.size, batch.id, assessment.risk_score,
                              {s.code: s.points for s in assessment.signals if s.points}))
    return results
