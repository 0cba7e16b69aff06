"""National do-not-call lists (SPEC §14), operations (flush; callers commit).

An admin loads a country's list as a buyer loads their suppression list (JSON or a
CSV, app.services.suppression_lists.read_csv): each number normalised to E.164 with
the country as the default (phonenumbers, as ingest does) and kept only as the keyed
hash a lead's phone carries. A number belongs to one country, so a lead is on a list
when its phone's hash is.

What it means for a lead (`flag`, at ingest -- when a batch finishes, when a
real-time lead is stored -- and for the leads already held when a list is loaded):
- the lead is flagged `do_not_call` and its phone no longer counts as a contact
  (`has_phone` off): orders that require a phone never receive it, quiet hours do not
  apply, and buyers never receive the number (the delivered lead, its webhook, CSV
  and the lead list show no phone and say `do_not_call`);
- a lead with an email too is still sold, as an email lead;
- a lead with only the phone has nothing left to be sold for: it is delisted (and
  keeps has_phone: every lead has a contact).
The seller keeps the number in their own lead.

Lists change: `remove` takes numbers off a country's list (a refreshed list no longer
has them) and gives a lead its phone back when its number is on no list any more and
the lead is still on offer; a delisted lead stays delisted (delisting is final).
"""
from dataclasses import dataclass
from typing import Iterable, Optional

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.core.dialect import lock_in_id_order, postgres
from app.models.contact_keys import holding
from app.errors import ValidationFailed
from app.extensions import db
from app.models import DoNotCallEntry, Lead, LeadStatus, User
from app.models.leads import LISTED_STATUSES
from app.models.types import utcnow
from app.services import audit, regions
from app.services.crypto import current_vault
from app.services.ingest.validate import normalise_phone

_INSERT_CHUNK = 1000
MAX_ENTRIES = 1_000_000


@dataclass(frozen=True)
class Loaded:
    added: int  # numbers new on the list
    invalid: int  # not a valid number: skipped
    flagged: int  # leads already held that are on it now


@dataclass(frozen=True)
class Unlisted:
    removed: int  # numbers taken off the list
    invalid: int  # not a valid number: skipped
    restored: int  # leads on offer that have their phone back


def _numbers(country: str, phones: Iterable[str]) -> tuple[str, set[bytes], int]:
    """(country code, keyed hashes of the valid numbers, how many were not valid)."""
    code = regions.resolve_country(country or "")
    if code is None:
        raise ValidationFailed("Give the list's country, such as US or ES.",
                               code="invalid_country", details={"field": "country"})
    phones = list(phones)
    if len(phones) > MAX_ENTRIES:
        raise ValidationFailed(f"At most {MAX_ENTRIES:,} numbers in one upload.",
                               code="too_many")
    vault, hashes, invalid = current_vault(), set(), 0
    for raw in phones:
        raw = str(raw).strip().lstrip("'")
        if not raw:
            continue
        parsed = normalise_phone(raw, code)
        if parsed is None:
            invalid += 1
        else:
            hashes.add(vault.dedupe_hash("phone", parsed[0]))
    return code, hashes, invalid


def load(country: str, phones: Iterable[str], actor: Optional[User]) -> Loaded:
    """Add these numbers to the country's list and flag the leads already holding them."""
    code, hashes, invalid = _numbers(country, phones)
    before = count(code)
    now = utcnow()
    insert = (postgresql.insert if postgres() else sqlite.insert)(DoNotCallEntry)
    rows = [{"country": code, "phone_hash": value, "created_at": now} for value in sorted(hashes)]
    for start in range(0, len(rows), _INSERT_CHUNK):
        db.session.execute(insert.on_conflict_do_nothing(), rows[start:start + _INSERT_CHUNK])
    # Leads holding numbers listed before were flagged then (or when they came in).
    ordered, flagged = sorted(hashes), 0
    for start in range(0, len(ordered), _INSERT_CHUNK):
        flagged += flag(holding(("phone", h) for h in ordered[start:start + _INSERT_CHUNK]))
    added = count(code) - before
    audit.record("do_not_call.loaded", actor=actor,
                 details={"country": code, "added": added, "invalid": invalid,
                          "leads_flagged": flagged})
    return Loaded(added, invalid, flagged)


