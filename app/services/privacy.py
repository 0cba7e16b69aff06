"""The people in the leads (SPEC §7): suppression, erasure and retention.

- Suppression: the person's keyed hashes go on the list; uploads of them are rejected
  and their leads are delisted, so no sale can take them (a sale only takes LIVE leads).
- Erasure: suppression, plus their contacts are destroyed wherever we hold them: the
  leads, rejected rows, the logged requests and replies of their deliveries, the log
  of a digest email that carried them beside other leads (its text goes from every
  lead's log), stored messages that carried them or words about them
  (OutgoingEmailLead: bodies cleared, one not sent yet is never sent), the words of a
  buyer's system that refused them, which may echo them (the delivery's last error and
  the notice that quotes it), and what people wrote about them (returns' and
  spot-checks' notes, and the notices that quote them). The sales and the ledger stay
  with the person's data gone, and every buyer who received them is told in the UI and
  on their webhook (GDPR Art. 19).
- Retention: unsold leads older than UNSOLD_RETENTION_DAYS lose their contacts.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import select, update

from app.consent.certificates import without_query
from app.core import events, figures
from app.core.dialect import lock_in_id_order
from app.errors import ValidationFailed
from app.extensions import db
from app.models import (
    ConsentCertificate, DeliveryAttempt, EmailStatus, ErasureNotice, HttpDelivery, Lead,
    LeadStatus, Order, OutgoingEmail, OutgoingEmailLead, Rejection, Return, Sale, SpotCheckItem,
    SuppressionEntry, User, WebhookDelivery,
)
from app.models.contact_keys import holding
from app.people import notifications
from app.services import audit, contact_keys
from app.services.crypto import current_vault
from app.services.ingest.validate import normalise_email, normalise_phone

ERASED_TEXT = "[erased at the person's request]"
SCAN_CHUNK = 2000


@dataclass(frozen=True)
class Person:
    email: Optional[str]  # normalised
    phone: Optional[str]  # E.164
    hashes: tuple[tuple[str, bytes], ...]


def identify(email: str = "", phone: str = "", country: str = "") -> Person:
    """Normalise what the person gave us the way ingest does, so the hashes match."""
    email_norm = normalise_email(email.strip()) if email.strip() else None
    phone_norm = None
    if phone.strip():
        parsed = normalise_phone(phone.strip(), (country or "").strip().upper() or None)
        phone_norm = parsed[0] if parsed else None
    if email.strip() and not email_norm:
        raise ValidationFailed(f"“{email.strip()}” is not a valid email address.",
                               code="invalid_email", details={"field": "email"})
    if phone.strip() and not phone_norm:
        raise ValidationFailed(
            f"“{phone.strip()}” is not a valid phone number (add the country, or +code).",
            code="invalid_phone", details={"field": "phone"})
    if not (email_norm or phone_norm):
        raise ValidationFailed("Give the person's email address or phone number.",
                               code="contact_required")
    vault = current_vault()
    hashes = tuple((kind, vault.dedupe_hash(kind, value))
                   for kind, value in (("email", email_norm), ("phone", phone_norm)) if value)
    return Person(email_norm, phone_norm, hashes)


def _their_leads(person: Person):
    return holding(person.hashes)


def with_linked_contacts(person: Person) -> Person:
    """The person as their leads know them: an email given by the requester brings the
    phone numbers stored with it (and the other way round), so that uploading the
    person again under the contact they did not mention is refused as well."""
    hashes = set(person.hashes)
    for email_hash, phone_hash in db.session.execute(
            select(Lead.email_hash, Lead.phone_hash).where(_their_leads(person))):
        hashes.update(pair for pair in (("email", email_hash), ("phone", phone_hash)) if pair[1])
    return Person(person.email, person.phone, tuple(sorted(hashes)))


def suppress(person: Person, *, reason: str, actor: Optional[User]) -> int:
    """Put the person (every contact their leads carry) on the suppression list and
    delist their leads; returns how many leads were delisted."""
    if not reason.strip():
        raise ValidationFailed("A reason is required.", code="reason_required")
    return _suppress(with_linked_contacts(person), reason, actor)


def _suppress(person: Person, reason: str, actor: Optional[User]) -> int:
    """`suppress` for a person already expanded to their linked contacts."""
    for kind, value in person.hashes:
        exists = db.session.scalar(select(SuppressionEntry.id).where(
            SuppressionEntry.kind == kind, SuppressionEntry.value_hash == value))
        if exists is None:
            db.session.add(SuppressionEntry(kind=kind, value_hash=value, reason=reason.strip()[:255]))
    listed = (_their_leads(person), Lead.status != LeadStatus.DELISTED)
    lock_in_id_order(Lead, *listed)
    delisted = db.session.execute(
        update(Lead).where(*listed)
        .values(status=LeadStatus.DELISTED).execution_options(synchronize_session=False)).rowcount
    audit.record("privacy.suppressed", actor=actor,
                 details={"kinds": [kind for kind, _ in person.hashes], "reason": reason.strip(),
                          "leads_delisted": delisted})
    return delisted


@dataclass(frozen=True)
class Erasure:
    leads: int
    rejections: int
    emails: int  # stored messages cleared
    buyers_told: int
    webhook_sale_ids: list[int]  # deliveries of "lead.erased", sent once committed


def erase(person: Person, *, reason: str, actor: Optional[User],
          now: Optional[datetime] = None) -> Erasure:
    """Forget the person everywhere and refuse them from now on. The buyers' webhooks
    are sent once the caller commits (DeliveryRequested)."""
    if not reason.strip():
        raise ValidationFailed("A reason is required.", code="reason_required")
    now = now or datetime.now(timezone.utc)
    person = with_linked_contacts(person)
    _suppress(person, reason, actor)
    lead_ids = lock_in_id_order(Lead, _their_leads(person))
    emails = _shred_leads(lead_ids, now)
    rejections = _shred_rejections(person)
    told, webhook_sale_ids = _tell_buyers(lead_ids, now)
    if webhook_sale_ids:
        events.record(events.DeliveryRequested(tuple(webhook_sale_ids)))
    audit.record("privacy.erased", actor=actor,
                 details={"reason": reason.strip(), "leads": len(lead_ids),
                          "rejected_rows": rejections, "emails_cleared": emails,
                          "buyers_told": told})
    return Erasure(len(lead_ids), rejections, emails, told, webhook_sale_ids)


def erased_among(lead_ids: list[int]) -> set[int]:
    """Those of the leads erased already, every one locked (shared) until the caller
    commits: what the caller stores of their contacts in this transaction is either
    found by a later erasure or stored knowing of an earlier one (a message that was
    on its way while the person was erased)."""
    return {lead_id for lead_id, erased_at in db.session.execute(
        select(Lead.id, Lead.erased_at).where(Lead.id.in_(lead_ids)).order_by(Lead.id)
        .with_for_update(read=True)) if erased_at is not None}


def _no_contacts() -> bytes:
    """What an erased lead keeps in place of its contacts: a sealed blob of nothing."""
    return current_vault().seal_contact(None, None, None, None, None)


def _shred_leads(lead_ids: list[int], now: datetime) -> int:
    """Their contacts out of the leads and out of everything that carried them; returns
    how many stored messages were cleared."""
    emails = 0
    for start in range(0, len(lead_ids), SCAN_CHUNK):
        chunk = lead_ids[start:start + SCAN_CHUNK]
        contact_keys.forget(Lead.id.in_(chunk))  # their hashes go
        db.session.execute(
            update(Lead).where(Lead.id.in_(chunk))
            .values(contact_enc=_no_contacts(), email_hash=None, phone_hash=None,
                    status=LeadStatus.DELISTED, erased_at=now)
            .execution_options(synchronize_session=False))
        _blank_shared_email_logs(chunk)
        # The requests sent to buyers carried the contacts, and their replies may echo them.
        db.session.execute(sa.delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(
            select(WebhookDelivery.id).join(Sale, Sale.id == WebhookDelivery.sale_id)
            .where(Sale.lead_id.in_(chunk)))).execution_options(synchronize_session=False))
        emails += _clear_emails(chunk)
        _clear_buyer_replies(chunk)
        _strip_page_addresses(chunk)
        _clear_notes(chunk)
    return emails


def _blank_shared_email_logs(lead_ids: list[int]) -> None:
    """A digest email is logged with each lead it carried, one blob for all of them
    (app.aftersale.delivery.emailing): the other leads' logs of it lose its text and
    keep when, the server's reply and the outcome."""
    theirs = (select(WebhookDelivery.order_id, DeliveryAttempt.request_enc)
              .join(DeliveryAttempt, DeliveryAttempt.delivery_id == WebhookDelivery.id)
              .join(Sale, Sale.id == WebhookDelivery.sale_id)
              .where(Sale.lead_id.in_(lead_ids), WebhookDelivery.channel == "email"))
    sent: dict[int, set[bytes]] = {}
    for order_id, blob in db.session.execute(theirs):
        sent.setdefault(order_id, set()).add(bytes(blob))
    erased_blob = current_vault().encrypt(ERASED_TEXT)
    for order_id, blobs in sent.items():  # a digest is one order's
        db.session.execute(
            update(DeliveryAttempt)
            .where(DeliveryAttempt.method == "email", DeliveryAttempt.request_enc.in_(blobs),
                   DeliveryAttempt.delivery_id.in_(select(WebhookDelivery.id).where(
                       WebhookDelivery.order_id == order_id, WebhookDelivery.channel == "email")))
            .values(request_enc=erased_blob).execution_options(synchronize_session=False))


