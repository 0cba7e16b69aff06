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
  guarded like text.

The Excel downloads (`xlsx_chunks`) need none of that: their cells are typed. Text is
text (a phone keeps its "+", a formula is never one), numbers and booleans are what
they are, dates and times are Excel's own, each with its number format, and amounts
are numbers in major units in a format with the currency's decimals and code
(`money_cell`).

Money is written in major units with the currency in its own `currency` column (the
last column of the file), formatted from integer minor units by `major_units` with
integer arithmetic only, never a float: 123450 USD is "1234.50", 5 JPY is "5".
"""
import csv
import io
import itertools
import math
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
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
# A workbook of one sheet. Its cells are inline strings (never formulas), numbers,
# booleans, or numbers in a number format (dates, times and amounts, as Excel keeps
# them). Written part by part into a ZIP that is streamed as it grows: nothing on
# disk, flat memory; the styles part goes last, once the sheet has named its formats.
_XLSX_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_XLSX_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_XLSX_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_XLSX_PARTS = {
    "[Content_Types].xml": (
        _XML + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'),
    "_rels/.rels": (
        f'{_XML}<Relationships xmlns="{_XLSX_PKG}"><Relationship Id="rId1" '
        f'Type="{_XLSX_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
    "xl/workbook.xml": (
        f'{_XML}<workbook xmlns="{_XLSX_MAIN}" xmlns:r="{_XLSX_REL}"><sheets><sheet '
        'name="{sheet}" sheetId="1" r:id="rId1"/></sheets></workbook>'),
    "xl/_rels/workbook.xml.rels": (
        f'{_XML}<Relationships xmlns="{_XLSX_PKG}"><Relationship Id="rId1" '
        f'Type="{_XLSX_REL}/worksheet" Target="worksheets/sheet1.xml"/><Relationship '
        f'Id="rId2" Type="{_XLSX_REL}/styles" Target="styles.xml"/></Relationships>'),
}
# Characters XML 1.0 cannot hold at all.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_QUOTE = {'"': "&quot;"}
_FIRST_CUSTOM_FORMAT = 164  # lower ids are Excel's built-in formats
_HEADER_STYLE = 1  # bold (_Styles)
_WIDTH_SAMPLE = 100  # rows read before the sheet to size its columns
# How a date, a moment, a time of day and a duration show when the caller names no
# format: as ISO 8601 writes them, read alike in every locale.
_DEFAULT_FORMATS = {date: "yyyy-mm-dd", datetime: "yyyy-mm-dd hh:mm:ss", time: "hh:mm:ss",
                    timedelta: "[h]:mm:ss"}


@dataclass(frozen=True, slots=True)
class Formatted:
    """A cell's value with its number format: a format code ("yyyy-mm-dd hh:mm",
    '#,##0.00 "USD"') or the id of one of Excel's built-in formats (14: the short date
    of the reader's locale). The value is a number, a date, a datetime (naive: a
    workbook has no zones), a time or a timedelta."""

    value: int | float | Decimal | date | datetime | time | timedelta
    number_format: str | int


def currency_format(currency: str) -> str:
    """A number format for amounts in major units of `currency`: its decimals, thousands
    grouped, its code after the amount ("1,234.50 USD", "5,000 JPY")."""
    digits = minor_digits(currency)
    return "#,##0" + ("." + "0" * digits if digits else "") + f' "{currency.upper()}"'


def money_cell(minor: Optional[int], currency: str) -> Optional[Formatted]:
    """An amount in integer minor units as a workbook's number in major units, exact (a
    Decimal, never a float), in `currency_format`. None stays None (an empty cell)."""
    if minor is None:
        return None
    return Formatted(Decimal(major_units(minor, currency)), currency_format(currency))


def excel_serial(value: date | datetime | time | timedelta) -> int | float | None:
    """A date or time as Excel's 1900 date system counts it (openpyxl's own count,
    imported only by a workbook's download); None before 1900, which it cannot hold."""
    from openpyxl.utils.datetime import to_excel

    if isinstance(value, date) and value.year < 1900:
        return None
    if isinstance(value, datetime) and value.tzinfo is not None:
        raise ValueError(f"a workbook holds wall-clock times, not {value!r}")
    return to_excel(value)


class _Styles:
    """The workbook's cell styles: 0 the default, 1 the header's bold, then one for each
    number format the cells name, in the order they come."""

    def __init__(self):
        self._styles: dict[str | int, int] = {}
        self._custom: dict[str, int] = {}  # format code -> its numFmtId

    def of(self, number_format: str | int) -> int:
        style = self._styles.get(number_format)
        if style is None:
            style = self._styles[number_format] = len(self._styles) + 2
            if isinstance(number_format, str):
                self._custom[number_format] = _FIRST_CUSTOM_FORMAT + len(self._custom)
        return style

    def xml(self) -> str:
        custom = "".join(f'<numFmt numFmtId="{number}" formatCode="{escape(code, _QUOTE)}"/>'
                         for code, number in self._custom.items())
        formats = "".join(
            f'<xf numFmtId="{self._custom.get(f, f)}" fontId="0" fillId="0" borderId="0" '
            'xfId="0" applyNumberFormat="1"/>' for f in self._styles)
        return (
            f'{_XML}<styleSheet xmlns="{_XLSX_MAIN}">'
            + (f'<numFmts count="{len(self._custom)}">{custom}</numFmts>' if custom else "")
            + '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font><font><b/>'
            '<sz val="11"/><name val="Calibri"/></font></fonts><fills count="2"><fill>'
            '<patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/>'
            '</fill></fills><borders count="1"><border><left/><right/><top/><bottom/>'
            '<diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0" '
            'fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            f'<cellXfs count="{len(self._styles) + 2}"><xf numFmtId="0" fontId="0" '
            'fillId="0" borderId="0" xfId="0"/><xf numFmtId="0" fontId="1" fillId="0" '
            f'borderId="0" xfId="0" applyFont="1"/>{formats}</cellXfs><cellStyles count="1">'
            '<cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>')


