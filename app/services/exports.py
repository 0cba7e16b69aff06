"""CSV exports that spreadsheets open safely.

A cell starting with = + - @ (or a tab/CR before them) is a formula to Excel and
LibreOffice: an attacker's "=HYPERLINK(...)" in a lead's name would run on the buyer's
machine. Such cells are prefixed with an apostrophe (OWASP's advice)."""
import csv
import io
from typing import Iterable, Iterator, Sequence

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\0")


def safe_cell(value) -> str:
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def csv_lines(header: Sequence[str], rows: Iterable[Sequence],
              trusted_columns: frozenset[int] = frozenset()) -> Iterator[str]:
    """Stream a CSV document line by line (UTF-8 BOM first, so Excel reads UTF-8).

    `trusted_columns` are validated values that cannot carry a formula (an E.164 phone
    starts with "+"); they stay as they are so a CRM can import them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([safe_cell(h) for h in header])
    yield "\ufeff" + flush()
    for row in rows:
        writer.writerow([v if i in trusted_columns else safe_cell(v) for i, v in enumerate(row)])
        yield flush()