def _clear_emails(lead_ids: list[int]) -> int:
    """Stored messages that carried any of the leads (their contacts, or words about
    them in a notice) lose their bodies and their links (they carry no one now); one
    not sent yet never will be."""
    email_ids = list(db.session.scalars(select(OutgoingEmailLead.email_id)
                                        .where(OutgoingEmailLead.lead_id.in_(lead_ids)).distinct()))
    if not email_ids:
        return 0
    erased_blob = current_vault().encrypt(ERASED_TEXT)
    cleared = OutgoingEmail.id.in_(email_ids)
    db.session.execute(update(OutgoingEmail).where(cleared, OutgoingEmail.status == EmailStatus.PENDING)
                       .values(status=EmailStatus.FAILED,
                               last_error="not sent: a person it names asked to be erased")
                       .execution_options(synchronize_session=False))
    db.session.execute(update(OutgoingEmail).where(cleared)
                       .values(text_body_enc=erased_blob, html_body_enc=erased_blob)
                       .execution_options(synchronize_session=False))
    db.session.execute(sa.delete(OutgoingEmailLead).where(OutgoingEmailLead.email_id.in_(email_ids))
                       .execution_options(synchronize_session=False))
    return len(email_ids)


def _clear_buyer_replies(lead_ids: list[int]) -> None:
    """A buyer's system may name the person in its reply ("HTTP 409: x@y exists"), and
    the reply's words become the delivery's last error, quoted in the notice that the
    delivery failed (its email, linked to the lead, is cleared with the others): they
    go, the delivery's state stays."""
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.sale_id.in_(select(Sale.id).where(Sale.lead_id.in_(lead_ids))),
               WebhookDelivery.last_error.is_not(None), WebhookDelivery.last_error != ERASED_TEXT)
        .values(last_error=ERASED_TEXT).execution_options(synchronize_session=False))
    # Every sale's notice, whatever its delivery says now: a later attempt may have
    # replaced the error the notice quotes.
    sales = db.session.execute(select(Sale.id, Sale.order_id, Sale.buyer_id)
                               .where(Sale.lead_id.in_(lead_ids))).all()
    if sales:
        notifications.delivery_errors_erased(sales, ERASED_TEXT)


