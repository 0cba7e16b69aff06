"""What a seller reads about a batch: verdict counts and the rejected rows."""
import json
from typing import Iterator

import sqlalchemy as sa

from app.extensions import db
from app.models import Batch, Rejection
from app.services.exports import csv_lines
from app.services.crypto import current_vault


def rejection_counts(batch: Batch) -> list[tuple[str, int]]:
    """(code, rows) for the batch, most frequent first."""
    return db.session.execute(
        sa.select(Rejection.code, sa.func.count()).where(Rejection.batch_id == batch.id)
        .group_by(Rejection.code).order_by(sa.func.count().desc(), Rejection.code)).all()


def rejection_preview(batch: Batch, limit: int = 20) -> list[tuple[int, str, str]]:
    """(row number, code, message) of the first rejected rows."""
    decrypt = current_vault().decrypt
    return [(number, code, decrypt(message_enc)) for number, code, message_enc in db.session.execute(
        sa.select(Rejection.row_number, Rejection.code, Rejection.message_enc)
        .where(Rejection.batch_id == batch.id).order_by(Rejection.row_number).limit(limit))]


def rejections_csv(batch: Batch) -> Iterator[str]:
    """Row number, code, message and the original row, to fix and upload again."""
    headers = list(batch.mapping.get("headers") or [])
    decrypt = current_vault().decrypt

    def rows():
        query = (sa.select(Rejection.row_number, Rejection.code, Rejection.message_enc,
                           Rejection.raw_enc)
                 .where(Rejection.batch_id == batch.id).order_by(Rejection.row_number))
        for number, code, message_enc, raw_enc in db.session.execute(
                query.execution_options(yield_per=2000)):
            yield [number, code, decrypt(message_enc), *json.loads(decrypt(raw_enc))]

    return csv_lines(["row", "code", "message", *headers], rows())


def sales_by_batch(batch_ids: list[int]) -> dict[int, tuple[int, int]]:
    """batch id → (sales, the seller's earnings in minor units)."""
    from app.models import Lead, Sale

    if not batch_ids:
        return {}
    rows = db.session.execute(
        sa.select(Lead.batch_id, sa.func.count(Sale.id), sa.func.sum(Sale.seller_share))
        .join(Sale, Sale.lead_id == Lead.id).where(Lead.batch_id.in_(batch_ids))
        .group_by(Lead.batch_id))
    return {batch_id: (count, int(earned or 0)) for batch_id, count, earned in rows}
