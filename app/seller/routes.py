"""Seller area routes: dashboard, batch upload with column mapping, live progress, reports,
and per batch what sold, at what prices, returns and buyers' (anonymous) feedback."""
import dataclasses
import time
from datetime import datetime
from functools import cache
from typing import Callable, Optional

from flask import (
    Response, abort, flash, redirect, render_template, request,
    stream_with_context, url_for,
)
import pycountry
import sqlalchemy as sa
from sqlalchemy import select

from app.auth.forms import ConfirmForm
from app.auth.sessions import current_account
from app.errors import DomainError, problems
from app.core import bounds, figures
from app.extensions import commit_keeping_loaded, db
from app.formatting import money_input, user_locale
from app.forms import show_problems
from app.models import Batch, BatchSource, SpotCheck, User
from app.seller import bp
from app.seller.forms import BatchTermsChangeForm, ConfirmUploadForm, UploadForm
from app.services import batches as batch_listing
from app.services import ledger, market_stats, spotchecks
from app.services.spotchecks import VERDICT_LABELS
from app.services.ingest import mappings, pipeline, reports
from app.services.ingest.fields import FIELDS, HeaderMappingError, missing_required
from app.services.ingest.reader import UnreadableFile


def _recent_batches(limit: int = 50) -> list[Batch]:
    return db.session.scalars(select(Batch).where(Batch.seller_id == current_account.id)
                              .order_by(Batch.id.desc()).limit(limit)).all()


def _batch_figures(batches: list[Batch], sources: bool = False) -> dict:
    """What the batches sold, their latest spot-checks and (with `sources`) their
    sub_ids' figures, kept per revision of the seller's figures. Leads a batch takes
    without a sale (uploads, real-time) move only its `accepted`, so that is in the key."""
    ids = [b.id for b in batches]

    def compute() -> dict:
        found = {"sales": market_stats.batch_sales(ids),
                 "checks": spotchecks.latest_status_by_batch(ids),
                 "offers": batch_listing.offer_states(ids)}
        if sources:
            found["sources"] = market_stats.sub_id_figures(ids)
        return found

    return figures.kept(current_account, "batch_figures",
                        (sources, tuple((b.id, b.accepted) for b in batches)), compute)


@bp.route("/")
def dashboard():
    batches = _recent_batches(10)
    balance, statement = figures.kept(current_account, "money", None, lambda: (
        ledger.balance_for(current_account), ledger.statement_for(current_account, limit=20)))
    return render_template(
        "seller/dashboard.html", balance=balance, statement=statement,
        batches=batches, **_batch_figures(batches, sources=True),
        feedback=figures.kept(current_account, "seller_feedback", None,
                              lambda: market_stats.seller_feedback(current_account)),
        upload_refusal=pipeline.upload_refusal(current_account),
    )


@bp.route("/batches")
def batches():
    batches = _recent_batches(200)
    return render_template("seller/batches.html", batches=batches, **_batch_figures(batches),
                           upload_refusal=pipeline.upload_refusal(current_account))


def _last_terms() -> dict:
    # The last file's terms: a day's real-time batch carries one API request's terms.
    last = db.session.scalar(select(Batch).where(Batch.seller_id == current_account.id,
                                                 Batch.source == BatchSource.UPLOAD)
                             .order_by(Batch.id.desc()))
    if last is None:  # a first upload: the country of the seller's browser language
        territory = user_locale().territory
        return {"default_country": territory if territory and pycountry.countries.get(
            alpha_2=territory) else "US"}
    return {"default_country": last.default_country, "cap": last.cap,
            "floor_price": money_input(last.floor_price)}


def _terms(form) -> pipeline.BatchTerms:
    return pipeline.check_terms(form.default_country.data, form.floor(),
                                form.cap.data)


