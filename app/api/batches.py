"""API routes for sellers' batches and real-time leads (SPEC §11)."""
from flask import Response, stream_with_context
from sqlalchemy import select

from app.api.auth import api_blueprint, api_user, key_checked_with_sale
from app.api.fast_json import json_arguments
from app.api.schemas import (
    NOT_ALLOWED_YET, ApiErrorSchema, BatchChangeSchema, BatchFileSchema, BatchSchema, BatchUploadSchema,
    LeadCreatedSchema, LeadInputSchema,
)
from app.extensions import db
from app.models import Batch, Role
from app.realtime import auction
from app.services import batches, market_stats
from app.services.ingest import pipeline, realtime, reports

blp = api_blueprint("Batches", __name__, description="Sellers: batches and real-time leads")


def _visible_batch(batch_id: int) -> Batch:
    return batches.batch_for(api_user(), batch_id)


def _seller():
    return api_user(Role.SELLER, "Only sellers can upload leads.")


def _batch_body(batch: Batch) -> Batch:
    batch.rejection_counts = dict(reports.rejection_counts(batch))
    batch.sources = market_stats.sub_id_figures([batch.id])
    if batch.is_finished:
        batch.listing = batches.listing(batch)
    if api_user().is_admin:  # risk_score, signals and spot-check status (SPEC §11)
        from app.api.admin import mark_admin_view

        mark_admin_view([batch])
    return batch


@blp.route("/batches", methods=["POST"])
@blp.arguments(BatchUploadSchema, location="form")
@blp.arguments(BatchFileSchema, location="files")
@blp.response(202, BatchSchema, description="Accepted; poll GET /batches/{id} for progress")
@blp.alt_response(201, schema=BatchSchema, description="Already processed")
@blp.alt_response(409, schema=ApiErrorSchema,
                  description="duplicate_file: the same file uploaded before (send "
                              "allow_duplicate); floor_needs_confirmation: a floor far above "
                              "recent prices (send confirm_floor)")
@blp.alt_response(422, schema=ApiErrorSchema, description="Not a CSV, no header, bad terms")
@blp.alt_response(403, schema=ApiErrorSchema, description=NOT_ALLOWED_YET)
def upload_batch(form, files):
    """Upload a CSV batch (multipart). Processing continues in the background."""
    seller = _seller()
    terms = pipeline.check_terms(form["default_country"], form["floor_price"], form["cap"],
                                 form["mapping"])
    # Refused before the file is stored and read: the floor needs none of it.
    pipeline.check_upload_floor(terms.floor_price, form["confirm_floor"])
    upload, seller_id = files["file"], seller.id
    token = pipeline.stage_upload(seller, upload.stream)
    try:
        batch = pipeline.create_batch(seller, token, upload.filename, terms,
                                      allow_same_file=form["allow_duplicate"],
                                      confirm_floor=form["confirm_floor"])
        db.session.commit()  # processed from here on (BatchUploaded)
    finally:
        pipeline.discard_upload(seller_id, token)  # gone already if it became a batch
    db.session.refresh(batch)
    return _batch_body(batch), 202 if not batch.is_finished else 201


@blp.route("/batches", methods=["GET"])
@blp.response(200, BatchSchema(many=True))
def list_batches():
    """The caller's batches, newest first."""
    user = api_user()
    return db.session.scalars(select(Batch).where(Batch.seller_id == user.id)
                              .order_by(Batch.id.desc()).limit(200)).all()


@blp.route("/batches/<int:batch_id>")
@blp.response(200, BatchSchema)
@blp.alt_response(404, schema=ApiErrorSchema)
def get_batch(batch_id: int):
    """Status, progress and verdict counts of a batch."""
    return _batch_body(_visible_batch(batch_id))


def _changed(batch_id: int) -> Batch:
    """The batch as it is now: the commit that resumed or re-priced it started its
    matching (done already when jobs run inline, else under way)."""
    db.session.commit()
    db.session.expire_all()
    return _batch_body(_visible_batch(batch_id))


@blp.route("/batches/<int:batch_id>/pause", methods=["POST"])
@blp.response(200, BatchSchema)
@blp.alt_response(404, schema=ApiErrorSchema)
@blp.alt_response(409, schema=ApiErrorSchema, description="Not a held or live batch")
def pause_batch(batch_id: int):
    """Stop offering the batch's unsold leads until a resume; sold copies stay sold."""
    batches.pause(api_user(), batch_id)
    return _changed(batch_id)


@blp.route("/batches/<int:batch_id>/resume", methods=["POST"])
@blp.response(200, BatchSchema)
@blp.alt_response(404, schema=ApiErrorSchema)
@blp.alt_response(409, schema=ApiErrorSchema, description="Not a held or live batch")
def resume_batch(batch_id: int):
    """Offer the paused leads again (held ones wait for the spot-check as before);
    withdrawn and delisted leads stay off the market."""
    batches.resume(api_user(), batch_id)
    return _changed(batch_id)


@blp.route("/batches/<int:batch_id>/withdraw", methods=["POST"])
@blp.response(200, BatchSchema)
@blp.alt_response(404, schema=ApiErrorSchema)
@blp.alt_response(409, schema=ApiErrorSchema, description="Not a held or live batch")
def withdraw_batch(batch_id: int):
    """Take the batch's unsold leads off the market for good; sold copies stay sold."""
    batches.withdraw(api_user(), batch_id)
    return _changed(batch_id)


@blp.route("/batches/<int:batch_id>", methods=["PATCH"])
@blp.arguments(BatchChangeSchema)
@blp.response(200, BatchSchema)
@blp.alt_response(404, schema=ApiErrorSchema)
@blp.alt_response(409, schema=ApiErrorSchema,
                  description="floor_needs_confirmation: a floor far above recent prices; "
                              "send it again with confirm: true. batch_not_listed.")
@blp.alt_response(422, schema=ApiErrorSchema)
def change_batch(data, batch_id: int):
    """Re-price the unsold leads: floor price and/or cap. The next sale is made under
    the new terms; past sales keep their price."""
    batches.reprice(api_user(), batch_id, floor_price=data.get("floor_price"),
                    cap=data.get("cap"), confirm=data["confirm"])
    return _changed(batch_id)


@blp.route("/batches/<int:batch_id>/rejections")
@blp.response(200, content_type="text/csv", description="row, codes (;-separated), message, "
              "original cells; in the upload's encoding and delimiter, or .xlsx for a workbook")
@blp.alt_response(404, schema=ApiErrorSchema)
def get_rejections(batch_id: int):
    """The rejected rows with their reasons, to fix and upload again."""
    download = reports.rejections_download(_visible_batch(batch_id))
    return Response(
        stream_with_context(download.chunks), content_type=download.content_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'})


@blp.route("/leads", methods=["POST"])
@key_checked_with_sale  # no statement for a kept API key: checked with the sale
# An instance, loaded by every request: given the class, webargs makes one per request,
# deep-copying its fields (a sixth of the request's CPU on the real-time path); a plainly
# valid body is loaded without webargs (app.api.fast_json).
@json_arguments(blp, LeadInputSchema())
@blp.response(201, LeadCreatedSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="The lead's verdict (code, message)")
@blp.alt_response(403, schema=ApiErrorSchema, description=NOT_ALLOWED_YET)
def post_lead(payload):
    """One lead in real time, validated by the same rules as a CSV row."""
    seller = _seller()
    terms = realtime.terms_of(payload)
    # Speed to lead: matched before we answer (with the leads arriving at the same
    # time, or by live bids when some order bids); each sale's webhook goes as it commits.
    return auction.sell(seller, payload, terms)
