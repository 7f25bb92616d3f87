"""The recorded-stream readers (local/recordings.py) on their own: detection, streaming across chunk
boundaries, and what they make of damaged input (an item with its problem, never an exception)."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from connect_metering.local import recordings
from connect_metering.local.recordings import RecordingError, read_recording, recording_files, sniff

pytestmark = pytest.mark.unit

EVENTS = [{"EventId": f"e{number}", "EventType": "HEART_BEAT", "Name": "Café " * 50} for number in range(40)]


def texts(path: Path, fmt: str = "auto") -> list[tuple[str | None, str]]:
    return [(item.problem, item.text) for item in read_recording(recording_files(path), fmt)]


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b'{"a": 1}\n{"a": 2}\n', "jsonl"),
        (b'{"a": 1}{"a": 2}', "firehose"),
        (b'{\n  "a": 1\n}\n{\n  "a": 2\n}', "firehose"),
        (b'{\n    "Records": [],\n    "MillisBehindLatest": 0\n}', "kinesis-get-records"),
        (b'{"MillisBehindLatest": 0, "Records": []}', "kinesis-get-records"),
        (base64.b64encode(b'{"a": 1}') + b"\n", "kinesis-base64-lines"),
        (b'[{"detail": {}}]', "eventbridge-archive"),
        (b"\xef\xbb\xbf" + b'{"a": 1}\n', "jsonl"),
        (b"garbage\n", "jsonl"),
        (b"", "jsonl"),
    ],
)
def test_sniff(head: bytes, fmt: str) -> None:
    assert sniff(head) == fmt


def test_documents_and_lines_are_read_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recordings, "CHUNK_BYTES", 7)
    monkeypatch.setattr(recordings, "SNIFF_BYTES", 64)
    expected = [(None, json.dumps(event)) for event in EVENTS]
    concatenated = tmp_path / "object"
    concatenated.write_text("".join(json.dumps(event) for event in EVENTS))
    lines = tmp_path / "events.jsonl"
    lines.write_text("".join(json.dumps(event) + "\n" for event in EVENTS))
    get_records = tmp_path / "get-records.json"
    data = [base64.b64encode(json.dumps(event).encode()).decode() for event in EVENTS]
    get_records.write_text(json.dumps({"Records": [{"Data": item, "SequenceNumber": "1"} for item in data]}))
    archive = tmp_path / "archive.json"
    archive.write_text(json.dumps(EVENTS, indent=2))
    assert texts(concatenated, "firehose") == expected
    assert texts(lines) == expected
    assert texts(get_records) == expected
    assert [json.loads(text) for _, text in texts(archive)] == EVENTS


def test_gzip_is_recognised_by_its_magic_bytes_whatever_the_name(tmp_path: Path) -> None:
    path = tmp_path / "object-without-extension"
    path.write_bytes(gzip.compress(b"".join(json.dumps(event).encode() for event in EVENTS)))
    assert len(texts(path)) == len(EVENTS)


def test_a_broken_document_is_reported_and_the_next_one_read(tmp_path: Path) -> None:
    path = tmp_path / "object"
    path.write_text('{"EventId": "a"}{"EventId": oops}{"EventId": "c"}')
    items = list(read_recording([path], "firehose"))
    assert [item.problem for item in items] == [None, "not JSON (Expecting value)", None]
    assert items[1].where == f"{path} document 2"
    assert items[2].text == '{"EventId": "c"}'


def test_bytes_that_are_not_utf8_mark_their_document_only(tmp_path: Path) -> None:
    path = tmp_path / "object"
    path.write_bytes(b'{"EventId": "a"}{"EventId": "caf\xe9"}{"EventId": "c"}')
    items = list(read_recording([path], "firehose"))
    assert [item.problem for item in items] == [None, "not UTF-8 (byte 0xe9 at offset 16)", None]
    assert "\\xe9" in items[1].text


def test_a_damaged_gzip_stream_ends_its_file_with_a_problem_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "object.gz"
    compressed = gzip.compress(
        "".join(f'{{"EventId": "{n * 7919 % 10007}"}}\n' for n in range(5000)).encode()
    )
    path.write_bytes(compressed[: len(compressed) // 2])
    items = list(read_recording([path]))
    assert items[-1].problem is not None and "gzip" in items[-1].problem


def test_an_unclosed_archive_array_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "archive.json"
    path.write_text('[{"EventId": "a"}, "{\\"EventId\\": \\"b\\"}"')
    assert texts(path) == [
        (None, '{"EventId": "a"}'),
        (None, '{"EventId": "b"}'),
        ("the JSON array is not closed", ""),
    ]


def test_records_that_are_not_get_records_output_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "calls.json"
    path.write_text('{"Records": [{"Data": 5}, {"Data": "eyJh!"}]}\n{"Other": 1}')
    problems = [item.problem for item in read_recording([path], "kinesis-get-records")]
    assert problems == ["no base64 Data", "Data is not base64", "not a GetRecords response"]


def test_a_missing_recording_or_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such events file or folder"):
        recording_files(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_text("{}")
    with pytest.raises(RecordingError, match="holds no file"):
        recording_files(tmp_path / "empty")


def test_lines_keep_their_numbers_and_blanks_across_decoded_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines are decoded a block at a time: a block holding a byte that is not UTF-8 is read line by
    line (only that line reported, at its own offset), a line of Unicode blanks is an empty item as
    before (``bytes.strip`` does not take them), and every line keeps its number."""
    monkeypatch.setattr(recordings, "CHUNK_BYTES", 16)
    monkeypatch.setattr(recordings, "SNIFF_BYTES", 16)
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b'{"a": 1}\r\n\n  \n{"b": "\xe9t\xc3\xa9"}\n\xc2\xa0\n\x1c\n\t{"c": "caf\xc3\xa9"}  \n{"d": 4}'
    )
    items = list(read_recording([path]))
    assert [(item.where.rsplit(" ", 1)[1], item.problem, item.text) for item in items] == [
        ("1", None, '{"a": 1}'),
        ("4", "not UTF-8 (byte 0xe9 at offset 7)", '{"b": "\\xe9t\u00e9"}'),
        ("5", None, ""),
        ("6", None, ""),
        ("7", None, '{"c": "caf\u00e9"}'),
        ("8", None, '{"d": 4}'),
    ]