def _start(token: str, filename: str, terms: pipeline.BatchTerms, confirm: ConfirmUploadForm,
           preview: Callable[[], pipeline.UploadPreview]):
    """Create the batch, or show the confirm page again with why a floor far above
    recent prices needs the seller's word (the staged file stays). A tick confirms
    the floor the page asked about only, not one typed over it since."""
    floor_confirmed = confirm.confirm_floor.data and _floor_asked() == terms.floor_price
    try:
        batch = pipeline.create_batch(current_account, token, filename, terms,
                                      allow_same_file=confirm.allow_same_file.data,
                                      confirm_floor=floor_confirmed)
    except market_stats.FloorNeedsConfirmation as exc:
        db.session.rollback()
        return _confirm_page(confirm, preview(), terms.floor_price, exc.message), 409
    db.session.commit()  # the batch is processed from here on (BatchUploaded)
    return redirect(url_for("seller.batch_detail", batch_id=batch.id))


def _floor_asked() -> Optional[int]:
    """The floor the confirm page last asked the seller to confirm, if it did."""
    asked = request.form.get("floor_asked", "")
    return int(asked) if asked.isascii() and asked.isdigit() else None


def _confirm_page(form: ConfirmUploadForm, preview: pipeline.UploadPreview,
                  floor_price: Optional[int], floor_warning: str = ""):
    """Every question about the upload at once, the floor's among them when it is far
    above recent prices (`floor_warning`: why, when the caller was just told)."""
    if floor_price and not floor_warning:
        try:
            pipeline.check_upload_floor(floor_price, confirm=False)
        except market_stats.FloorNeedsConfirmation as exc:
            floor_warning = exc.message
    if _floor_asked() != floor_price:
        form.confirm_floor.data = False  # a tick for another floor confirms nothing here
    elif floor_warning and not form.confirm_floor.data:
        form.confirm_floor.errors = ["Tick this to keep the floor, or lower it."]
    return render_template("seller/confirm.html", form=form, preview=preview, fields=FIELDS,
                           floor_warning=floor_warning, floor_price=floor_price)


@bp.route("/batches/new", methods=["GET", "POST"])
def upload():
    form = UploadForm(data=None if request.method == "POST" else _last_terms())
    if form.validate_on_submit():
        token = None
        try:
            pipeline.check_can_sell(current_account)
            terms = _terms(form)
            token = pipeline.stage_upload(current_account, form.file.data.stream)
            preview = pipeline.inspect_upload(current_account, token)
            if preview.unknown and (remembered := mappings.remembered(current_account.id,
                                                                        preview.headers)):
                preview, terms = _with_mapping(token, preview, terms, remembered)
            commit_keeping_loaded()  # nothing written: no lock while the batch re-reads it
            confirm = ConfirmUploadForm(formdata=None, data={
                "token": token, "filename": form.file.data.filename or "upload.csv",
                "default_country": terms.default_country, "cap": terms.cap,
                "floor_price": form.floor_price.data})
            if preview.unknown or preview.missing or preview.duplicate_of:
                return _confirm_page(confirm, preview, terms.floor_price)
            return _start(token, confirm.filename.data, terms, confirm, lambda: preview)
        except DomainError as exc:
            db.session.rollback()
            if token:
                pipeline.discard_upload(current_account.id, token)
            form.file.errors.append(exc.message)
    return render_template("seller/upload.html", form=form,
                           upload_refusal=pipeline.upload_refusal(current_account))


def _with_mapping(token: str, preview, terms: pipeline.BatchTerms, remembered: dict):
    """The file read with the seller's earlier choices for its unknown headers, unless
    those choices no longer fit together (two columns would feed one field)."""
    try:
        preview = pipeline.inspect_upload(current_account, token, remembered)
    except HeaderMappingError:
        return preview, terms
    return preview, dataclasses.replace(terms, mapping=remembered)


MAX_COLUMNS = 10_000  # the mapping form has one pair of fields per column of the file