def remove(country: str, phones: Iterable[str], actor: Optional[User]) -> Unlisted:
    """Take these numbers off the country's list; leads on offer whose number is on no
    list now get their phone back."""
    code, hashes, invalid = _numbers(country, phones)
    ordered, removed, restored = sorted(hashes), 0, 0
    on_a_list = sa.exists().where(DoNotCallEntry.phone_hash == Lead.phone_hash)
    for start in range(0, len(ordered), _INSERT_CHUNK):
        chunk = ordered[start:start + _INSERT_CHUNK]
        removed += db.session.execute(
            sa.delete(DoNotCallEntry).where(DoNotCallEntry.country == code,
                                            DoNotCallEntry.phone_hash.in_(chunk))
            .execution_options(synchronize_session=False)).rowcount
        # Locked in id order first, as fills lock leads (see `flag`).
        ids = lock_in_id_order(Lead, holding(("phone", h) for h in chunk), Lead.do_not_call.is_(True),
                               Lead.status.in_(LISTED_STATUSES), ~on_a_list)
        if ids:
            restored += db.session.execute(
                sa.update(Lead).where(Lead.id.in_(ids))
                .values(do_not_call=False, has_phone=True)
                .execution_options(synchronize_session=False)).rowcount
    audit.record("do_not_call.removed", actor=actor,
                 details={"country": code, "removed": removed, "invalid": invalid,
                          "leads_restored": restored})
    return Unlisted(removed, invalid, restored)


def flag(*where) -> int:
    """Flag the leads matching `where` whose phone is on a list (see the module)."""
    listed = sa.exists().where(DoNotCallEntry.phone_hash == Lead.phone_hash)
    # Locked in id order first, as fills lock leads: the update cannot deadlock with them.
    ids = lock_in_id_order(Lead, *where, Lead.do_not_call.is_(False),
                           Lead.phone_hash.is_not(None), listed)
    for start in range(0, len(ids), _INSERT_CHUNK):
        chunk = ids[start:start + _INSERT_CHUNK]
        db.session.execute(
            sa.update(Lead).where(Lead.id.in_(chunk), Lead.has_email.is_(True))
            .values(do_not_call=True, has_phone=False)
            .execution_options(synchronize_session=False))
        # A lead has a contact (a CHECK): one with only the number keeps it, unsold.
        db.session.execute(
            sa.update(Lead).where(Lead.id.in_(chunk), Lead.has_email.is_(False))
            .values(do_not_call=True, status=LeadStatus.DELISTED)
            .execution_options(synchronize_session=False))
    return len(ids)


def flag_batch(batch_id: int) -> int:
    """`flag` of a batch's leads, when it has finished. While the lists hold few
    numbers, only the leads holding them are read (by their contact keys), not every
    lead of the batch (0.4 s for a million; none at all with no list loaded)."""
    few = db.session.scalars(sa.select(DoNotCallEntry.phone_hash)
                             .limit(_INSERT_CHUNK + 1)).all()
    if len(few) > _INSERT_CHUNK:
        return flag(Lead.batch_id == batch_id)
    return flag(Lead.batch_id == batch_id, holding(("phone", h) for h in few)) if few else 0


def listed(phone_hashes: Iterable[bytes]) -> set[bytes]:
    """Which of these phone hashes are on a list: one index probe, no lock (what a
    real-time group checks before it flags anything, so a group without a listed
    phone -- nearly all of them -- costs no more)."""
    hashes = sorted(set(phone_hashes) - {None})
    if not hashes:
        return set()
    return {bytes(value) for value in db.session.scalars(
        sa.select(DoNotCallEntry.phone_hash).where(DoNotCallEntry.phone_hash.in_(hashes)))}


def count(country: str) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(DoNotCallEntry)
                             .where(DoNotCallEntry.country == country))


def counts() -> list[tuple[str, int]]:
    """(country, numbers) of every list loaded."""
    return db.session.execute(
        sa.select(DoNotCallEntry.country, sa.func.count())
        .group_by(DoNotCallEntry.country).order_by(DoNotCallEntry.country)).all()
