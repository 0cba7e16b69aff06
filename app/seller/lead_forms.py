"""Seller routes: hosted lead forms (SPEC §14) -- the list, the builder, and each form's
link, embed snippet, versions and latest certificates."""
import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from wtforms import RadioField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from app.auth.sessions import current_account
from app.consent import builder
from app.consent.fields import FORM_FIELDS
from app.errors import ValidationFailed, problems
from app.extensions import db
from app.forms import show_problems
from app.models import ConsentCertificate, Lead, LeadForm, LeadFormVersion
from app.seller import bp
from app.seller.forms import BatchTermsForm

DEFAULT_CONSENT = (
    "By ticking this box I agree that the companies named below may contact me by phone, "
    "text message and email about my request, including by automated means. Consent is "
    "not a condition of any purchase, and I can withdraw it at any time.")
DEFAULT_FIELDS = [{"name": "first_name", "required": True}, {"name": "email", "required": True},
                  {"name": "phone", "required": False}]


class LeadFormForm(BatchTermsForm):
    name = StringField("Title of the form", validators=[Length(max=120)],
                       description="The heading of the hosted page (an embed shows none).")
    consent_text = TextAreaField(
        "Consent text", render_kw={"rows": 5}, description="Shown next to the box the person ticks. Editing it "
        "makes a new version; every certificate keeps the version its person saw.")
    audience = RadioField("Who may contact them", default="described", choices=[
        SelectChoice("described", "Buyers I describe: any buyer on the exchange may buy its leads"),
        SelectChoice("named", "Buyers I name: only they may buy its leads")])
    disclosed_buyers = TextAreaField(
        "Kinds of buyer who may contact them",
        description="One a line, e.g. “Licensed insurance agents in your state”.")
    named_buyers = SelectMultipleField("Buyers named on the form", coerce=int,
                                       validate_choice=False)
    sub_id = StringField("Source (sub_id) of its leads", validators=[Length(max=255)],
                         description="Empty: “form” and the form's id.")
    thank_you_message = TextAreaField("Thank-you message")
    thank_you_url = StringField("Thank-you page (optional)",
                                description="Visitors of the hosted link go there after "
                                            "sending; in an embed it is a Continue button.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.floor_price.description = "No lead of this form is sold below this price."


def _chosen_fields() -> list[dict]:
    asked = set(request.form.getlist("ask"))
    required = set(request.form.getlist("required"))
    return [{"name": name, "required": name in required} for name in FORM_FIELDS if name in asked]


def _spec(form: LeadFormForm, fields: list[dict]) -> builder.FormSpec:
    named = form.audience.data == "named"
    return builder.FormSpec(
        name=form.name.data or "", fields=fields, consent_text=form.consent_text.data or "",
        disclosed_buyers="" if named else form.disclosed_buyers.data or "",
        named_buyers=tuple(form.named_buyers.data or ()) if named else (),
        default_country=form.default_country.data or "",
        floor_price=form.floor_price.minor_units or 0, cap=form.cap.data,
        sub_id=form.sub_id.data, thank_you_message=form.thank_you_message.data or "",
        thank_you_url=form.thank_you_url.data)


def _builder_page(form: LeadFormForm, fields: list[dict], lead_form=None, status=200):
    return render_template("seller/lead_form_edit.html", form=form, lead_form=lead_form,
                           catalogue=FORM_FIELDS, chosen={f["name"]: f for f in fields},
                           nameable=builder.nameable_buyers()), status


def _save(form: LeadFormForm, lead_form=None):
    fields = _chosen_fields()
    if form.validate():
        try:
            spec = _spec(form, fields)
            if lead_form is None:
                lead_form = builder.create_form(current_account, spec)
            else:
                builder.update_form(lead_form, spec)
            db.session.commit()
            flash("Form saved.", "success")
            return redirect(url_for("seller.lead_form", form_id=lead_form.id))
        except ValidationFailed as exc:
            db.session.rollback()
            show_problems(problems(exc), lambda name: getattr(form, name, None)
                          if name != "fields" else None)
    return _builder_page(form, fields, lead_form, 422)


@bp.route("/forms")
def lead_forms():
    found = db.session.execute(
        sa.select(LeadForm, sa.func.count(ConsentCertificate.id))
        .outerjoin(LeadFormVersion, LeadFormVersion.form_id == LeadForm.id)
        .outerjoin(ConsentCertificate, ConsentCertificate.form_version_id == LeadFormVersion.id)
        .where(LeadForm.seller_id == current_account.id)
        .group_by(LeadForm.id).order_by(LeadForm.id.desc()).limit(50)).all()
    return render_template("seller/lead_forms.html", forms=found)


@bp.route("/forms/new", methods=["GET", "POST"])
def new_lead_form():
    if request.method == "POST":
        return _save(LeadFormForm())
    form = LeadFormForm(data={"consent_text": DEFAULT_CONSENT, "default_country": "US",
                              "cap": 1, "floor_price": 0})
    return _builder_page(form, DEFAULT_FIELDS)


@bp.route("/forms/<int:form_id>", methods=["GET", "POST"])
def lead_form(form_id: int):
    lead_form = builder.seller_form(current_account, form_id)
    if request.method == "POST":
        return _save(LeadFormForm(), lead_form)
    version = lead_form.current
    form = LeadFormForm(data={
        "name": lead_form.name, "consent_text": version.consent_text,
        "audience": "named" if version.named_buyers else "described",
        "disclosed_buyers": "" if version.named_buyers else version.disclosed_buyers,
        "named_buyers": list(version.named_buyer_ids),
        "default_country": lead_form.default_country,
        "floor_price": lead_form.floor_price, "cap": lead_form.cap, "sub_id": lead_form.sub_id,
        "thank_you_message": lead_form.thank_you_message,
        "thank_you_url": lead_form.thank_you_url})
    recent = db.session.execute(
        sa.select(ConsentCertificate.public_id, ConsentCertificate.created_at,
                  ConsentCertificate.lead_id, LeadFormVersion.number, Lead.status)
        .join(LeadFormVersion, LeadFormVersion.id == ConsentCertificate.form_version_id)
        .join(Lead, Lead.id == ConsentCertificate.lead_id)
        .where(LeadFormVersion.form_id == lead_form.id)
        .order_by(ConsentCertificate.id.desc()).limit(20)).all()
    return render_template(
        "seller/lead_form_edit.html", form=form, lead_form=lead_form, catalogue=FORM_FIELDS,
        chosen={f["name"]: f for f in version.fields}, recent=recent,
        nameable=builder.nameable_buyers(),
        link=url_for("consent.lead_form", public_id=lead_form.public_id, _external=True),
        embed_src=url_for("static", filename="js/leadx-embed.js", _external=True))
