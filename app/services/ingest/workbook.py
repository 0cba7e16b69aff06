"""Excel workbooks (.xlsx) as uploads (SPEC §3), pure (no database); `sources.open_upload`
sends them here.

The first sheet is streamed through openpyxl's sheet parser, so memory stays flat
whatever the number of rows (the workbook's table of distinct strings is the one part
held whole, as Excel's format needs). Cells Excel typed are written as the seller sees
them: whole numbers without ".0", dates as YYYY-MM-DD (with the time when there is
one), booleans as TRUE/FALSE, zero-padded codes (a postal code formatted 00000) padded.
Rows then travel as CSV text in the same `Block`s as an uploaded CSV, so workers and
the pipeline treat both alike.

A rejected row goes back to the seller with the cell types her sheet had (reports.py):
a date a date in its number format, a number a number, a boolean a boolean. So each
row that has typed cells travels with one more cell, after the header's columns, that
names them (`TYPES_MARKER`, then "3d22 5n~00000 6b": column 3 a date in built-in
format 22, column 5 a number in the format "00000", column 6 a boolean). Validation
reads only the header's columns, and a rejected row is stored with all its cells, so
`typed_cells` finds the types again beside the text; rows stored before (all text)
read as they are.
"""
import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from typing import BinaryIO
from urllib.parse import quote, unquote

from openpyxl.reader.excel import ExcelReader
from openpyxl.styles.numbers import BUILTIN_FORMATS, BUILTIN_FORMATS_MAX_SIZE
from openpyxl.styles.stylesheet import apply_stylesheet
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet._reader import DATA_TAG, ROW_TAG, WorkSheetParser
from openpyxl.xml.functions import iterparse

from app.services.exports import Formatted
from app.services.ingest.fields import HeaderMap, map_headers
from app.services.ingest.reader import BLOCK_BYTES, MAX_COLUMNS, Block, refuse

# An archive member may inflate this much before we call it a zip bomb: real sheets
# compress 5-20 times, shared strings a little more.
MAX_RATIO, MAX_MEMBER_BYTES = 200, 2 << 30
_SAMPLE_ROWS = 50  # rows read ahead to tell a consent flag from consent text
TYPES_MARKER = "xlsx-cell-types:"
# One typed cell: its column (from 0), its kind (number, boolean, date or datetime,
# time, duration) and its number format: none (General), a built-in one's id, or "~"
# and a custom one's code, percent-encoded (no space, comma or quote: the row's line
# stays unquoted and splits fast).
_KINDS = ((bool, "b"), (int, "n"), (float, "n"), (datetime, "d"), (date, "d"), (time, "t"),
          (timedelta, "p"))
_TYPED = re.compile(r"([0-9]+)([bndtp])([0-9]+|~[^ ]+)?", re.ASCII)
_DURATION = re.compile(r"(?:(-?[0-9]+) days?, )?([0-9]+):([0-9]{2}):([0-9]{2}(?:\.[0-9]+)?)",
                       re.ASCII)


def _checked_archive(stream: BinaryIO) -> None:
    """Refuse a ZIP that is no workbook, or whose parts would inflate out of bounds."""
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile:
        raise refuse("binary_file", "This file starts like an Excel workbook (.xlsx) but is "
                     "damaged; open it in Excel, save it again and upload that.") from None
    with archive:
        names = set(archive.namelist())
        if "xl/workbook.xml" not in names:
            raise refuse("binary_file", "This is a ZIP archive, not a CSV file or an Excel "
                         "workbook (.xlsx); upload the file of leads itself.")
        for info in archive.infolist():
            if info.file_size > MAX_MEMBER_BYTES or (
                    info.file_size > 64 << 20
                    and info.file_size > MAX_RATIO * max(info.compress_size, 1)):
                raise refuse("binary_file", "This workbook inflates to far more than a sheet "
                             "of leads could hold; save the sheet as CSV and upload that.")
    stream.seek(0)


def _digest(stream: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return digest.hexdigest(), size


def _number_text(value: float | int, number_format: str) -> str:
    """A number as Excel shows it: 15 significant digits, no ".0", codes zero-padded."""
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.15g}"
    else:
        text = str(value)
    if number_format and set(number_format) == {"0"} and text.isdigit():
        return text.zfill(len(number_format))
    return text


