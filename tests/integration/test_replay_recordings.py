"""`replay --events` on recorded streams in every shape AWS hands them over (tests/fixtures/aws/recordings,
built from AWS's documented shapes: see tests/fixtures/aws/SOURCES.md): each bills exactly what the same
events as JSON lines bill, detected or named with --format; a folder is read in name order; bytes that
are not UTF-8 and records that cannot be decoded are quarantined with their position, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from connect_metering.local import cli
from connect_metering.local.replay import Replay, load_faults, load_registry, read_events
from tests.conftest import REPO_ROOT, environment_restored
from tests.replay_harness import same_outcome

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("restored_environment")]


RECORDINGS = REPO_ROOT / "tests" / "fixtures" / "aws" / "recordings"
# The published samples' instance and account.
INSTANCE = "arn:aws:connect:us-west-2:012345678901:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111"
UNTIL = "2019-08-13T12:00:00Z"
REGISTRY = {
    "companies": [
        {
            "alias": "acme",
            "subscriptions": [
                {
                    "customer_aws_account_id": "012345678901",
                    "license_arn": "arn:aws:license-manager::123456789012:license:l-0123456789abcdef0",
                    "pricing": "usage",
                    "started": "2019-08-13T00:00:00Z",
                }
            ],
            "environments": [{"name": "west", "instance_arn": INSTANCE}],
        }
    ]
}

FORMATS = [
    ("kinesis-get-records", "kinesis-get-records.json"),
    ("kinesis-base64-lines", "kinesis-base64-lines.txt"),
    ("firehose", "firehose-s3-object"),
    ("firehose", "firehose-s3-object.gz"),
    ("eventbridge-archive", "eventbridge-archive-replay.json"),
    ("eventbridge-archive", "eventbridge-archive-replay.jsonl"),
    ("eventbridge-archive", "eventbridge-archive-cloudwatch-logs.json"),
]


def replay(tmp_path: Path, events: Path, fmt: str = "auto") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY))
    out = tmp_path / f"out-{fmt}-{events.name}"
    summaries = []
    for engine, folder in (("handlers", out), ("core", tmp_path / f"core-{fmt}-{events.name}")):
        with environment_restored():
            summaries.append(
                Replay(load_registry(registry), load_faults(None), folder, engine).run(
                    read_events(events, fmt), 1565697600000
                )
            )
    same_outcome(out, tmp_path / f"core-{fmt}-{events.name}", (summaries[0], summaries[1]))
    summary = summaries[0]
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return records, summary


@pytest.fixture(scope="module")
def as_json_lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return replay(tmp_path_factory.mktemp("jsonl"), RECORDINGS / "agent-events.jsonl")


def test_the_json_lines_bill_the_half_hour_shift(
    as_json_lines: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    records, summary = as_json_lines
    acme = summary["companies"]["acme"]
    assert acme["minutes_accepted"] == 30
    assert acme["events_accepted"] == 16 and not acme["quarantined"]
    assert {record["status"] for record in records} == {"Success"}


@pytest.mark.parametrize(("fmt", "file_name"), FORMATS)
def test_each_recorded_shape_bills_the_same_as_json_lines(
    fmt: str,
    file_name: str,
    tmp_path: Path,
    as_json_lines: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    records, summary = replay(tmp_path, RECORDINGS / file_name, fmt)
    expected_records, expected_summary = as_json_lines
    assert summary["companies"] == expected_summary["companies"]
    assert [record["usage_record"] for record in records] == [
        record["usage_record"] for record in expected_records
    ]
    assert summary["unreadable_input"] == {"count": 0, "first": []}


@pytest.mark.parametrize(("fmt", "file_name"), FORMATS)
def test_each_shape_is_detected_as_the_format_it_is(fmt: str, file_name: str) -> None:
    detected = list(read_events(RECORDINGS / file_name))
    assert [delivery.body for delivery in detected] == [
        delivery.body for delivery in read_events(RECORDINGS / file_name, fmt)
    ]
    assert len(detected) == 16 and not any(delivery.unreadable for delivery in detected)


def test_a_folder_is_read_in_name_order_whatever_each_files_shape(
    tmp_path: Path, as_json_lines: tuple[list[dict[str, Any]], dict[str, Any]]
) -> None:
    """As `aws s3 cp --recursive` lays out a Firehose prefix: year/month/day/hour folders."""
    lines = (RECORDINGS / "agent-events.jsonl").read_text().splitlines(keepends=True)
    folder = tmp_path / "recording"
    (folder / "2019" / "08" / "13" / "08").mkdir(parents=True)
    (folder / "2019" / "08" / "13" / "09").mkdir(parents=True)
    (folder / "2019" / "08" / "13" / "08" / "part-a").write_text("".join(line.strip() for line in lines[:8]))
    (folder / "2019" / "08" / "13" / "09" / "part-b.jsonl").write_text("".join(lines[8:]))
    shutil.copy(RECORDINGS / "firehose-s3-object.gz", folder / "2019" / "08" / "13" / "09" / "part-c.gz")
    records, summary = replay(tmp_path, folder)
    acme = summary["companies"]["acme"]
    assert acme["minutes_accepted"] == 30
    assert acme["duplicates"] == 16  # part-c holds the whole shift again: byte-identical redeliveries
    assert [record["usage_record"] for record in records] == [
        record["usage_record"] for record in as_json_lines[0]
    ]


def test_non_utf8_bytes_and_undecodable_records_are_quarantined_with_their_position(
    tmp_path: Path,
    as_json_lines: tuple[list[dict[str, Any]], dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = tmp_path / "events.jsonl"
    good = (RECORDINGS / "agent-events.jsonl").read_bytes()
    events.write_bytes(good + b'{"EventId": "caf\xe9", "EventType": "HEART_BEAT"}\n')
    base64_lines = tmp_path / "records.txt"
    base64_lines.write_bytes((RECORDINGS / "kinesis-base64-lines.txt").read_bytes() + b"not*base64\n")
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY))

    for recording, where, reason in (
        (events, f"{events} line 17", "not UTF-8 (byte 0xe9"),
        (base64_lines, f"{base64_lines} line 10", "not base64"),
    ):
        out = tmp_path / f"out-{recording.name}"
        argv = ["replay", "--registry", str(registry), "--events", str(recording), "--until", UNTIL]
        assert cli.main([*argv, "--out", str(out)]) == 0
        error = capsys.readouterr().err
        assert "Traceback" not in error and where in error
        summary = json.loads((out / "summary.json").read_text())
        assert summary["unreadable_input"]["count"] == 1
        assert summary["unreadable_input"]["first"][0]["at"] == where
        assert reason in summary["unreadable_input"]["first"][0]["reason"]
        assert summary["quarantined_unattributed"] == {"unparseable": 1}
        assert summary["companies"] == as_json_lines[1]["companies"]
