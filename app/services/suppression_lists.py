"""A buyer's own suppression list (SPEC §14), operations (flush; callers commit): the
phones and emails of people the buyer must never receive -- their customers, their
own do-not-call list. The buyer adds people, takes them off again or empties it.

Each contact is normalised as ingest normalises a lead's (phones to E.164 with the
`phonenumbers` library, emails lower-cased and syntax-checked) and only its keyed
hash is kept, the same hash a lead carries, so the market recognises the person
without anyone being able to read the list back. The market enforces it as one rule
(app.market.rules.buyer_listed / listed_by) in the order book, the single and the
grouped fills and the supply estimate."""
import csv
import io
from dataclasses import dataclass
from typing import Iterable, Optional

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.core.dialect import postgres
from app.errors import ValidationFailed
from app.extensions import db
from app.models import BuyerSuppression, User
from app.models.types import utcnow
from app.services import audit
from app.services.crypto import current_vault
from app.services.regions import resolve_country
from app.services.ingest.validate import normalise_email, normalise_phone

MAX_ENTRIES = 200_000  # contacts in one upload
MAX_BYTES = 20 * 1024 * 1024
PHONE_HEADERS = {"phone", "phones", "tel", "telephone", "mobile", "phone_number", "phone number",
                 "телефон", "teléfono", "telefono"}
EMAIL_HEADERS = {"email", "emails", "e-mail", "mail", "email_address", "email address",
                 "почта", "correo"}
_INSERT_CHUNK = 1000


@dataclass(frozen=True)
class Added:
    added: int  # new on the list
    invalid: int  # neither a valid phone nor a valid email: skipped


@dataclass(frozen=True)
class Removed:
    removed: int  # were on the list, are not any more
    invalid: int  # neither a valid phone nor a valid email: skipped


def _country(value: Optional[str]) -> Optional[str]:
    """The ISO alpha-2 code that reads phones written without +code; None if none was
    given. A code no country has is refused: its numbers would all be skipped."""
    value = (value or "").strip()
    if not value:
        return None
    code = resolve_country(value)
    if code is None:
        raise ValidationFailed(f"“{value}” is not a country code: use two letters such as "
                               "US or ES.", code="invalid_country",
                               details={"field": "default_country"})
    return code


def _hashes(phones: Iterable[str], emails: Iterable[str], country: Optional[str]
            ) -> tuple[set[tuple[str, bytes]], int]:
    vault = current_vault()
    found, invalid = set(), 0
    for raw in phones:
        raw = str(raw).strip().lstrip("'")
        if not raw:
            continue
        parsed = normalise_phone(raw, country)
        if parsed is None:
            invalid += 1
        else:
            found.add(("p", vault.dedupe_hash("phone", parsed[0])))
    for raw in emails:
        raw = str(raw).strip()
        if not raw:
            continue
        email = normalise_email(raw)
        if email is None:
            invalid += 1
        else:
            found.add(("e", vault.dedupe_hash("email", email)))
    return found, invalid


def add(buyer: User, phones: Iterable[str] = (), emails: Iterable[str] = (),
        country: Optional[str] = None) -> Added:
    """Put these people on the buyer's list; `country` (ISO alpha-2) reads phones
    written without +code."""
    phones, emails = list(phones), list(emails)
    if len(phones) + len(emails) > MAX_ENTRIES:
        raise ValidationFailed(f"At most {MAX_ENTRIES:,} contacts in one upload.",
                               code="too_many")
    hashes, invalid = _hashes(phones, emails, _country(country))
    now = utcnow()
    rows = [{"buyer_id": buyer.id, "kind": kind, "value_hash": value, "created_at": now}
            for kind, value in sorted(hashes)]
    insert = (postgresql.insert if postgres() else sqlite.insert)(BuyerSuppression)
    before = count(buyer)
    for start in range(0, len(rows), _INSERT_CHUNK):
        db.session.execute(insert.on_conflict_do_nothing(), rows[start:start + _INSERT_CHUNK])
    added = count(buyer) - before  # those already listed are not added again
    audit.record("suppressions.added", actor=buyer,
                 details={"added": added, "invalid": invalid})
    return Added(added, invalid)


def remove(buyer: User, phones: Iterable[str] = (), emails: Iterable[str] = (),
           country: Optional[str] = None) -> Removed:
    """Take these people off the buyer's list (read as `add` reads them): from now on
    the buyer's orders may receive them again. Sales never made meanwhile are not
    made up for."""
    phones, emails = list(phones), list(emails)
    if len(phones) + len(emails) > MAX_ENTRIES:
        raise ValidationFailed(f"At most {MAX_ENTRIES:,} contacts in one upload.",
                               code="too_many")
    hashes, invalid = _hashes(phones, emails, _country(country))
    removed = 0
    ordered = sorted(hashes)
    for start in range(0, len(ordered), _INSERT_CHUNK):
        chunk = ordered[start:start + _INSERT_CHUNK]
        removed += db.session.execute(
            sa.delete(BuyerSuppression).where(
                BuyerSuppression.buyer_id == buyer.id,
                sa.tuple_(BuyerSuppression.kind, BuyerSuppression.value_hash).in_(chunk))
            .execution_options(synchronize_session=False)).rowcount
    audit.record("suppressions.removed", actor=buyer,
                 details={"removed": removed, "invalid": invalid})
    return Removed(removed, invalid)


def clear(buyer: User) -> int:
    """Empty the buyer's list; how many people were on it."""
    removed = db.session.execute(
        sa.delete(BuyerSuppression).where(BuyerSuppression.buyer_id == buyer.id)
        .execution_options(synchronize_session=False)).rowcount
    audit.record("suppressions.cleared", actor=buyer, details={"removed": removed})
    return removed


def count(buyer: User) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(BuyerSuppression)
                             .where(BuyerSuppression.buyer_id == buyer.id))


def read_csv(data: bytes) -> tuple[list[str], list[str]]:
    """(phones, emails) of an uploaded file: the columns named like a phone or an email
    (phone, tel, mobile, email, e-mail, ...); a file without such a header is a list,
    each cell an email if it has an @, else a phone."""
    if len(data) > MAX_BYTES:
        raise ValidationFailed("The file is larger than 20 MB; split it.", code="file_too_large")
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = data.decode("latin-1")
    if "\0" in text:
        raise ValidationFailed("This is not a CSV file.", code="not_csv")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in row)]
    if not rows:
        return [], []
    header = [cell.strip().lower() for cell in rows[0]]
    phone_columns = [i for i, name in enumerate(header) if name in PHONE_HEADERS]
    email_columns = [i for i, name in enumerate(header) if name in EMAIL_HEADERS]
    phones, emails = [], []
    if phone_columns or email_columns:
        for row in rows[1:]:
            phones += [row[i] for i in phone_columns if i < len(row)]
            emails += [row[i] for i in email_columns if i < len(row)]
        return phones, emails
    for row in rows:
        for cell in row:
            (emails if "@" in cell else phones).append(cell)
    return phones, emails
