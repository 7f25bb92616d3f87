"""Concurrency of the SQS-triggered functions: capped on the event source mapping, where AWS says to.

An SQS event source ignores a function's reserved concurrency: the poller keeps taking batches, the
throttled ones go back to the queue as receives and can reach the dead-letter queue. Maximum
concurrency on the mapping leaves surplus messages in the queue instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from connect_metering import meter_pacing
from tests.infra.template_helpers import resource_with_prefix, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

MARKETPLACE_CALLS_PER_SECOND_QUOTA = 10
SQS_TRIGGERED = {
    "IngestionIngest": "AgentEventsQueue",
    "MeteringWorker": "MeteringMeterWorkQueue",
    "LifecycleFunction": "LifecycleQueue",
}


def _function_id(function_prefix: str, metering_json: dict[str, Any]) -> str:
    logical_id, _ = resource_with_prefix(metering_json, "AWS::Lambda::Function", function_prefix)
    return logical_id


def _sqs_mappings(metering_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Function logical id -> properties of its event source mapping, for every mapping reading a queue."""
    queues = set(resources_of_type(metering_json, "AWS::SQS::Queue"))
    mappings = {}
    for mapping in resources_of_type(metering_json, "AWS::Lambda::EventSourceMapping").values():
        properties = mapping["Properties"]
        source = properties["EventSourceArn"]
        if isinstance(source, dict) and source.get("Fn::GetAtt", [None])[0] in queues:
            function_id = properties["FunctionName"]["Ref"]
            assert function_id not in mappings, f"{function_id} reads two queues"
            mappings[function_id] = properties
    return mappings


def _maximum_concurrency(mapping: dict[str, Any]) -> int:
    return int(mapping["ScalingConfig"]["MaximumConcurrency"])


def test_the_three_sqs_triggered_functions_are_the_ones_expected(metering_json: dict[str, Any]) -> None:
    mappings = _sqs_mappings(metering_json)
    expected = {_function_id(prefix, metering_json): queue for prefix, queue in SQS_TRIGGERED.items()}
    assert set(mappings) == set(expected)
    for function_id, queue_prefix in expected.items():
        assert mappings[function_id]["EventSourceArn"]["Fn::GetAtt"][0].startswith(queue_prefix)


def test_every_sqs_event_source_has_a_maximum_concurrency(metering_json: dict[str, Any]) -> None:
    for function_id, mapping in _sqs_mappings(metering_json).items():
        assert "ScalingConfig" in mapping, f"{function_id}: uncapped SQS event source"
        # AWS accepts 2..1000 (ScalingConfig.MaximumConcurrency).
        assert 2 <= _maximum_concurrency(mapping) <= 1000, function_id


def test_meter_workers_together_stay_under_the_batch_meter_usage_quota(metering_json: dict[str, Any]) -> None:
    worker_id = _function_id("MeteringWorker", metering_json)
    workers = _maximum_concurrency(_sqs_mappings(metering_json)[worker_id])
    pace = meter_pacing.CALLS_PER_SECOND  # the pace every meter worker keeps (functions/meter_worker)
    assert pace > 0
    assert workers * pace < MARKETPLACE_CALLS_PER_SECOND_QUOTA, f"{workers} workers x {pace} calls/s"


def test_reserved_concurrency_never_throttles_an_sqs_event_source(metering_json: dict[str, Any]) -> None:
    # Where a function keeps reserved concurrency, it must hold at least what its event source may
    # invoke at once; otherwise Lambda throttles the poller's batches back into the queue.
    functions = resources_of_type(metering_json, "AWS::Lambda::Function")
    for function_id, mapping in _sqs_mappings(metering_json).items():
        reserved = functions[function_id]["Properties"].get("ReservedConcurrentExecutions")
        if reserved is not None:
            assert reserved >= _maximum_concurrency(mapping), function_id


def test_everything_but_ingest_and_admin_reserves_concurrency(metering_json: dict[str, Any]) -> None:
    # An ingest flood (its mapping is capped, not reserved) can never take the capacity of registration,
    # subscription lifecycle or metering: each holds its own.
    reserved = {
        logical_id: function["Properties"]["ReservedConcurrentExecutions"]
        for logical_id, function in resources_of_type(metering_json, "AWS::Lambda::Function").items()
        if "ReservedConcurrentExecutions" in function["Properties"]
    }
    expected = {
        "MeteringWorker",
        "MeteringDispatcher",
        "RegistrationRegister",
        "LifecycleFunction",
        "ConsoleFunction",
    }
    assert set(reserved) == {_function_id(prefix, metering_json) for prefix in expected}
    assert all(value >= 1 for value in reserved.values())
    # AWS keeps 100 unreserved per account; the reservations must leave room for that and for ingest.
    assert sum(reserved.values()) <= 50
