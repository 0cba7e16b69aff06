"""CSV and Excel exports that spreadsheets open safely.

A cell starting with = + - @ (or a tab/CR before them) is a formula to Excel and
LibreOffice: an attacker's "=HYPERLINK(...)" in a lead's name would run on the buyer's
machine. Such cells are prefixed with an apostrophe (OWASP's advice)."""
import csv
import io
import itertools
import re
import zipfile
from typing import Iterable, Iterator, Sequence
from xml.sax.saxutils import escape

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\0")


def safe_cell(value) -> str:
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def csv_lines(header: Sequence[str], rows: Iterable[Sequence],
              trusted_columns: frozenset[int] = frozenset(), *, delimiter: str = ",",
              bom: bool = True) -> Iterator[str]:
    """Stream a CSV document line by line (UTF-8 BOM first, so Excel reads UTF-8).

    `trusted_columns` are validated values that cannot carry a formula (an E.164 phone
    starts with "+"); they stay as they are so a CRM can import them. `delimiter` and
    `bom` give a file back in the shape it came in."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([safe_cell(h) for h in header])
    yield ("\ufeff" if bom else "") + flush()
    for row in rows:
        writer.writerow([v if i in trusted_columns else safe_cell(v) for i, v in enumerate(row)])
        yield flush()


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A workbook of one sheet, its cells inline strings (never formulas) or numbers. Written
# part by part into a ZIP that is streamed as it grows: nothing on disk, flat memory.
_XLSX_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_XLSX_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_XLSX_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'),
    "_rels/.rels": (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
        f'xmlns="{_XLSX_PKG}"><Relationship Id="rId1" Type="{_XLSX_REL}/officeDocument" '
        'Target="xl/workbook.xml"/></Relationships>'),
    "xl/workbook.xml": (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook '
        f'xmlns="{_XLSX_MAIN}" xmlns:r="{_XLSX_REL}"><sheets><sheet name="{{sheet}}" '
        'sheetId="1" r:id="rId1"/></sheets></workbook>'),
    "xl/_rels/workbook.xml.rels": (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
        f'xmlns="{_XLSX_PKG}"><Relationship Id="rId1" Type="{_XLSX_REL}/worksheet" '
        'Target="worksheets/sheet1.xml"/></Relationships>'),
}
# Characters XML 1.0 cannot hold at all.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class _Drain(io.RawIOBase):
    """A write-only stream whose bytes are taken out as they come (no tell(): zipfile
    then writes a streamable archive)."""

    def __init__(self):
        self._parts: list[bytes] = []
        self.pending = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        self.pending += len(data)
        return len(data)

    def take(self) -> bytes:
        data, self._parts, self.pending = b"".join(self._parts), [], 0
        return data


def _xlsx_cell(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"<c><v>{value}</v></c>"
    text = escape(_NOT_XML.sub("\ufffd", "" if value is None else str(value)))
    return f'<c t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def xlsx_chunks(sheet: str, header: Sequence[str], rows: Iterable[Sequence]
                ) -> Iterator[bytes]:
    """Stream an .xlsx workbook of one sheet: the header, then the rows."""
    out = _Drain()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in _XLSX_PARTS.items():
            archive.writestr(name, text.replace("{sheet}", escape(sheet, {'"': "&quot;"})))
        with archive.open("xl/worksheets/sheet1.xml", "w") as part:
            part.write(f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                       f'<worksheet xmlns="{_XLSX_MAIN}"><sheetData>'.encode())
            for row in itertools.chain([header], rows):
                part.write(f"<row>{''.join(map(_xlsx_cell, row))}</row>".encode())
                if out.pending >= 1 << 16:
                    yield out.take()
            part.write(b"</sheetData></worksheet>")
    yield out.take()