def _strip_page_addresses(lead_ids: list[int]) -> None:
    """The address of the page the person filled in may carry them in its query
    (?email=…): the lead's source_url and its consent certificate's page and referrer
    keep the page and lose the query."""
    for lead_id, url in db.session.execute(select(Lead.id, Lead.source_url)
                                           .where(Lead.id.in_(lead_ids))):
        if url and without_query(url) != url:
            db.session.execute(update(Lead).where(Lead.id == lead_id)
                               .values(source_url=without_query(url))
                               .execution_options(synchronize_session=False))
    for certificate in db.session.scalars(select(ConsentCertificate).where(
            ConsentCertificate.lead_id.in_(lead_ids))):
        certificate.page_url = without_query(certificate.page_url) or ""
        certificate.referrer = without_query(certificate.referrer)


def _clear_notes(lead_ids: list[int]) -> None:
    """What people wrote about the person (a return's reasons from the buyer, the
    seller and an admin; a spot-check's note on them) may name or quote them: it goes,
    from the notices that quoted it too (their emails go with the others, linked to
    the lead), and the decisions stay. The system's own decision notes say nothing of
    the person; the audit log records that a note was given, never its words."""
    def cleared(column):
        return sa.case((column == "", ""), else_=ERASED_TEXT)

    returned = db.session.execute(select(Return.id, Return.buyer_id, Return.seller_id)
                                  .join(Sale, Sale.id == Return.sale_id)
                                  .where(Sale.lead_id.in_(lead_ids))).all()
    if returned:
        figures.changed(*{party for _, buyer_id, seller_id in returned
                          for party in (buyer_id, seller_id)})  # their pages quote the notes
        theirs = Return.id.in_([return_id for return_id, _, _ in returned])
        db.session.execute(update(Return).where(theirs)
                           .values(note=cleared(Return.note), seller_note=cleared(Return.seller_note))
                           .execution_options(synchronize_session=False))
        db.session.execute(update(Return).where(theirs, Return.decided_by == "admin")
                           .values(decision_note=cleared(Return.decision_note))
                           .execution_options(synchronize_session=False))
        notifications.return_notes_erased(returned, ERASED_TEXT)
    checks = db.session.execute(select(SpotCheckItem.check_id, Lead.seller_id).distinct()
                                .join(Lead, Lead.id == SpotCheckItem.lead_id)
                                .where(SpotCheckItem.lead_id.in_(lead_ids),
                                       SpotCheckItem.note != "")).all()
    if checks:
        db.session.execute(update(SpotCheckItem).where(SpotCheckItem.lead_id.in_(lead_ids))
                           .values(note=cleared(SpotCheckItem.note))
                           .execution_options(synchronize_session=False))
        notifications.spot_check_notes_erased(checks)


