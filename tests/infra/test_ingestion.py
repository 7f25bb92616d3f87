"""Ingestion in MeteringStack: activity and quarantine tables, the ingest Lambda on the agent-events queue."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from connect_metering.ingest_batching import BATCH_SIZE, BATCHING_WINDOW_SECONDS
from tests.infra.template_helpers import resource_with_prefix, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_every_table_is_on_demand_recoverable_retained_and_encrypted(metering_json: dict[str, Any]) -> None:
    tables = resources_of_type(metering_json, "AWS::DynamoDB::Table")
    assert {logical_id.split("Table")[0] for logical_id in tables} >= {"Tenancy", "Activity", "Quarantine"}
    for table in tables.values():
        properties = table["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert properties["DeletionProtectionEnabled"] is True
        assert properties["SSESpecification"]["SSEType"] == "KMS"
        assert table["DeletionPolicy"] == "Retain"


def test_activity_table_has_the_sparse_late_events_index(metering_json: dict[str, Any]) -> None:
    _, table = resource_with_prefix(metering_json, "AWS::DynamoDB::Table", "Activity")
    [index] = table["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "late-events"
    assert index["KeySchema"] == [
        {"AttributeName": "late_shard", "KeyType": "HASH"},
        {"AttributeName": "late_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_activity_expires_by_ttl(metering_json: dict[str, Any]) -> None:
    """Agent-hours and checkpoints are removed RETENTION_DAYS after their hour (the adapter sets it)."""
    _, table = resource_with_prefix(metering_json, "AWS::DynamoDB::Table", "Activity")
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_quarantine_expires_by_ttl(metering_json: dict[str, Any]) -> None:
    _, table = resource_with_prefix(metering_json, "AWS::DynamoDB::Table", "Quarantine")
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_ingest_function_reads_the_queue_with_partial_batch_failures(metering: Template) -> None:
    """The batch the bench measures (connect_metering/ingest_batching.py) is the one deployed."""
    assert (BATCH_SIZE, BATCHING_WINDOW_SECONDS) == (10_000, 300)
    metering.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": BATCH_SIZE,
            "MaximumBatchingWindowInSeconds": BATCHING_WINDOW_SECONDS,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "EventSourceArn": {"Fn::GetAtt": [Match.string_like_regexp("AgentEventsQueue"), "Arn"]},
        },
    )


def test_ingest_function_runtime_and_environment(metering_json: dict[str, Any]) -> None:
    _, function = resource_with_prefix(metering_json, "AWS::Lambda::Function", "IngestionIngest")
    properties = function["Properties"]
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Timeout"] == 60
    assert properties["TracingConfig"] == {"Mode": "Active"}
    variables = properties["Environment"]["Variables"]
    assert set(variables) >= {
        "TENANCY_TABLE",
        "ACTIVITY_TABLE",
        "QUARANTINE_TABLE",
        "QUARANTINE_RETENTION_DAYS",
    }
    assert int(variables["QUARANTINE_RETENTION_DAYS"]) >= 14


def test_queue_visibility_covers_six_ingest_timeouts(metering_json: dict[str, Any]) -> None:
    _, queue = resource_with_prefix(metering_json, "AWS::SQS::Queue", "AgentEventsQueue")
    assert queue["Properties"]["VisibilityTimeout"] >= 6 * 60


def test_ingest_role_is_least_privilege(metering_json: dict[str, Any]) -> None:
    policies = [
        policy
        for logical_id, policy in resources_of_type(metering_json, "AWS::IAM::Policy").items()
        if logical_id.startswith("IngestionIngest")
    ]
    statements = [
        statement for policy in policies for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    dynamodb_actions = sorted(
        action
        for statement in statements
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        if action.startswith("dynamodb:")
    )
    # the SQS event source adds its own receive/delete permissions; DynamoDB access is exactly this
    # Query and the tenancy table's UpdateItem verify an account claim (services/verification.py); the
    # other UpdateItems: the activity table's agent-hours and the quarantine table's counters.
    assert dynamodb_actions == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:UpdateItem",
        "dynamodb:UpdateItem",
    ]
    for statement in statements:
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        assert not any(action.endswith("*") and not action.startswith("xray:") for action in actions), (
            statement
        )


def test_quarantine_and_queue_age_alarms_cover_every_reason(metering_json: dict[str, Any]) -> None:
    from connect_metering.domain.agent_events import QuarantineReason
    from infra.constructs.operations import QUARANTINE_REASONS

    assert set(QUARANTINE_REASONS) == {reason.value for reason in QuarantineReason}
    alarms = resources_of_type(metering_json, "AWS::CloudWatch::Alarm")
    [rate] = [a["Properties"] for i, a in alarms.items() if "EventsQuarantinedRate" in i]
    reasons = {
        dimension["Value"]
        for query in rate["Metrics"]
        if "MetricStat" in query
        for dimension in query["MetricStat"]["Metric"]["Dimensions"]
        if dimension["Name"] == "Reason"
    }
    assert reasons == set(QUARANTINE_REASONS)
    assert rate["AlarmActions"] and rate["Threshold"] == 1_000
    [volume] = [a["Properties"] for i, a in alarms.items() if "SenderVolume" in i]
    assert volume["MetricName"] == "MaxEventsPerSender"
    assert [d["Name"] for d in volume["Dimensions"]] == ["service"]
    assert volume["Threshold"] == 300_000 and volume["AlarmActions"]
    [age] = [a["Properties"] for i, a in alarms.items() if "AgentEventsOldestMessage" in i]
    assert age["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert age["Threshold"] == 600
    assert age["AlarmActions"]
