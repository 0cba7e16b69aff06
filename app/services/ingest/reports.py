"""What a seller reads about a batch: verdict counts and the rejected rows."""
import json
from collections import Counter
from typing import Iterator

import sqlalchemy as sa

from app.extensions import db
from app.models import Batch, Rejection
from app.services.exports import csv_lines
from app.services.crypto import current_vault
from app.services.ingest.workers import CODES_SEPARATOR


def rejection_counts(batch: Batch) -> list[tuple[str, int]]:
    """(code, rows with that reason) for the batch, most frequent first; a row with
    several reasons counts under each."""
    counts: Counter[str] = Counter()
    for codes, rows in db.session.execute(
            sa.select(Rejection.codes, sa.func.count())
            .where(Rejection.batch_id == batch.id).group_by(Rejection.codes)):
        for code in codes.split(CODES_SEPARATOR):
            counts[code] += rows
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def rejection_preview(batch: Batch, limit: int = 20) -> list[tuple[int, list[str], str]]:
    """(row number, codes, message) of the first rejected rows."""
    decrypt = current_vault().decrypt
    return [(number, codes.split(CODES_SEPARATOR), decrypt(message_enc))
            for number, codes, message_enc in db.session.execute(
                sa.select(Rejection.row_number, Rejection.codes, Rejection.message_enc)
                .where(Rejection.batch_id == batch.id).order_by(Rejection.row_number)
                .limit(limit))]


def rejections_csv(batch: Batch) -> Iterator[str]:
    """Row number, code, message and the original row, to fix and upload again."""
    headers = list(batch.mapping.get("headers") or [])
    decrypt = current_vault().decrypt

    def rows():
        query = (sa.select(Rejection.row_number, Rejection.codes, Rejection.message_enc,
                           Rejection.raw_enc)
                 .where(Rejection.batch_id == batch.id).order_by(Rejection.row_number))
        for number, codes, message_enc, raw_enc in db.session.execute(
                query.execution_options(yield_per=2000)):
            yield [number, codes, decrypt(message_enc), *json.loads(decrypt(raw_enc))]

    return csv_lines(["row", "code", "message", *headers], rows())