def _shred_rejections(person: Person) -> int:
    """Rejected rows keep the original text encrypted, without a hash to find it by:
    decrypt and look, chunk by chunk, and overwrite the rows that mention the person."""
    vault = current_vault()
    needles = [n for n in (person.email, _digits(person.phone)[-9:] if person.phone else None) if n]
    erased_blob = vault.encrypt(ERASED_TEXT)
    hits, last_id = [], 0
    while True:
        rows = db.session.execute(
            select(Rejection.id, Rejection.raw_enc, Rejection.message_enc)
            .where(Rejection.id > last_id).order_by(Rejection.id).limit(SCAN_CHUNK)).all()
        if not rows:
            break
        last_id = rows[-1][0]
        for rejection_id, raw, message in rows:
            text = f"{vault.decrypt(raw)}\n{vault.decrypt(message)}"
            lowered, digits = text.lower(), _digits(text)
            if any((needle in lowered) if "@" in needle else (needle in digits) for needle in needles):
                hits.append(rejection_id)
    for start in range(0, len(hits), SCAN_CHUNK):
        db.session.execute(update(Rejection).where(Rejection.id.in_(hits[start:start + SCAN_CHUNK]))
                           .values(raw_enc=erased_blob, message_enc=erased_blob)
                           .execution_options(synchronize_session=False))
    return len(hits)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _tell_buyers(lead_ids: list[int], now: datetime) -> tuple[int, list[int]]:
    if not lead_ids:
        return 0, []
    webhook_sale_ids = []
    # Told on the signed JSON webhook; a CRM taking leads in its own format would not
    # understand the notice, so those buyers are told in the UI only.
    sales = db.session.execute(
        select(Sale.id, Sale.buyer_id, Sale.order_id,
               sa.case((HttpDelivery.order_id.is_(None), Order.webhook_url)))
        .join(Order, Order.id == Sale.order_id)
        .outerjoin(HttpDelivery, HttpDelivery.order_id == Order.id)
        .where(Sale.lead_id.in_(lead_ids))).all()
    already_told = set(db.session.scalars(select(ErasureNotice.sale_id).where(
        ErasureNotice.sale_id.in_([sale_id for sale_id, _, _, _ in sales]))))
    told: dict[int, list[tuple[int, int]]] = {}  # buyer -> (sale, order) newly told
    for sale_id, buyer_id, order_id, webhook_url in sales:
        if sale_id in already_told:
            continue
        db.session.add(ErasureNotice(buyer_id=buyer_id, sale_id=sale_id, order_id=order_id,
                                     created_at=now))
        figures.changed(buyer_id)  # the notices their dashboard counts
        if webhook_url:
            db.session.add(WebhookDelivery(sale_id=sale_id, order_id=order_id,
                                           event="lead.erased", next_attempt_at=now,
                                           created_at=now))
            webhook_sale_ids.append(sale_id)
        told.setdefault(buyer_id, []).append((sale_id, order_id))
    for buyer_id, theirs in told.items():
        notifications.person_erased(buyer_id, theirs)
    return len({buyer_id for _, buyer_id, _, _ in sales}), webhook_sale_ids


