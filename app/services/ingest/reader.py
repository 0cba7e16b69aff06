"""Open a seller's CSV upload and stream its rows (SPEC §3 "encodings and shapes").

`open_csv` makes one cheap pass over the raw bytes first (SHA-256, NUL bytes, strict
UTF-8 check), then reads a sample to pick the encoding and delimiter and to map the
header, and finally hands out rows one record at a time through an incremental
decoder. Nothing ever holds the whole file, so memory does not grow with its size.
Anything that is not a usable CSV raises `UnreadableFile` with one clear message.
"""
import codecs
import csv
import hashlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from charset_normalizer import from_bytes

from app.errors import DomainError
from app.services.ingest.fields import SYNONYMS, HeaderMap, map_headers, text_key

DELIMITERS = (",", ";", "\t", "|")
FIELD_LIMIT = 131_072  # characters in one cell; csv's own default, made explicit
_CHUNK = 1 << 20
_SNIFF_RECORDS = 50
# Legacy encodings we expect from spreadsheet exports. Restricting the detector to
# these keeps Cyrillic cp1251 from being reported as KOI8-R, MacCyrillic or cp866.
_LEGACY_ENCODINGS = ("cp1251", "cp1252", "latin_1")
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


def _refuse(code: str, message: str, **details) -> UnreadableFile:
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
    """Consecutive records as the lines they were read from. Sent to a worker process
    as a few long strings instead of a list per row (pickling those cost the reading
    process more than parsing them), and parsed again there."""

    delimiter: str
    first: int  # spreadsheet number of the first record in `lines`
    lines: list[str]
    starts: list[int]  # where each record begins in `lines`
    rows: int  # records that are not blank
    last: int  # number of the last of them

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(number, values) of the non-blank records, exactly as CsvSource.rows() gives."""
        clean = any("'" in line for line in self.lines)
        for number, record in enumerate(_records(self.lines, self.delimiter), self.first):
            if any(record):
                yield number, _clean(record) if clean else record

    def record(self, number: int) -> list[str]:
        """The values of one record of the block, by its number."""
        at = number - self.first
        end = self.starts[at + 1] if at + 1 < len(self.starts) else len(self.lines)
        return _clean(next(_records(self.lines[self.starts[at]:end], self.delimiter)))


class CsvSource:
    """An opened upload: its encoding, delimiter, header map, hash and row stream."""

    def __init__(self, text: io.TextIOWrapper, raw: BinaryIO, *, encoding: str,
                 delimiter: str, content_hash: str, size: int,
                 mapping: Mapping[str, str] | None, max_line_chars: int, sep_hint: bool):
        self.encoding = encoding
        self.delimiter = delimiter
        self.content_hash = content_hash  # hex SHA-256 of the raw bytes
        self.size = size
        self._text = text
        self._raw, self._start, self._bytes_read = raw, raw.tell(), 0
        self._max_line = max_line_chars
        self._apostrophe_seen = False
        self._taken: list[str] = []  # lines read since blocks() last looked
        if sep_hint:
            text.readline()  # not a row: Excel does not show it either
        self._records = _records(self._lines(), delimiter)
        self._number = 0  # physical records read, as a spreadsheet numbers its rows
        header = self._next_nonblank()
        if header is None:
            raise _refuse("no_header", "The file has no header row.")
        self.header_row = self._number
        self.headers = [cell.strip() for cell in header]
        self.header_map: HeaderMap = map_headers(self.headers, mapping)
        if not self.header_map.known:
            raise _refuse(
                "no_header",
                "None of the file's column names is one we know (such as email, phone, "
                "consent_at, source_url); check that the first row is a header, or map "
                "the columns.",
                headers=self.headers,
            )

    def _lines(self) -> Iterator[str]:
        """Physical lines, refusing one longer than the limit before it fills memory."""
        readline, limit, taken = self._text.readline, self._max_line, self._taken.append
        while line := readline(limit):
            if len(line) >= limit and line[-1] not in "\r\n":
                raise _refuse(
                    "line_too_long",
                    f"Row {self._number + 1} is longer than {limit:,} characters; this "
                    "does not look like a CSV file.",
                    row=self._number + 1,
                )
            if "'" in line:  # cheap flag so rows() only scans records that may need it
                self._apostrophe_seen = True
            taken(line)
            yield line

    def _read(self) -> list[str] | None:
        try:
            record = next(self._records, None)
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise _refuse("line_too_long",
                              f"Row {self._number + 1} has a cell longer than "
                              f"{FIELD_LIMIT:,} characters.", row=self._number + 1) from exc
            raise _refuse("not_csv", f"Row {self._number + 1} is not valid CSV ({exc}).",
                          row=self._number + 1) from exc
        except UnicodeDecodeError as exc:
            raise _refuse("bad_encoding",
                          f"Row {self._number + 1} is not valid {self.encoding} text; save "
                          "the file as UTF-8 and upload it again.", row=self._number + 1) from exc
        if record is not None:
            self._number += 1
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
                self._taken.clear()
                yield self._number, record
            self._bytes_read = self.size
        finally:
            self.close()

    def blocks(self, size: int, after: int = 0) -> Iterator[Block]:
        """The records after row `after` in blocks of `size` non-blank records, each
        ending on one; parse them with Block.records(). Single pass, like rows()."""
        csv.field_size_limit(FIELD_LIMIT)
        read, taken = self._read, self._taken
        taken.clear()
        lines: list[str] = []
        starts: list[int] = []
        first = rows = last = 0
        try:
            while (record := read()) is not None:
                if self._number <= after:
                    taken.clear()
                    continue
                if not lines:
                    first = self._number
                starts.append(len(lines))
                lines += taken
                taken.clear()
                if any(record):
                    rows, last = rows + 1, self._number
                    if rows == size:
                        yield Block(self.delimiter, first, lines, starts, rows, last)
                        lines, starts, rows = [], [], 0
            if rows:
                yield Block(self.delimiter, first, lines, starts, rows, last)
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


def _binary_stream(source: BinaryIO | str | os.PathLike) -> tuple[BinaryIO, bool]:
    """A seekable binary stream and whether we own it (and must close it)."""
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb"), True
    if source.seekable():
        return source, False
    spool = tempfile.TemporaryFile()  # a pipe or socket: spool to disk, not memory
    shutil.copyfileobj(source, spool, _CHUNK)
    spool.seek(0)
    return spool, True


def _scan(stream: BinaryIO, sample_size: int) -> tuple[str, int, bytes, bool, bytes, bool]:
    """One pass: hash, size, sample, strict UTF-8 verdict, a failing chunk, NUL seen."""
    digest, size, sample = hashlib.sha256(), 0, b""
    utf8 = codecs.getincrementaldecoder("utf-8")()
    utf8_ok, bad_chunk, nul = True, b"", False
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        if len(sample) < sample_size:
            sample += chunk[: sample_size - len(sample)]
        size += len(chunk)
        nul = nul or b"\x00" in chunk
        if utf8_ok:
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError as exc:
                # Keep the bytes around the failure: they tell which encoding it is.
                at = max(0, exc.start - sample_size // 2)
                utf8_ok, bad_chunk = False, chunk[at : at + sample_size]
    if utf8_ok:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:  # the file ends inside a multi-byte character
            utf8_ok = False
    return digest.hexdigest(), size, sample, utf8_ok, bad_chunk, nul


def _legacy_encoding(sample: bytes) -> str | None:
    """cp1251, cp1252 or latin-1 for a non-UTF-8 sample; None if it is not text."""
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


def _encoding(sample: bytes, utf8_ok: bool, bad_chunk: bytes, nul: bool) -> str:
    for signature, what in _MAGIC:
        if sample.startswith(signature):
            raise _refuse("binary_file", f"This is {what}, not a CSV file; export it as CSV "
                          "(comma- or semicolon-separated) and upload that.")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # Excel's "Unicode text" export
    if nul:
        raise _refuse("binary_file", "This file contains binary data, not CSV text.")
    if sample.startswith(codecs.BOM_UTF8):
        if not utf8_ok:
            raise _refuse("bad_encoding", "The file says it is UTF-8 but contains bytes that "
                          "are not; save it again as UTF-8 and upload that.")
        return "utf-8-sig"
    encoding = "utf-8" if utf8_ok else _legacy_encoding(sample + b"\n" + bad_chunk)
    if encoding is None:
        raise _refuse("binary_file", "This file is not text in any encoding we know "
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


def open_csv(
    source: BinaryIO | str | os.PathLike,
    *,
    mapping: Mapping[str, str] | None = None,
    max_header_bytes: int = 64 * 1024,
    max_line_chars: int = 1 << 20,
) -> CsvSource:
    """Open an upload for streaming, or raise `UnreadableFile` saying why not.

    `source` is a path or a binary stream (read from its current position; a stream
    passed in stays open). `mapping` is the seller's header -> field mapping (a bad
    one raises `HeaderMappingError`). Encoding and delimiter are decided on the first
    `max_header_bytes`, which must hold the header; `max_line_chars` bounds any line.
    Rows are read later, by `CsvSource.rows()`, which may still raise `UnreadableFile`
    (a line too long, bytes that do not decode) partway through the file.
    """
    stream, owned = _binary_stream(source)
    try:
        start = stream.tell()
        content_hash, size, sample, utf8_ok, bad_chunk, nul = _scan(stream, max_header_bytes)
        if size == 0:
            raise _refuse("empty_file", "The file is empty.")
        encoding = _encoding(sample, utf8_ok, bad_chunk, nul)
        sample_text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample)
        complete = size <= max_header_bytes
        if not complete and not re.search(r"[\r\n]", sample_text):
            raise _refuse("line_too_long", f"The first row is longer than {max_header_bytes:,} "
                          "bytes; this does not look like a CSV file.", row=1)
        if len(_CONTROL.findall(sample_text)) > max(2, len(sample_text) // 100):
            raise _refuse("binary_file", "This file contains binary data, not CSV text.")
        if sample_text.lstrip("\ufeff\r\n\t ").startswith("<"):
            raise _refuse("not_csv", "This looks like an HTML or XML page, not a CSV file.")
        hint = _SEP_HINT.match(sample_text)
        delimiter = hint.group(1) if hint else _sniff_delimiter(sample_text, mapping, complete)
        stream.seek(start)
        buffered = stream if owned else io.BufferedReader(_Borrowed(stream), _CHUNK)
        text = io.TextIOWrapper(buffered, encoding=encoding, newline="")
        csv.field_size_limit(FIELD_LIMIT)
        try:
            return CsvSource(text, stream, encoding=encoding, delimiter=delimiter,
                             content_hash=content_hash, size=size, mapping=mapping,
                             max_line_chars=max_line_chars, sep_hint=hint is not None)
        except BaseException:
            text.close()
            raise
    except BaseException:
        if owned:
            stream.close()
        raise
