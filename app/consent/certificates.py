"""Queries and pure logic: consent certificates as their readers may see them (SPEC §14).

The public view (page and `GET /api/v1/certificates/{id}`) carries what the person saw
and how the form was filled, and nothing of the person: no name, phone, email or IP.
What ties it to a person is `contact_hash`:

    contact_hash = hex HMAC-SHA256(key, email + "\\n" + phone)

with the email lower-cased and the phone in E.164 as delivered (an absent one is the
empty string). The key is the certificate's own, derived from the exchange's hash key
and given to the lead's buyers (and its seller) with the lead, so a buyer recomputes
the hash from what they received, while anyone else, who has no key, cannot test
guessed phone numbers against it (a phone number space is small enough to try)."""
import hashlib
import hmac
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentCertificate, Lead, LeadFormVersion, Sale, User
from app.people.membership import account_of
from app.services.crypto import ContactVault, current_vault


def certificate_key(vault: ContactVault, public_id: str) -> bytes:
    return vault.derived_key(b"consent-certificate\x00" + public_id.encode())


def contact_hash(key: bytes, email: Optional[str], phone: Optional[str]) -> str:
    message = f"{email or ''}\n{phone or ''}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def without_query(url: Optional[str]) -> Optional[str]:
    """A page address without its query and fragment: a form page's query can carry the
    visitor's own details (?email=…), which the public view must not repeat."""
    if not url:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def find(public_id: str) -> Optional[ConsentCertificate]:
    return db.session.scalar(sa.select(ConsentCertificate)
                             .where(ConsentCertificate.public_id == public_id))


def public_view(certificate: ConsentCertificate) -> dict[str, Any]:
    version: LeadFormVersion = certificate.version
    return {
        "id": certificate.public_id,
        "consent_text": version.consent_text,
        "disclosed_buyers": [line for line in version.disclosed_buyers.splitlines() if line],
        "form_id": version.form.public_id,
        "form_version": version.number,
        "fields_shown": [field["name"] for field in version.fields],
        "page_url": without_query(certificate.page_url),
        "referrer": without_query(certificate.referrer),
        "created_at": certificate.created_at,
        "user_agent": certificate.user_agent,
        "time_on_page_ms": certificate.time_on_page_ms,
        "served_ms": certificate.served_ms,
        "inputs": certificate.inputs,
        "contact_hash": certificate.contact_hash,
        "contact_hash_method": "HMAC-SHA256(key, email + \"\\n\" + phone), hex; the key is "
                               "given to the lead's buyers with the lead",
    }


def by_lead(lead_ids: list[int]) -> dict[int, str]:
    """Lead id -> its certificate's public id, for those that have one."""
    if not lead_ids:
        return {}
    return dict(db.session.execute(
        sa.select(ConsentCertificate.lead_id, ConsentCertificate.public_id)
        .where(ConsentCertificate.lead_id.in_(lead_ids))).all())


def for_party(certificate: ConsentCertificate, viewer: Optional[User]) -> Optional[dict]:
    """For the lead's buyers, its seller and admins: the certificate's key, the lead,
    and whether the hash matches the contacts delivered; None for anyone else."""
    if viewer is None:
        return None
    account = account_of(viewer)
    lead = db.session.get(Lead, certificate.lead_id)
    allowed = viewer.is_admin or lead.seller_id == account.id or db.session.scalar(
        sa.select(Sale.id).where(Sale.lead_id == lead.id, Sale.buyer_id == account.id)
        .limit(1)) is not None
    if not allowed:
        return None
    key = certificate_key(current_vault(), certificate.public_id)
    matches = None
    if lead.erased_at is None:
        contact = current_vault().open_contact(lead.contact_enc)
        matches = hmac.compare_digest(
            contact_hash(key, contact["email"], contact["phone"]), certificate.contact_hash)
    return {"key": key.hex(), "lead_id": lead.id, "matches": matches}
