"""`bench` measures ingest in the batches the deployed event source delivers, and counts write units
from item sizes as DynamoDB bills them (issue 14)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from connect_metering import ingest_batching
from connect_metering.local import bench, ingest_profiles
from connect_metering.local.embedded import ACTIVITY_TABLE, EmbeddedAws
from connect_metering.local.write_units import item_bytes
from tests.conftest import environment_restored

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def test_the_bench_batches_with_the_deployed_constants(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench reads the constants the CDK event source is built from, at the time it batches."""
    monkeypatch.setattr(ingest_batching, "BATCH_SIZE", 3)
    assert [len(b["Records"]) for b in bench.deployed_batches([(T0, "{}")] * 7)] == [3, 3, 1]
    monkeypatch.setattr(ingest_batching, "BATCHING_WINDOW_SECONDS", 1)
    stream = [(T0, "{}"), (T0 + timedelta(seconds=2), "{}")]
    assert [len(b["Records"]) for b in bench.deployed_batches(stream)] == [1, 1]


def test_a_batch_closes_at_the_batch_size() -> None:
    stream = [(T0, "{}")] * (ingest_batching.BATCH_SIZE + 1)
    assert [len(b["Records"]) for b in bench.deployed_batches(stream)] == [ingest_batching.BATCH_SIZE, 1]


def test_a_batch_closes_when_its_window_has_passed() -> None:
    window = timedelta(seconds=ingest_batching.BATCHING_WINDOW_SECONDS)
    stream = [(T0, "{}"), (T0 + window, "{}"), (T0 + window + timedelta(seconds=1), "{}")]
    assert [len(b["Records"]) for b in bench.deployed_batches(stream)] == [2, 1]


def test_a_batch_never_exceeds_the_lambda_payload() -> None:
    body = json.dumps({"padding": "x" * 200_000})
    batches = bench.deployed_batches([(T0, body)] * 100)
    sizes = [len(json.dumps(batch)) for batch in batches]
    assert max(sizes) <= ingest_batching.LAMBDA_PAYLOAD_LIMIT_BYTES
    # full: one more record would not have fitted
    assert sizes[0] + sizes[-1] // len(batches[-1]["Records"]) > ingest_batching.LAMBDA_PAYLOAD_LIMIT_BYTES
    assert sum(len(b["Records"]) for b in batches) == 100


def test_the_ingest_measurement_stores_the_deployed_batches() -> None:
    measure = bench.measure_ingest(agents=3)
    assert measure.batches == len(bench.deployed_batches(bench.agent_event_stream(3, 11)))
    assert measure.accepted + measure.duplicates == measure.events
    assert measure.write_units >= measure.writes >= 1


@pytest.fixture
def aws() -> Iterator[EmbeddedAws]:
    with environment_restored(), EmbeddedAws(product_code="p", start=T0) as embedded:
        yield embedded


def test_write_units_round_up_the_larger_item_size_to_kilobytes(aws: EmbeddedAws) -> None:
    key = {"pk": {"S": "instance#2026-11-02"}, "sk": {"S": "08#E#agent"}}
    meter = aws.count_write_units()
    aws.dynamodb.put_item(TableName=ACTIVITY_TABLE, Item={**key, "ev": {"SS": ["a" * 1000]}})
    first = item_bytes(aws.stored_item(ACTIVITY_TABLE, key))
    assert 1024 < first <= 2048 and meter.units == 2  # 1 KB and a few bytes: two units
    aws.dynamodb.update_item(
        TableName=ACTIVITY_TABLE,
        Key=key,
        UpdateExpression="ADD ev :more",
        ExpressionAttributeValues={":more": {"SS": ["b" * 1100]}},
    )
    second = item_bytes(aws.stored_item(ACTIVITY_TABLE, key))
    assert meter.units == 2 + math.ceil(second / 1024) == 5
    with pytest.raises(ClientError):  # a failed condition is billed by the item's size
        aws.dynamodb.update_item(
            TableName=ACTIVITY_TABLE,
            Key=key,
            UpdateExpression="REMOVE ev",
            ConditionExpression="attribute_not_exists(pk)",
        )
    assert meter.units == 5 + 3
    aws.dynamodb.transact_write_items(  # shrinking: billed by the size before, twice in a transaction
        TransactItems=[{"Update": {"TableName": ACTIVITY_TABLE, "Key": key, "UpdateExpression": "REMOVE ev"}}]
    )
    assert meter.units == 8 + 2 * 3


def _profile_shift(minutes: int = 60) -> ingest_profiles.ProfileShift:
    return ingest_profiles.ProfileShift(
        bench.BENCH_INSTANCE, "agent-0001", T0, T0 + timedelta(minutes=minutes, seconds=30)
    )


def _stamps(events: list[dict[str, object]]) -> list[datetime]:
    return [datetime.fromisoformat(str(event["EventTimestamp"])) for event in events]


def test_a_heartbeat_only_agent_sends_a_heartbeat_every_120_s_and_nothing_else() -> None:
    events = list(ingest_profiles.profile_events(ingest_profiles.HEARTBEAT_ONLY, _profile_shift()))
    kinds = [event["EventType"] for event in events]
    assert kinds[:2] == ["LOGIN", "STATE_CHANGE"]
    logout = kinds.index("LOGOUT")
    assert set(kinds[2:logout]) == {"HEART_BEAT"} and set(kinds[logout + 1 :]) == {"HEART_BEAT"}
    stamps = _stamps(events)
    assert {b - a for a, b in itertools.pairwise(stamps[1:logout])} == {timedelta(seconds=120)}
    assert 29 <= logout <= 32  # about 30 events in the hour
    assert all(event["CurrentAgentSnapshot"]["Contacts"] == [] for event in events)


def test_a_busy_agent_takes_a_contact_every_two_minutes() -> None:
    events = list(ingest_profiles.profile_events(ingest_profiles.BUSY, _profile_shift()))
    kinds = [event["EventType"] for event in events]
    logout = kinds.index("LOGOUT")
    assert set(kinds[1:logout]) == {"STATE_CHANGE"}  # never 120 s without an event: no heartbeat
    stamps = _stamps(events)
    assert max(b - a for a, b in itertools.pairwise(stamps[: logout + 1])) < timedelta(seconds=120)
    connecting = [
        at
        for at, event in zip(stamps, events, strict=True)
        if [c["State"] for c in event["CurrentAgentSnapshot"]["Contacts"]] == ["CONNECTING"]
    ]
    assert {b - a for a, b in itertools.pairwise(connecting)} == {timedelta(minutes=2)}
    assert len(connecting) == 30 and logout == 2 + 4 * 30  # four events a contact, 120 an hour
    with pytest.raises(ValueError, match="profile: must be one of heartbeat_only, busy"):
        next(ingest_profiles.profile_events("idle", _profile_shift()))


def test_the_profiles_are_measured_through_the_ingest_handler() -> None:
    measures = ingest_profiles.measure_ingest_profiles(agents=2)
    assert [item.profile for item in measures] == ["heartbeat_only", "busy"]
    for item in measures:
        stream = ingest_profiles.profile_stream(
            item.profile, 2, bench.BENCH_INSTANCE, T0 + timedelta(hours=1), 13
        )
        assert item.measure.events == len(stream) == item.measure.accepted
        assert item.measure.write_units >= item.measure.writes >= 1
    figures = ingest_profiles.profile_figures(measures)
    assert [f.name for f in figures if f.target] == [
        "ingest, heartbeat_only profile, 2 agents: write units per accepted event",
        "ingest, busy profile, 2 agents: write units per accepted event",
    ]
