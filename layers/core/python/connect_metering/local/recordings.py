"""Recorded streams as `replay --events` reads them: each item is the text of one agent event (or
EventBridge envelope, or Marketplace notification), with where it was found, whatever shape the
recording came in. Formats (README.md, section Replay):

- ``jsonl``: one item per line (today's E.jsonl);
- ``kinesis-get-records``: the output of ``aws kinesis get-records`` (GetRecordsOutput of botocore's
  kinesis model: ``{"Records": [{"Data": <base64>, "SequenceNumber", ...}], "NextShardIterator", ...}``),
  one document or several in a row (a recording loop appends one per call); each ``Data`` is an item;
- ``kinesis-base64-lines``: one base64 Kinesis record per line (blank-separated tokens on a line are
  several records: what ``--query 'Records[].Data' --output text`` prints);
- ``firehose``: Firehose-to-S3 objects, JSON documents concatenated with no separator;
- ``eventbridge-archive``: events as EventBridge delivers them, whole envelopes, one per line or a JSON
  array (an array item may also be a string holding the envelope: what a CloudWatch Logs target's
  ``aws logs filter-log-events --query 'events[].message'`` prints).

Any file may be gzip-compressed (recognised by its magic bytes, whatever its name); a directory is read
file after file in name order (sub-folders included, as ``aws s3 cp --recursive`` lays them out). It is
all streamed: a file is read in chunks, one JSON document (at most a GetRecords response, 10 MiB of
data) in memory at a time. An item that cannot be read as text (bytes that are not UTF-8, a record that
is not base64, a document that is not JSON) is yielded with its ``problem`` and never raises.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

FORMATS = ("jsonl", "kinesis-get-records", "kinesis-base64-lines", "firehose", "eventbridge-archive")
AUTO = "auto"
GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 20
# What the format is told from: the start of the file (a GetRecordsOutput member, a bracket, a line).
SNIFF_BYTES = 1 << 20
# The most a document may take before it is declared unreadable: a GetRecords response carries at
# most 10 MiB of data, 14 MiB once in base64.
MAX_DOCUMENT_CHARS = 64 << 20
# A JSON literal cut by the end of a chunk (`tr`, `fals`) is reported at its start: this close to the
# end of what was read, an error may only mean "read more".
LONGEST_LITERAL = 5
GET_RECORDS_KEYS = re.compile(r'\{\s*"(Records|NextShardIterator|MillisBehindLatest|ChildShards)"\s*:')
BASE64_TOKEN = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
NEXT_DOCUMENT = re.compile(r"\}\s*(?=\{)")
BLANKS = re.compile(r"[ \t\r\n\ufeff]*")
SURROGATE = re.compile("[\udc80-\udcff]")
# What ``bytes.strip()`` takes away: a line of these only is blank.
ASCII_BLANKS = " \t\n\r\x0b\x0c"


class RecordingError(Exception):
    """The recording cannot be read at all (missing, empty folder, unknown format): bad input."""


# Not frozen: a frozen dataclass's __init__ costs a call per field, and there is one item per line.
@dataclass(slots=True)
class RecordedItem:
    where: str
    text: str
    problem: str | None = None


def recording_files(path: Path) -> list[Path]:
    """The files of a recording, in the order they are read; checked before anything runs."""
    if path.is_dir():
        files = sorted(
            (file for file in path.rglob("*") if file.is_file() and not _hidden(file, path)),
            key=lambda file: file.relative_to(path).parts,
        )
        if not files:
            raise RecordingError(f"{path}: the events folder holds no file")
    elif path.is_file():
        files = [path]
    else:
        raise RecordingError(f"{path}: no such events file or folder")
    for file in files:
        if not os.access(file, os.R_OK):
            raise RecordingError(f"{file}: cannot read the events: permission denied")
    return files


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)


def read_recording(files: list[Path], fmt: str = AUTO) -> Iterator[RecordedItem]:
    for file in files:
        yield from _read_file(file, fmt)


def _read_file(path: Path, fmt: str) -> Iterator[RecordedItem]:
    try:
        handle = path.open("rb")
    except OSError as error:
        raise RecordingError(f"{path}: cannot read the events: {error.strerror}") from None
    with handle:
        stream: IO[bytes] | gzip.GzipFile = handle
        if handle.read(2) == GZIP_MAGIC:
            handle.seek(0)
            stream = gzip.GzipFile(fileobj=handle, mode="rb")
        else:
            handle.seek(0)
        try:
            head = stream.read(SNIFF_BYTES)
            chunks = _chunks(head, stream)
            kind = fmt if fmt != AUTO else sniff(head)
            yield from READERS[kind](str(path), chunks, head)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            yield RecordedItem(
                f"{path} (gzip)", "", f"the gzip stream is damaged ({error}); the rest is lost"
            )


def _chunks(head: bytes, stream: IO[bytes] | gzip.GzipFile) -> Iterator[bytes]:
    if head:
        yield head
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


# Detection ---------------------------------------------------------------------------------------------


def sniff(head: bytes) -> str:
    """The format of a recording from its first bytes (SNIFF_BYTES at most)."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "eventbridge-archive"
    if text.startswith("{"):
        if GET_RECORDS_KEYS.match(text):
            return "kinesis-get-records"
        return _one_or_many_documents(text)
    first_line = head.lstrip().split(b"\n", 1)[0].split()
    if first_line and all(_base64_json(token) for token in first_line):
        return "kinesis-base64-lines"
    return "jsonl"


