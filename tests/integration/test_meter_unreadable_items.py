"""Stored items no writer of this version produces (an attack written by an older version, a bad
restore, a hand edit): every reader skips and counts them, and metering goes on for everyone.

Issue 10: an event dated 0999-06-01 was stored under the day key ``999-06-01`` (``%Y`` does not pad on
Linux); the dispatcher could not parse it back and failed every hour after."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from connect_metering.adapters.activity_table import LATE_EVENTS_INDEX, late_shard
from connect_metering.domain.instants import hour_floor, iso_ms, to_ms
from connect_metering.domain.metering import MeterRequest
from connect_metering.local.embedded import EmbeddedAws
from connect_metering.local.lambdas import handler_module
from tests.integration.test_meter_crash_safety import H8, Crashes, aws, build_worker, run_hour, total_accepted
from tests.replay_harness import instance

pytestmark = pytest.mark.integration
__all__ = ["aws"]  # the fixture: acme, one environment, a session 08:05-10:35 already ingested

ACTIVITY = "connect-metering-activity"
TENANCY = "connect-metering-tenancy"
YEAR_999 = to_ms(datetime(999, 6, 1, tzinfo=UTC))
# Far more than any bounded run needs, far less than recomputing years: the old code fails fast on it.
DYNAMODB_BUDGET = 400


@pytest.fixture
def budget() -> Iterator[Callable[[], int]]:
    """Fails a DynamoDB request past the budget, so an unbounded recompute fails instead of hanging."""
    calls = {"n": 0}

    def guard(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] > DYNAMODB_BUDGET:
            raise RuntimeError(f"more than {DYNAMODB_BUDGET} DynamoDB requests: the run is not bounded")

    events = boto3._get_default_session().events
    events.register("before-call.dynamodb.*", guard)
    yield lambda: calls["n"]
    events.unregister("before-call.dynamodb.*", guard)


def put_late_item(aws: EmbeddedAws, pk: str, sk: str, events: list[str], late_at: datetime) -> None:
    aws.dynamodb.put_item(
        TableName=ACTIVITY,
        Item={
            "pk": {"S": pk},
            "sk": {"S": sk},
            "ev": {"SS": events},
            "late_shard": {"S": late_shard(instance())},
            "late_at": {"N": str(to_ms(late_at))},
        },
    )


def late_index_size(aws: EmbeddedAws) -> int:
    return sum(
        aws.dynamodb.query(
            TableName=ACTIVITY,
            IndexName=LATE_EVENTS_INDEX,
            KeyConditionExpression="late_shard = :shard",
            ExpressionAttributeValues={":shard": {"S": f"late#{shard}"}},
        )["Count"]
        for shard in range(8)
    )


def dispatch(at: datetime) -> list[MeterRequest]:
    handler = handler_module("meter_dispatch")
    handler.dispatcher.cache_clear()
    requests: list[MeterRequest] = handler.dispatch({"time": iso_ms(to_ms(at))})
    handler.metrics.clear_metrics()
    return requests


def test_a_late_marker_dated_year_999_neither_stops_the_dispatcher_nor_unbounds_the_worker(
    aws: EmbeddedAws, budget: Callable[[], int]
) -> None:
    worker = build_worker(aws, Crashes())
    for hour in range(3):  # 08:00-10:00 metered: the session 08:05-10:35
        run_hour(aws, worker, H8 + timedelta(hours=hour))
    now = H8 + timedelta(hours=4, minutes=10)
    aws.clock.advance_to(now)
    login_999 = f"{YEAR_999}|0|0|attack-999"  # what ingest stored before the too_old rule
    # As the old code keyed it (unreadable), and as a total key (readable: the recompute is bounded).
    put_late_item(aws, f"{instance()}#999-06-01", "00#E#evil", [login_999], now - timedelta(minutes=5))
    put_late_item(aws, f"{instance()}#0999-06-01", "00#E#evil", [login_999], now - timedelta(minutes=5))

    requests = dispatch(now)

    assert [request.company for request in requests] == ["acme"]
    oldest = hour_floor(to_ms(now) - 604_800_000)
    assert requests[0].recompute_from == {instance(): oldest}
    handler = handler_module("meter_dispatch")
    assert handler.dispatcher()[1].counts == {}  # drained into the metric by the run
    assert late_index_size(aws) == 0  # both markers handled: never read again

    aws.requests.counts.clear()
    used_before = budget()
    (report,) = [worker.run(MeterRequest.from_json(request.to_json())) for request in requests]
    # Eight UTC days of the environment and the company: a handful of queries, not a thousand years.
    assert aws.requests.counts["dynamodb.Query"] <= 12
    assert budget() - used_before <= 40
    assert [record.quantity for record in report.records_stored] == [0]  # hour 11: nothing new
    assert total_accepted(aws) == 150
    assert dispatch(now + timedelta(hours=1))[0].recompute_from == {}


def test_the_dispatcher_counts_an_unreadable_marker_and_meters_everyone(aws: EmbeddedAws) -> None:
    now = H8 + timedelta(hours=1, minutes=10)
    aws.clock.advance_to(now)
    put_late_item(aws, f"{instance()}#999-06-01", "00#E#evil", ["0|0|0|x"], now)
    put_late_item(aws, f"{instance()}#2026-11-02", "xx#E#evil", ["0|0|0|y"], now)
    handler = handler_module("meter_dispatch")
    handler.dispatcher.cache_clear()
    service, unreadable = handler.dispatcher()
    outcome = service.dispatch(to_ms(now))
    assert [request.company for request in outcome.requests] == ["acme"]
    assert outcome.failed == []
    assert unreadable.counts == {"late-events": 2}
    assert late_index_size(aws) == 0


def test_the_worker_skips_an_unreadable_checkpoint_event_and_pending_record(aws: EmbeddedAws) -> None:
    worker = build_worker(aws, Crashes())
    for hour in range(2):  # 08:00 and 09:00 metered; checkpoints stored at 09:00 and 10:00
        run_hour(aws, worker, H8 + timedelta(hours=hour))
    day = f"{instance()}#2026-11-02"
    aws.dynamodb.put_item(
        TableName=ACTIVITY, Item={"pk": {"S": day}, "sk": {"S": "10#C"}, "doc": {"B": b"not a checkpoint"}}
    )
    aws.dynamodb.put_item(
        TableName=ACTIVITY,
        Item={"pk": {"S": day}, "sk": {"S": "09#C"}, "doc": {"B": zlib.compress(b'{"boundary": 1}')}},
    )
    aws.dynamodb.update_item(
        TableName=ACTIVITY,
        Key={"pk": {"S": day}, "sk": {"S": "10#E#a1"}},
        UpdateExpression="ADD ev :bad",
        ExpressionAttributeValues={":bad": {"SS": ["not|an|event", "12|x"]}},
    )
    aws.dynamodb.put_item(
        TableName=ACTIVITY, Item={"pk": {"S": day}, "sk": {"S": "10#X"}, "ev": {"SS": ["1|0|0|z"]}}
    )
    aws.dynamodb.put_item(
        TableName=TENANCY,
        Item={"pk": {"S": "COMPANY#acme"}, "sk": {"S": "PENDING#garbage"}, "record": {"S": "{not json"}},
    )

    run_hour(aws, worker, H8 + timedelta(hours=2))

    # The bad checkpoints at 09:00 and 10:00 are skipped: the worker recomputes from 08:00's, exactly.
    assert total_accepted(aws) == 150
    assert worker.unreadable.counts == {
        "checkpoints": 2,
        "activity-events": 3,
        "pending-records": 1,
    }
