"""Open a seller's CSV upload and stream its rows (SPEC §3 "encodings and shapes").

`open_csv` makes one cheap pass over the raw bytes first (SHA-256, NUL bytes, and the
UTF-8 evidence of the whole file: valid multi-byte characters against invalid bytes),
then reads a sample to pick the encoding and delimiter and to map the header, and
finally hands out rows one record at a time through an incremental decoder.

A file that is mostly UTF-8 with a few bad bytes is read as UTF-8, the bad bytes
becoming U+FFFD, so that validation rejects just the rows holding them
(`bad_encoding`) instead of the whole file being re-read in a legacy encoding.

Memory stays flat whatever the file holds: blank records are counted, never kept; one
record is bounded in characters (across all its lines) and in cells; a block ends on
a character budget as well as on a row count. Anything that is not a usable CSV
raises `UnreadableFile` with one clear message.
"""
import bisect
import codecs
import csv
import hashlib
import io
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from app.errors import DomainError
from app.services.ingest.fields import SYNONYMS, HeaderMap, map_headers, text_key

DELIMITERS = (",", ";", "\t", "|")
FIELD_LIMIT = 131_072  # characters in one cell; csv's own default, made explicit
MAX_ROW_CHARS = 1 << 18  # characters in one record, all its lines together
MAX_ROW_LINES = 10_000  # lines in one record (each costs ~50 bytes beyond its text)
MAX_COLUMNS = 1_000  # cells in one record
BLOCK_CHARS = 1 << 20  # characters in one block of records (what one worker holds)
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


def _one_line_record(delimiter: str) -> tuple[re.Pattern, re.Pattern]:
    """(a line that the csv reader ends as a whole record, one whose cells are all
    empty) for one of DELIMITERS. A quote opens a quoted cell only at the start of a
    cell; inside one, "" is a quote and a lone " closes it, and what follows the
    closing quote up to the delimiter is kept as it is (strict=False). The possessive
    `*+` reads "" the way the reader does, so `"a""` (still open) never matches."""
    d = re.escape(delimiter)
    cell = rf'(?:"(?:[^"\r\n\x00]|"")*+"[^{d}\r\n\x00]*|[^{d}"\r\n\x00][^{d}\r\n\x00]*|)'
    return (re.compile(rf"{cell}(?:{d}{cell})*(?:\r\n|\r|\n)?"),
            re.compile(rf'(?:"")?(?:{d}(?:"")?)*(?:\r\n|\r|\n)?'))


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


@dataclass
class Block:
    """Non-blank records as the lines they were read from. Sent to a worker process
    as a few long strings instead of a list per row (pickling those cost the reading
    process more than parsing them), and parsed again there."""

    delimiter: str
    lines: list[str]
    starts: list[int]  # where each record begins in `lines`
    numbers: list[int]  # each record's spreadsheet row number, ascending

    @property
    def rows(self) -> int:
        return len(self.numbers)

    @property
    def last(self) -> int:
        """The number of the block's last record."""
        return self.numbers[-1]

    def records(self) -> list[tuple[int, list[str]]]:
        """(number, values) of the records, exactly as CsvSource.rows() gives them."""
        records = list(_records(self.lines, self.delimiter))
        if len(records) != len(self.numbers):
            raise ValueError(f"A block of {len(self.numbers)} records parsed as {len(records)}")
        # Only a cell that starts with the marker is cleaned: at a line's start, after
        # the delimiter or after an opening quote (an apostrophe inside O'Brien is not).
        marked = (self.delimiter + "'", "\"'")
        if any(line[:1] == "'" or marked[0] in line or marked[1] in line
               for line in self.lines if "'" in line):
            records = list(map(_clean, records))
        return list(zip(self.numbers, records))

    def record(self, number: int) -> list[str]:
        """The values of one record of the block, by its number."""
        at = bisect.bisect_left(self.numbers, number)
        if at == len(self.numbers) or self.numbers[at] != number:
            raise KeyError(number)
        end = self.starts[at + 1] if at + 1 < len(self.starts) else len(self.lines)
        return _clean(next(_records(self.lines[self.starts[at]:end], self.delimiter)))


