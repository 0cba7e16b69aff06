"""Open a seller's CSV upload and stream its rows (SPEC §3 "encodings and shapes").

`open_csv` makes one cheap pass over the raw bytes first (SHA-256, NUL bytes, and the
UTF-8 evidence of the whole file: valid multi-byte characters against invalid bytes),
then reads a sample to pick the encoding and delimiter and to map the header (a
batch's run, which knows them, skips the pass), and finally hands out rows one record
at a time, or blocks of records as the file's own bytes for worker processes to
decode and parse (`CsvSource.blocks`, `Block`).

A file that is mostly UTF-8 with a few bad bytes is read as UTF-8, the bad bytes
becoming U+FFFD, so that validation rejects just the rows holding them
(`bad_encoding`) instead of the whole file being re-read in a legacy encoding.

Memory stays flat whatever the file holds: blank records are counted, never kept; one
record is bounded in characters (across all its lines) and in cells; a block ends on
a byte budget as well as on a row count. Anything that is not a usable CSV
raises `UnreadableFile` with one clear message.
"""
import bisect
import codecs
import csv
import functools
import hashlib
import io
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from app.errors import DomainError
from app.services.ingest.fields import SYNONYMS, HeaderMap, map_headers, text_key

DELIMITERS = (",", ";", "\t", "|")
FIELD_LIMIT = 131_072  # characters in one cell; csv's own default, made explicit
MAX_ROW_CHARS = 1 << 18  # characters in one record, all its lines together
MAX_ROW_LINES = 10_000  # lines in one record (each costs ~50 bytes beyond its text)
MAX_COLUMNS = 1_000  # cells in one record
BLOCK_BYTES = 1 << 20  # bytes in one block of records (what one worker holds)
_CHUNK = 1 << 20
_SNIFF_RECORDS = 50
# Legacy encodings we expect from spreadsheet exports. Restricting the detector to
# these keeps Cyrillic cp1251 from being reported as KOI8-R, MacCyrillic or cp866.
_LEGACY_ENCODINGS = ("cp1251", "cp1252", "latin_1")
# A file with valid UTF-8 characters but more invalid bytes than them is refused as
# mixed when there are enough of them; fewer are the chance pairs a legacy encoding
# forms (cp1251 "Пё" is UTF-8 "ϸ").
_MIXED_SHARE, _MIXED_MIN = 0.1, 10
_ASCII = bytes(range(128))
_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx)"),
    (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (.xls)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)