@bp.route("/batches/confirm", methods=["POST"])
def confirm_upload():
    """Start the batch with the seller's mapping and terms; anything wrong with those
    shows the page again, and only a file that cannot be read is dropped."""
    form = ConfirmUploadForm()
    token, mapping = form.token.data or "", {}
    try:
        columns = bounds.COUNT.narrowed(0, MAX_COLUMNS).take(request.form.get("columns", "0"),
                                                             "columns")
        mapping = {request.form.get(f"header_{i}", ""): request.form.get(f"column_{i}", "")
                   for i in range(columns)}
        if not form.validate_on_submit():
            flash("Please check the batch's terms.", "danger")
            return _confirm_page(form, _preview_again(token, mapping), form.floor())
        if missing_required(mapping.values()) and not form.allow_missing.data:
            flash("Some fields every lead needs have no column: map them, or confirm that you "
                  "want the file processed anyway.", "danger")
            return _confirm_page(form, _preview_again(token, mapping), form.floor())
        terms = _terms(form)
        terms = pipeline.BatchTerms(terms.default_country, terms.floor_price, terms.cap, mapping)
        return _start(token, form.filename.data, terms, form,
                      lambda: _preview_again(token, mapping))
    except DomainError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        if exc.code != "unknown_upload" and not isinstance(exc, UnreadableFile):
            try:
                return _confirm_page(form, _preview_again(token, mapping), form.floor())
            except DomainError:
                pass  # the file itself is gone or unreadable: start again
        if token.isascii() and token.isalnum():
            pipeline.discard_upload(current_account.id, token)
        return redirect(url_for("seller.upload"))


def _preview_again(token: str, mapping: dict) -> pipeline.UploadPreview:
    """The staged file as the confirm page shows it: with the seller's mapping, or
    as we read it ourselves if that mapping is what was wrong."""
    try:
        return pipeline.inspect_upload(current_account, token, mapping)
    except HeaderMappingError:
        return pipeline.inspect_upload(current_account, token)


def _own_batch(batch_id: int) -> Batch:
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.seller_id != current_account.id:
        abort(404)
    return batch


@cache
def _batch_and_check() -> sa.Select:
    # Built once: the batch page runs it on every view.
    return (sa.select(Batch, SpotCheck).outerjoin(SpotCheck, spotchecks.latest_of_batch())
            .where(Batch.id == sa.bindparam("batch_id")))


def _own_batch_and_check(batch_id: int) -> tuple[Batch, Optional[SpotCheck]]:
    """The seller's batch and its latest spot-check, in one query."""
    row = db.session.execute(_batch_and_check(), {"batch_id": batch_id}).first()
    if row is None or row[0].seller_id != current_account.id:
        abort(404)
    return row[0], row[1]


@bp.route("/batches/<int:batch_id>")
def batch_detail(batch_id: int):
    batch, check = _own_batch_and_check(batch_id)
    terms = BatchTermsChangeForm(formdata=None, data={
        "floor_price": money_input(batch.floor_price), "cap": batch.cap})
    return _batch_page(batch, check, terms)


def _batch_page(batch: Batch, check: Optional[SpotCheck], terms: BatchTermsChangeForm,
                floor_warning: str = ""):
    return render_template(
        "seller/batch.html", batch=batch, terms_form=terms, confirm=ConfirmForm(),
        floor_warning=floor_warning, history=_history(batch),
        spot_check=spotchecks.seller_report(check) if batch.is_finished else None,
        verdict_labels=VERDICT_LABELS, **_report(batch))


@dataclasses.dataclass(frozen=True)
class BatchChange:
    """A line of the batch page's changes; `actor_id` None: LeadX (an admin)."""
    created_at: datetime
    action: str
    details: dict
    actor_id: Optional[int]


def _history(batch: Batch) -> list[dict]:
    """The batch's changes (batch_listing.history), kept per revision of the seller's
    figures: every change raises it. Who made each is kept as an id, not an email
    (the cache holds no personal data); the email comes from the session, where the
    signed-in user already is."""
    def compute() -> tuple[BatchChange, ...]:
        return tuple(BatchChange(e.created_at, e.action.split(".")[1], e.details,
                                 None if e.actor is None or e.actor.is_admin else e.actor_id)
                     for e in batch_listing.history(batch))

    def who(actor_id: Optional[int]) -> str:
        actor = db.session.get(User, actor_id) if actor_id is not None else None
        return actor.email if actor is not None else "LeadX"

    changes = figures.kept(current_account, "batch_history", batch.id, compute)
    return [{"change": c, "who": who(c.actor_id)} for c in changes]


def _manage(batch_id: int, action, done: str) -> Response:
    """Run a pause, resume or withdrawal of the seller's batch; `done` says how many
    leads it changed."""
    _own_batch(batch_id)
    if not ConfirmForm().validate_on_submit():
        flash("The form expired; please try again.", "danger")
    else:
        try:
            changed = action(current_account, batch_id)
            db.session.commit()
            flash(done.format(n=changed) if changed else "No lead of this batch was in that "
                  "state, so nothing changed.", "success" if changed else "info")
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "danger")
    return redirect(url_for("seller.batch_detail", batch_id=batch_id))


