"""A buyer's side of people's consent (SPEC §14): their suppression list (add, take
off, empty, count) and the opt-outs they must acknowledge."""
from flask import flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import StringField, SubmitField, TextAreaField
from wtforms.validators import Length, Optional

from app.auth.forms import ConfirmForm
from app.auth.sessions import current_account
from app.buyer import bp
from app.errors import DomainError, ValidationFailed, problems
from app.extensions import db
from app.forms import show_problems
from app.people import opt_out
from app.services import delivery, suppression_lists


NOTHING_GIVEN = "Nothing was given: enter phones or emails, or choose a CSV file."


class SuppressionForm(FlaskForm):
    contacts = TextAreaField("Phones and emails", validators=[Optional(), Length(max=2_000_000)],
                             description="One per line, or separated by commas.",
                             render_kw={"rows": 6, "autocomplete": "off", "spellcheck": "false"})
    file = FileField("Or a CSV file", description="Columns named phone and email (or tel, "
                     "mobile, e-mail…), or one contact per cell.")
    default_country = StringField("Country of numbers without +code",
                                  validators=[Optional(), Length(min=2, max=2)],
                                  description="Two letters, such as US or ES.",
                                  render_kw={"maxlength": 2, "autocapitalize": "characters"})
    add = SubmitField("Add to my list")
    remove = SubmitField("Remove these from my list")


@bp.route("/suppressions", methods=["GET", "POST"])
def suppressions():
    form = SuppressionForm()
    if form.validate_on_submit():
        phones, emails = [], []
        upload = request.files.get("file")
        try:
            if upload is not None and upload.filename:
                phones, emails = suppression_lists.read_csv(upload.read())
            for item in (form.contacts.data or "").replace(",", "\n").replace(";", "\n").split("\n"):
                if item.strip():
                    (emails if "@" in item else phones).append(item)
            if not any(item.strip() for item in phones + emails):
                raise ValidationFailed(NOTHING_GIVEN, code="nothing_given",
                                       details={"field": "contacts"})
            if form.remove.data:
                changed = suppression_lists.remove(current_account, phones, emails,
                                                   form.default_country.data)
                done = (f"Taken off your suppression list: {changed.removed} (those not on "
                        f"it are not counted).")
            else:
                changed = suppression_lists.add(current_account, phones, emails,
                                                form.default_country.data)
                done = (f"Added to your suppression list: {changed.added} (those on it "
                        f"already are not counted).")
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            show_problems(problems(exc), lambda name: getattr(form, name, None))
        else:
            skipped = f" Skipped, not a valid phone or email: {changed.invalid}." \
                if changed.invalid else ""
            flash(done + skipped, "success")
            return redirect(url_for("buyer.suppressions"))
    return render_template("buyer/suppressions.html", form=form, clear_form=ConfirmForm(),
                           count=suppression_lists.count(current_account))


@bp.route("/suppressions/clear", methods=["POST"])
def clear_suppressions():
    if ConfirmForm().validate_on_submit():
        removed = suppression_lists.clear(current_account)
        db.session.commit()
        flash(f"Your suppression list is empty now ({removed} taken off).", "success")
    return redirect(url_for("buyer.suppressions"))


@bp.route("/opt-outs", methods=["GET", "POST"])
def opt_outs():
    if request.method == "POST" and ConfirmForm().validate_on_submit():
        count = opt_out.acknowledge(current_account)
        db.session.commit()
        flash(f"Thank you: {count} opt-out(s) acknowledged.", "success")
        return redirect(url_for("buyer.opt_outs"))
    notices = opt_out.notices_for(current_account)
    return render_template("buyer/opt_outs.html", form=ConfirmForm(), notices=notices,
                           people=delivery.people_of([n.sale_id for n in notices]))
