"""Operations: a seller's hosted lead forms (SPEC §14), created and edited (flush;
callers commit). What the person reads -- the fields, the consent text, the buyers
disclosed -- is versioned: an edit that changes any of it adds a version, and the
earlier versions stay as the certificates that name them.

Who may contact the person is either described (kinds of buyer: any buyer may buy) or
named: buyers of the exchange who let sellers name them; then the version's leads go
to those buyers alone."""
import secrets
from dataclasses import dataclass
from typing import NamedTuple, Optional

import sqlalchemy as sa

from app.consent.fields import CONTACT_FIELDS, FORM_FIELDS
from app.errors import NotFound, Refusals
from app.extensions import db
from app.models import LeadForm, LeadFormVersion, NamedBuyer, Role, User
from app.services.ingest.pipeline import check_terms
from app.services.ingest.validate import normalise_url

MAX_CONSENT_TEXT = 4000


@dataclass
class FormSpec:
    name: str
    fields: list[dict]  # [{"name", "required"}] in the order shown
    consent_text: str
    disclosed_buyers: str
    default_country: str
    floor_price: int
    cap: int
    sub_id: Optional[str] = None
    thank_you_message: str = ""
    thank_you_url: Optional[str] = None
    named_buyers: tuple[int, ...] = ()  # buyer accounts; empty: `disclosed_buyers` describes


class Nameable(NamedTuple):
    id: int
    name: str


def nameable_buyers() -> list[Nameable]:
    """Buyer accounts that let sellers name them on forms, by name."""
    name = sa.func.coalesce(sa.func.nullif(User.company_name, ""), User.display_name)
    rows = db.session.execute(
        sa.select(User.id, name).where(User.role == Role.BUYER, User.named_on_forms,
                                       User.is_active_account,
                                       User.account_holder_id.is_(None), name != "")
        .order_by(name, User.id)).all()
    return [Nameable(*row) for row in rows]


def _checked(spec: FormSpec) -> FormSpec:
    found = Refusals()
    if not spec.name.strip():
        found.add("name", "Give the form a title.")
    names = [f["name"] for f in spec.fields]
    unknown = [n for n in names if n not in FORM_FIELDS]
    if unknown:
        found.add("fields", f"These are not lead fields: {', '.join(unknown)}.")
    if not set(names) & set(CONTACT_FIELDS):
        found.add("fields", "Ask for an email address or a phone number (or both): a lead "
                            "without a contact cannot be sold.")
    text = " ".join(spec.consent_text.split())
    if not text:
        found.add("consent_text", "Write the consent text: what the person agrees to, and "
                                  "who may contact them.")
    elif len(text) > MAX_CONSENT_TEXT:
        found.add("consent_text", f"The consent text is {len(text)} characters long; keep it "
                                  f"under {MAX_CONSENT_TEXT}.")
    named = ()
    if spec.named_buyers:
        nameable = {buyer.id: buyer.name for buyer in nameable_buyers()}
        if set(spec.named_buyers) - nameable.keys():
            found.add("named_buyers", "Some of the buyers chosen no longer let sellers name "
                                      "them: choose again.")
        else:
            named = tuple(sorted(set(spec.named_buyers), key=lambda i: (nameable[i], i)))
            disclosed = "\n".join(nameable[i] for i in named)
    elif not spec.disclosed_buyers.strip():
        # What the person agrees to is contact by someone: a form that names no one has
        # them consent to no one in particular (the default text promises "the companies
        # named below").
        found.add("disclosed_buyers", "Name the buyers or kinds of buyer who may contact "
                                      "them, one a line.")
    url = None
    if (spec.thank_you_url or "").strip():
        url = normalise_url(spec.thank_you_url)
        if url is None:
            found.add("thank_you_url", f"“{spec.thank_you_url.strip()}” is not a web address "
                                       "(https://…).")
    terms = found.check(check_terms, spec.default_country, spec.floor_price, spec.cap)
    found.raise_any()
    if not named:
        disclosed = "\n".join(line.strip() for line in spec.disclosed_buyers.splitlines()
                              if line.strip())
    fields = [{"name": f["name"], "required": bool(f.get("required"))} for f in spec.fields]
    return FormSpec(spec.name.strip(), fields, text, disclosed, terms.default_country,
                    terms.floor_price, terms.cap, (spec.sub_id or "").strip() or None,
                    spec.thank_you_message.strip(), url, named)


def _version(number: int, spec: FormSpec) -> LeadFormVersion:
    return LeadFormVersion(number=number, fields=spec.fields, consent_text=spec.consent_text,
                           disclosed_buyers=spec.disclosed_buyers,
                           named_buyers=[NamedBuyer(buyer_id=i) for i in spec.named_buyers])


def _apply(form: LeadForm, spec: FormSpec) -> None:
    form.name, form.default_country = spec.name, spec.default_country
    form.floor_price, form.cap, form.sub_id = spec.floor_price, spec.cap, spec.sub_id
    form.thank_you_message, form.thank_you_url = spec.thank_you_message, spec.thank_you_url


def create_form(seller: User, spec: FormSpec) -> LeadForm:
    spec = _checked(spec)
    form = LeadForm(public_id=secrets.token_urlsafe(9), seller_id=seller.id)
    _apply(form, spec)
    form.versions.append(_version(1, spec))
    db.session.add(form)
    db.session.flush()
    return form


def update_form(form: LeadForm, spec: FormSpec) -> LeadForm:
    """Change the form; a new version when what the person reads changed."""
    spec = _checked(spec)
    _apply(form, spec)
    current = form.current
    if (current.fields, current.consent_text, current.disclosed_buyers,
            set(current.named_buyer_ids)) != (spec.fields, spec.consent_text,
                                              spec.disclosed_buyers, set(spec.named_buyers)):
        form.versions.append(_version(current.number + 1, spec))
    db.session.flush()
    return form


def seller_form(seller: User, form_id: int) -> LeadForm:
    form = db.session.get(LeadForm, form_id)
    if form is None or form.seller_id != seller.id:
        raise NotFound("No such form.")
    return form
