"""Invented leads for demo batches: a fixed seed, reserved-looking numbers and
example.com-style domains, so no real person is ever in the demo."""
import csv
import io
import random
from datetime import datetime, timedelta, timezone

FIRST_NAMES = ["Anna", "Maria", "Olga", "Elena", "Sofia", "Lucia", "Emma", "Olivia", "Ivan",
               "Dmitry", "Pablo", "Javier", "Liam", "Noah", "James", "Sergey", "Carmen", "Ava"]
LAST_NAMES = ["Ivanova", "Petrov", "Garcia", "Martinez", "Smith", "Johnson", "Brown", "Sokolov",
              "Lopez", "Fernandez", "Miller", "Davis", "Kuznetsova", "Romero"]
INTERESTS = ["travel", "cars", "fitness", "insurance", "mortgage", "credit", "education",
             "health", "home", "pets"]
# (country, regions as a seller's file might spell them, phone pattern)
PLACES = [
    ("US", ["California", "US-NY", "Texas", "WA"], "+1 {a}555 01{b:02d}"),
    ("RU", ["Москва", "RU-SPE", "RU-NVS", "Tatarstan"], "8 (9{a:02d}) 555-{b:02d}-{c:02d}"),
    ("ES", ["Madrid", "ES-B", "Valencia", "Sevilla"], "+34 6{a:02d} 555 {b:03d}"),
]
HEADER = ["first_name", "last_name", "email", "phone", "age", "gender", "region", "country",
          "marital_status", "employed", "interests", "budget", "timeframe", "consent_at",
          "source_url", "consent_text", "sub_id"]
# The seller's own sources (sub_id), most leads from the first: the seller's pages break
# their figures down by them.
SOURCES = (("newsletter", 5), ("facebook-spring", 3), ("seo-articles", 2))


def demo_csv(seed: int, rows: int, *, bad_share: float = 0.06, site: str) -> bytes:
    """A seller's export: mostly good rows, a few with the usual mistakes."""
    rng = random.Random(seed)
    # Drawn apart, so the rows are the same as before sources were added.
    sources = random.Random(f"{seed}:sub_id")
    names, weights = zip(*SOURCES)
    now = datetime.now(timezone.utc)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for i in range(rows):
        country, regions, phone_pattern = rng.choice(PLACES)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        a, b, c = rng.randrange(200, 999), rng.randrange(0, 99), rng.randrange(0, 99)
        if country == "US":
            a = rng.choice([201, 212, 310, 415, 646, 718])
        phone = phone_pattern.format(a=a if country == "US" else a % 100, b=b, c=c)
        email = f"{first}.{last}{seed}{i}@mail.example.com".lower()
        consent = now - timedelta(days=rng.randrange(0, 60), minutes=rng.randrange(0, 1440))
        row = [first, last, email, phone, rng.randrange(18, 80), rng.choice(["f", "m", "female",
               "male", ""]), rng.choice(regions), country,
               rng.choice(["single", "married", "divorced", ""]), rng.choice(["yes", "no", ""]),
               ";".join(rng.sample(INTERESTS, rng.randrange(0, 4))),
               rng.choice(["", "under 1k", "1k-10k", "10k+"]),
               rng.choice(["", "now", "this month", "this year"]),
               consent.strftime("%Y-%m-%d %H:%M:%S"), f"https://{site}/form",
               "I agree to be contacted about offers",
               sources.choices(names, weights)[0]]
        if rng.random() < bad_share:  # the usual mistakes of a real export
            mistake = rng.randrange(4)
            if mistake == 0:
                row[2] = row[2].replace("@", " at ")
            elif mistake == 1:
                row[3], row[2] = "12-34", ""
            elif mistake == 2:
                row[4] = rng.choice([14, 16, 130])
            else:
                row[13] = ""
        writer.writerow(row)
    return out.getvalue().encode("utf-8-sig")


# A lead farm's export for the spot-check demo: every fraud signal of SPEC §7 at once.
MASH_NAMES = ["Asdfg", "Qwerty", "Zxcvb", "Test", "Aaaa", "Hjkl", "Xkcd", "Lkjhg", "Poiuy",
              "Mnbvc"]
THROWAWAY_DOMAINS = ["mailinator.com", "yopmail.com", "guerrillamail.com", "sharklasers.com"]


def suspicious_csv(seed: int, rows: int, *, site: str) -> bytes:
    """Mash names, throwaway inboxes, consecutive phone numbers and consents stamped
    within a few minutes at 3 a.m. California time: what a script writes."""
    rng = random.Random(seed)
    night = (datetime.now(timezone.utc) - timedelta(days=2)).replace(
        hour=10, minute=12, second=0, microsecond=0)  # 03:12 PDT / 02:12 PST
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for i in range(rows):
        first, last = MASH_NAMES[i % len(MASH_NAMES)], rng.choice(MASH_NAMES)
        consent = night + timedelta(seconds=rng.randrange(0, 360) // 3 * 3)
        writer.writerow([first, last, f"{first.lower()}{i}@{rng.choice(THROWAWAY_DOMAINS)}",
                         f"+1 415 555 {100 + i % 100:04d}", rng.randrange(26, 45), "f",
                         "California", "US", rng.choice(["married", "single"]), "yes",
                         "insurance;credit", "10k+", "now",
                         consent.strftime("%Y-%m-%d %H:%M:%S"), f"https://{site}/form",
                         "I agree to be contacted about offers", "aff-193"])
    return out.getvalue().encode("utf-8")
