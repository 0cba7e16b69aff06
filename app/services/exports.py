"""CSV and Excel exports that spreadsheets open safely, in one money convention
(SPEC §5): pure logic, no database.

Every CSV the product writes goes through `csv_lines`, and every cell in it is one
of two kinds:

- text (the default): a cell starting with = + - @, a tab, CR or NUL is a formula to
  Excel, LibreOffice or Google Sheets -- an attacker's "=HYPERLINK(...)" in a lead's
  name would run on the buyer's machine -- so such cells get an apostrophe in front,
  as OWASP advises (CSV Injection; ASVS 5.0 requirement 1.2.10 names the same
  characters). The apostrophe shows; the formula never runs.
- number: values we computed (ids, counts, scores, rates, amounts). A negative
  amount must stay a number, so these are written as they are -- but only if they
  look like a number; anything else is guarded like text.
- phone: a validated E.164 number is written after a tab ("\t+79541234567"), because
  SPEC §5 wants phone numbers to stay text in spreadsheets. Written bare,
  "+79541234567" opens as the formula +79541234567, shown as 7.95E+10 with the "+"
  lost; `="+7954…"` keeps it, but as a formula that CRMs then import verbatim. After
  a tab the cell is no number and no formula, so it opens as the text +79541234567,
  and every CSV reader gets the E.164 number back with a `strip()` (phonenumbers and
  most CRM importers ignore leading whitespace). A value that is not E.164 is
  guarded like text. The Excel download (`xlsx_chunks`) has no such prefix: its
  cells are typed, phones text.

Money is written in major units with the currency in its own `currency` column (the
last column of the file), formatted from integer minor units by `major_units` with
integer arithmetic only, never a float: 123450 USD is "1234.50", 5 JPY is "5".
"""
import csv
import io
import re
import zipfile
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Iterator, Mapping, Optional, Sequence
from xml.sax.saxutils import escape

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\0")
TEXT, NUMBER, PHONE = "text", "number", "phone"
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)
_E164 = re.compile(r"\+[1-9][0-9]{5,14}", re.ASCII)

# ISO 4217 currencies whose minor unit is not a hundredth (all others: 2 places).
_MINOR_DIGITS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    "CLF": 4, "UYW": 4,
}


def minor_digits(currency: str) -> int:
    """How many decimal places the currency's minor unit has (ISO 4217)."""
    return _MINOR_DIGITS.get(currency.upper(), 2)


def major_units(minor: Optional[int], currency: str) -> Optional[str]:
    """An amount in integer minor units as a plain decimal in major units, for CSV:
    123450 USD -> "1234.50", -5 USD -> "-0.05", 1234 JPY -> "1234". No thousands
    separators, a "." decimal point, no currency sign (that goes in its own column).
    None stays None (an empty cell)."""
    if minor is None:
        return None
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"money is an integer of minor units, not {minor!r}")
    digits = minor_digits(currency)
    sign = "-" if minor < 0 else ""
    major, fraction = divmod(abs(minor), 10 ** digits)
    return f"{sign}{major}.{fraction:0{digits}d}" if digits else f"{sign}{major}"


def major_units_of_average(minor: Optional[Decimal | int], currency: str) -> Optional[str]:
    """An average in minor units that may have a fraction (a cost per lead): rounded
    half up to a whole minor unit first, as the pages show it."""
    if minor is None:
        return None
    return major_units(int(Decimal(minor).quantize(Decimal(1), ROUND_HALF_UP)), currency)


def safe_cell(value) -> str:
    """Free text as a cell that no spreadsheet runs as a formula."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def number_cell(value) -> str:
    text = "" if value is None else str(value)
    return text if not text or _NUMBER.fullmatch(text) else safe_cell(text)


def phone_cell(value) -> str:
    text = "" if value is None else str(value)
    return "\t" + text if _E164.fullmatch(text) else safe_cell(text)


_CELLS = {TEXT: safe_cell, NUMBER: number_cell, PHONE: phone_cell}


def csv_lines(header: Sequence[str], rows: Iterable[Sequence],
              kinds: Mapping[str, str] | None = None, *, delimiter: str = ",",
              bom: bool = True) -> Iterator[str]:
    """Stream a CSV document line by line (UTF-8 BOM first, so Excel reads UTF-8).

    `kinds` names the columns that are not free text: NUMBER or PHONE (see the
    module's docstring); every other cell is guarded as TEXT. `delimiter` and `bom`
    give a file back in the shape it came in."""
    kinds = kinds or {}
    unknown = set(kinds) - set(header)
    if unknown:
        raise ValueError(f"kinds for columns not in the header: {sorted(unknown)}")
    cells = [_CELLS[kinds.get(name, TEXT)] for name in header]
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
        # A row may run past the header (a ragged upload given back): text, guarded.
        writer.writerow([(cells[i] if i < len(cells) else safe_cell)(value)
                         for i, value in enumerate(row)])
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


def _xlsx_cell(value, kind: str = TEXT) -> str:
    if (isinstance(value, int) and not isinstance(value, bool)) or (
            kind == NUMBER and isinstance(value, str) and _NUMBER.fullmatch(value)):
        return f"<c><v>{value}</v></c>"
    text = escape(_NOT_XML.sub("\ufffd", "" if value is None else str(value)))
    return f'<c t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def xlsx_chunks(sheet: str, header: Sequence[str], rows: Iterable[Sequence],
                kinds: Mapping[str, str] | None = None) -> Iterator[bytes]:
    """Stream an .xlsx workbook of one sheet: the header, then the rows. Every cell
    is text (an inline string, never a formula: a phone stays "+7954...") but integers
    and, in the columns `kinds` names NUMBER, what reads as a number ("12.50")."""
    kinds = kinds or {}
    column_kinds = [kinds.get(name, TEXT) for name in header]

    def row_xml(row) -> str:
        return "".join(_xlsx_cell(value, column_kinds[i] if i < len(column_kinds) else TEXT)
                       for i, value in enumerate(row))

    out = _Drain()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in _XLSX_PARTS.items():
            archive.writestr(name, text.replace("{sheet}", escape(sheet, {'"': "&quot;"})))
        with archive.open("xl/worksheets/sheet1.xml", "w") as part:
            part.write(f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                       f'<worksheet xmlns="{_XLSX_MAIN}"><sheetData>'.encode())
            part.write(f"<row>{''.join(map(_xlsx_cell, header))}</row>".encode())
            for row in rows:
                part.write(f"<row>{row_xml(row)}</row>".encode())
                if out.pending >= 1 << 16:
                    yield out.take()
            part.write(b"</sheetData></worksheet>")
    yield out.take()