@bp.route("/batches/<int:batch_id>/pause", methods=["POST"])
def pause_batch(batch_id: int):
    return _manage(batch_id, batch_listing.pause,
                   "Paused {n:,} unsold leads: no buyer gets them until you resume.")


@bp.route("/batches/<int:batch_id>/resume", methods=["POST"])
def resume_batch(batch_id: int):
    return _manage(batch_id, batch_listing.resume, "Resumed {n:,} leads.")


@bp.route("/batches/<int:batch_id>/withdraw", methods=["POST"])
def withdraw_batch(batch_id: int):
    return _manage(batch_id, batch_listing.withdraw,
                   "Withdrew {n:,} unsold leads for good; sales already made stand.")


@bp.route("/batches/<int:batch_id>/terms", methods=["POST"])
def change_batch_terms(batch_id: int):
    """Re-price the unsold leads. A floor far above recent prices shows the page again
    with the reason, to be confirmed."""
    batch, check = _own_batch_and_check(batch_id)
    form = BatchTermsChangeForm()
    if not form.validate_on_submit():
        return _batch_page(batch, check, form), 422
    try:
        changed = batch_listing.reprice(current_account, batch_id,
                                        floor_price=form.floor_price.minor_units,
                                        cap=form.cap.data, confirm=form.confirm.data)
        db.session.commit()
    except market_stats.FloorNeedsConfirmation as exc:
        db.session.rollback()
        return _batch_page(*_own_batch_and_check(batch_id), form,
                           floor_warning=exc.message), 409
    except DomainError as exc:
        db.session.rollback()
        show_problems(problems(exc), lambda name: getattr(form, name, None))
        return _batch_page(*_own_batch_and_check(batch_id), form), exc.status
    flash(f"New terms saved for {changed:,} unsold leads; they apply from the next sale.",
          "success")
    return redirect(url_for("seller.batch_detail", batch_id=batch_id))


@bp.route("/batches/<int:batch_id>/progress")
def batch_progress(batch_id: int):
    """The report panel; htmx polls it while the batch is processing."""
    batch = _own_batch(batch_id)
    return render_template("seller/_batch_report.html", batch=batch, **_report(batch))


def _report(batch: Batch) -> dict:
    if not batch.is_finished:
        return {"counts": [], "preview": [], "stats": market_stats.BatchSales(),
                "temperatures": {}, "sources": [], "listing": None, "offer": None,
                "lead_terms": batch_listing.lead_terms(batch)}
    figures_now = dict(_finished_figures(batch))
    # Kept encrypted between requests; the messages are decrypted for this page only.
    figures_now["preview"] = reports.open_preview(figures_now.pop("sealed_preview"))
    return figures_now


def _finished_figures(batch: Batch) -> dict:
    """A finished batch's aggregates, kept per revision of the seller's figures and
    the batch's own state (its leads' terms follow its status, cap and floor). The
    temperatures and what is listed change with the leads' age too: they are
    counted again each minute."""
    def compute() -> dict:
        counts = reports.rejection_counts(batch)
        # The preview lists rejected rows under their counts: none to read without them.
        return {"counts": counts,
                "sealed_preview": reports.sealed_preview(batch) if counts else [],
                "stats": market_stats.batch_sales([batch.id])[batch.id],
                "temperatures": market_stats.batch_temperatures(batch),
                "sources": market_stats.sub_id_figures([batch.id]),
                "listing": batch_listing.listing(batch),
                "offer": batch_listing.offer_state(batch.id),
                "lead_terms": batch_listing.lead_terms(batch)}

    key = (batch.id, batch.status, batch.cap, batch.floor_price, batch.accepted,
           batch.rejected, int(time.time() // 60))
    return figures.kept(current_account, "finished_batch", key, compute)


@bp.route("/batches/<int:batch_id>/rejections")
def batch_rejections(batch_id: int):
    download = reports.rejections_download(_own_batch(batch_id))
    return Response(
        stream_with_context(download.chunks), content_type=download.content_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'})