# Excel's text marker on a number: '+7 916..., '0123, '2024-01-31.
_EXCEL_TEXT_NUMBER = re.compile(r"'(?=[+(]?\d[\d\s().,:/+-]*$)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Excel's delimiter hint, a first line such as "sep=;" that Excel itself hides.
_SEP_HINT = re.compile(r"\ufeff?sep=([^\r\n])(?:\r\n?|\n)", re.I)


class UnreadableFile(DomainError):
    """The upload is not a CSV we can read; no batch is created."""

    code = "unreadable_file"
    status = 422


def refuse(code: str, message: str, **details) -> UnreadableFile:
    return UnreadableFile(message, code=code, details=details)


class _Borrowed(io.RawIOBase):
    """A caller's stream seen through a wrapper whose close() leaves it open."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _records(lines, delimiter: str):
    return csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)


def _clean(record: list[str]) -> list[str]:
    """Excel's text marker taken off numbers ('+7 916...)."""
    return [_EXCEL_TEXT_NUMBER.sub("", v, count=1) if v[:1] == "'" else v for v in record]


def _one_line_records(lines: list[str], delimiter: str) -> list[list[str]]:
    """The records of lines that each hold one whole record, without its line break:
    a line with no quote mark is its cells split at the delimiter, which is what the
    csv reader makes of it, at two thirds of the cost; the others go through the reader."""
    records = [None if '"' in line else line.split(delimiter) for line in lines]
    quoted = [line for line in lines if '"' in line]
    if not quoted:
        return records
    parsed = iter(_records(quoted, delimiter))
    return [next(parsed) if values is None else values for values in records]


def _marked(text: str, delimiter: str) -> bool:
    """Whether a cell of `text` may start with Excel's marker: an apostrophe at a
    line's start, after the delimiter or after an opening quote (one inside O'Brien
    does not). Apostrophes are few: each is looked at."""
    before = delimiter + '"\r\n'
    at = text.find("'")
    while at >= 0:
        if at == 0 or text[at - 1] in before:
            return True
        at = text.find("'", at + 1)
    return False


def _errors(encoding: str) -> str:
    """How bytes that do not decode are read: as U+FFFD in a (mostly) UTF-8 file, whose
    rows holding them validation rejects; any other encoding must decode throughout."""
    return "replace" if encoding.startswith("utf-8") else "strict"


@functools.cache
def _blank_record(delimiter: str) -> re.Pattern:
    """A line (its terminator optional) whose cells the csv reader reads as all empty,
    for one of DELIMITERS: nothing, delimiters, and "" cells."""
    d = re.escape(delimiter).encode()
    return re.compile(rb'(?:"")?(?:' + d + rb'(?:"")?)*(?:\r\n|\r|\n)?')


@dataclass
class Block:
    """Non-blank records as the bytes they were read from, one after another, sent to
    a worker process and parsed there: the reading process only finds where records
    end (pickling their text, or parsing it, cost it more than the rest of its work).
    `one_line`: every record is one line, so the lines need no parsing to be told
    apart. `span`: (path, offset, size) of `data` in the upload's file, when it lies
    there as it is: a block pickled for a worker then leaves its bytes out, and the
    worker reads them from the file (a megabyte through the pool's pipe cost the
    reading process's time, and the worker waited for it between chunks)."""

    delimiter: str
    data: bytes
    encoding: str  # of `data`; "utf-8" reads bytes that do not decode as U+FFFD
    numbers: Sequence[int]  # each record's spreadsheet row number, ascending
    one_line: bool
    span: tuple[str, int, int] | None = field(default=None, repr=False, compare=False)
    _lines: list[str] | None = field(default=None, init=False, repr=False, compare=False)
    _spans: list[tuple[int, int]] | None = field(default=None, init=False, repr=False,
                                                 compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "data": None} if self.span else self.__dict__

    def read(self) -> None:
        """Read the bytes of a block that came without them. Not on unpickling: a run
        that stopped may leave blocks queued whose file is gone, and an exception there
        would end the pool's worker instead of the task."""
        if self.data is None:
            path, offset, size = self.span
            with open(path, "rb") as file:
                file.seek(offset)
                self.data = file.read(size)
            if len(self.data) != size:
                raise refuse("file_changed", "The uploaded file changed while it was read.")

    @classmethod
    def of_lines(cls, delimiter: str, lines: list[str], numbers: list[int]) -> "Block":
        """A block of non-blank records given as decoded lines (a workbook's rows, a
        UTF-16 file's)."""
        text = "".join(lines)
        one_line = (len(lines) == len(numbers) == text.count("\n")
                    and text.count("\r") == text.count("\r\n") and text.endswith("\n"))
        return cls(delimiter, text.encode(), "utf-8", numbers, one_line)

    @property
    def rows(self) -> int:
        return len(self.numbers)

    @property
    def last(self) -> int:
        """The number of the block's last record."""
        return self.numbers[-1]

    @property
    def lines(self) -> Sequence[str]:
        """The records' lines, one each, without their line break; none (an empty
        tuple) unless `one_line`. Kept once read: records() reads them too."""
        if not self.one_line:
            return ()
        if self._lines is None:
            # Every \r ends a line (one_line), most often before a \n.
            data, text = self.data, self._text(self.data)
            if b"\r" not in data:
                lines = text.split("\n")
            elif data.endswith(b"\r\n") and data.count(b"\r") == data.count(b"\n"):
                lines = text.split("\r\n")  # each line ends so
            else:
                lines = text.replace("\r\n", "\n").removesuffix("\r").split("\n")
            if not lines[-1]:
                lines.pop()
            self._lines = lines
        return self._lines

    def _text(self, data: bytes) -> str:
        return data.decode(self.encoding, _errors(self.encoding))

    def records(self) -> list[tuple[int, list[str]]]:
        """(number, values) of the records, exactly as CsvSource.rows() gives them."""
        delimiter = self.delimiter
        if self.one_line:
            lines = self.lines
            records = _one_line_records(lines, delimiter)
            marked = any(_marked(line, delimiter) for line in lines if "'" in line)
        else:
            text = self._text(self.data)
            records = list(_records(io.StringIO(text, newline=""), delimiter))
            marked = _marked(text, delimiter)
        if marked:
            records = list(map(_clean, records))
        if len(records) != len(self.numbers):
            raise ValueError(f"A block of {len(self.numbers)} records parsed as {len(records)}")
        return list(zip(self.numbers, records))

    def record(self, number: int) -> list[str]:
        """The values of one record of the block, by its number."""
        at = bisect.bisect_left(self.numbers, number)
        if at == len(self.numbers) or self.numbers[at] != number:
            raise KeyError(number)
        if self._spans is None:
            self._spans = self._record_spans()
        begin, end = self._spans[at]
        text = self._text(self.data[begin:end])
        return _clean(next(_records(io.StringIO(text, newline=""), self.delimiter)))

    def _record_spans(self) -> list[tuple[int, int]]:
        """Where each non-blank record lies in `data`."""
        lines = self.data.splitlines(keepends=True)  # at \r\n, \r and \n, as csv does
        at = list(itertools.accumulate(map(len, lines), initial=0))
        if self.one_line:
            return list(zip(at, at[1:]))
        read = 0

        def counted() -> Iterator[str]:
            nonlocal read
            for line in lines:
                read += 1
                yield self._text(line)

        spans, first = [], 0
        for _ in _records(counted(), self.delimiter):
            spans.append((at[first], at[read]))
            first = read
        return spans


class _RawLines:
    """An upload in an encoding whose line breaks, quote marks and delimiters are single
    ASCII bytes (UTF-8, the legacy single-byte ones): read as decoded lines, the way
    a TextIOWrapper with newline="" reads them, and as raw bytes for blocks. The bytes
    from `mark` on are kept: the current record's (mark_record)."""

    def __init__(self, stream: BinaryIO, encoding: str, path: str | None = None):
        self._stream = stream
        self.path = path  # the file read from its start, if it is one (Block.span)
        self.encoding = "utf-8" if encoding == "utf-8-sig" else encoding
        self._errors = _errors(encoding)
        self.buf = b""
        self.pos = 0  # the reading position in buf
        self._base = 0  # bytes read before buf[0]
        self._line = 0  # where the line read last begins (an offset, like tell())
        self.mark = 0
        self.eof = False
        if encoding == "utf-8-sig":
            self.fill(len(codecs.BOM_UTF8))
            if self.buf.startswith(codecs.BOM_UTF8):
                self.pos = len(codecs.BOM_UTF8)

    def tell(self) -> int:
        """Bytes consumed (read past) so far."""
        return self._base + self.pos

    def mark_record(self) -> None:
        """The line read last begins a record: keep its bytes until the next begins."""
        self.mark = self._line

    def fill(self, ahead: int) -> None:
        """Read until `ahead` bytes from the reading position are held, or the end."""
        while not self.eof and len(self.buf) - self.pos < ahead:
            chunk = self._stream.read(max(_CHUNK, ahead - (len(self.buf) - self.pos)))
            if not chunk:
                self.eof = True
                break
            drop = max(0, min(self.pos, self.mark - self._base))
            self.buf = self.buf[drop:] + chunk
            self._base += drop
            self.pos -= drop

    def record_bytes(self) -> bytes:
        """The bytes of the record read last (from `mark` to the reading position)."""
        return self.buf[self.mark - self._base:self.pos]

    def readline(self, size: int = -1) -> str:
        """The next line with its line break (\\r\\n, \\r or \\n), at most `size`
        characters of it; a longer line is cut short, which its reader refuses."""
        longest = 4 * size + 4 if size >= 0 else None  # bytes surely over `size` chars
        while True:
            buf, pos = self.buf, self.pos
            found = _LINE_BREAK.search(buf, pos, len(buf) if longest is None else pos + longest)
            if found is not None:
                end = found.end()
                if buf[end - 1] == 13:  # \r: a \n may follow
                    if end == len(buf) and not self.eof:
                        self.fill(len(buf) - pos + 1)
                        continue
                    if end < len(buf) and buf[end] == 10:
                        end += 1
                break
            if self.eof or (longest is not None and len(buf) - pos >= longest):
                end = len(buf) if longest is None else min(len(buf), pos + longest)
                break
            self.fill(len(buf) - pos + _CHUNK)
        self.pos, self._line = end, self._base + pos
        line = buf[pos:end].decode(self.encoding, self._errors)
        return line if size < 0 or len(line) <= size else line[:size]

    def close(self) -> None:
        self._stream.close()


_LINE_BREAK = re.compile(rb"[\r\n]")
_LINE_AHEAD = 1 << 16  # bytes read past a block's budget to find where its line ends


class CsvSource:
    """An opened upload: its encoding, delimiter, header map, hash and row stream."""

    file_format = "csv"

    def __init__(self, text: "io.TextIOWrapper | _RawLines", raw: BinaryIO, *,
                 encoding: str, delimiter: str, content_hash: str | None, size: int,
                 mapping: Mapping[str, str] | None, max_row_chars: int, sep_hint: bool,
                 sample: list[list[str]]):
        self.encoding = encoding
        self.delimiter = delimiter
        self.content_hash = content_hash  # hex SHA-256 of the raw bytes (None: not read)
        self.size = size
        self._text = text
        self._raw, self._start, self._bytes_read = raw, raw.tell(), 0
        self._max_chars = max_row_chars
        self._apostrophe_seen = False
        # The current record's lines and characters (_lines keeps them); _read() sets
        # _at_start to ask for the next record.
        self._taken: list[str] = []
        self._chars = 0
        self._at_start = True
        if sep_hint:
            text.readline()  # not a row: Excel does not show it either
        self._records = _records(self._lines(), delimiter)
        self._number = 0  # physical records read, as a spreadsheet numbers its rows
        header = self._next_nonblank()
        if header is None:
            raise refuse("no_header", "The file has no header row.")
        self.header_row = self._number
        self.headers = [cell.strip() for cell in header]
        self.header_map: HeaderMap = map_headers(self.headers, mapping, sample)
        if not self.header_map.known:
            raise refuse(
                "no_header",
                "None of the file's column names is one we know (such as email, phone, "
                "consent_at, source_url); check that the first row is a header, or map "
                "the columns.",
                headers=self.headers,
            )

    def _lines(self) -> Iterator[str]:
        """Physical lines of the records, each record's kept in self._taken until the
        next begins. Blank lines between records are counted as rows and skipped here:
        the csv reader never sees them and nothing keeps them. A record longer than the
        limits is refused before it fills memory. Reads nothing ahead: once the csv
        reader has a record, the line source stands at its end."""
        readline, limit, taken = self._text.readline, self._max_chars, self._taken
        size, max_lines = limit + 1, MAX_ROW_LINES
        mark = getattr(self._text, "mark_record", None)
        while line := readline(size):  # a record's first line
            if mark:
                mark()
            if line[0] in "\r\n":  # readline ends a line at its first \r or \n
                self._number += 1
                continue
            if len(line) > limit:
                raise self._too_long(one_line=True)
            taken.clear()
            taken.append(line)
            chars = self._chars = len(line)
            self._at_start = False
            if "'" in line:  # cheap flag so rows() only scans records that may need it
                self._apostrophe_seen = True
            yield line
            while not self._at_start:  # the csv reader wants more: a quoted line break
                if not (line := readline(size - chars)):
                    return
                chars += len(line)
                if chars > limit or len(taken) == max_lines:
                    raise self._too_long(one_line=False)
                if "'" in line:
                    self._apostrophe_seen = True
                taken.append(line)
                self._chars = chars
                yield line

    def _too_long(self, one_line: bool) -> UnreadableFile:
        row, limit = self._number + 1, self._max_chars
        if one_line:
            return refuse("line_too_long", f"Row {row} is longer than {limit:,} characters; "
                          "this does not look like a CSV file.", row=row)
        return refuse("line_too_long", f"Row {row} runs over more lines or characters than "
                      f"a row can ({MAX_ROW_LINES:,} lines, {limit:,} characters); a quote "
                      "mark (\") that is never closed usually causes this.", row=row)

    def _read(self) -> list[str] | None:
        """The next record, its lines left in self._taken; blank lines are skipped."""
        self._at_start = True
        try:
            record = next(self._records, None)
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise refuse("line_too_long",
                             f"Row {self._number + 1} has a cell longer than "
                             f"{FIELD_LIMIT:,} characters; a quote mark (\") that is never "
                             "closed can cause this.", row=self._number + 1) from exc
            raise refuse("not_csv", f"Row {self._number + 1} is not valid CSV ({exc}).",
                         row=self._number + 1) from exc
        except UnicodeDecodeError as exc:
            raise refuse("bad_encoding",
                         f"Row {self._number + 1} is not valid {self.encoding} text; save "
                         "the file as UTF-8 and upload it again.", row=self._number + 1) from exc
        if record is not None:
            self._number += 1
            if len(record) > MAX_COLUMNS:
                raise refuse("too_many_columns", f"Row {self._number} has {len(record):,} "
                             f"columns, more than the {MAX_COLUMNS:,} we read; this does not "
                             "look like a file of leads.", row=self._number)
        return record

    def _next_nonblank(self) -> list[str] | None:
        while (record := self._read()) is not None:
            if any(record):
                return record
        return None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(spreadsheet row number, values); blank rows are skipped but counted.

        Single pass; the source closes when the rows run out.
        """
        csv.field_size_limit(FIELD_LIMIT)  # process-wide: set again in case it changed
        read = self._read
        try:
            while (record := read()) is not None:
                if not any(record):
                    continue
                if self._apostrophe_seen:
                    self._apostrophe_seen = False
                    record = _clean(record)
                yield self._number, record
            self._bytes_read = self.size
        finally:
            self.close()

    def blocks(self, size: int, after: int = 0, max_bytes: int = BLOCK_BYTES
               ) -> Iterator[Block]:
        """The non-blank records after row `after` in blocks of `size` records, or
        fewer once a block holds `max_bytes` bytes (characters, in a UTF-16 file); parse
        them with Block.records(). Single pass, like rows().

        This runs in the one serial process of an upload, so a stretch of lines that
        plainly are whole records (`_plain_lines`) is taken as bytes, found by a few
        passes of C code over them; anything else is read record by record through the
        csv reader and its checks."""
        csv.field_size_limit(FIELD_LIMIT)
        raw = isinstance(self._text, _RawLines) and self.delimiter in DELIMITERS
        try:
            while True:
                if raw:
                    while self._number < after and self._plain_lines(
                            min(after - self._number, size), max_bytes):
                        pass  # skipped whole
                    if self._number >= after and (block := self._plain_lines(size, max_bytes)):
                        yield block
                        continue
                if (block := self._read_block(size, after, max_bytes)) is None:
                    break
                yield block
            self._bytes_read = self.size
        finally:
            self.close()

    def _plain_lines(self, records: int, max_bytes: int) -> Block | None:
        """The next lines up to `records` of them or `max_bytes`, if each is a whole
        non-blank record within the limits; None (nothing read) if one may not be.

        A line is a whole record when no quote mark opens a cell that it does not close.
        Counting quote marks tells that as the csv reader does when each one that opens
        a cell stands at a cell's start (after a delimiter or line break, or right after
        the quote mark closing a cell: "" inside one); any other quote mark makes the
        stretch be read record by record. Bytes bound characters from above, so lines
        of fewer bytes than the limits are within them."""
        src = self._text
        src.fill(max_bytes + _LINE_AHEAD)
        buf, pos = src.buf, src.pos
        if pos == len(buf):
            return None
        cut = buf.find(b"\n", pos + max_bytes - 1)
        if cut < 0 and not src.eof:
            return None  # a line longer than what is read ahead
        end = cut + 1 if cut >= 0 else len(buf)
        data = buf[pos:end]
        lines = data.split(b"\n", records)  # a flood of blank lines: no more pieces
        if len(lines) > records:
            del lines[records:]
            end = pos + sum(map(len, lines)) + records
            data = buf[pos:end]
        elif not lines[-1]:
            lines.pop()
        if not self._plain(data, lines):
            return None
        src.pos = end
        src.mark = src.tell()  # nothing of these lines is needed further
        first = self._number + 1
        self._number += len(lines)
        span = (src.path, src.tell() - len(data), len(data)) if src.path else None
        return Block(self.delimiter, data, src.encoding, range(first, self._number + 1), True,
                     span)

    def _plain(self, data: bytes, lines: list[bytes]) -> bool:
        """Whether `lines` (`data` split at \\n) are whole non-blank records within the
        limits, each a line; see _plain_lines."""
        delimiter = self.delimiter.encode()
        if b"" in lines or b"\r" in lines:
            return False  # a blank line
        if b"\r" in data and data.count(b"\r") != sum(
                map(bytes.endswith, lines, itertools.repeat(b"\r"))):
            return False  # a \r before the end of a line ends a record there
        longest = max(map(len, lines))
        if longest >= min(FIELD_LIMIT, self._max_chars):
            return False
        if longest >= MAX_COLUMNS and any(line.count(delimiter) >= MAX_COLUMNS
                                          for line in lines if len(line) >= MAX_COLUMNS):
            return False
        if any(byte in data for byte in _undecodable(self._text.encoding)):
            return False
        if b'"' in data:
            pieces = data.split(b'"')
            if not len(pieces) % 2:
                return False  # a cell left open
            if not all(map(bytes.endswith, filter(None, pieces[0:-1:2]),
                           itertools.repeat((delimiter, b"\n", b"\r")))):
                return False  # a quote mark inside a cell
            quoted = b"".join(pieces[1::2])
            if b"\n" in quoted or b"\r" in quoted:
                return False
        starts = (delimiter, b'"')  # where a line of empty cells can start
        if any(map(bytes.startswith, lines, itertools.repeat(starts))):
            blank = _blank_record(self.delimiter).fullmatch
            if any(blank(line) for line in lines if line.startswith(starts)):
                return False
        return True

    def _read_block(self, size: int, after: int, max_bytes: int) -> Block | None:
        """The next block read record by record through the csv reader."""
        read, src = self._read, self._text
        raw = isinstance(src, _RawLines)
        numbers: list[int] = []
        pieces: list = []  # the records' bytes, or a UTF-16 file's decoded lines
        held = 0
        while (record := read()) is not None:
            if not any(record) or self._number <= after:
                continue
            numbers.append(self._number)
            if raw:
                pieces.append(src.record_bytes())
                held += len(pieces[-1])
            else:
                pieces += self._taken
                held += self._chars
            if len(numbers) == size or held >= max_bytes:
                break
        if not numbers:
            return None
        if not raw:
            return Block.of_lines(self.delimiter, pieces, numbers)
        return Block(self.delimiter, b"".join(pieces), src.encoding, numbers, False)

    __iter__ = rows

    @property
    def bytes_read(self) -> int:
        """Raw bytes consumed so far, read-ahead included: for progress reports."""
        if isinstance(self._text, _RawLines):
            if self._bytes_read < self.size:
                self._bytes_read = self._text.tell()
            return self._bytes_read
        try:
            self._bytes_read = self._raw.tell() - self._start
        except ValueError:
            pass  # closed: the last figure stands
        return self._bytes_read

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> "CsvSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@functools.cache
def _undecodable(encoding: str) -> tuple[bytes, ...]:
    """The bytes that `encoding` (one byte a character, or UTF-8) cannot decode: none
    for UTF-8, whose bad bytes are read as U+FFFD."""
    if encoding.startswith("utf-8"):
        return ()
    found = []
    for value in range(256):
        try:
            bytes([value]).decode(encoding)
        except UnicodeDecodeError:
            found.append(bytes([value]))
    return tuple(found)


def binary_stream(source: BinaryIO | str | os.PathLike) -> tuple[BinaryIO, bool]:
    """A seekable binary stream and whether we own it (and must close it)."""
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb"), True
    if source.seekable():
        return source, False
    spool = tempfile.TemporaryFile()  # a pipe or socket: spool to disk, not memory
    shutil.copyfileobj(source, spool, _CHUNK)
    spool.seek(0)
    return spool, True


@dataclass
class _Scan:
    """What one pass over the raw bytes found."""

    content_hash: str
    size: int
    sample: bytes  # the first bytes, for the encoding, the delimiter and the header
    nul: bool
    multibyte: int  # valid UTF-8 characters of two to four bytes (0 when `invalid` is)
    invalid: int  # bytes (or cut-short sequences) that are not UTF-8
    bad_chunk: bytes  # the bytes around the first invalid one: they tell the encoding


def _scan(stream: BinaryIO, sample_size: int) -> _Scan:
    """One pass over the whole file; never holds more than two chunks and the sample.
    The hash runs in a thread beside the decoding (hashlib lets go of the GIL on large
    data: the pass takes the longer of the two instead of their sum). Valid multi-byte
    characters count only against invalid bytes, so a file with none (most files)
    skips counting them, and one with some counts them in a second pass."""
    start = stream.tell()
    digest, size, sample, nul = hashlib.sha256(), 0, b"", False
    # Strict until a byte does not decode (no U+FFFD to count in the text), then
    # replacing them from that chunk on.
    utf8, strict = codecs.getincrementaldecoder("utf-8")(), True
    chars = invalid = 0
    bad_chunk = b""
    with ThreadPoolExecutor(1, thread_name_prefix="leadx-upload-hash") as hasher:
        hashed = None
        while chunk := stream.read(_CHUNK):
            if hashed is not None:
                hashed.result()
            hashed = hasher.submit(digest.update, chunk)
            if len(sample) < sample_size:
                sample += chunk[: sample_size - len(sample)]
            size += len(chunk)
            nul = nul or b"\x00" in chunk
            pending = utf8.getstate()[0]  # the start of a character cut by the last chunk
            if strict:
                try:
                    chars += len(utf8.decode(chunk))
                    continue
                except UnicodeDecodeError:
                    utf8, strict = codecs.getincrementaldecoder("utf-8")("replace"), False
                    text = utf8.decode(pending + chunk)
            else:
                text = utf8.decode(chunk)
            chars += len(text)
            if not text.isascii() and (replaced := text.count("\ufffd")):
                # U+FFFD stands for invalid bytes, unless the file spells it in UTF-8.
                data = pending + chunk
                replaced -= data.count("\ufffd".encode())
                if replaced and not bad_chunk:
                    try:
                        data.decode()
                    except UnicodeDecodeError as exc:
                        at = max(0, exc.start - sample_size // 2)
                        bad_chunk = data[at : at + sample_size]
                invalid += replaced
        if hashed is not None:
            hashed.result()
    # A multi-byte character cut short at the end.
    tail = utf8.getstate()[0].decode("utf-8", "replace") if strict else utf8.decode(b"", final=True)
    chars += len(tail)
    invalid += len(tail)
    multibyte = chars - (size - _high_bytes(stream, start)) - invalid if invalid else 0
    return _Scan(digest.hexdigest(), size, sample, nul, multibyte=multibyte,
                 invalid=invalid, bad_chunk=bad_chunk)


def _high_bytes(stream: BinaryIO, start: int) -> int:
    """The bytes of 128 and above from `start` to the end of the stream."""
    stream.seek(start)
    high = 0
    while chunk := stream.read(_CHUNK):
        if not chunk.isascii():
            high += len(chunk.translate(None, _ASCII))
    return high


def _legacy_encoding(sample: bytes) -> str | None:
    """cp1251, cp1252 or latin-1 for a non-UTF-8 sample; None if it is not text."""
    # Imported here: the ingest workers import this module for Block, and the
    # detector would cost each of them 6 MB for nothing.
    from charset_normalizer import from_bytes

    # Only lines with non-ASCII bytes carry evidence; plain ASCII lines would let the
    # detector "recognise" English in them and vote for cp1252.
    sample = b"\n".join(re.findall(rb"[^\r\n]*[\x80-\xff][^\r\n]*", sample)) or sample
    results = list(from_bytes(sample, cp_isolation=list(_LEGACY_ENCODINGS)))
    if not results:
        return None
    best = min(results, key=lambda m: (m.chaos, -m.coherence))
    tied = {m.encoding for m in results if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
    if {"cp1251", "cp1252"} <= tied:
        # Too little text to tell: Cyrillic words are runs of high bytes, while
        # Western accents sit alone between ASCII letters.
        runs = len(re.findall(rb"[\xc0-\xff]{2,}", sample))
        return "cp1251" if runs * 2 >= len(re.findall(rb"[\xc0-\xff]+", sample)) else "cp1252"
    return best.encoding


def _utf16_without_bom(sample: bytes) -> str | None:
    """utf-16-le/-be for text whose every other byte is NUL (ASCII in UTF-16)."""
    head = sample[:4096]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if odd * 4 >= len(head) // 2 > 0 and even == 0:
        return "utf-16-le"
    if even * 4 >= len(head) // 2 > 0 and odd == 0:
        return "utf-16-be"
    return None


def _encoding(scan: _Scan) -> str:
    """The encoding to read the file in; UTF-8 here may still hold a few bad bytes."""
    sample = scan.sample
    for signature, what in _MAGIC:
        if sample.startswith(signature):
            raise refuse("binary_file", f"This is {what}, not a CSV file; export it as CSV "
                         "(comma- or semicolon-separated) and upload that.")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # Excel's "Unicode text" export
    if scan.nul:
        if utf16 := _utf16_without_bom(sample):
            return utf16
        raise refuse("binary_file", "This file contains binary data, not CSV text.")
    mostly_utf8 = scan.multibyte >= scan.invalid
    if sample.startswith(codecs.BOM_UTF8):
        if not mostly_utf8:
            raise refuse("bad_encoding", "The file says it is UTF-8, but most of its "
                         "accented or non-Latin letters are not UTF-8; save it again as "
                         "UTF-8 and upload that.")
        return "utf-8-sig"
    if mostly_utf8:
        return "utf-8"
    if scan.multibyte >= max(_MIXED_MIN, scan.invalid * _MIXED_SHARE):
        raise refuse("mixed_encoding", "Part of this file is UTF-8 text and part is in "
                     "another encoding (such as Windows-1251 or Windows-1252), so its rows "
                     "cannot all be read as written; save the whole file as UTF-8 and "
                     "upload that.", utf8_characters=scan.multibyte, other_bytes=scan.invalid)
    encoding = _legacy_encoding(sample + b"\n" + scan.bad_chunk)
    if encoding is None:
        raise refuse("binary_file", "This file is not text in any encoding we know "
                     "(UTF-8, Windows-1251, Windows-1252 or Latin-1).")
    return encoding


def _sniff_delimiter(sample_text: str, mapping: Mapping[str, str] | None,
                     complete: bool) -> str:
    """The candidate whose header names the most known fields, then the most regular."""
    user_keys = {text_key(str(h)) for h, f in (mapping or {}).items() if f}

    def score(delimiter: str) -> tuple:
        try:
            records = [r for r in csv.reader(io.StringIO(sample_text, newline=""),
                                             delimiter=delimiter) if any(r)][:_SNIFF_RECORDS + 1]
        except csv.Error:
            return (0, 0, 0)
        if not complete and len(records) > 1:
            records.pop()  # the sample may cut the last record short
        if not records:
            return (0, 0, 0)
        header = records[0]
        known = sum(1 for cell in header
                    if (key := text_key(cell)) in SYNONYMS or key in user_keys)
        regular = sum(1 for r in records if len(r) == len(header)) / len(records)
        return (known, regular, len(header))

    return max(DELIMITERS, key=score)  # ties keep the earlier, more common delimiter


def _sample_rows(sample_text: str, delimiter: str, complete: bool) -> list[list[str]]:
    """The first data rows of the sample (after the header): what a column holds."""
    try:
        records = [r for r in itertools.islice(
            csv.reader(io.StringIO(sample_text, newline=""), delimiter=delimiter),
            _SNIFF_RECORDS + 2) if any(r)]
    except csv.Error:
        return []
    if not complete and len(records) > 1:
        records.pop()  # the sample may cut the last record short
    return [_clean(r) for r in records[1:]]


def _refuse_sample(sample_text: str, complete: bool, max_header_bytes: int) -> None:
    """Refuse a file whose first bytes are plainly no CSV."""
    if not complete and not re.search(r"[\r\n]", sample_text):
        raise refuse("line_too_long", f"The first row is longer than {max_header_bytes:,} "
                     "bytes; this does not look like a CSV file.", row=1)
    if len(_CONTROL.findall(sample_text)) > max(2, len(sample_text) // 100):
        raise refuse("binary_file", "This file contains binary data, not CSV text.")
    if sample_text.lstrip("\ufeff\r\n\t ").startswith("<"):
        raise refuse("not_csv", "This looks like an HTML or XML page, not a CSV file.")


def open_csv(
    source: BinaryIO | str | os.PathLike,
    *,
    mapping: Mapping[str, str] | None = None,
    max_header_bytes: int = 64 * 1024,
    max_row_chars: int = MAX_ROW_CHARS,
    shape: tuple[str, str] | None = None,
) -> CsvSource:
    """Open an upload for streaming, or raise `UnreadableFile` saying why not.

    `source` is a path or a binary stream (read from its current position; a stream
    passed in stays open). `mapping` is the seller's header -> field mapping (a bad
    one raises `HeaderMappingError`). Encoding and delimiter are decided on the first
    `max_header_bytes`, which must hold the header; `max_row_chars` bounds any record,
    all its lines together. Rows are read later, by `CsvSource.rows()` or `.blocks()`,
    which may still raise `UnreadableFile` (a row too long or too wide, bytes that do
    not decode) partway through the file.

    `shape`: (encoding, delimiter) as an earlier opening of this same file found them
    (a batch's run, after the upload was checked): the pass over the whole file that
    decides the encoding is skipped, and so are the hash (`content_hash` is None) and
    the refusals that pass led to.
    """
    stream, owned = binary_stream(source)
    try:
        start = stream.tell()
        if shape is None:
            scan = _scan(stream, max_header_bytes)
            if scan.size == 0:
                raise refuse("empty_file", "The file is empty.")
            encoding, content_hash, size, sample = (
                _encoding(scan), scan.content_hash, scan.size, scan.sample)
        else:
            (encoding, delimiter), content_hash = shape, None
            sample = stream.read(max_header_bytes)
            size = stream.seek(0, io.SEEK_END) - start
        sample_text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample)
        complete = size <= max_header_bytes
        if shape is None:
            _refuse_sample(sample_text, complete, max_header_bytes)
        hint = _SEP_HINT.match(sample_text)
        if shape is None:
            delimiter = hint.group(1) if hint else _sniff_delimiter(sample_text, mapping,
                                                                     complete)
        sample_rows = _sample_rows(sample_text[hint.end():] if hint else sample_text,
                                   delimiter, complete)
        stream.seek(start)
        buffered = stream if owned else io.BufferedReader(_Borrowed(stream), _CHUNK)
        if encoding.startswith("utf-16"):
            text = io.TextIOWrapper(buffered, encoding=encoding, errors=_errors(encoding),
                                    newline="")
        else:
            text = _RawLines(buffered, encoding, os.path.abspath(source)
                             if isinstance(source, (str, os.PathLike)) else None)
        csv.field_size_limit(FIELD_LIMIT)
        try:
            return CsvSource(text, stream, encoding=encoding, delimiter=delimiter,
                             content_hash=content_hash, size=size, mapping=mapping,
                             max_row_chars=max_row_chars, sep_hint=hint is not None,
                             sample=sample_rows)
        except BaseException:
            text.close()
            raise
    except BaseException:
        if owned:
            stream.close()
        raise