def cell_text(value, number_format: str) -> str:
    """One cell's value as the seller sees it in Excel."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return _number_text(value, number_format)
    if isinstance(value, datetime):
        if value.time() == time() and "h" not in number_format.lower():
            return value.date().isoformat()
        return value.isoformat(" ", "seconds")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _kind(value) -> str | None:
    for kind, letter in _KINDS:
        if isinstance(value, kind):
            return letter
    return None


def _typed(text: str, kind: str, number_format: str | None):
    """A cell's text (cell_text's) as the value Excel held, in its number format."""
    if kind == "b":
        value = {"TRUE": True, "FALSE": False}[text]
    elif kind == "n":
        value = int(text) if text.lstrip("-").isdigit() else float(text)
    elif kind == "d":
        value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    elif kind == "t":
        value = time.fromisoformat(text)
    else:
        days, hours, minutes, seconds = _DURATION.fullmatch(text).groups()
        value = timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes),
                          seconds=float(seconds))
    if number_format is None or kind == "b":
        return value
    return Formatted(value, int(number_format) if number_format.isdigit()
                     else unquote(number_format[1:]))


def typed_cells(cells: list[str], width: int) -> list:
    """A stored row's cells with the types the seller's sheet gave them (see the module's
    docstring), for exports.xlsx_chunks; `width` is the header's. A row without a types
    cell, stored before there was one or from a CSV, stays text."""
    if len(cells) <= width or not cells[-1].startswith(TYPES_MARKER):
        return cells
    named = [_TYPED.fullmatch(entry) for entry in cells[-1][len(TYPES_MARKER):].split(" ")]
    typed = cells[:-1]
    if not all(named) or any(int(found[1]) >= len(typed) for found in named):
        return cells  # a seller's own cell that happens to start so
    for found in named:
        column = int(found[1])
        try:
            typed[column] = _typed(typed[column], found[2], found[3])
        except (ValueError, KeyError, AttributeError, OverflowError):
            pass  # not as Excel wrote it: kept as text
    return typed


class _SheetRows(WorkSheetParser):
    """openpyxl's parser of a sheet, holding nothing per row read: openpyxl's own keeps
    every row it read in the XML tree (cleared, ~100 bytes each) and the attributes of
    every row of a custom height."""

    def rows(self) -> Iterator[tuple[int, list[dict]]]:
        data = None
        for event, element in iterparse(self.source, events=("start", "end")):
            if event == "start":
                if element.tag == DATA_TAG:
                    data = element
            elif element.tag == ROW_TAG:
                yield self.parse_row(element)
                self.row_dimensions.clear()
                if data is not None:
                    data.clear()


class XlsxSource:
    """An opened workbook upload, shaped like CsvSource: hash, header map, rows, blocks.
    It has no encoding nor delimiter; `file_format` tells the two apart."""

    file_format = "xlsx"
    encoding = None
    delimiter = None

    def __init__(self, stream: BinaryIO, owned: bool, mapping: Mapping[str, str] | None):
        self._stream, self._owned = stream, owned
        self._reader: ExcelReader | None = None
        self._sheet = None
        try:
            self.content_hash, self.size = _digest(stream)
            _checked_archive(stream)
            try:
                # openpyxl's loader, less its worksheets: its read-only sheet parses a
                # whole sheet that lacks a stored size, holding every row, to size it.
                self._reader = ExcelReader(stream, read_only=True, data_only=True)
                self._reader.read_manifest()
                self._reader.read_strings()
                self._reader.read_workbook()
                apply_stylesheet(self._reader.archive, self._reader.wb)
                path = next((rel.target for _, rel in self._reader.parser.find_sheets()
                             if rel.target in self._reader.valid_files
                             and "chartsheet" not in rel.Type), None)
            except (InvalidFileException, KeyError, ValueError, OSError, SyntaxError,
                    zipfile.BadZipFile) as exc:
                raise refuse("binary_file", "This Excel workbook cannot be read; open it in "
                             "Excel, save it again (or save the sheet as CSV) and upload "
                             "that.") from exc
            if path is None:
                raise refuse("no_header", "The workbook has no sheet.")
            self._sheet_size = self._reader.archive.getinfo(path).file_size
            self._sheet = self._reader.archive.open(path)
            self._rows = self._sheet_rows()
            self._number = 0
            header = self._next_nonblank()
            if header is None:
                raise refuse("no_header", "The first sheet of the workbook is empty.")
            self.header_row = self._number
            self.headers = [cell.strip() for cell in header[0]]
            self._ahead: list[tuple[int, list[str], list[str]]] = []
            while len(self._ahead) < _SAMPLE_ROWS and (row := self._next_nonblank()) is not None:
                self._ahead.append((self._number, *row))
            self.header_map: HeaderMap = map_headers(self.headers, mapping,
                                                     [values for _, values, _ in self._ahead])
            if not self.header_map.known:
                raise refuse(
                    "no_header",
                    "None of the first sheet's column names is one we know (such as email, "
                    "phone, consent_at, source_url); check that its first row is a header, "
                    "or map the columns.", headers=self.headers)
        except BaseException:
            self.close()
            raise

    def _sheet_rows(self) -> Iterator[tuple[int, list[str], list[str]]]:
        """(row number, cell texts, typed cells) of the rows the sheet stores, in order;
        each typed cell as the types cell names it (module docstring)."""
        book = self._reader.wb
        # style -> (number format as openpyxl's cells say, as the types cell names it)
        formats: dict[int, tuple[str, str]] = {}

        def number_format(style_id: int) -> tuple[str, str]:
            if style_id not in formats:
                found = book._cell_styles[style_id].numFmtId if style_id else 0
                if found < BUILTIN_FORMATS_MAX_SIZE:
                    formats[style_id] = (BUILTIN_FORMATS.get(found, "General"),
                                         str(found) if found else "")
                else:
                    code = book._number_formats[found - BUILTIN_FORMATS_MAX_SIZE]
                    formats[style_id] = (code, "~" + quote(code, safe=""))
            return formats[style_id]

        parser = _SheetRows(self._sheet, self._reader.shared_strings, data_only=True,
                            epoch=book.epoch, date_formats=book._date_formats,
                            timedelta_formats=book._timedelta_formats)
        try:
            for number, cells in parser.rows():
                width = max((cell["column"] for cell in cells), default=0)
                if width > MAX_COLUMNS:
                    raise refuse("too_many_columns", f"Row {number} has {width:,} columns, "
                                 f"more than the {MAX_COLUMNS:,} we read; this does not look "
                                 "like a sheet of leads.", row=number)
                values, typed = [""] * width, []
                for cell in cells:
                    value = cell["value"]
                    shown, named = number_format(cell["style_id"])
                    values[cell["column"] - 1] = cell_text(value, shown)
                    if value is not None and (kind := _kind(value)) is not None:
                        typed.append(f"{cell['column'] - 1}{kind}{'' if kind == 'b' else named}")
                yield number, values, typed
        except (ValueError, SyntaxError, KeyError, IndexError) as exc:
            raise refuse("binary_file", f"Row {self._number + 1} of the workbook cannot be "
                         "read; open it in Excel, save it again (or save the sheet as CSV) "
                         "and upload that.", row=self._number + 1) from exc

    def _next_nonblank(self) -> tuple[list[str], list[str]] | None:
        for number, values, typed in self._rows:
            self._number = number
            while values and not values[-1]:
                values.pop()
            if values:
                return values, typed
        return None

    def _typed_rows(self) -> Iterator[tuple[int, list[str], list[str]]]:
        try:
            while self._ahead:
                yield self._ahead.pop(0)
            while (row := self._next_nonblank()) is not None:
                yield self._number, *row
        finally:
            self.close()

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(spreadsheet row number, values); blank rows are skipped but counted."""
        for number, values, _ in self._typed_rows():
            yield number, values

    __iter__ = rows

    def blocks(self, size: int, after: int = 0, max_bytes: int = BLOCK_BYTES
               ) -> Iterator[Block]:
        """The rows after row `after` as CSV lines in Blocks, like CsvSource.blocks()
        (the budget counted in characters); a row with typed cells ends with its types
        cell, after the header's columns."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        lines: list[str] = []
        numbers: list[int] = []
        chars = 0
        width = len(self.headers)
        for number, values, typed in self._typed_rows():
            if number <= after:
                continue
            if typed:
                values += [""] * (width - len(values))
                values.append(TYPES_MARKER + " ".join(typed))
            writer.writerow(values)
            line = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            numbers.append(number)
            lines.append(line)
            chars += len(line)
            if len(numbers) == size or chars >= max_bytes:
                yield Block.of_lines(",", lines, numbers)
                lines, numbers, chars = [], [], 0
        if numbers:
            yield Block.of_lines(",", lines, numbers)

    @property
    def bytes_read(self) -> int:
        """For progress reports: the file's size times the share of the sheet read."""
        try:
            return self.size * self._sheet.tell() // max(self._sheet_size, 1)
        except ValueError:
            return self.size  # closed: read to its end

    def close(self) -> None:
        if self._sheet is not None:
            self._sheet.close()
        if self._reader is not None:
            self._reader.archive.close()
            self._reader = None
        if self._owned:
            self._stream.close()

    def __enter__(self) -> "XlsxSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
