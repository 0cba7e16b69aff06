"""Open any upload (pure): an Excel workbook (workbook.py) or a CSV file (reader.py)."""
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, BinaryIO

from app.services.ingest.reader import CsvSource, binary_stream, open_csv

if TYPE_CHECKING:
    from app.services.ingest.workbook import XlsxSource

XLSX_SIGNATURE = b"PK\x03\x04"  # a ZIP archive, as every .xlsx is


def _xlsx(stream: BinaryIO, owned: bool, mapping: Mapping[str, str] | None) -> "XlsxSource":
    # Imported when a workbook arrives: openpyxl adds ~17 MB to every process, and
    # most uploads (and every ingest worker) never need it.
    from app.services.ingest.workbook import XlsxSource

    return XlsxSource(stream, owned, mapping)


def open_upload(source: BinaryIO | str | os.PathLike, *,
                mapping: Mapping[str, str] | None = None,
                shape: tuple[str, str] | None = None) -> "CsvSource | XlsxSource":
    """An upload opened for streaming: an Excel workbook or a CSV file (`open_csv`
    says how a CSV is read, and what its known `shape` spares; a workbook is read
    from its start)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as peek:
            is_workbook = peek.read(len(XLSX_SIGNATURE)) == XLSX_SIGNATURE
        if not is_workbook:
            return open_csv(source, mapping=mapping, shape=shape)
        return _xlsx(open(source, "rb"), True, mapping)
    stream, owned = binary_stream(source)
    start = stream.tell()
    is_workbook = stream.read(len(XLSX_SIGNATURE)) == XLSX_SIGNATURE
    stream.seek(start)
    if is_workbook:
        return _xlsx(stream, owned, mapping)
    return open_csv(stream, mapping=mapping, shape=shape)
