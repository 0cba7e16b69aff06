"""The public opt-out page (SPEC §14): a person asks to stop being contacted, by
email (a one-time link) or by phone (the code in a message a buyer sent them); how
and why in app.people.opt_out. Every answer reads the same whether or not the person
is in the database."""
from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import Length, Optional

from app.auth.forms import ConfirmForm
from app.errors import DomainError
from app.extensions import db, limiter
from app.main import bp
from app.people import opt_out

ANSWER = ("If we hold anything about you, the companies that bought it are being told to stop "
          "contacting you, and you will not be sold again.")


class OptOutForm(FlaskForm):
    email = StringField("Your email address", validators=[Optional(), Length(max=254)],
                        render_kw={"autocomplete": "email", "inputmode": "email"})
    phone = StringField("Your phone number", validators=[Optional(), Length(max=40)],
                        render_kw={"autocomplete": "tel", "inputmode": "tel"},
                        description="With the country code, such as +1 415 555 0100.")
    code = StringField("Opt-out code", validators=[Optional(), Length(max=20)],
                       render_kw={"autocomplete": "off", "autocapitalize": "characters"},
                       description="Phone only: the 8-character code in the message you got.")
    submit = SubmitField("Stop contacting me")


@bp.route("/opt-out", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["OPT_OUT_RATE_LIMIT_PER_IP"], methods=["POST"])
def opt_out_page():
    form = OptOutForm()
    if form.validate_on_submit():
        email, phone, code = (form.email.data or "").strip(), (form.phone.data or "").strip(), \
            (form.code.data or "").strip()
        try:
            if email:
                opt_out.request_by_email(email, phone)
                answer = ("We have emailed that address a link. Follow it to confirm; it works "
                          "once. " + ANSWER)
            elif phone and code:
                opt_out.confirm_by_code(phone, code)
                answer = "If the code is one sent to this number, it is opted out now. " + ANSWER
            else:
                raise OptOutIncomplete()
            db.session.commit()
        except OptOutIncomplete:
            form.code.errors = list(form.code.errors) + [
                "Give your email address, or your phone number with the code from a message."]
        except DomainError as exc:
            db.session.rollback()
            field = {"invalid_email": form.email, "invalid_phone": form.phone,
                     "invalid_code": form.code}.get(exc.code, form.email)
            field.errors = list(field.errors) + [exc.message]
        else:
            flash(answer, "info")
            return redirect(url_for("main.opt_out_page"))
    return render_template("main/opt_out.html", form=form)


class OptOutIncomplete(Exception):
    """Neither an email nor a phone with its code."""


@bp.route("/opt-out/<token>")
def opt_out_link(token: str):
    """The emailed link: the secret moves into the signed session and the browser goes
    on to a page whose address does not carry it; a POST confirms (a mail scanner
    following the link confirms nothing)."""
    session["opt_out_token"] = token
    return redirect(url_for("main.opt_out_confirm"))


@bp.route("/opt-out/confirm", methods=["GET", "POST"])
def opt_out_confirm():
    form = ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        done = opt_out.confirm(session.pop("opt_out_token", ""))
        db.session.commit()
        if done:
            flash("Done: you are opted out. " + ANSWER, "success")
        else:
            flash("This link does not work any more (used, or expired): ask for a new one.",
                  "danger")
        return redirect(url_for("main.opt_out_page"))
    return render_template("main/opt_out_confirm.html", form=form,
                           has_token=bool(session.get("opt_out_token")))