def _one_or_many_documents(text: str) -> str:
    """JSON lines, or documents concatenated without a newline between them (Firehose)."""
    decoder = json.JSONDecoder()
    first_line = text.split("\n", 1)[0]
    try:
        _, end = decoder.raw_decode(first_line)
    except json.JSONDecodeError:
        try:
            decoder.raw_decode(text)  # one document over several lines: documents, not lines
        except json.JSONDecodeError:
            return "jsonl"  # not JSON: lines, each quarantined on its own
        return "firehose"
    return "firehose" if first_line[end:].strip() else "jsonl"


def _base64_json(token: bytes) -> bool:
    if not BASE64_TOKEN.fullmatch(token):
        return False
    try:
        return base64.b64decode(token, validate=True).lstrip().startswith((b"{", b"["))
    except binascii.Error:
        return False


# Lines -------------------------------------------------------------------------------------------------


def _line_blocks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The byte stream in blocks of whole lines, each block's last newline left out (the stream's last
    line may have none); a long line costs one join, however many chunks it spans."""
    pending: list[bytes] = []
    for chunk in chunks:
        end = chunk.rfind(b"\n")
        if end < 0:
            pending.append(chunk)
            continue
        yield b"".join([*pending, chunk[:end]]) if pending else chunk[:end]
        pending = [chunk[end + 1 :]]
    if rest := b"".join(pending):
        yield rest


def _lines(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """The lines of a byte stream, numbered from 1."""
    number = 0
    for block in _line_blocks(chunks):
        for line in block.split(b"\n"):
            number += 1
            yield number, line


def _utf8(raw: bytes, where: str) -> RecordedItem:
    try:
        return RecordedItem(where, raw.decode("utf-8").strip())
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start})"
        return RecordedItem(where, raw.decode("utf-8", errors="backslashreplace").strip(), problem)


def read_json_lines(name: str, chunks: Iterator[bytes], head: bytes) -> Iterator[RecordedItem]:
    """Each line that is not blank (ASCII blanks only, as ``bytes.strip`` sees them), stripped. A block
    of lines is decoded at once; one holding bytes that are not UTF-8 is read line by line, so only
    those lines are reported."""
    number = 0
    for block in _line_blocks(chunks):
        try:
            lines = block.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            for raw in block.split(b"\n"):
                number += 1
                if raw.strip():
                    yield _utf8(raw, f"{name} line {number}")
            continue
        for line in lines:
            number += 1
            text = line.strip()
            if text or line.strip(ASCII_BLANKS):  # blanks only Unicode knows (U+00A0) make an empty item
                yield RecordedItem(f"{name} line {number}", text)


def read_base64_lines(name: str, chunks: Iterator[bytes], head: bytes) -> Iterator[RecordedItem]:
    for number, line in _lines(chunks):
        tokens = line.split()
        for index, token in enumerate(tokens):
            where = f"{name} line {number}" + (f" record {index + 1}" if len(tokens) > 1 else "")
            yield _kinesis_data(token, where)


def _kinesis_data(data: object, where: str) -> RecordedItem:
    """A Kinesis record's base64 ``Data``, decoded to the text of the event it carries."""
    if isinstance(data, str):
        data = data.encode("ascii", errors="backslashreplace")
    if not isinstance(data, bytes):
        return RecordedItem(where, json.dumps(data), "no base64 Data")
    try:
        decoded = base64.b64decode(data, validate=True)
    except binascii.Error:
        return RecordedItem(where, data.decode("ascii", errors="backslashreplace"), "Data is not base64")
    return _utf8(decoded, where)


# JSON documents ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Document:
    number: int
    text: str
    value: Any = None
    problem: str | None = None


