"""Operations: a visitor's submission of a hosted form becomes a lead of the form's
seller through the real-time lead path (app/services/ingest/realtime.py, the one
`POST /api/v1/leads` uses) and gets the exchange's consent certificate (flush; the
view commits, then matches the lead as that endpoint does).

The form as served carries a signed one-time token (form, version, when it was
served, a random nonce). It is not a CSRF token: the form acts for no signed-in user,
so there is no authority to forge; it proves the visitor loaded this version of the
form, measures the time it was open server-side (a script cannot shorten it), and a
replay of one filled form finds its nonce already used."""
import secrets
from dataclasses import dataclass, field
from typing import Optional

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.consent import certificates
from app.consent.fields import FORM_FIELDS, visitor_problems
from app.errors import ValidationFailed
from app.extensions import db
from app.models import ConsentCertificate, LeadForm, LeadFormVersion, User
from app.models.types import utcnow
from app.services import scoring
from app.services.crypto import current_vault
from app.services.ingest import pipeline, realtime
from app.services.ingest.validate import FORM_DEFAULT, RowContext, validate_row

TOKEN_MAX_AGE = 24 * 3600  # a form left open overnight may still be sent
INPUT_WAYS = frozenset({"typed", "pasted", "typed and pasted", "autofilled"})


class FormRefused(ValidationFailed):
    """The visitor's answers were refused; `problems` maps a field (None: the whole
    form) to the sentences shown there."""

    def __init__(self, problems: dict[Optional[str], list[str]], code: str = "form_refused"):
        first = next(iter(problems.values()))[0]
        super().__init__(first, code=code, details={"problems": problems})
        self.problems = problems


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="lead-form")


def serve_token(version: LeadFormVersion) -> str:
    served_ms = int(utcnow().timestamp() * 1000)
    return _serializer().dumps([version.id, secrets.token_urlsafe(12), served_ms])


@dataclass
class Served:
    version: LeadFormVersion
    nonce: str
    served_ms: int  # how long the form was open before it came back


def read_token(form: LeadForm, token: str) -> Served:
    try:
        version_id, nonce, served_at = _serializer().loads(token, max_age=TOKEN_MAX_AGE)
    except (BadSignature, ValueError, TypeError):
        raise FormRefused({None: ["This form has expired: reload the page and send it "
                                  "again."]}, code="form_expired") from None
    version = db.session.get(LeadFormVersion, version_id)
    if version is None or version.form_id != form.id:
        raise FormRefused({None: ["This form has changed: reload the page."]},
                          code="form_expired")
    taken = db.session.scalar(sa.select(ConsentCertificate.id)
                              .where(ConsentCertificate.form_token == nonce))
    if taken is not None:
        raise FormRefused({None: ["This form was already sent."]}, code="form_already_sent")
    elapsed = int(utcnow().timestamp() * 1000) - int(served_at)
    return Served(version, nonce, max(0, elapsed))


@dataclass
class Evidence:
    """How the form was shown and filled, as the browser and the request tell it."""

    page_url: str
    referrer: Optional[str]
    ip: Optional[str]
    user_agent: str
    time_on_page_ms: Optional[int]
    inputs: dict[str, str] = field(default_factory=dict)


def _answers(version: LeadFormVersion, submitted: dict[str, str]) -> dict[str, str]:
    shown = [f["name"] for f in version.fields]
    return {name: " ".join(str(submitted.get(name) or "").split()) for name in shown
            if str(submitted.get(name) or "").strip()}


def _required(version: LeadFormVersion, answers: dict[str, str], agreed: bool) -> dict:
    problems: dict[Optional[str], list[str]] = {}
    for item in version.fields:
        if item["required"] and item["name"] not in answers:
            label = FORM_FIELDS[item["name"]].label
            problems[item["name"]] = [f"Please fill in “{label}”."]
    if not agreed:
        problems["consent"] = ["Tick the box to agree, or we cannot pass on your details."]
    return problems


def submit(form: LeadForm, served: Served, submitted: dict[str, str], agreed: bool,
           evidence: Evidence):
    """The lead and its certificate, or FormRefused with the visitor's sentences."""
    version = served.version
    answers = _answers(version, submitted)
    now = utcnow()
    consent_text = version.consent_text
    if version.disclosed_buyers:
        consent_text += " Who may contact you: " + "; ".join(version.disclosed_buyers.splitlines())
    payload = {**answers, "consent_at": now.isoformat(), "source_url": evidence.page_url,
               "consent_text": consent_text, "ip": evidence.ip,
               "sub_id": form.sub_id or f"form {form.public_id}"}
    if problems := _required(version, answers, agreed):
        # Told all at once: what the lead's validation would say of the rest too.
        verdict = validate_row({k: v for k, v in payload.items() if v is not None},
                               RowContext(form.default_country, now))
        if not verdict.accepted:
            found = visitor_problems(list(verdict.codes), answers, form.default_country,
                                     verdict.message)
            for name, texts in found.items():
                problems.setdefault(name, texts)
        raise FormRefused(problems)
    seller = db.session.get(User, form.seller_id)
    terms = pipeline.check_terms(form.default_country, form.floor_price, form.cap,
                                 default_from=FORM_DEFAULT)
    try:
        lead = realtime.ingest_lead(seller, payload, terms)
    except realtime.LeadRejected as exc:
        codes = exc.details.get("codes") or [exc.code]
        raise FormRefused(visitor_problems(codes, answers, form.default_country, exc.message),
                          code=exc.code) from None
    if version.named_buyers:  # the person agreed to those buyers alone
        lead.consent_scope_id = version.id
    public_id = secrets.token_urlsafe(12)
    contact = current_vault().open_contact(lead.contact_enc)
    key = certificates.certificate_key(current_vault(), public_id)
    certificate = ConsentCertificate(
        public_id=public_id, lead_id=lead.id, form_version_id=version.id,
        form_token=served.nonce, page_url=evidence.page_url, referrer=evidence.referrer,
        user_agent=evidence.user_agent[:512], created_at=now,
        time_on_page_ms=evidence.time_on_page_ms, served_ms=served.served_ms,
        inputs={name: way for name, way in evidence.inputs.items()
                if name in answers and way in INPUT_WAYS},
        contact_hash=certificates.contact_hash(key, contact["email"], contact["phone"]))
    db.session.add(certificate)
    # Consent the exchange witnessed itself is worth more than a seller's claim.
    lead.score_base = scoring.with_certificate(lead.score_base)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:  # the same form sent twice at once: one of them wins
        raise FormRefused({None: ["This form was already sent."]},
                          code="form_already_sent") from None
    return lead, certificate