def notices_for(buyer: User, include_acknowledged: bool = False) -> list[ErasureNotice]:
    query = select(ErasureNotice).where(ErasureNotice.buyer_id == buyer.id)
    if not include_acknowledged:
        query = query.where(ErasureNotice.acknowledged_at.is_(None))
    return db.session.scalars(query.order_by(ErasureNotice.id.desc()).limit(500)).all()


def acknowledge(buyer: User, now: Optional[datetime] = None) -> int:
    figures.changed(buyer.id)
    return db.session.execute(
        update(ErasureNotice).where(ErasureNotice.buyer_id == buyer.id,
                                    ErasureNotice.acknowledged_at.is_(None))
        .values(acknowledged_at=now or datetime.now(timezone.utc))
        .execution_options(synchronize_session=False)).rowcount


def purge_unsold(now: Optional[datetime] = None) -> int:
    """Retention: unsold leads past UNSOLD_RETENTION_DAYS lose their contacts."""
    days = current_app.config["UNSOLD_RETENTION_DAYS"]
    if not days:
        return 0
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=days)
    unsold = (Lead.sold_count == 0, Lead.erased_at.is_(None), Lead.created_at < cutoff)
    purged = 0
    while True:
        ids = db.session.scalars(select(Lead.id).where(*unsold).order_by(Lead.id)
                                 .limit(SCAN_CHUNK)).all()
        if not ids:
            break
        # Locked and checked again: a fill may have sold one since the scan.
        ids = lock_in_id_order(Lead, Lead.id.in_(ids), *unsold)
        # Hashes stay: without contacts they only keep recognising a re-upload.
        db.session.execute(update(Lead).where(Lead.id.in_(ids))
                           .values(contact_enc=_no_contacts(), status=LeadStatus.DELISTED,
                                   erased_at=now)
                           .execution_options(synchronize_session=False))
        db.session.commit()
        purged += len(ids)
    if purged:
        audit.record("privacy.retention_purge", actor=None,
                     details={"leads": purged, "older_than_days": days})
        db.session.commit()
    return purged


def suppression_count() -> int:
    return db.session.scalar(select(sa.func.count()).select_from(SuppressionEntry))
