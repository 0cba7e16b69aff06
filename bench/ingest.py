#!/usr/bin/env python
"""Ingest benchmark (issue #3, SPEC §10): the real upload path against three baselines.

Not a unit test: it measures, prints a table and writes the figures as JSON.

    . .venv/bin/activate
    python bench/ingest.py                 # 1,000,000 rows (+ a 100,000-row memory run)
    python bench/ingest.py --rows 20000    # smoke run, well under a minute
    python bench/ingest.py --workers 2 --chunk 5000 --mem-rows 100000
    python bench/ingest.py --profile       # instead: profile the real path on the
                                           # --mem-rows file (cProfile + py-spy)

What one run does, all on the same generated file:
  1. Generates (fixed seed, cached in bench/out/, which is git-ignored) a CSV of
     invented leads: US/RU/ES/GB/DE, national and international phone shapes, a few %
     invalid phones/emails, a few % duplicates within the file, emails of many shapes,
     ages or birth dates, genders/regions/countries in several spellings, consent
     times in several formats, source URLs, interests, UTF-8 (Cyrillic, accents).
  2. Baselines: (a) raw `csv.reader` parse; (b) PostgreSQL COPY of the raw file into
     a plain text table (the storage limit); (c) a straightforward single-process
     pipeline: csv.DictReader -> phonenumbers parse/is_valid/E.164 -> email-validator
     (no network) -> executemany INSERT, committing every 5,000 rows, into SQLite and
     again into PostgreSQL (SPEC §10: measured on SQLite and on PostgreSQL); each
     backend's real path is held to its own.
  3. The real upload path (pipeline.stage_upload -> create_batch -> process_batch,
     in a Flask app context, exactly as tests/ingest_helpers.ingest drives it) on a
     fresh SQLite database and on a fresh PostgreSQL database (schema by the real
     migrations), INGEST_WORKERS=--workers, INGEST_CHUNK_ROWS=--chunk. Each run is a
     separate child process; the parent samples the memory of the whole process
     tree (child + worker processes, psutil) every 50 ms, as PSS and as RSS, each
     summed over the tree, and also reads each process's VmHWM (reset through
     /proc/<pid>/clear_refs when the timed part starts).
     The worker pool is started before the clock starts (it lives as long as the
     web/Celery process); its start-up time is reported separately.
  4. The real path again on a --mem-rows file (default 100,000), to show that peak
     memory does not grow with the number of rows.
  5. After each full-size real run (untimed by it, in the same child): its two
     unavoidable parts alone (parts_alone). Storing: the batch's accepted rows read
     back and written again by storing.write_leads into a copy of the leads table with
     the same indexes, a chunk per transaction as the real path commits (CPU of the
     storing process, plus the PostgreSQL backend's). Validating: what a worker runs per chunk
     (workers._validate_in_worker, gc paused) on the file's first 50,000 rows in one
     process. The ceiling they set: CPUs / (both CPU costs
     per file row), and on SQLite (one writer) no more than storing's own rows/s.
     Everything else the real path does is left out, so no ingest of this file can
     beat that ceiling on this machine.

PostgreSQL: a throwaway cluster from scripts/pg-test-cluster.sh, with its own
directory and port (--pg-dir, --pg-port; default /tmp/leadx-bench-pg:55433) so it
does not collide with the test suite's; stopped at the end. Note that cluster runs
with fsync=off / synchronous_commit=off. --no-pg skips everything PostgreSQL.

Targets (issue #3): end to end >= 3x the straightforward pipeline on the same backend
(the PostgreSQL run's ratio to the SQLite baseline is printed beside it); peak memory of the
process tree < 300 MB whatever the file size. The script prints PASS/FAIL for each
and exits 1 if any fails.

Memory is held to the peak PSS summed over the tree; the RSS sum is printed beside
it. A page that several processes map (the interpreter's and every extension's
code, the libraries a worker loads as the main process did) is in the RSS of each
of them, so summing RSS counts it once per process, and the sum overstates what
the tree holds by the shared pages times the processes sharing them. PSS splits
each shared page among the processes that map it, so the tree's PSS sum is what the
upload takes from the machine (it even leaves out the shares of processes outside
the tree, such as other programs using libc, which are small). VmHWM (per process,
RSS-based) stays an upper bound.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from pgcluster import Postgres  # bench/, beside this script

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TMP = OUT / "tmp"
GEN_VERSION = 1
DEFAULT_COUNTRY = "US"
SPEED_TARGET = 3.0  # x the straightforward pipeline
PARTS_SAMPLE = 50_000  # rows validated alone for the ceiling (parts_alone)
MEMORY_TARGET_MB = 300.0
FLAT_TOLERANCE = 1.25  # large-file peak may be at most 25% above the small file's

HEADER = ["first_name", "last_name", "email", "phone", "age", "birth_date", "gender",
          "region", "country", "marital_status", "employed", "interests", "consent_at",
          "source_url", "consent_text", "ip"]


# =====================================================================================
# 1. Test data: invented people only
# =====================================================================================
# (display name, ASCII form for emails, gender)
NAMES = {
    "US": (
        [("James", "james", "m"), ("Mary", "mary", "f"), ("Robert", "robert", "m"),
         ("Patricia", "patricia", "f"), ("John", "john", "m"), ("Jennifer", "jennifer", "f"),
         ("Michael", "michael", "m"), ("Linda", "linda", "f"), ("David", "david", "m"),
         ("Emily", "emily", "f"), ("Daniel", "daniel", "m"), ("Olivia", "olivia", "f"),
         ("Ethan", "ethan", "m"), ("Chloe", "chloe", "f"), ("Zoë", "zoe", "f")],
        [("Smith", "smith"), ("Johnson", "johnson"), ("Williams", "williams"),
         ("Brown", "brown"), ("Garcia", "garcia"), ("Miller", "miller"), ("Davis", "davis"),
         ("Wilson", "wilson"), ("Anderson", "anderson"), ("Taylor", "taylor"),
         ("Moore", "moore"), ("Jackson", "jackson"), ("Nguyen", "nguyen")]),
    "RU": (
        [("Мария", "maria", "f"), ("Анна", "anna", "f"), ("Елена", "elena", "f"),
         ("Ольга", "olga", "f"), ("Наталья", "natalya", "f"), ("Татьяна", "tatyana", "f"),
         ("Юлия", "yulia", "f"), ("Дмитрий", "dmitry", "m"), ("Алексей", "alexey", "m"),
         ("Сергей", "sergey", "m"), ("Иван", "ivan", "m"), ("Андрей", "andrey", "m"),
         ("Михаил", "mikhail", "m"), ("Артём", "artem", "m")],
        [("Иванов", "ivanov"), ("Смирнов", "smirnov"), ("Кузнецов", "kuznetsov"),
         ("Попов", "popov"), ("Соколов", "sokolov"), ("Лебедев", "lebedev"),
         ("Козлов", "kozlov"), ("Новиков", "novikov"), ("Морозов", "morozov"),
         ("Волков", "volkov"), ("Фёдоров", "fedorov")]),
    "ES": (
        [("José", "jose", "m"), ("María", "maria", "f"), ("Lucía", "lucia", "f"),
         ("Javier", "javier", "m"), ("Carmen", "carmen", "f"), ("Álvaro", "alvaro", "m"),
         ("Sofía", "sofia", "f"), ("Pablo", "pablo", "m"), ("Nuria", "nuria", "f"),
         ("Íñigo", "inigo", "m"), ("Martín", "martin", "m"), ("Elena", "elena", "f")],
        [("García", "garcia"), ("Fernández", "fernandez"), ("González", "gonzalez"),
         ("Rodríguez", "rodriguez"), ("López", "lopez"), ("Martínez", "martinez"),
         ("Sánchez", "sanchez"), ("Pérez", "perez"), ("Gómez", "gomez"), ("Muñoz", "munoz"),
         ("Díaz", "diaz"), ("Jiménez", "jimenez")]),
    "GB": (
        [("Oliver", "oliver", "m"), ("Amelia", "amelia", "f"), ("George", "george", "m"),
         ("Isla", "isla", "f"), ("Harry", "harry", "m"), ("Ava", "ava", "f"),
         ("Jack", "jack", "m"), ("Mia", "mia", "f"), ("Charlie", "charlie", "m"),
         ("Grace", "grace", "f"), ("Siobhán", "siobhan", "f")],
        [("Smith", "smith"), ("Jones", "jones"), ("Taylor", "taylor"), ("Brown", "brown"),
         ("Evans", "evans"), ("Thomas", "thomas"), ("Roberts", "roberts"),
         ("Walker", "walker"), ("O'Brien", "obrien"), ("Hughes", "hughes")]),
    "DE": (
        [("Lukas", "lukas", "m"), ("Anna", "anna", "f"), ("Jürgen", "juergen", "m"),
         ("Sophie", "sophie", "f"), ("Maximilian", "max", "m"), ("Lea", "lea", "f"),
         ("Jonas", "jonas", "m"), ("Marie", "marie", "f"), ("Felix", "felix", "m"),
         ("Hannah", "hannah", "f"), ("Björn", "bjoern", "m")],
        [("Müller", "mueller"), ("Schmidt", "schmidt"), ("Schneider", "schneider"),
         ("Fischer", "fischer"), ("Weber", "weber"), ("Meyer", "meyer"),
         ("Wagner", "wagner"), ("Becker", "becker"), ("Hoffmann", "hoffmann"),
         ("Groß", "gross")]),
}
COUNTRIES = ["US", "RU", "ES", "GB", "DE"]
COUNTRY_WEIGHTS = [30, 25, 20, 12, 13]
COUNTRY_SPELLINGS = {
    "US": ["US", "US", "USA", "United States", "us"],
    "RU": ["RU", "RU", "Russia", "Россия", "RUS"],
    "ES": ["ES", "ES", "Spain", "España", "es"],
    "GB": ["GB", "UK", "United Kingdom", "GB", "GBR"],
    "DE": ["DE", "DE", "Germany", "Deutschland", "DEU"],
}
# Regions as names (several languages) and ISO codes; one unknown place per country.
REGIONS = {
    "US": ["CA", "US-CA", "California", "NY", "New York", "US-NY", "TX", "Texas", "FL",
           "Florida", "IL", "Illinois", "MA", "US-WA", "Ohio"],
    "RU": ["Москва", "Moscow", "RU-MOW", "г. Москва", "Санкт-Петербург", "RU-SPE",
           "Московская обл.", "RU-MOS", "Татарстан", "Новосибирская область", "RU-SVE",
           "Краснодарский край"],
    "ES": ["Madrid", "ES-M", "Barcelona", "ES-B", "Cataluña", "Valencia", "ES-V",
           "Sevilla", "Andalucía", "ES-AN", "Málaga"],
    "GB": ["London", "GB-LND", "Scotland", "GB-SCT", "Wales", "Kent", "GB-KEN",
           "Edinburgh"],
    "DE": ["Berlin", "DE-BE", "Bayern", "Bavaria", "DE-BY", "Hamburg", "DE-HH",
           "Nordrhein-Westfalen", "Hessen", "Sachsen"],
}
UNKNOWN_PLACES = {"US": "Springfield area", "RU": "Подмосковье-2", "ES": "Costa del Sol",
                  "GB": "The Midlands area", "DE": "Ruhrpott"}
GENDER_SPELLINGS = {
    "f": ["f", "F", "female", "Female", "woman", "ж", "жен", "Женский", "mujer", "weiblich"],
    "m": ["m", "M", "male", "Male", "man", "м", "муж", "Мужской", "hombre", "männlich"],
}
OTHER_GENDERS = ["other", "non-binary", "x", "", "", "prefer not to say", "n/a"]
MARITAL = ["single", "married", "Married", "divorced", "в браке", "холост", "soltera",
           "casado", "verheiratet", "in a relationship", "widowed", ""]
EMPLOYED = ["yes", "no", "Yes", "employed", "unemployed", "да", "нет", "sí", "ja",
            "self-employed", "part-time", ""]
INTERESTS = ["travel", "cars", "finance", "sports", "fitness", "cooking", "real estate",
             "insurance", "education", "gaming", "fashion", "pets", "crypto", "gardening",
             "путешествия", "авто", "viajes", "Reisen"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com",
           "inbox.example.org", "post.example.net", "correo.example.com",
           "mail.example.co.uk", "shop.example.de"]
SOURCE_URLS = ["https://blog.example.com/newsletter", "https://landing.example.org/offer",
               "https://www.example.net/contact-form", "http://promo.example.com/win",
               "https://forms.example.org/f/credit-check", "https://example.com/signup"]
CONSENT_TEXTS = ["", "", "", "I agree to be contacted by email and phone.",
                 "Acepto la política de privacidad, y recibir ofertas",
                 "Согласен на обработку персональных данных",
                 'Ticked "send me offers"']
BAD_PHONES = ["12345", "n/a", "0", "555-CALL-NOW", "+1 (123) 456-7890", "+7 916 12",
              "000-000-0000", "+44 12", "call after 6pm", "8 (800)", "+49 0000 000"]
BAD_EMAIL_SHAPES = ["{u}@", "{u} x@{d}", "{u}@@{d}", "@{d}", "{u}.{d}", "{u}@example",
                    "{u}..x@{d}", "{u}@exa_mple.com", "{u}@{d}.", "{u}@-{d}"]

# Phone numbering: (prefix, digits after it); a number is prefix + rest (the NSN).
PHONE_PLANS = {
    "US": [(a, 7) for a in ("212", "312", "415", "617", "646", "702", "305", "213",
                            "404", "512", "206", "718")],
    "RU": [(p, 7) for p in ("903", "905", "906", "909", "915", "916", "917", "925",
                            "926", "929", "977", "985", "999", "495", "499", "812")],
    "ES": [("6", 8), ("6", 8), ("6", 8), ("71", 7), ("722", 6), ("91", 7), ("93", 7),
           ("96", 7)],
    "GB": [(p, 6) for p in ("7400", "7412", "7508", "7530", "7712", "7800", "7825",
                            "7900", "7944", "7890")] + [("207", 7), ("203", 7)],
    "DE": [("1512", 7), ("1520", 7), ("1575", 7), ("176", 8), ("171", 8), ("160", 7),
           ("30", 8), ("89", 8), ("40", 8), ("221", 7)],
}
COUNTRY_CODE = {"US": "1", "RU": "7", "ES": "34", "GB": "44", "DE": "49"}


class LeadGenerator:
    """Deterministic rows of invented leads (same seed, same file)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.counters = {c: 0 for c in COUNTRIES}
        self.recent: list[tuple[str, str, str, str]] = []  # (country, prefix, rest, email)
        self.start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp()
        self.span = int((dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc).timestamp()
                         - self.start))

    # -- phones ----------------------------------------------------------------------
    def new_phone(self, country: str) -> tuple[str, str]:
        n = self.counters[country]
        self.counters[country] += 1
        plans = PHONE_PLANS[country]
        prefix, width = plans[n % len(plans)]
        space = 10 ** width
        # A bijection on 0..space-1 scatters consecutive counters into random-looking,
        # still unique, subscriber numbers.
        rest = ((n // len(plans)) * 7_368_787 + 1_234_567) % space
        rest = f"{rest:0{width}d}"
        if country == "US" and (rest[0] in "01" or rest[1:3] == "11"):
            rest = str(int(rest[0]) % 8 + 2) + ("5" if rest[1:3] == "11" else rest[1]) + rest[2:]
        return prefix, rest

    def render_phone(self, country: str, prefix: str, rest: str, international: bool) -> str:
        r = self.rng.random()
        nsn = prefix + rest
        if country == "US":
            a, e, l = prefix, rest[:3], rest[3:]
            forms = [f"+1 {a} {e} {l}", f"+1 ({a}) {e}-{l}", f"+1{a}{e}{l}",
                     f"+1-{a}-{e}-{l}"] if international else [
                f"({a}) {e}-{l}", f"{a}-{e}-{l}", f"{a}.{e}.{l}", f"{a}{e}{l}",
                f"1-{a}-{e}-{l}", f"+1 {a} {e} {l}", f"+1 ({a}) {e}-{l}", f"{a} {e} {l}"]
        elif country == "RU":
            c, x, y, z = prefix, rest[:3], rest[3:5], rest[5:]
            forms = [f"+7 {c} {x}-{y}-{z}", f"+7 ({c}) {x} {y} {z}", f"+7{nsn}",
                     f"+7 {c} {rest}"] if international else [
                f"8 ({c}) {x}-{y}-{z}", f"8{nsn}", f"+7 {c} {x}-{y}-{z}", f"+7{nsn}",
                f"8-{c}-{x}-{y}-{z}", f"+7 ({c}) {x} {y} {z}", f"7{nsn}", f"8 {c} {x} {y} {z}"]
        elif country == "ES":
            g = f"{nsn[:3]} {nsn[3:5]} {nsn[5:7]} {nsn[7:]}"
            g3 = f"{nsn[:3]} {nsn[3:6]} {nsn[6:]}"
            forms = [f"+34 {g3}", f"+34{nsn}", f"+34 {g}", f"0034 {g3}"] if international else [
                g, nsn, g3, f"+34 {g3}", f"+34{nsn}", f"{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}"]
        elif country == "GB":
            if prefix.startswith("7"):
                local = f"0{prefix} {rest}"
                intl = [f"+44 {prefix} {rest}", f"+44{nsn}", f"+44 (0){prefix} {rest}",
                        f"0044 {prefix} {rest}"]
            else:  # London: 020 XXXX XXXX
                local = f"020 {nsn[2:6]} {nsn[6:]}"
                intl = [f"+44 20 {nsn[2:6]} {nsn[6:]}", f"+44{nsn}", f"+44 (0)20 {nsn[2:6]} {nsn[6:]}",
                        f"0044 20 {nsn[2:6]} {nsn[6:]}"]
            forms = intl if international else [local, local.replace(" ", ""), intl[0], intl[1],
                                                f"({local[:4].strip()}) {local[4:].strip()}"]
        else:  # DE
            forms = [f"+49 {prefix} {rest}", f"+49{nsn}", f"+49 (0){prefix} {rest}",
                     f"0049 {prefix} {rest}"] if international else [
                f"0{prefix} {rest}", f"0{prefix}/{rest}", f"0{prefix}-{rest}", f"0{nsn}",
                f"+49 {prefix} {rest}", f"+49 (0){prefix} {rest}", f"+49{nsn}"]
        # Common shapes first: weight the first forms more.
        return forms[min(int(r * r * len(forms)), len(forms) - 1)]

    # -- emails ----------------------------------------------------------------------
    def new_email(self, first_ascii: str, last_ascii: str, serial: int) -> str:
        rng = self.rng
        tag = f"{serial:x}" if rng.random() < 0.5 else str(serial)
        shape = rng.random()
        if shape < 0.30:
            local = f"{first_ascii}.{last_ascii}.{tag}"
        elif shape < 0.45:
            local = f"{first_ascii}{last_ascii}{tag}"
        elif shape < 0.55:
            local = f"{first_ascii[0]}.{last_ascii}{tag}"
        elif shape < 0.65:
            local = f"{first_ascii}_{last_ascii}_{tag}"
        elif shape < 0.73:
            local = f"{first_ascii}.{last_ascii}+news{tag}"
        elif shape < 0.80:
            local = f"{first_ascii}-{last_ascii}-{tag}"
        elif shape < 0.90:
            local = f"{first_ascii}{tag}"
        elif shape < 0.99:
            local = f"{last_ascii}.{first_ascii[0]}{tag}"
        else:  # internationalised mailbox (SMTPUTF8), handled by the library
            local = f"почта.{tag}" if rng.random() < 0.5 else f"josé.{tag}"
        return f"{local}@{rng.choice(DOMAINS)}"

    def shown_email(self, email: str) -> str:
        r = self.rng.random()
        if r < 0.04:
            return email.upper()
        if r < 0.10:
            local, _, domain = email.partition("@")
            return f"{local.capitalize()}@{domain.capitalize()}"
        if r < 0.12:
            return f" {email} "
        return email

    # -- the rest --------------------------------------------------------------------
    def consent_at(self, country: str) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.005:
            return ""
        if r < 0.008:
            return "2027-03-01T10:00:00Z"  # in the future
        if r < 0.010:
            return rng.choice(["yesterday", "n/a", "31.02.2025 10:00"])
        stamp = self.start + rng.randrange(self.span)
        when = dt.datetime.fromtimestamp(stamp, dt.timezone.utc)
        f = rng.random()
        if f < 0.35:
            return when.strftime("%Y-%m-%dT%H:%M:%SZ")
        if f < 0.55:
            return when.strftime("%Y-%m-%d %H:%M:%S")
        if f < 0.65:
            return when.astimezone(dt.timezone(dt.timedelta(hours=3))).isoformat()
        if f < 0.80:
            return when.strftime("%d.%m.%Y %H:%M") if country != "US" else when.strftime(
                "%m/%d/%Y %H:%M")
        if f < 0.90:
            return str(int(stamp))
        return when.strftime("%Y/%m/%d %H:%M")

    def age_fields(self, country: str) -> tuple[str, str]:
        rng = self.rng
        r = rng.random()
        if r < 0.01:  # underage or implausible
            return rng.choice([("16", ""), ("130", ""), ("", "2012-06-01"), ("abc", "")])
        if r < 0.10:
            return "", ""
        if r < 0.60:
            age = rng.randint(18, 80)
            return rng.choice([str(age), str(age), f"{age} years", f"{age} лет", f"{age}.0"]), ""
        born = dt.date(1946, 1, 1) + dt.timedelta(days=rng.randrange(365 * 60))
        f = rng.random()
        if f < 0.5:
            text = born.isoformat()
        elif f < 0.8:
            text = born.strftime("%m/%d/%Y") if country == "US" else born.strftime("%d.%m.%Y")
        else:
            text = born.strftime("%Y/%m/%d")
        return "", text

    def row(self, i: int) -> list[str]:
        rng = self.rng
        country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
        firsts, lasts = NAMES[country]
        first, first_ascii, sex = rng.choice(firsts)
        last, last_ascii = rng.choice(lasts)
        if country == "RU" and sex == "f":
            last, last_ascii = last + "а", last_ascii + "a"
        if rng.random() < 0.03:
            first, last = f"  {first}", f"{last.upper()} "  # untidy cells

        country_cell = rng.choice(COUNTRY_SPELLINGS[country]) if rng.random() < 0.8 else ""
        r = rng.random()
        if r < 0.01:
            region_cell = UNKNOWN_PLACES[country]
        elif r < 0.76:
            region_cell = rng.choice(REGIONS[country])
        else:
            region_cell = ""
        placed = bool(country_cell or region_cell)

        # Contact: a few % duplicates of a recent row (re-formatted), some missing parts.
        prefix, rest = self.new_phone(country)
        email = self.new_email(first_ascii, last_ascii, i)
        r = rng.random()
        if r < 0.03 and self.recent:
            dcountry, dprefix, drest, demail = rng.choice(self.recent)
            how = rng.random()
            if dcountry == country and how < 0.75:
                prefix, rest = dprefix, drest
            if how >= 0.25 or dcountry != country:
                email = demail
        else:
            self.recent.append((country, prefix, rest, email))
            if len(self.recent) > 20_000:
                self.recent = self.recent[10_000:]
        phone = self.render_phone(country, prefix, rest, international=not placed)
        email_cell = self.shown_email(email)
        r = rng.random()
        if r < 0.02:
            phone = rng.choice(BAD_PHONES)
        elif r < 0.10:
            phone = ""
        r = rng.random()
        if r < 0.02:
            email_cell = rng.choice(BAD_EMAIL_SHAPES).format(u=first_ascii, d=rng.choice(DOMAINS))
        elif r < 0.12 and phone:
            email_cell = ""
        if rng.random() < 0.003:
            phone = email_cell = ""

        age, birth = self.age_fields(country)
        g = rng.random()
        gender = rng.choice(GENDER_SPELLINGS[sex]) if g < 0.85 else rng.choice(OTHER_GENDERS)
        interests = ""
        if rng.random() < 0.4:
            sep = rng.choice(["; ", ", ", "|", ";"])
            interests = sep.join(rng.sample(INTERESTS, rng.randint(1, 4)))
        u = rng.random()
        if u < 0.003:
            url = ""
        elif u < 0.10:
            url = rng.choice(SOURCE_URLS).split("://", 1)[1] + "?utm_source=fb"
        else:
            url = rng.choice(SOURCE_URLS) + (f"?utm_campaign=c{rng.randint(1, 99)}"
                                             if rng.random() < 0.3 else "")
        ip = ""
        if rng.random() < 0.7:
            ip = (f"2001:db8::{rng.randint(1, 0xffff):x}" if rng.random() < 0.1 else
                  f"{rng.choice(['203.0.113', '198.51.100', '192.0.2'])}.{rng.randint(1, 254)}")
        return [first, last, email_cell, phone, age, birth, gender, region_cell, country_cell,
                rng.choice(MARITAL) if rng.random() < 0.5 else "",
                rng.choice(EMPLOYED) if rng.random() < 0.5 else "",
                interests, self.consent_at(country), url, rng.choice(CONSENT_TEXTS), ip]


def dataset(rows: int, seed: int) -> tuple[Path, float | None]:
    """The cached CSV for (rows, seed); generated when missing. (path, seconds or None)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"leads-{rows}-seed{seed}-v{GEN_VERSION}.csv"
    if path.exists():
        return path, None
    started = time.perf_counter()
    gen = LeadGenerator(seed)
    partial = path.with_suffix(".part")
    with open(partial, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADER)
        batch = []
        for i in range(rows):
            batch.append(gen.row(i))
            if len(batch) == 10_000:
                writer.writerows(batch)
                batch = []
        writer.writerows(batch)
    partial.rename(path)
    return path, time.perf_counter() - started


def verdict_mix(path: Path, sample: int = 20_000) -> dict:
    """The app's own verdicts (validate_row only, no dedupe) on the file's first rows."""
    sys.path.insert(0, str(ROOT))
    from collections import Counter

    from app.services.ingest.fields import map_headers
    from app.services.ingest.validate import RowContext, validate_row

    ctx = RowContext(DEFAULT_COUNTRY, dt.datetime.now(dt.timezone.utc))
    counts: Counter = Counter()
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        hmap = map_headers(next(reader))
        for n, values in enumerate(reader):
            if n == sample:
                break
            counts[validate_row(hmap.pick(values), ctx).code or "accepted"] += 1
    total = sum(counts.values())
    return {code: round(100 * c / total, 2) for code, c in counts.most_common()}


# =====================================================================================
# 2. Baselines
# =====================================================================================
def bench_csv_reader(path: Path) -> dict:
    started = time.perf_counter()
    n = 0
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for _ in reader:
            n += 1
    return {"rows": n, "seconds": time.perf_counter() - started}


def bench_copy(path: Path, dsn: str) -> dict:
    import psycopg

    cols = ", ".join(f'"{h}" text' for h in HEADER)
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_leads")
        conn.execute(f"CREATE TABLE bench_raw_leads ({cols})")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, open(path, "rb") as f:
            with cur.copy("COPY bench_raw_leads FROM STDIN (FORMAT csv, HEADER true)") as copy:
                while data := f.read(1 << 20):
                    copy.write(data)
        conn.commit()
        seconds = time.perf_counter() - started
        n = conn.execute("SELECT count(*) FROM bench_raw_leads").fetchone()[0]
        conn.execute("DROP TABLE bench_raw_leads")
        conn.commit()
    return {"rows": n, "seconds": seconds}


NAIVE_PLACES = {
    **{value.upper(): code for code, values in REGIONS.items() for value in values},
    **{value.upper(): code for code, values in COUNTRY_SPELLINGS.items() for value in values},
}


def bench_naive(path: Path, db_path: Path | None = None, dsn: str | None = None,
                commit_every: int = 5000) -> dict:
    """The pipeline anyone would write first: one process, the libraries row by row,
    inserting into SQLite (`db_path`) or PostgreSQL (`dsn`)."""
    import phonenumbers
    from email_validator import EmailNotValidError, validate_email

    table = ("CREATE TABLE naive_leads (row_number INTEGER, first_name TEXT, last_name TEXT, "
             "email TEXT, phone TEXT, age TEXT, birth_date TEXT, gender TEXT, "
             "region TEXT, country TEXT, consent_at TEXT, source_url TEXT)")
    if dsn is None:
        db_path.unlink(missing_ok=True)
        conn = sqlite3.connect(db_path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # same durability as the app's SQLite
        placeholder = "?"
    else:
        import psycopg

        conn = psycopg.connect(dsn)  # a fresh database, dropped afterwards (main)
        placeholder = "%s"
    conn.execute(table)
    conn.commit()
    sql = f"INSERT INTO naive_leads VALUES ({', '.join([placeholder] * 12)})"
    accepted = rejected = 0
    pending = []
    started = time.perf_counter()
    with open(path, encoding="utf-8", newline="") as f:
        for number, row in enumerate(csv.DictReader(f), start=2):
            phone_raw, email_raw = row["phone"].strip(), row["email"].strip()
            if not phone_raw and not email_raw:
                rejected += 1
                continue
            phone = email = None
            if phone_raw:
                # A hand-made lookup of the file's country/region spellings, so the
                # baseline reads national numbers like the real path (and does as much
                # work per row) instead of rejecting them.
                region = (NAIVE_PLACES.get(row["country"].strip().upper())
                          or NAIVE_PLACES.get(row["region"].strip().upper())
                          or DEFAULT_COUNTRY)
                try:
                    parsed = phonenumbers.parse(phone_raw, region)
                except phonenumbers.NumberParseException:
                    rejected += 1
                    continue
                if not phonenumbers.is_valid_number(parsed):
                    rejected += 1
                    continue
                phone = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            if email_raw:
                try:
                    email = validate_email(email_raw, check_deliverability=False).normalized
                except EmailNotValidError:
                    rejected += 1
                    continue
            pending.append((number, row["first_name"], row["last_name"], email, phone,
                            row["age"], row["birth_date"], row["gender"], row["region"],
                            row["country"], row["consent_at"], row["source_url"]))
            accepted += 1
            if len(pending) >= commit_every:
                conn.cursor().executemany(sql, pending)
                conn.commit()
                pending = []
    if pending:
        conn.cursor().executemany(sql, pending)
        conn.commit()
    seconds = time.perf_counter() - started
    conn.close()
    if dsn is None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    return {"rows": accepted + rejected, "seconds": seconds, "accepted": accepted,
            "rejected": rejected}


# =====================================================================================
# 3. The real upload path, in a child process whose tree the parent measures
# =====================================================================================
def child_real(spec: dict) -> None:
    """Runs in a fresh interpreter: set up, say READY, wait for GO, run, report."""
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import logging

    logging.basicConfig(level=logging.WARNING)
    import sqlalchemy as sa

    from app import create_app
    from app.core import events
    from app.extensions import db
    from app.models import Batch, Lead, Rejection, User
    from app.services.ingest import pipeline, workers

    def send(kind: str, **payload) -> None:
        sys.stdout.write(json.dumps({"kind": kind, **payload}) + "\n")
        sys.stdout.flush()

    app = create_app("development", SQLALCHEMY_DATABASE_URI=spec["url"],
                     UPLOAD_DIR=spec["upload_dir"], INGEST_WORKERS=spec["workers"],
                     INGEST_CHUNK_ROWS=spec["chunk"], ARGON2_PROFILE="CHEAPEST")
    with app.app_context():
        seller = db.session.scalar(sa.select(User).where(User.email == BENCH_SELLER))
        # The pool lives as long as the web/Celery process: start it before the clock.
        started = time.perf_counter()
        pool = workers.pool_for(app.config)
        if isinstance(pool, workers.WorkerPool):
            futures = [pool._executor.submit(time.sleep, 0.3) for _ in range(pool.processes)]
            for future in futures:
                future.result()
        pool_seconds = time.perf_counter() - started

        send("ready")
        sys.stdin.readline()  # GO: the parent has reset the peak-memory counters

        profiler = None
        if spec.get("profile"):
            import cProfile

            profiler = cProfile.Profile()
        started = time.perf_counter()
        with open(spec["csv"], "rb") as f:
            token = pipeline.stage_upload(seller, f)
        with events.muted():  # processed below, under the clock, not by a background job
            batch = pipeline.create_batch(seller, token, Path(spec["csv"]).name,
                                          pipeline.check_terms(DEFAULT_COUNTRY, 0, 3, None))
            db.session.commit()
        checked = time.perf_counter()
        if profiler:
            profiler.enable()
        pipeline.process_batch(batch.id)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        db.session.expire_all()
        batch = db.session.get(Batch, batch.id)
        codes = dict(db.session.execute(
            sa.select(Rejection.code, sa.func.count()).where(Rejection.batch_id == batch.id)
            .group_by(Rejection.code)).all())
        leads = db.session.scalar(sa.select(sa.func.count()).select_from(Lead)
                                  .where(Lead.batch_id == batch.id))
        result = {
            "seconds": seconds, "stage_and_check_seconds": checked - started,
            "pool_start_seconds": pool_seconds, "status": batch.status.value,
            "rows": batch.rows_total, "accepted": batch.accepted, "rejected": batch.rejected,
            "cross_seller_duplicates": batch.cross_seller_duplicates, "leads_stored": leads,
            "rejection_codes": dict(sorted(codes.items(), key=lambda kv: -kv[1])),
            "error": batch.error_message,
        }
        if profiler:
            import io
            import pstats

            profiler.dump_stats(spec["profile"])
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
            result["profile_text"] = text.getvalue()
        send("result", **result)
        sys.stdin.readline()  # BYE: the parent has read every process's VmHWM
        if spec.get("validate_sample"):
            send("parts", **parts_alone(batch.id, spec))
        db.session.remove()


BENCH_SELLER = "bench-seller@example.com"


def child_migrate(url: str) -> None:
    """The schema and the bench's seller, made by a process of its own as a
    deployment's `flask db upgrade` and its web process's sign-ups are: the ingesting
    process never imports Alembic and the migrations (~16 MB), nor the password
    rater's word lists (~13 MB)."""
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.models import Role, TrustLevel
    from app.services import accounts, ledger

    app = create_app("development", SQLALCHEMY_DATABASE_URI=url, ARGON2_PROFILE="CHEAPEST")
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        seller = accounts.create_user(BENCH_SELLER, "bench password 12345", Role.SELLER)
        seller.trust_level = TrustLevel.VERIFIED
        ledger.open_accounts_for(seller)
        db.session.commit()


def parts_alone(batch_id: int, spec: dict) -> dict:
    """The real path's two unavoidable parts measured alone, on the run's own data, in
    the benchmark's child process (app context open):

    storing: the batch's accepted rows read back in the form the workers hand over and
    written again as the real path writes them into a copy of the leads table (same
    indexes, checks and foreign keys), a chunk per transaction as the real path commits
    (_store_again). Only the writes are timed; nothing else the storing process does (reading the file, dedupe
    lookups, rejections) is counted. CPU: this process's, plus the PostgreSQL backend's.
    Then once more without the indexes whose keys arrive in random order (the contact
    hashes): what their maintenance costs.
    validating: what a worker runs per chunk (workers._validate_in_worker: parse its
    block, validate, normalise, seal, hash, score, the cyclic collector paused) on the
    file's first rows, in one process.

    A ceiling follows: on the machine's CPUs, no ingest of this file can beat
    cpus / (validating + storing CPU per file row); on SQLite the storing is also
    one writer, so not faster than its own rows/s either."""
    import base64

    from flask import current_app

    from app.extensions import db
    from app.models import Batch
    from app.services.ingest import workers
    from app.services.ingest.reader import open_csv
    from app.services.ingest.validate import RowContext

    config = current_app.config
    batch = db.session.get(Batch, batch_id)
    postgres = db.session.get_bind().dialect.name == "postgresql"
    stored = _store_again(batch, spec["url"], config)
    # Again with their contact keys, which the real path writes too (dedupe).
    keyed = _store_again(batch, spec["url"], config, keys=True)

    # Validation, one process, on the file's first rows.
    sample, chunk = spec["validate_sample"], config["INGEST_CHUNK_ROWS"]
    # Exactly what a worker runs per chunk (with the cyclic collector paused).
    workers._init_worker(base64.urlsafe_b64encode(os.urandom(32)).decode())
    ctx = RowContext(DEFAULT_COUNTRY, batch.created_at)

    storage = workers.STORAGE_OF["postgresql" if postgres else "sqlite"]  # the real path's
    validated, v_cpu = 0, 0.0
    with open_csv(spec["csv"], mapping={}) as source:
        fields = source.header_map.fields
        for block in source.blocks(chunk):
            c = time.process_time()
            workers._validate_in_worker(block, fields, ctx, storage)
            v_cpu += time.process_time() - c
            validated += block.rows
            if validated >= sample:
                break
    rows_total = batch.rows_total
    wall, cpu, server = stored["wall"], stored["cpu"], stored["server"]
    store_cpu_per_row = (cpu + server + stored["stage_cpu"]) / rows_total
    validate_cpu_per_row = v_cpu / validated
    ceiling = (os.cpu_count() or 1) / (store_cpu_per_row + validate_cpu_per_row)
    keyed_cpu = keyed["cpu"] + keyed["server"] + keyed["stage_cpu"]
    if not postgres:
        ceiling = min(ceiling, rows_total / wall)
    return {"stored_rows": stored["rows"], "store_seconds": wall, "store_cpu_seconds": cpu,
            "store_server_cpu_seconds": server, "store_cpu_us_per_file_row":
            store_cpu_per_row * 1e6,
            "store_with_contact_keys": {
                "seconds": keyed["wall"],
                "cpu_us_per_file_row": keyed_cpu / rows_total * 1e6,
                "ceiling_rows_per_s": min(
                    (os.cpu_count() or 1) / (keyed_cpu / rows_total + validate_cpu_per_row),
                    float("inf") if postgres else rows_total / keyed["wall"])},
            "validated_rows": validated,
            "validate_cpu_us_per_row": validate_cpu_per_row * 1e6, "file_rows": rows_total,
            "cpus": os.cpu_count(), "ceiling_rows_per_s": ceiling}


def _store_again(batch, url: str, config, keys: bool = False) -> dict:
    """The batch's accepted rows read back in the form the workers hand over and
    written again as the real path writes them into a copy of the leads table (same
    indexes, checks and foreign keys), a chunk per transaction as the real path commits:
    on SQLite staged as the workers stage them before their turn (its CPU apart,
    `stage_cpu`: no part of the one writer's time) and copied in with the plan's
    INSERT ... SELECT; on PostgreSQL a binary COPY of rows
    packed by copy_ready (untimed, as the workers pack them). With `keys`, their contact
    keys too (sorted, storing.write_keys) when the real path writes them: on PostgreSQL
    with each chunk, on SQLite once INGEST_KEYS_ROWS leads' keys wait
    (storing.UnwrittenKeys) and at the end; into an empty contact_keys, as the run's
    own grew from empty (the run's is set aside meanwhile). Only the writes are timed:
    wall, this process's CPU and the PostgreSQL backend's."""
    import sqlalchemy as sa

    from app.core.bulk import SessionConnection
    from app.extensions import db
    from app.models import Lead, LeadStatus
    from app.services.ingest import copy_ready, pipeline, storing, workers

    columns = workers.ACCEPTED_COLUMNS + ("cross_seller_duplicate", "id")
    connection = db.session.connection()
    postgres = connection.dialect.name == "postgresql"
    driver = connection.connection.driver_connection
    if postgres:
        driver.execute("CREATE TABLE floor_leads (LIKE leads INCLUDING ALL EXCLUDING INDEXES)")
        for (definition,) in driver.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'leads'::regclass AND contype = 'f'").fetchall():
            driver.execute(f"ALTER TABLE floor_leads ADD {definition}")
        for name, sql in driver.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'leads'").fetchall():
            driver.execute(re.sub(rf"INDEX {name} ON \S+", f"INDEX floor_{name} ON floor_leads",
                                  sql))  # the primary key's too, as a unique index
        backend_pid = driver.execute("SELECT pg_backend_pid()").fetchone()[0]
    else:
        ddl = driver.execute("SELECT sql FROM sqlite_master WHERE name = 'leads'").fetchone()[0]
        driver.execute(re.sub(r'^CREATE TABLE "?leads"?', "CREATE TABLE floor_leads", ddl))
        for name, sql in driver.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'leads' AND sql IS NOT NULL").fetchall():
            driver.execute(re.sub(rf'INDEX "?{name}"? ON "?leads"?',
                                  f"INDEX floor_{name} ON floor_leads", sql))
        backend_pid = None
    if keys:  # storing.write_keys writes into contact_keys: an empty one meanwhile
        driver.execute("ALTER TABLE contact_keys RENAME TO run_contact_keys")
        if postgres:
            driver.execute("CREATE TABLE contact_keys (LIKE run_contact_keys INCLUDING ALL)")
        else:
            ddl = driver.execute("SELECT sql FROM sqlite_master "
                                 "WHERE name = 'run_contact_keys'").fetchone()[0]
            driver.execute(re.sub(r'^CREATE TABLE "?run_contact_keys"?',
                                  "CREATE TABLE contact_keys", ddl))
    db.session.commit()
    floor = Lead.__table__.to_metadata(sa.MetaData(), name="floor_leads")
    plan = pipeline.storing_plan(pipeline.BatchRun(
        batch.id, batch.seller_id, batch.floor_price, batch.cap, 0,
        lead_status=LeadStatus.LIVE, created_at=batch.created_at), floor)
    e_at, p_at = plan.hashes

    def backend_cpu() -> float:  # utime + stime of the PostgreSQL backend, in seconds
        if backend_pid is None:
            return 0.0
        fields = Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # Read back through a second connection, streamed (untimed).
    select = ", ".join("interests::text" if postgres and c == "interests" else c
                       for c in columns)
    query = f"SELECT {select} FROM leads WHERE batch_id = {batch.id} ORDER BY id"
    if postgres:
        import psycopg

        url = sa.engine.make_url(url).set(drivername="postgresql")
        reader = psycopg.connect(url.render_as_string(hide_password=False))
        cursor = reader.cursor(name="floor")  # server-side: memory stays flat
        cursor.execute(query)
    else:
        import sqlite3

        reader = sqlite3.connect(sa.engine.make_url(url).database)
        cursor = reader.execute(query)
    chunk = config["INGEST_CHUNK_ROWS"]
    # The keys of this many leads wait at most (workers.pool_for), two a lead.
    room = 2 * int(config["INGEST_KEYS_ROWS"] or 0) if plan.defer_keys else 0
    stored, wall, cpu, stage_cpu, waiting = 0, 0.0, 0.0, 0.0, []
    server_before = backend_cpu()
    # SQLite: a worker's own connection, which stages a chunk's leads before its turn,
    # and the session holds nothing (reading the batch began a transaction: the lock).
    writer = SessionConnection() if postgres else storing.OwnConnection("sqlite", plan.database)
    db.session.commit()
    while rows := cursor.fetchmany(chunk):
        if postgres:  # packed as the workers pack them, with their flag and id after
            packed = copy_ready.pack(workers.ACCEPTED_COLUMNS, [r[:-2] for r in rows])
            rows = [p + r[-2:] for p, r in zip(packed, rows)]
        else:
            c = time.process_time()
            storing._stage(writer.driver, plan, [r[:-2] for r in rows],
                           [at for at, r in enumerate(rows) if r[-2]])
            stage_cpu += time.process_time() - c
        unwritten = storing.key_rows(rows, e_at, p_at, [r[-1] for r in rows])
        if len(waiting) + len(unwritten) < room:  # they wait (storing.UnwrittenKeys.add)
            waiting, unwritten = waiting + unwritten, []
        else:  # written with this chunk's, as the chunk that fills the table does
            waiting, unwritten = [], waiting + unwritten
        t, c = time.perf_counter(), time.process_time()
        writer.begin()
        if postgres:
            storing.write_leads(writer, plan, rows)
        else:  # ids from the chunk's first lead's on: no two chunks overlap, ids grow
            writer.driver.execute(plan.copy_staged_sql, (rows[0][-1] - 1,))
        if keys:
            storing.write_keys(writer, unwritten)
        writer.commit()
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
        if not postgres:
            writer.driver.execute(f"DELETE FROM temp.{storing.STAGED_LEADS}")
        stored += len(rows)
    if keys and waiting:  # at the run's end, in a transaction of their own
        t, c = time.perf_counter(), time.process_time()
        writer.begin()
        storing.write_keys(writer, waiting)
        writer.commit()
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
    server = backend_cpu() - server_before
    reader.close()
    if not postgres:
        writer.close()
    driver = db.session.connection().connection.driver_connection
    driver.execute("DROP TABLE floor_leads")
    if keys:
        driver.execute("DROP TABLE contact_keys")
        driver.execute("ALTER TABLE run_contact_keys RENAME TO contact_keys")
    db.session.commit()
    return {"rows": stored, "wall": wall, "cpu": cpu, "server": server, "stage_cpu": stage_cpu}


class TreeSampler(threading.Thread):
    """Peak RSS and PSS (each summed over a process and its descendants), sampled
    every 50 ms without taking much CPU from the run it measures (`cpu_seconds`: its
    own). Reading a process's PSS (smaps_rollup) walks its page tables, 2 ms or more
    for a worker, so it is read once a second; in between a process's PSS is its
    anonymous RSS (/proc/<pid>/status, cheap) plus its shared part as last read. Every
    process of the tree is started by exec (subprocess, multiprocessing's spawn), so
    none shares anonymous pages: their PSS is their RSS; only files and shared memory
    (libraries, SQLite's WAL index, the pool's arrays) are shared, and those change
    slowly. The tree is listed again once a second (the run's workers start before
    the clock)."""

    def __init__(self, pid: int, interval: float = 0.05, slow_every: float = 1.0):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(pid)
        self.interval, self.slow_every = interval, slow_every
        self.active = threading.Event()
        self.stop = threading.Event()
        self.peak_sum = 0  # RSS, summed over the tree
        self.peak_pss_sum = 0  # PSS, summed over the tree (what the target is held to)
        self.peak_by_pid: dict[int, int] = {}
        self.pss_peak_by_pid: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.cpu_seconds = 0.0  # this thread's, while active

    def tree(self) -> list:
        try:
            return [self.root] + self.root.children(recursive=True)
        except self.psutil.NoSuchProcess:
            return []

    def run(self) -> None:
        tree, shared, slow_at = [], {}, 0.0
        while not self.stop.is_set():
            if self.active.is_set():
                cpu_before = time.thread_time()
                if time.monotonic() - slow_at >= self.slow_every:
                    tree, slow_at = self.tree(), time.monotonic()
                    shared = {proc.pid: _shared_pss(proc.pid) for proc in tree}
                total = total_pss = 0
                for proc in tree:
                    rss, anon = _status_kbs(proc.pid, "VmRSS", "RssAnon")
                    if rss is None or anon is None or shared.get(proc.pid) is None:
                        continue  # gone
                    rss, pss = rss * 1024, (anon + shared[proc.pid]) * 1024
                    total += rss
                    total_pss += pss
                    if rss > self.peak_by_pid.get(proc.pid, 0):
                        self.peak_by_pid[proc.pid] = rss
                    if pss > self.pss_peak_by_pid.get(proc.pid, 0):
                        self.pss_peak_by_pid[proc.pid] = pss
                    if proc.pid not in self.names:
                        try:
                            self.names[proc.pid] = _role(proc.cmdline())
                        except self.psutil.Error:
                            self.names[proc.pid] = "?"
                self.peak_sum = max(self.peak_sum, total)
                self.peak_pss_sum = max(self.peak_pss_sum, total_pss)
                self.cpu_seconds += time.thread_time() - cpu_before
            time.sleep(self.interval)


def _shared_pss(pid: int) -> int | None:
    """A process's PSS of files and shared memory (kB), from smaps_rollup."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    return sum(int(line.split()[1]) for line in text.splitlines()
               if line.startswith(("Pss_File:", "Pss_Shmem:")))


def _role(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    if "--child-real" in text:
        return "main"
    if "resource_tracker" in text:
        return "resource_tracker"
    if "spawn_main" in text or "multiprocessing" in text:
        return "worker"
    return Path(cmdline[0]).name if cmdline else "?"


def _status_kb(pid: int, field: str) -> int | None:
    return _status_kbs(pid, field)[0]


def _status_kbs(pid: int, *fields: str) -> tuple[int | None, ...]:
    """Fields of /proc/<pid>/status in kB, read at once (None: the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return (None,) * len(fields)
    found = {line.split(":")[0]: int(line.split()[1]) for line in lines
             if line.startswith(fields)}
    return tuple(found.get(field) for field in fields)


def run_real(label: str, csv_path: Path, url: str, workers: int, chunk: int,
             profile: str | None = None, pyspy: str | None = None,
             validate_sample: int = 0) -> dict:
    upload_dir = TMP / f"uploads-{label}"
    shutil.rmtree(upload_dir, ignore_errors=True)
    upload_dir.mkdir(parents=True)
    spec = {"url": url, "csv": str(csv_path), "upload_dir": str(upload_dir),
            "workers": workers, "chunk": chunk, "profile": profile,
            "validate_sample": validate_sample}
    log_path = TMP / f"{label}.log"  # the child's stderr (alembic, warnings, tracebacks)
    log = open(log_path, "w")
    subprocess.run([sys.executable, __file__, "--child-migrate", url], stdout=log, stderr=log,
                   check=True, cwd=ROOT)
    proc = subprocess.Popen([sys.executable, __file__, "--child-real", json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                            text=True, cwd=ROOT)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    result: dict = {}
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if message["kind"] == "ready":
                for p in sampler.tree():  # peaks count from here (VmHWM reset)
                    try:
                        Path(f"/proc/{p.pid}/clear_refs").write_text("5")
                    except OSError:
                        pass
                sampler.active.set()
                if pyspy:
                    spy = subprocess.Popen(
                        ["py-spy", "record", "--pid", str(proc.pid), "--subprocesses",
                         "--rate", "250", "--format", "raw", "--output", pyspy],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1.0)  # let it attach before the clock starts
                proc.stdin.write("GO\n")
                proc.stdin.flush()
            elif message["kind"] == "result":
                sampler.active.clear()
                result = message
                hwm = {}
                for p in sampler.tree():
                    kb = _status_kb(p.pid, "VmHWM")
                    if kb is not None:
                        hwm[p.pid] = kb * 1024
                result["vmhwm_by_process_mb"] = {
                    f"{sampler.names.get(pid, '?')}:{pid}": round(b / 2**20, 1)
                    for pid, b in hwm.items()}
                result["vmhwm_sum_mb"] = round(sum(hwm.values()) / 2**20, 1)
                if pyspy:
                    spy.send_signal(2)  # SIGINT: py-spy writes its samples and exits
                    spy.wait(timeout=60)
                proc.stdin.write("BYE\n")
                proc.stdin.flush()
            elif message["kind"] == "parts":
                result["parts_alone"] = {k: v for k, v in message.items() if k != "kind"}
    finally:
        code = proc.wait()
        sampler.stop.set()
        sampler.join()
        shutil.rmtree(upload_dir, ignore_errors=True)
        log.close()
    if code != 0 or not result:
        sys.stderr.write(log_path.read_text()[-5000:])
        raise RuntimeError(f"real-path run {label} failed (exit {code}); see {log_path}")
    result["peak_rss_tree_mb"] = round(sampler.peak_sum / 2**20, 1)
    result["peak_pss_tree_mb"] = round(sampler.peak_pss_sum / 2**20, 1)
    result["sampler_cpu_seconds"] = round(sampler.cpu_seconds, 2)
    result["peak_rss_by_process_mb"] = {
        f"{sampler.names.get(pid, '?')}:{pid}": round(b / 2**20, 1)
        for pid, b in sampler.peak_by_pid.items()}
    result["peak_pss_by_process_mb"] = {
        f"{sampler.names.get(pid, '?')}:{pid}": round(b / 2**20, 1)
        for pid, b in sampler.pss_peak_by_pid.items()}
    result["workers"], result["chunk"] = workers, chunk
    result.pop("kind", None)
    return result


# =====================================================================================
# Report
# =====================================================================================
def _fmt_rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds else "-"


def print_report(res: dict) -> list[tuple[str, bool, str]]:
    rows = res["config"]["rows"]
    base = res["baselines"]
    csv_rate = base["csv_reader"]["rows"] / base["csv_reader"]["seconds"]
    copy = base.get("pg_copy")
    copy_rate = copy["rows"] / copy["seconds"] if copy else None
    naive = base["naive"]
    naive_rate = naive["rows"] / naive["seconds"]
    # Each backend's real path against the straightforward pipeline on that backend.
    naive_rates = {backend: base[name]["rows"] / base[name]["seconds"]
                   for backend, name in (("sqlite", "naive"), ("postgresql", "naive_postgresql"))
                   if name in base}

    def naive_rate_of(key: str) -> float:
        return naive_rates.get(key.split("-")[0], naive_rate)

    def ratio(rate: float, against: float | None) -> str:
        return f"{rate / against:.2f}x" if against else "-"

    lines = []
    head = (f"{'measurement':<44} {'rows':>10} {'sec':>8} {'rows/s':>10} {'vs csv':>7} "
            f"{'vs COPY':>8} {'vs naive':>9} {'accepted':>9} {'rejected':>9} {'PSS/RSS MB':>11}")
    # vs naive: against the straightforward pipeline on the row's own backend
    lines.append(head)
    lines.append("-" * len(head))

    def add(name, n, sec, accepted="", rejected="", peak="", against=naive_rate):
        rate = n / sec
        lines.append(f"{name:<44} {n:>10,} {sec:>8.2f} {rate:>10,.0f} {ratio(rate, csv_rate):>7} "
                     f"{ratio(rate, copy_rate):>8} {ratio(rate, against):>9} "
                     f"{accepted!s:>9} {rejected!s:>9} {peak!s:>11}")

    add("a. csv.reader parse", base["csv_reader"]["rows"], base["csv_reader"]["seconds"])
    if copy:
        add("b. PostgreSQL COPY -> text table", copy["rows"], copy["seconds"])
    add("c. straightforward 1-proc (SQLite)", naive["rows"], naive["seconds"],
        f"{naive['accepted']:,}", f"{naive['rejected']:,}")
    if "naive_postgresql" in base:
        on_pg = base["naive_postgresql"]
        add("c. straightforward 1-proc (PostgreSQL)", on_pg["rows"], on_pg["seconds"],
            f"{on_pg['accepted']:,}", f"{on_pg['rejected']:,}",
            against=naive_rates["postgresql"])
    for key, run in res["real"].items():
        add(f"d. real path {key} (w={run['workers']}, chunk={run['chunk']})", run["rows"],
            run["seconds"], f"{run['accepted']:,}", f"{run['rejected']:,}",
            f"{run['peak_pss_tree_mb']:.0f}/{run['peak_rss_tree_mb']:.0f}",
            against=naive_rate_of(key))
    print()
    print("\n".join(lines))

    print("\nreal path details (peak PSS and RSS per process; VmHWM sum is an upper bound):")
    for key, run in res["real"].items():
        print(f"  {key:<18} status={run['status']} cross_dup={run['cross_seller_duplicates']} "
              f"stage+check={run['stage_and_check_seconds']:.2f}s "
              f"pool start={run['pool_start_seconds']:.2f}s (not timed) "
              f"tree peak PSS={run['peak_pss_tree_mb']:.0f} MB RSS={run['peak_rss_tree_mb']:.0f} MB "
              f"VmHWM sum={run['vmhwm_sum_mb']:.0f} MB "
              f"sampler CPU={run.get('sampler_cpu_seconds', 0):.1f}s")
        print(f"  {'':<18} per process PSS/RSS: " + ", ".join(
            f"{k.split(':')[0]} {run['peak_pss_by_process_mb'].get(k, 0):.0f}/{v:.0f}"
            for k, v in run["peak_rss_by_process_mb"].items()))
        print(f"  {'':<18} rejections: " + ", ".join(
            f"{k} {v:,}" for k, v in run["rejection_codes"].items()))

    parts = {key: run["parts_alone"] for key, run in res["real"].items() if "parts_alone" in run}
    if parts:
        print("\nthe parts alone (parts_alone), and the ceiling they set on "
              f"{next(iter(parts.values()))['cpus']} CPUs:")
        for key, p in parts.items():
            print(f"  {key:<18} storing {p['stored_rows']:,} accepted rows again: "
                  f"{p['store_seconds']:.2f} s ({p['file_rows'] / p['store_seconds']:,.0f} file "
                  f"rows/s), {p['store_cpu_us_per_file_row']:.0f} µs CPU per file row"
                  + (f" ({p['store_server_cpu_seconds']:.1f} s of it the server's)"
                     if p["store_server_cpu_seconds"] else "") + ";")
            keyed = p["store_with_contact_keys"]
            print(f"  {'':<18} storing them with their contact keys: {keyed['seconds']:.2f} s, "
                  f"{keyed['cpu_us_per_file_row']:.0f} µs CPU per file row (ceiling "
                  f"{keyed['ceiling_rows_per_s'] / naive_rate_of(key):.2f}x);")
            print(f"  {'':<18} validating {p['validated_rows']:,} rows in one process: "
                  f"{p['validate_cpu_us_per_row']:.0f} µs CPU per row;")
            print(f"  {'':<18} ceiling {p['ceiling_rows_per_s']:,.0f} rows/s = "
                  f"{p['ceiling_rows_per_s'] / naive_rate_of(key):.2f}x straightforward "
                  f"(target {SPEED_TARGET:.0f}x)")

    checks: list[tuple[str, bool, str]] = []
    small = res["config"]["mem_rows"]
    print("\npeak PSS of the process tree by file size (MB; RSS sum in brackets):")
    print(f"  {'backend':<12} {small:>12,} rows {rows:>12,} rows   growth")
    for backend in res["backends"]:
        a = res["real"].get(f"{backend}-{small}")
        b = res["real"].get(f"{backend}-{rows}")
        if not (a and b):
            continue
        growth = b["peak_pss_tree_mb"] / a["peak_pss_tree_mb"]
        print(f"  {backend:<12} {a['peak_pss_tree_mb']:>11.0f} ({a['peak_rss_tree_mb']:>3.0f})"
              f" {b['peak_pss_tree_mb']:>11.0f} ({b['peak_rss_tree_mb']:>3.0f})   {growth:.2f}x")
        checks.append((f"memory flat with file size ({backend}: {small:,} -> {rows:,} rows)",
                       growth <= FLAT_TOLERANCE, f"{growth:.2f}x <= {FLAT_TOLERANCE}x"))

    for backend in res["backends"]:
        run = res["real"].get(f"{backend}-{rows}")
        if not run:
            continue
        rate, against = run["rows"] / run["seconds"], naive_rate_of(backend)
        checks.append((f"end to end >= {SPEED_TARGET:.0f}x straightforward ({backend})",
                       rate >= SPEED_TARGET * against,
                       f"{rate:,.0f} vs {against:,.0f} rows/s = {rate / against:.2f}x"))
        if against != naive_rate:
            print(f"\n{backend} against the straightforward pipeline on SQLite: "
                  f"{rate:,.0f} vs {naive_rate:,.0f} rows/s = {rate / naive_rate:.2f}x")
    for key, run in res["real"].items():
        checks.append((f"peak memory (PSS) < {MEMORY_TARGET_MB:.0f} MB ({key})",
                       run["peak_pss_tree_mb"] < MEMORY_TARGET_MB,
                       f"{run['peak_pss_tree_mb']:.0f} MB (RSS sum {run['peak_rss_tree_mb']:.0f})"))
    print("\ntargets:")
    for name, ok, detail in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<58} {detail}")
    return checks


# =====================================================================================
# Profiling (--profile): where the real path spends its time
# =====================================================================================
def _pyspy_summary(path: Path, top: int = 18) -> str:
    """Self and inclusive sample shares per function, by process role, from py-spy raw."""
    from collections import Counter, defaultdict

    self_t: dict[str, Counter] = defaultdict(Counter)
    incl: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        role = "worker" if "spawn_main" in stack else "main"
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        frames = [f for f in frames if f]
        if not frames:
            continue
        n = int(count)
        totals[role] += n
        self_t[role][frames[-1]] += n
        for f in set(frames):
            incl[role][f] += n
    out = []
    for role in sorted(totals):
        out.append(f"-- py-spy {role} process(es): {totals[role]} samples; top self time")
        for frame, n in self_t[role].most_common(top):
            out.append(f"   {100 * n / totals[role]:5.1f}%  {frame}")
        out.append(f"-- py-spy {role}: top inclusive (app code)")
        shown = 0
        for frame, n in incl[role].most_common():
            if "/app/" in frame or "app/services" in frame:
                out.append(f"   {100 * n / totals[role]:5.1f}%  {frame}")
                shown += 1
                if shown == top:
                    break
    return "\n".join(out)


def profile(small: Path, args, stamp: str) -> int:
    have_pyspy = shutil.which("py-spy") is not None
    for w in sorted({1, args.workers}):
        key = f"profile-w{w}"
        db_file = TMP / f"{key}.sqlite3"
        prof = OUT / f"ingest-{stamp}-{key}.pstats"
        spy = OUT / f"ingest-{stamp}-{key}.pyspy.txt" if have_pyspy else None
        print(f"profile: real path sqlite, {small.name}, workers={w} ...", flush=True)
        run = run_real(key, small, f"sqlite:///{db_file}", w, args.chunk, str(prof),
                       str(spy) if spy else None)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
        print(f"\n== workers={w}: {run['rows']:,} rows in {run['seconds']:.2f}s = "
              f"{run['rows'] / run['seconds']:,.0f} rows/s; tree peak "
              f"{run['peak_pss_tree_mb']:.0f} MB PSS, {run['peak_rss_tree_mb']:.0f} MB RSS")
        print(f"== cProfile of the main process (process_batch), by tottime ({prof.name})")
        print(run.pop("profile_text"))
        if spy and spy.exists():
            print(_pyspy_summary(spy))
    return 0


# =====================================================================================
def _app_chunk_rows() -> int:
    sys.path.insert(0, str(ROOT))
    from config import Config

    return Config.INGEST_CHUNK_ROWS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mem-rows", type=int, default=100_000,
                        help="second, smaller file for the memory-vs-size comparison "
                             "(default 100,000; rows/10 when --rows is not larger)")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=_app_chunk_rows(),
                        help="INGEST_CHUNK_ROWS (default: the app's own default)")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL (COPY and real)")
    parser.add_argument("--pg-dir", default="/tmp/leadx-bench-pg")
    parser.add_argument("--pg-port", type=int, default=55433)
    parser.add_argument("--profile", action="store_true",
                        help="instead of the benchmark: profile the real path (SQLite, "
                             "--mem-rows file) with 1 worker and with --workers: cProfile "
                             "of the main process, py-spy of the whole tree if installed")
    parser.add_argument("--child-real", help=argparse.SUPPRESS)
    parser.add_argument("--child-migrate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_real:
        child_real(json.loads(args.child_real))
        return 0
    if args.child_migrate:
        child_migrate(args.child_migrate)
        return 0

    try:
        import psutil
    except ImportError:
        sys.exit("psutil is needed to sample the process tree: pip install psutil")
    mem_rows = args.mem_rows if args.mem_rows < args.rows else max(1000, args.rows // 10)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    TMP.mkdir(parents=True, exist_ok=True)
    import email_validator
    import phonenumbers

    res: dict = {
        "config": {"rows": args.rows, "mem_rows": mem_rows, "seed": args.seed,
                   "workers": args.workers, "chunk": args.chunk,
                   "default_country": DEFAULT_COUNTRY},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "phonenumbers": phonenumbers.__version__,
                    "email_validator": email_validator.__version__,
                    "psutil": psutil.__version__, "loadavg_start": os.getloadavg()},
        "baselines": {}, "real": {}, "backends": ["sqlite"] + ([] if args.no_pg else ["postgresql"]),
    }

    print(f"data: {args.rows:,} rows (+{mem_rows:,} for the memory run), seed {args.seed}")
    big, gen_s = dataset(args.rows, args.seed)
    small, gen_small_s = dataset(mem_rows, args.seed)
    for path, s in ((big, gen_s), (small, gen_small_s)):
        print(f"  {path.relative_to(ROOT)}  {path.stat().st_size / 2**20:,.1f} MB  "
              + (f"generated in {s:.1f}s" if s is not None else "cached"))
    res["data"] = {"file": str(big), "bytes": big.stat().st_size, "small_file": str(small),
                   "verdict_mix_pct_first_20k": verdict_mix(big)}
    print("  verdict mix of the first 20k rows (validate_row only, %):",
          res["data"]["verdict_mix_pct_first_20k"])

    if args.profile:
        return profile(small, args, stamp)

    pg = None if args.no_pg else Postgres(args.pg_dir, args.pg_port)
    try:
        if pg:
            print(f"postgresql: {pg.start()}")
        print("a. csv.reader ...", flush=True)
        res["baselines"]["csv_reader"] = bench_csv_reader(big)
        if pg:
            print("b. COPY ...", flush=True)
            pg.fresh_database("leadx_bench_copy")
            res["baselines"]["pg_copy"] = bench_copy(big, pg.dsn("leadx_bench_copy"))
            pg.drop_database("leadx_bench_copy")
        print("c. straightforward pipeline ...", flush=True)
        res["baselines"]["naive"] = bench_naive(big, TMP / "naive.sqlite3")
        if pg:
            pg.fresh_database("leadx_bench_naive")
            res["baselines"]["naive_postgresql"] = bench_naive(
                big, dsn=pg.dsn("leadx_bench_naive"))
            pg.drop_database("leadx_bench_naive")

        for backend in res["backends"]:
            for n, path in ((mem_rows, small), (args.rows, big)):
                key = f"{backend}-{n}"
                print(f"d. real path {key} ...", flush=True)
                if backend == "sqlite":
                    db_file = TMP / f"real-{key}.sqlite3"
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
                    url = f"sqlite:///{db_file}"
                else:
                    db_name = f"leadx_bench_{n}"
                    url = pg.fresh_database(db_name)
                try:
                    res["real"][key] = run_real(
                        key, path, url, args.workers, args.chunk,
                        validate_sample=PARTS_SAMPLE if n == args.rows else 0)
                finally:
                    if backend == "sqlite":
                        for suffix in ("", "-wal", "-shm"):
                            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
                    else:
                        pg.drop_database(db_name)

    finally:
        if pg:
            pg.stop()

    res["machine"]["loadavg_end"] = os.getloadavg()
    print(f"\nload average at start {res['machine']['loadavg_start'][0]:.2f}, at end "
          f"{res['machine']['loadavg_end'][0]:.2f} on {os.cpu_count()} CPUs (other work on "
          "the machine skews every figure)")
    checks = print_report(res)
    res["checks"] = [{"check": n, "pass": ok, "detail": d} for n, ok, d in checks]
    out = OUT / f"ingest-{stamp}.json"
    out.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str))
    print(f"\nfigures: {out.relative_to(ROOT)}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
