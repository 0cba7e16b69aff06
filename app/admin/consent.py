"""Admins' side of people's consent (SPEC §14): buyers who have not acknowledged a
person's opt-out by its deadline (10 business days, app.people.opt_out), and the
national do-not-call lists (app.services.do_not_call)."""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.admin import bp
from app.errors import DomainError
from app.extensions import db
from app.people import opt_out
from app.services import do_not_call, suppression_lists


class DoNotCallForm(FlaskForm):
    country = StringField("Country", validators=[DataRequired(), Length(min=2, max=2)],
                          render_kw={"maxlength": 2, "autocapitalize": "characters"},
                          description="Two letters, such as US. Numbers without +code are read "
                                      "as this country's.")
    phones = TextAreaField("Numbers", validators=[Optional(), Length(max=20_000_000)],
                           render_kw={"rows": 5, "spellcheck": "false"},
                           description="One per line, or separated by commas.")
    file = FileField("Or a CSV file", description="A column named phone (or tel, mobile…), or "
                     "one number per cell.")
    load = SubmitField("Load into the list")
    remove = SubmitField("Take these off the list")


@bp.route("/opt-outs")
def overdue_opt_outs():
    return render_template("admin/opt_outs.html", overdue=opt_out.overdue())


@bp.route("/do-not-call", methods=["GET", "POST"])
def do_not_call_lists():
    form = DoNotCallForm()
    if form.validate_on_submit():
        upload = request.files.get("file")
        try:
            phones = []
            if upload is not None and upload.filename:
                phones = suppression_lists.read_csv(upload.read())[0]
            phones += [p for p in (form.phones.data or "").replace(",", "\n").split("\n")
                       if p.strip()]
            if form.remove.data:
                unlisted = do_not_call.remove(form.country.data, phones, current_user)
                done = (f"{unlisted.removed} numbers taken off ({unlisted.invalid} not valid, "
                        f"skipped); {unlisted.restored} leads on offer have their phone back.")
            else:
                loaded = do_not_call.load(form.country.data, phones, current_user)
                done = (f"{loaded.added} numbers added ({loaded.invalid} not valid, skipped); "
                        f"{loaded.flagged} leads held already are on the list now.")
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
        else:
            flash(done, "success")
            return redirect(url_for("admin.do_not_call_lists"))
    return render_template("admin/do_not_call.html", form=form, counts=do_not_call.counts())
