"""Public routes of hosted lead forms and consent certificates (SPEC §14, §11).

The form page may be framed by any site (the embed snippet frames it); it sets no
cookie and reads no session, so its submission needs no CSRF token and a framing
site gains nothing a visitor could not do by hand. Abuse is held back by rate limits
per address and per form, a field people never see (bots fill it), and a signed
one-time token of the form as served (app/consent/submissions.py)."""
import json
from urllib.parse import urlsplit

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from app.consent import bp, certificates
from app.consent.fields import FORM_FIELDS
from app.consent.submissions import Evidence, FormRefused, read_token, serve_token, submit
from app.extensions import csrf, db, limiter
from app.market import jobs
from app.models import LeadForm
from app.security import framable_policy
from app.services.ingest.validate import normalise_url

HONEYPOT = "website"


def _form(public_id: str) -> LeadForm:
    form = db.session.scalar(db.select(LeadForm).where(LeadForm.public_id == public_id))
    if form is None or not form.active:
        abort(404)
    return form


def _framable(response, form: LeadForm):
    targets = ()
    if form.thank_you_url:
        parts = urlsplit(form.thank_you_url)
        targets = (f"{parts.scheme}://{parts.netloc}",)
    response.headers["Content-Security-Policy"] = framable_policy(targets)
    return response


def _evidence(form: LeadForm) -> Evidence:
    hosted = url_for("consent.lead_form", public_id=form.public_id, _external=True)
    page = normalise_url(request.form.get("page_url") or "") or hosted
    referrer = normalise_url(request.form.get("referrer") or "")
    try:
        time_on_page = max(0, min(int(request.form.get("time_on_page_ms") or ""), 86_400_000))
    except ValueError:
        time_on_page = None
    try:
        inputs = json.loads(request.form.get("inputs") or "{}")
    except ValueError:
        inputs = {}
    return Evidence(page, referrer, request.remote_addr, request.user_agent.string or "",
                    time_on_page, inputs if isinstance(inputs, dict) else {})


def _page(form: LeadForm, *, version=None, values=None, problems=None, status=200,
          token=None):
    embedded = request.values.get("embed") == "1"
    version = version or form.current
    page_url = request.values.get("page_url") or (request.args.get("page") if embedded else "")
    referrer = request.values.get("referrer") or (
        request.args.get("ref") if embedded else request.referrer) or ""
    response = current_app.make_response((render_template(
        "consent/form.html", form=form, version=version, catalogue=FORM_FIELDS,
        values=values or {}, problems=problems or {}, token=token or serve_token(version),
        embedded=embedded, page_url=page_url, referrer=referrer, honeypot=HONEYPOT,
        # A refused form comes back measured so far: the script carries on from there.
        carried_inputs=request.form.get("inputs", ""),
        carried_time=request.form.get("time_on_page_ms", "")), status))
    return _framable(response, form)


def _rate_key_ip() -> str:
    return f"{request.remote_addr}|{request.view_args.get('public_id')}"


def _rate_key_form() -> str:
    return f"form|{request.view_args.get('public_id')}"


@bp.route("/f/<public_id>", methods=["GET", "POST"])
@csrf.exempt
@limiter.limit(lambda: current_app.config["FORM_SUBMIT_RATE_LIMIT_PER_IP"], methods=["POST"],
               key_func=_rate_key_ip)
@limiter.limit(lambda: current_app.config["FORM_SUBMIT_RATE_LIMIT_PER_FORM"], methods=["POST"],
               key_func=_rate_key_form)
def lead_form(public_id: str):
    form = _form(public_id)
    if request.method == "GET":
        return _page(form)
    if request.form.get(HONEYPOT):
        # A bot: it is thanked like a person and nothing is kept.
        return _framable(current_app.make_response(
            render_template("consent/thanks.html", form=form,
                            embedded=request.values.get("embed") == "1")), form)
    values = {name: request.form.get(name, "") for name in (*FORM_FIELDS, "consent")}
    served = None
    try:
        served = read_token(form, request.form.get("token", ""))
        lead, _ = submit(form, served, values, values["consent"] == "yes",
                         _evidence(form))
    except FormRefused as refused:
        db.session.rollback()
        # A refused answer keeps its token (the form stays the one served); an expired
        # or spent one gets the current version afresh.
        keep = served is not None and refused.code != "form_already_sent"
        return _page(form, version=served.version if keep else None, values=values,
                     problems=refused.problems, status=422,
                     token=request.form.get("token") if keep else None)
    db.session.commit()
    # As POST /api/v1/leads does: matched before the visitor is answered.
    jobs.match_leads([lead.id])
    db.session.commit()
    embedded = request.values.get("embed") == "1"
    if form.thank_you_url and not embedded:
        return _framable(redirect(form.thank_you_url, code=303), form)
    return _framable(current_app.make_response(
        render_template("consent/thanks.html", form=form, embedded=embedded)), form)


@bp.route("/certificates/<public_id>")
def certificate(public_id: str):
    found = certificates.find(public_id)
    if found is None:
        abort(404)
    viewer = current_user if current_user.is_authenticated else None
    return render_template("consent/certificate.html", c=certificates.public_view(found),
                           party=certificates.for_party(found, viewer), embedded=False)