def _text_cell(value, style: str = "") -> str:
    text = escape(_NOT_XML.sub("\ufffd", str(value)))
    return f'<c{style} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def _number(value) -> str | None:
    """A number as the sheet's XML spells it; None for what no cell holds (a NaN, an
    infinity)."""
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else None
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return str(value)


def _default_format(value: date | time | timedelta) -> str:
    return _DEFAULT_FORMATS[datetime if isinstance(value, datetime) else type(value)]


def _xlsx_cell(value, styles: _Styles) -> str:
    if value is None or value == "":  # a blank cell, as a sheet's own are
        return "<c/>"
    if isinstance(value, bool):
        return f'<c t="b"><v>{int(value)}</v></c>'
    if isinstance(value, str):
        return _text_cell(value)
    number_format = None
    if isinstance(value, Formatted):
        value, number_format = value.value, value.number_format
    if isinstance(value, (date, time, timedelta)):
        number_format = number_format or _default_format(value)
        serial = excel_serial(value)
        if serial is None:
            return _text_cell(value.isoformat())
        value = serial
    number = _number(value) if isinstance(value, (int, float, Decimal)) else None
    if number is None:
        return _text_cell(value)
    if number_format in (None, 0, "General"):
        return f"<c><v>{number}</v></c>"
    return f'<c s="{styles.of(number_format)}"><v>{number}</v></c>'


_FORMAT_NOISE = re.compile(r'\[[^]]*]|[\\_*].|"')  # [red], [h], escapes, padding, quotes


def _shown_width(value) -> int:
    """About how many characters a cell shows: Excel shows a number or a date too wide
    for its column as "####"."""
    if isinstance(value, Formatted):
        code = value.number_format if isinstance(value.number_format, str) else "dd.mm.yyyy"
        number = "" if isinstance(value.value, (date, time, timedelta)) else value.value
        return max(len(_FORMAT_NOISE.sub("", code)), len(str(number)) + 4)
    if isinstance(value, (date, time, timedelta)):
        return len(_default_format(value))
    return max(map(len, str(value).splitlines()), default=0)


def _columns_xml(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    widths = [len(str(name)) + 2 for name in header]
    for row in rows:
        widths.extend([0] * (len(row) - len(widths)))
        for i, value in enumerate(row):
            if value is not None:
                widths[i] = max(widths[i], _shown_width(value) + 1)
    if not widths:
        return ""  # <cols> may not be empty
    return "<cols>" + "".join(
        f'<col min="{i}" max="{i}" width="{min(max(width, 8), 60)}" customWidth="1"/>'
        for i, width in enumerate(widths, 1)) + "</cols>"


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


def xlsx_chunks(sheet: str, header: Sequence[str], rows: Iterable[Sequence]) -> Iterator[bytes]:
    """Stream an .xlsx workbook of one sheet: the header (bold), then the rows. A cell
    is what its value is: a str a text cell (an inline string, never a formula: a phone
    stays "+7954..."), an int, float or Decimal a number, a bool a boolean, a date,
    datetime, time or timedelta a number in a date or time format (`_DEFAULT_FORMATS`),
    a `Formatted` value a number in its own format, None or "" a blank cell. Columns are
    as wide as the header and the first rows need."""
    rows = iter(rows)
    first = list(itertools.islice(rows, _WIDTH_SAMPLE))
    styles = _Styles()
    out = _Drain()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in _XLSX_PARTS.items():
            archive.writestr(name, text.replace("{sheet}", escape(sheet, _QUOTE)))
        with archive.open("xl/worksheets/sheet1.xml", "w") as part:
            part.write(f'{_XML}<worksheet xmlns="{_XLSX_MAIN}">{_columns_xml(header, first)}'
                       '<sheetData>'.encode())
            heading = "".join(_text_cell(name, f' s="{_HEADER_STYLE}"') for name in header)
            part.write(f"<row>{heading}</row>".encode())
            for row in itertools.chain(first, rows):
                part.write(f"<row>{''.join([_xlsx_cell(v, styles) for v in row])}</row>"
                           .encode())
                if out.pending >= 1 << 16:
                    yield out.take()
            part.write(b"</sheetData></worksheet>")
        archive.writestr("xl/styles.xml", styles.xml())
    yield out.take()
