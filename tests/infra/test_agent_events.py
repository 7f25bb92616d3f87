"""AgentEventsIngress in MeteringStack: bus, open-but-conditioned bus policy, rule, queues."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from connect_metering.ingest_batching import BATCHING_WINDOW_SECONDS
from tests.infra.template_helpers import only_resource, resource_with_prefix, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

SOURCE = "connect-metering.forwarder"
DETAIL_TYPE = "Amazon Connect Agent Event"


def _logical_id(template: dict[str, Any], resource_type: str, id_prefix: str) -> str:
    matches = [i for i in resources_of_type(template, resource_type) if i.startswith(id_prefix)]
    assert len(matches) == 1, matches
    return matches[0]


def test_bus_has_the_configured_name(metering: Template) -> None:
    metering.has_resource_properties("AWS::Events::EventBus", {"Name": "connect-metering-agent-events"})


def test_bus_policy_lets_any_account_put_only_forwarded_agent_events(
    metering_json: dict[str, Any],
) -> None:
    bus_id, _ = only_resource(metering_json, "AWS::Events::EventBus")
    _, policy = only_resource(metering_json, "AWS::Events::EventBusPolicy")
    assert policy["Properties"]["EventBusName"] == {"Ref": bus_id}
    statement = policy["Properties"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": "*"}
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == {"Fn::GetAtt": [bus_id, "Arn"]}
    assert statement["Condition"] == {
        "StringEquals": {"events:source": [SOURCE], "events:detail-type": [DETAIL_TYPE]}
    }


def test_rule_matches_forwarded_agent_events_into_the_queue_with_its_own_dlq(
    metering_json: dict[str, Any],
) -> None:
    bus_id, _ = only_resource(metering_json, "AWS::Events::EventBus")
    queue_id = _logical_id(metering_json, "AWS::SQS::Queue", "AgentEventsQueue")
    rule_dlq_id = _logical_id(metering_json, "AWS::SQS::Queue", "AgentEventsRuleDeadLetterQueue")
    _, rule = resource_with_prefix(metering_json, "AWS::Events::Rule", "AgentEvents")
    properties = rule["Properties"]
    assert properties["EventBusName"] == {"Ref": bus_id}
    assert properties["EventPattern"] == {"source": [SOURCE], "detail-type": [DETAIL_TYPE]}
    [target] = properties["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [rule_dlq_id, "Arn"]}}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}


def test_queue_suits_a_60_second_consumer_and_redrives_to_its_dlq(metering_json: dict[str, Any]) -> None:
    queue_id = _logical_id(metering_json, "AWS::SQS::Queue", "AgentEventsQueue")
    dlq_id = _logical_id(metering_json, "AWS::SQS::Queue", "AgentEventsDeadLetterQueue")
    properties = metering_json["Resources"][queue_id]["Properties"]
    assert properties["VisibilityTimeout"] == 6 * 60 + BATCHING_WINDOW_SECONDS
    assert properties["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": 5,
    }
    assert metering_json["Resources"][dlq_id]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_every_queue_is_encrypted_and_denies_plain_http(metering_json: dict[str, Any]) -> None:
    queues = resources_of_type(metering_json, "AWS::SQS::Queue")
    assert len(queues) >= 3
    policies = resources_of_type(metering_json, "AWS::SQS::QueuePolicy").values()
    for queue_id, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, queue_id
        [policy] = [p for p in policies if p["Properties"]["Queues"] == [{"Ref": queue_id}]]
        assert {
            "Action": "sqs:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": {"Fn::GetAtt": [queue_id, "Arn"]},
        } in policy["Properties"]["PolicyDocument"]["Statement"], queue_id


def test_only_the_rule_may_send_to_the_queue(metering: Template, metering_json: dict[str, Any]) -> None:
    rule_id, _ = resource_with_prefix(metering_json, "AWS::Events::Rule", "AgentEvents")
    metering.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Condition": {
                                    "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_bus_arn_is_an_output_for_customers(metering: Template) -> None:
    metering.has_output("AgentEventsBusArn", {"Value": {"Fn::GetAtt": [Match.any_value(), "Arn"]}})
