"""Excel workbooks (.xlsx) as uploads (SPEC §3), pure (no database); `sources.open_upload`
sends them here.

The first sheet is streamed through openpyxl's sheet parser, so memory stays flat
whatever the number of rows (the workbook's table of distinct strings is the one part
held whole, as Excel's format needs). Cells Excel typed are written as the seller sees
them: whole numbers without ".0", dates as YYYY-MM-DD (with the time when there is
one), booleans as TRUE/FALSE, zero-padded codes (a postal code formatted 00000) padded.
Rows then travel as CSV text in the same `Block`s as an uploaded CSV, so workers and
the pipeline treat both alike.
"""
import csv
import hashlib
import io
import zipfile
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from typing import BinaryIO

from openpyxl.reader.excel import ExcelReader
from openpyxl.styles.numbers import BUILTIN_FORMATS, BUILTIN_FORMATS_MAX_SIZE
from openpyxl.styles.stylesheet import apply_stylesheet
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet._reader import DATA_TAG, ROW_TAG, WorkSheetParser
from openpyxl.xml.functions import iterparse

from app.services.ingest.fields import HeaderMap, map_headers
from app.services.ingest.reader import BLOCK_BYTES, MAX_COLUMNS, Block, refuse

# An archive member may inflate this much before we call it a zip bomb: real sheets
# compress 5-20 times, shared strings a little more.
MAX_RATIO, MAX_MEMBER_BYTES = 200, 2 << 30
_SAMPLE_ROWS = 50  # rows read ahead to tell a consent flag from consent text


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
            self.headers = [cell.strip() for cell in header]
            self._ahead: list[tuple[int, list[str]]] = []
            while len(self._ahead) < _SAMPLE_ROWS and (row := self._next_nonblank()) is not None:
                self._ahead.append((self._number, row))
            self.header_map: HeaderMap = map_headers(self.headers, mapping,
                                                     [values for _, values in self._ahead])
            if not self.header_map.known:
                raise refuse(
                    "no_header",
                    "None of the first sheet's column names is one we know (such as email, "
                    "phone, consent_at, source_url); check that its first row is a header, "
                    "or map the columns.", headers=self.headers)
        except BaseException:
            self.close()
            raise

    def _sheet_rows(self) -> Iterator[tuple[int, list[str]]]:
        """(row number, cell texts) of the rows the sheet stores, in order."""
        book = self._reader.wb
        formats: dict[int, str] = {}  # style -> number format, as openpyxl's cells say

        def number_format(style_id: int) -> str:
            if style_id not in formats:
                found = book._cell_styles[style_id].numFmtId if style_id else 0
                formats[style_id] = (BUILTIN_FORMATS.get(found, "General")
                                     if found < BUILTIN_FORMATS_MAX_SIZE
                                     else book._number_formats[found - BUILTIN_FORMATS_MAX_SIZE])
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
                values = [""] * width
                for cell in cells:
                    values[cell["column"] - 1] = cell_text(cell["value"],
                                                           number_format(cell["style_id"]))
                yield number, values
        except (ValueError, SyntaxError, KeyError, IndexError) as exc:
            raise refuse("binary_file", f"Row {self._number + 1} of the workbook cannot be "
                         "read; open it in Excel, save it again (or save the sheet as CSV) "
                         "and upload that.", row=self._number + 1) from exc

    def _next_nonblank(self) -> list[str] | None:
        for number, values in self._rows:
            self._number = number
            while values and not values[-1]:
                values.pop()
            if values:
                return values
        return None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(spreadsheet row number, values); blank rows are skipped but counted."""
        try:
            while self._ahead:
                yield self._ahead.pop(0)
            while (values := self._next_nonblank()) is not None:
                yield self._number, values
        finally:
            self.close()

    __iter__ = rows

    def blocks(self, size: int, after: int = 0, max_bytes: int = BLOCK_BYTES
               ) -> Iterator[Block]:
        """The rows after row `after` as CSV lines in Blocks, like CsvSource.blocks()
        (the budget counted in characters)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        lines: list[str] = []
        numbers: list[int] = []
        chars = 0
        for number, values in self.rows():
            if number <= after:
                continue
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
