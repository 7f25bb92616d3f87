"""Hourly metering and operations in MeteringStack: schedule, dispatcher, workers, ledger, alarms, dashboard."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.template_helpers import resource_with_prefix, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_dispatcher_runs_every_hour_at_minute_ten(metering: Template) -> None:
    metering.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "cron(10 * * * ? *)",
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [Match.string_like_regexp("MeteringDispatcher"), "Arn"]},
                        "DeadLetterConfig": Match.any_value(),
                        "RetryPolicy": Match.any_value(),
                    }
                )
            ],
        },
    )


def test_workers_are_capped_to_stay_under_the_marketplace_quota(metering_json: dict[str, Any]) -> None:
    _, worker = resource_with_prefix(metering_json, "AWS::Lambda::Function", "MeteringWorker")
    # two workers at 4 calls/s each (functions/meter_worker/handler.py): under 10 calls/s
    assert worker["Properties"]["ReservedConcurrentExecutions"] == 2
    assert worker["Properties"]["Environment"]["Variables"]["LEDGER_TABLE"]


def test_worker_reads_the_meter_queue_which_has_a_dead_letter_queue(
    metering: Template, metering_json: dict[str, Any]
) -> None:
    metering.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": 100,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "EventSourceArn": {"Fn::GetAtt": [Match.string_like_regexp("MeteringMeterWorkQueue"), "Arn"]},
        },
    )
    _, queue = resource_with_prefix(metering_json, "AWS::SQS::Queue", "MeteringMeterWorkQueue")
    assert queue["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 3
    assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_ledger_table_is_recoverable_and_encrypted(metering_json: dict[str, Any]) -> None:
    _, table = resource_with_prefix(metering_json, "AWS::DynamoDB::Table", "MeteringLedger")
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["Properties"]["SSESpecification"]["SSEType"] == "KMS"
    assert table["DeletionPolicy"] == "Retain"


def test_only_the_worker_may_call_batch_meter_usage(metering_json: dict[str, Any]) -> None:
    holders = {
        logical_id
        for logical_id, policy in resources_of_type(metering_json, "AWS::IAM::Policy").items()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "aws-marketplace:BatchMeterUsage"
        in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }
    assert len(holders) == 1
    assert next(iter(holders)).startswith("MeteringWorker")


def test_alarms_cover_billing_risks_dead_letters_and_errors(metering_json: dict[str, Any]) -> None:
    alarms = resources_of_type(metering_json, "AWS::CloudWatch::Alarm")
    metric_names = {alarm["Properties"].get("MetricName") for alarm in alarms.values()}
    assert {
        "RecordsExpired",
        "CustomerNotSubscribed",
        "DuplicateRecord",
        "RecordsUnconfirmed",
    } <= metric_names
    # ingest, dispatcher, worker, lifecycle, registration, admin, console
    assert sum(1 for alarm in alarms.values() if alarm["Properties"].get("MetricName") == "Errors") == 7
    dead_letter_alarms = [
        alarm
        for alarm in alarms.values()
        if alarm["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    ]
    queues = [
        logical_id
        for logical_id in resources_of_type(metering_json, "AWS::SQS::Queue")
        if "DeadLetter" in logical_id
    ]
    assert len(dead_letter_alarms) >= len(queues) - 0 and len(queues) >= 4
    # every alarm fires on the first occurrence, except the ingest flood and backlog alarms, whose
    # thresholds tests/infra/test_ingestion.py checks
    volume_alarms = ("EventsQuarantinedRate", "SenderVolume", "AgentEventsOldestMessage")
    assert sum(1 for logical_id in alarms if any(name in logical_id for name in volume_alarms)) == 3
    for logical_id, alarm in alarms.items():
        if not any(name in logical_id for name in volume_alarms):
            assert alarm["Properties"]["Threshold"] == 0, logical_id
        assert alarm["Properties"]["AlarmActions"]


def test_dashboard_exists(metering_json: dict[str, Any]) -> None:
    [dashboard] = resources_of_type(metering_json, "AWS::CloudWatch::Dashboard").values()
    body = str(dashboard["Properties"]["DashboardBody"])
    for metric in ("MeteredMinutes", "RecordsAccepted", "RecordsRetried", "RecordsExpired", "EventsAccepted"):
        assert metric in body