class CsvSource:
    """An opened upload: its encoding, delimiter, header map, hash and row stream."""

    file_format = "csv"

    def __init__(self, text: io.TextIOWrapper, raw: BinaryIO, *, encoding: str,
                 delimiter: str, content_hash: str, size: int,
                 mapping: Mapping[str, str] | None, max_row_chars: int, sep_hint: bool,
                 sample: list[list[str]]):
        self.encoding = encoding
        self.delimiter = delimiter
        self.content_hash = content_hash  # hex SHA-256 of the raw bytes
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
        self._pushed = ""  # a line blocks() read itself and hands back to the csv reader
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
        limits is refused before it fills memory."""
        readline, limit, taken = self._text.readline, self._max_chars, self._taken
        size, max_lines = limit + 1, MAX_ROW_LINES
        while line := self._pushed or readline(size):  # a record's first line
            self._pushed = ""
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

    def blocks(self, size: int, after: int = 0, max_chars: int = BLOCK_CHARS
               ) -> Iterator[Block]:
        """The non-blank records after row `after` in blocks of `size` records, or
        fewer once a block holds `max_chars` characters; parse them with
        Block.records(). Single pass, like rows().

        This runs in the one serial process of an upload, so a line that is plainly a
        whole record (no quote mark, or quoted cells all closed on the line) is taken
        without parsing it: the workers parse it anyway. Any other line goes through
        the csv reader and its checks, and so does a line that could break a limit."""
        csv.field_size_limit(FIELD_LIMIT)
        read, taken, readline = self._read, self._taken, self._text.readline
        delimiter = self.delimiter
        plain = delimiter in DELIMITERS  # never a quote mark, nor a line break
        whole, blank = (pattern.fullmatch for pattern in _one_line_record(delimiter)) \
            if plain else (None, None)
        line_size, longest = self._max_chars + 1, min(FIELD_LIMIT, self._max_chars)
        blank_starts = delimiter + '"'  # where a line of empty cells can start
        lines: list[str] = []
        starts: list[int] = []
        numbers: list[int] = []
        chars = 0
        try:
            while True:
                try:
                    line = readline(line_size) if plain else ""  # as _lines() reads it
                except UnicodeDecodeError as exc:
                    raise refuse("bad_encoding",
                                 f"Row {self._number + 1} is not valid {self.encoding} text; "
                                 "save the file as UTF-8 and upload it again.",
                                 row=self._number + 1) from exc
                if line and line[0] in "\r\n":
                    self._number += 1  # a blank line, as _lines() counts it
                    continue
                # Counting the delimiters of a line shorter than the limit, or matching
                # `blank` on one that starts with neither a delimiter nor a quote mark,
                # cannot change the answer: both are skipped (~0.5 us of ~3 a line).
                if (line and len(line) <= longest
                        and (len(line) < MAX_COLUMNS or line.count(delimiter) < MAX_COLUMNS)
                        and ('"' not in line and "\x00" not in line or whole(line))):
                    self._number += 1
                    if line[0] in blank_starts and blank(line):
                        continue
                    record_lines, record_chars = [line], len(line)
                else:
                    self._pushed = line
                    if (record := read()) is None:
                        break
                    if not any(record):
                        continue
                    record_lines, record_chars = taken, self._chars
                if self._number <= after:
                    continue
                starts.append(len(lines))
                numbers.append(self._number)
                lines += record_lines
                chars += record_chars
                if len(numbers) == size or chars >= max_chars:
                    yield Block(self.delimiter, lines, starts, numbers)
                    lines, starts, numbers, chars = [], [], [], 0
            if numbers:
                yield Block(self.delimiter, lines, starts, numbers)
            self._bytes_read = self.size
        finally:
            self.close()

    __iter__ = rows

    @property
    def bytes_read(self) -> int:
        """Raw bytes consumed so far, read-ahead included: for progress reports."""
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
    multibyte: int  # valid UTF-8 characters of two to four bytes
    invalid: int  # bytes (or cut-short sequences) that are not UTF-8
    bad_chunk: bytes  # the bytes around the first invalid one: they tell the encoding


def _scan(stream: BinaryIO, sample_size: int) -> _Scan:
    """One pass over the whole file; never holds more than a chunk and the sample."""
    digest, size, sample, nul = hashlib.sha256(), 0, b"", False
    utf8 = codecs.getincrementaldecoder("utf-8")("replace")
    chars = high = invalid = 0
    bad_chunk = b""
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        if len(sample) < sample_size:
            sample += chunk[: sample_size - len(sample)]
        size += len(chunk)
        nul = nul or b"\x00" in chunk
        pending = utf8.getstate()[0]  # the start of a character cut by the last chunk
        text = utf8.decode(chunk)
        chars += len(text)
        if not chunk.isascii():
            high += len(chunk.translate(None, _ASCII))
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
    tail = utf8.decode(b"", final=True)  # a multi-byte character cut short at the end
    chars += len(tail)
    invalid += len(tail)
    return _Scan(digest.hexdigest(), size, sample, nul,
                 multibyte=chars - (size - high) - invalid, invalid=invalid,
                 bad_chunk=bad_chunk)


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


def open_csv(
    source: BinaryIO | str | os.PathLike,
    *,
    mapping: Mapping[str, str] | None = None,
    max_header_bytes: int = 64 * 1024,
    max_row_chars: int = MAX_ROW_CHARS,
) -> CsvSource:
    """Open an upload for streaming, or raise `UnreadableFile` saying why not.

    `source` is a path or a binary stream (read from its current position; a stream
    passed in stays open). `mapping` is the seller's header -> field mapping (a bad
    one raises `HeaderMappingError`). Encoding and delimiter are decided on the first
    `max_header_bytes`, which must hold the header; `max_row_chars` bounds any record,
    all its lines together. Rows are read later, by `CsvSource.rows()` or `.blocks()`,
    which may still raise `UnreadableFile` (a row too long or too wide, bytes that do
    not decode) partway through the file.
    """
    stream, owned = binary_stream(source)
    try:
        start = stream.tell()
        scan = _scan(stream, max_header_bytes)
        if scan.size == 0:
            raise refuse("empty_file", "The file is empty.")
        encoding = _encoding(scan)
        sample = scan.sample
        sample_text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample)
        complete = scan.size <= max_header_bytes
        if not complete and not re.search(r"[\r\n]", sample_text):
            raise refuse("line_too_long", f"The first row is longer than {max_header_bytes:,} "
                         "bytes; this does not look like a CSV file.", row=1)
        if len(_CONTROL.findall(sample_text)) > max(2, len(sample_text) // 100):
            raise refuse("binary_file", "This file contains binary data, not CSV text.")
        if sample_text.lstrip("\ufeff\r\n\t ").startswith("<"):
            raise refuse("not_csv", "This looks like an HTML or XML page, not a CSV file.")
        hint = _SEP_HINT.match(sample_text)
        delimiter = hint.group(1) if hint else _sniff_delimiter(sample_text, mapping, complete)
        sample_rows = _sample_rows(sample_text[hint.end():] if hint else sample_text,
                                   delimiter, complete)
        stream.seek(start)
        buffered = stream if owned else io.BufferedReader(_Borrowed(stream), _CHUNK)
        # Invalid bytes in a mostly-UTF-8 file become U+FFFD, and their rows are
        # rejected by validation; any other encoding must decode throughout.
        errors = "replace" if encoding.startswith("utf-8") else "strict"
        text = io.TextIOWrapper(buffered, encoding=encoding, errors=errors, newline="")
        csv.field_size_limit(FIELD_LIMIT)
        try:
            return CsvSource(text, stream, encoding=encoding, delimiter=delimiter,
                             content_hash=scan.content_hash, size=scan.size, mapping=mapping,
                             max_row_chars=max_row_chars, sep_hint=hint is not None,
                             sample=sample_rows)
        except BaseException:
            text.close()
            raise
    except BaseException:
        if owned:
            stream.close()
        raise