class _DocumentReader:
    """JSON values one after another (any blanks between them, or none), decoded from a byte stream a
    chunk at a time; bytes that are not UTF-8 are kept (surrogate escapes) so the document holding them
    is reported, not the stream."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._json = json.JSONDecoder()
        self.buffer = ""
        self.position = 0
        self.finished = False

    def more(self, at_least: int = 0) -> bool:
        """Reads more of the stream (about as much again as is buffered, so a big document is decoded
        a bounded number of times); False at the end."""
        if self.finished:
            return False
        self.buffer = self.buffer[self.position :]
        self.position = 0
        wanted = max(at_least, len(self.buffer))
        read = 0
        while read <= wanted:
            chunk = next(self._chunks, None)
            if chunk is None:
                self.buffer += self._decoder.decode(b"", final=True)
                self.finished = True
                break
            self.buffer += self._decoder.decode(chunk)
            read += len(chunk)
        return read > 0 or bool(self.buffer)

    def skip_blanks(self) -> str:
        """The next character that is not a blank ("" at the end), not consumed."""
        while True:
            match = BLANKS.match(self.buffer, self.position)
            self.position = match.end() if match else self.position
            if self.position < len(self.buffer):
                return self.buffer[self.position]
            if not self.more():
                return ""

    def value(self, number: int) -> _Document:
        """The JSON value starting at the current position."""
        while True:
            start = self.position
            try:
                value, end = self._json.raw_decode(self.buffer, start)
            except json.JSONDecodeError as error:
                if self._maybe_cut(error) and len(self.buffer) - start < MAX_DOCUMENT_CHARS and self.more():
                    continue
                return self._unreadable(number, error)
            self.position = end
            return _checked(_Document(number, self.buffer[start:end], value))

    def _maybe_cut(self, error: json.JSONDecodeError) -> bool:
        return error.msg.startswith("Unterminated string") or error.pos >= len(self.buffer) - LONGEST_LITERAL

    def _unreadable(self, number: int, error: json.JSONDecodeError) -> _Document:
        """Skips to the next document (a ``}`` then ``{``, or the end) and reports what it skipped."""
        search_from = max(error.pos - self.position, 1)
        while True:
            boundary = NEXT_DOCUMENT.search(self.buffer, self.position + search_from)
            too_long = len(self.buffer) - self.position > MAX_DOCUMENT_CHARS
            if boundary is not None or self.finished or too_long:
                break
            self.more()  # the buffer now starts at the document
        end = boundary.end() if boundary is not None else len(self.buffer)
        text = _escaped(self.buffer[self.position : end])
        self.position = end
        return _Document(number, text, problem=f"not JSON ({error.msg})")


def _escaped(text: str) -> str:
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")


def _checked(document: _Document) -> _Document:
    if SURROGATE.search(document.text) is None:
        return document
    raw = document.text.encode("utf-8", errors="surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start})"
        return _Document(document.number, _escaped(document.text), problem=problem)
    return document


def _documents(chunks: Iterator[bytes]) -> Iterator[_Document]:
    reader = _DocumentReader(chunks)
    number = 0
    while reader.skip_blanks():
        number += 1
        yield reader.value(number)


def read_concatenated(name: str, chunks: Iterator[bytes], head: bytes) -> Iterator[RecordedItem]:
    for document in _documents(chunks):
        yield RecordedItem(f"{name} document {document.number}", document.text, document.problem)


def read_get_records(name: str, chunks: Iterator[bytes], head: bytes) -> Iterator[RecordedItem]:
    for document in _documents(chunks):
        where = f"{name} document {document.number}"
        records = document.value.get("Records") if isinstance(document.value, dict) else None
        if document.problem is not None or not isinstance(records, list):
            yield RecordedItem(where, document.text, document.problem or "not a GetRecords response")
            continue
        for index, record in enumerate(records):
            data = record.get("Data") if isinstance(record, dict) else None
            yield _kinesis_data(data, f"{where} Records[{index}]")


def read_archive(name: str, chunks: Iterator[bytes], head: bytes) -> Iterator[RecordedItem]:
    """One envelope per line, or a JSON array of envelopes (or of strings holding one)."""
    if not head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n").startswith("["):
        yield from read_json_lines(name, chunks, head)
        return
    reader = _DocumentReader(chunks)
    reader.skip_blanks()
    reader.position += 1  # the opening bracket
    index = 0
    while (next_char := reader.skip_blanks()) not in ("]", ""):
        item = reader.value(index + 1)
        where = f"{name} [{index}]"
        if item.problem is not None:
            yield RecordedItem(where, item.text, item.problem)
            return  # the array's shape is lost: nothing after it can be placed
        yield RecordedItem(where, item.value if isinstance(item.value, str) else item.text)
        index += 1
        if reader.skip_blanks() == ",":
            reader.position += 1
    if next_char == "":
        yield RecordedItem(f"{name} [{index}]", "", "the JSON array is not closed")


READERS = {
    "jsonl": read_json_lines,
    "kinesis-get-records": read_get_records,
    "kinesis-base64-lines": read_base64_lines,
    "firehose": read_concatenated,
    "eventbridge-archive": read_archive,
}
