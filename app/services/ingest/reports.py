"""What a seller reads about a batch (queries): verdict counts and the rejected rows."""
import codecs
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cache, partial
from typing import Callable, Iterator

import sqlalchemy as sa

from app.extensions import db
from app.models import Batch, Rejection
from app.services.exports import XLSX_TYPE, csv_lines, xlsx_chunks
from app.services.crypto import current_vault
from app.services.privacy import ERASED_TEXT
from app.services.ingest.fields import REJECTION_COLUMNS
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


@cache
def _preview() -> sa.Select:
    # Built once: composing it cost as much as running it, on every batch page.
    return (sa.select(Rejection.row_number, Rejection.codes, Rejection.message_enc)
            .where(Rejection.batch_id == sa.bindparam("batch_id"))
            .order_by(Rejection.row_number).limit(sa.bindparam("limit")))


def rejection_preview(batch: Batch, limit: int = 20) -> list[tuple[int, list[str], str]]:
    """(row number, codes, message) of the first rejected rows."""
    return open_preview(sealed_preview(batch, limit))


def sealed_preview(batch: Batch, limit: int = 20) -> list[tuple[int, str, bytes]]:
    """The first rejected rows as stored, their messages still encrypted: what a page
    may keep between requests."""
    return [tuple(row) for row in db.session.execute(
        _preview(), {"batch_id": batch.id, "limit": limit})]


def open_preview(sealed: list[tuple[int, str, bytes]]) -> list[tuple[int, list[str], str]]:
    """`sealed_preview`'s rows as (row number, codes, message)."""
    decrypt = current_vault().decrypt
    return [(number, codes.split(CODES_SEPARATOR), decrypt(message_enc))
            for number, codes, message_enc in sealed]


def _legacy_fallback(error: UnicodeEncodeError) -> tuple[str, int]:
    """Our sentences' typographic marks in a legacy encoding that lacks them."""
    bad = error.object[error.start:error.end]
    return "".join(_PLAIN.get(ch) or _unaccented(ch, error.encoding) for ch in bad), error.end


def _unaccented(ch: str, encoding: str) -> str:
    """A letter without its accent ("í" as "i") for an encoding that lacks it, as
    Windows-1251 does; "?" if even that is missing."""
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    try:
        base.encode(encoding)
    except UnicodeEncodeError:
        return "?"
    return base or "?"


_PLAIN = {"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "…": "...",
          "—": "-", "–": "-", "\ufffd": "?"}
codecs.register_error("leadx_plain", _legacy_fallback)
# Encodings the reader reports -> the charset a browser is told.
_CHARSETS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "cp1251": "windows-1251",
             "cp1252": "windows-1252", "latin_1": "iso-8859-1", "utf-16": "utf-16",
             "utf-16-le": "utf-16le", "utf-16-be": "utf-16be"}


@dataclass(frozen=True)
class Download:
    chunks: Iterator[bytes]
    content_type: str
    filename: str


def rejections_download(batch: Batch) -> Download:
    """The rejected rows, to fix and upload again, in the shape the file came in: an
    .xlsx for a workbook, its cells typed as the seller's were (a date a date, a number
    a number); for a CSV its encoding (a BOM if it had one) and delimiter. Each row:
    number, every code (";"-separated), the sentences, the original cells."""
    source_headers = batch.mapping.get("headers") or []
    headers = [*REJECTION_COLUMNS, *source_headers]
    name = f"batch-{batch.id}-rejections"
    if batch.file_format == "xlsx":
        # Imported for a workbook only: openpyxl adds ~17 MB to a process (sources.py).
        from app.services.ingest.workbook import typed_cells

        rows = _rejected_rows(batch, partial(typed_cells, width=len(source_headers)))
        return Download(xlsx_chunks("Rejected rows", headers, rows), XLSX_TYPE,
                        f"{name}.xlsx")
    encoding = batch.encoding if batch.encoding in _CHARSETS else "utf-8-sig"
    # The utf-16 codec writes its own BOM; utf-8-sig's is written as U+FEFF.
    lines = csv_lines(headers, _rejected_rows(batch), delimiter=batch.delimiter or ",",
                      bom=encoding == "utf-8-sig")
    encoder = codecs.getincrementalencoder(
        "utf-8" if encoding == "utf-8-sig" else encoding)("leadx_plain")
    return Download((encoder.encode(line) for line in lines),
                    f"text/csv; charset={_CHARSETS[encoding]}", f"{name}.csv")


def _rejected_rows(batch: Batch, cells: Callable[[list[str]], list] = list) -> Iterator[list]:
    """Row number, codes, message, then `cells` of the row's stored cells; a row whose
    person asked to be erased has its message and no cells (privacy.py)."""
    decrypt = current_vault().decrypt
    query = (sa.select(Rejection.row_number, Rejection.codes, Rejection.message_enc,
                       Rejection.raw_enc)
             .where(Rejection.batch_id == batch.id).order_by(Rejection.row_number))
    for number, codes, message_enc, raw_enc in db.session.execute(
            query.execution_options(yield_per=2000)):
        message, raw = decrypt(message_enc), decrypt(raw_enc)
        yield [number, codes, message, *(() if raw == ERASED_TEXT else cells(json.loads(raw)))]
