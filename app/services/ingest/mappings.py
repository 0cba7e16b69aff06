"""Column mappings a seller chose before, offered again (query: reads only).

A seller who exports from the same tool every week maps its odd headers once: the next
upload with columns we do not recognise takes the seller's latest choice for each of
its headers (a field, or "nothing" when they chose to ignore the column; ignoring the
"email" column to read mail from "Work mail" is a choice about both)."""
from collections.abc import Iterable

import sqlalchemy as sa

from app.extensions import db
from app.models import Batch, BatchSource
from app.services.ingest.fields import text_key

RECENT_BATCHES = 20  # how far back a choice is remembered


def remembered(seller_id: int, headers: Iterable[str]) -> dict[str, str]:
    """header → field (or "" for ignored) for those of `headers` the seller mapped in
    one of their recent uploads; the latest choice wins."""
    wanted = {text_key(header): header for header in headers}
    if not wanted:
        return {}
    choices: dict[str, str] = {}
    for mapping in db.session.scalars(
            sa.select(Batch.mapping).where(Batch.seller_id == seller_id,
                                           Batch.source == BatchSource.UPLOAD)
            .order_by(Batch.id.desc()).limit(RECENT_BATCHES)):
        for header, field in ((mapping or {}).get("columns") or {}).items():
            key = text_key(header)
            if key in wanted and wanted[key] not in choices:
                choices[wanted[key]] = field or ""
        if len(choices) == len(wanted):
            break
    return choices
