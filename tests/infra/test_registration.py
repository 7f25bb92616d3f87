"""Registration, subscription lifecycle and admin in MeteringStack: the public HTTP API (throttled, access
logs), the IAM-authenticated admin API, the default-bus rule and SNS subscriptions into the lifecycle
queue, least-privilege roles, alarms, the tenancy table's TTL, and cdk-nag on the lifecycle construct
with SNS topics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Match, Template

from connect_metering.domain.lifecycle import DETAIL_TYPES, EVENTBRIDGE_SOURCE
from infra.app import METERING_STACK
from infra.constructs.lambda_runtime import LambdaRuntime
from infra.constructs.subscription_lifecycle import (
    MARKETPLACE_DETAIL_TYPES,
    MARKETPLACE_EVENT_SOURCE,
    SubscriptionLifecycle,
    sns_topic_arns_from_context,
)
from infra.nag import apply_nag, unacknowledged_findings
from tests.infra.conftest import SynthesizedApp
from tests.infra.template_helpers import resource_with_prefix, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

TOPIC = "arn:aws:sns:us-east-1:287250355862:aws-mp-subscription-notification-connectmeter0demo1"
ENTITLEMENT_TOPIC = "arn:aws:sns:us-east-1:287250355862:aws-mp-entitlement-notification-connectmeter0demo1"


def statements_of(template: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [
        statement
        for logical_id, policy in resources_of_type(template, "AWS::IAM::Policy").items()
        if logical_id.startswith(prefix)
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions_on(statements: list[dict[str, Any]], prefix: str) -> list[str]:
    return sorted(
        action
        for statement in statements
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        if action.startswith(prefix)
    )


def environment_of(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    _, function = resource_with_prefix(template, "AWS::Lambda::Function", prefix)
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


# Registration API ---------------------------------------------------------------------------------


def test_registration_routes_are_public_and_go_to_the_register_function(
    metering_json: dict[str, Any],
) -> None:
    api_id, api = resource_with_prefix(metering_json, "AWS::ApiGatewayV2::Api", "RegistrationApi")
    assert api["Properties"]["ProtocolType"] == "HTTP"
    routes = {
        route["Properties"]["RouteKey"]: route["Properties"]
        for route in resources_of_type(metering_json, "AWS::ApiGatewayV2::Route").values()
        if route["Properties"]["ApiId"] == {"Ref": api_id}
    }
    # The console's routes share the API (and so its CloudFront and WAF): tests/infra/test_console.py.
    console_routes = {key for key in routes if key.split(" ", 1)[1].startswith("/console")}
    assert sorted(set(routes) - console_routes) == ["GET /signup", "POST /register", "POST /signup"]
    assert {route["AuthorizationType"] for route in routes.values()} == {"NONE"}
    [integration] = [
        resource["Properties"]
        for resource in resources_of_type(metering_json, "AWS::ApiGatewayV2::Integration").values()
        if resource["Properties"]["ApiId"] == {"Ref": api_id}
        and "ConsoleFunction" not in json.dumps(resource["Properties"]["IntegrationUri"])
    ]
    assert integration["PayloadFormatVersion"] == "2.0"
    assert "RegistrationRegisterFunction" in json.dumps(integration["IntegrationUri"])


@pytest.mark.parametrize(("prefix", "rate", "burst"), [("Registration", 10, 20), ("Admin", 50, 100)])
def test_stages_are_throttled_and_access_logged_without_query_or_body(
    metering_json: dict[str, Any], prefix: str, rate: int, burst: int
) -> None:
    _, stage = resource_with_prefix(metering_json, "AWS::ApiGatewayV2::Stage", f"{prefix}Stage")
    properties = stage["Properties"]
    assert (properties["StageName"], properties["AutoDeploy"]) == ("$default", True)
    assert properties["DefaultRouteSettings"] == {"ThrottlingBurstLimit": burst, "ThrottlingRateLimit": rate}
    log_group_id, log_group = resource_with_prefix(
        metering_json, "AWS::Logs::LogGroup", f"{prefix}AccessLogs"
    )
    assert properties["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": [log_group_id, "Arn"]}
    assert log_group["Properties"]["RetentionInDays"] == 90 and log_group["DeletionPolicy"] == "Retain"
    fields = json.loads(properties["AccessLogSettings"]["Format"])
    assert fields["routeKey"] == "$context.routeKey" and fields["status"] == "$context.status"
    assert not any(("path" in value or "body" in value.lower()) for value in fields.values())


def test_register_function_environment_and_least_privilege(metering_json: dict[str, Any]) -> None:
    variables = environment_of(metering_json, "RegistrationRegister")
    assert set(variables) >= {"TENANCY_TABLE", "PRODUCT_CODE", "AGENT_EVENTS_BUS_ARN", "METER_QUEUE_URL"}
    _, function = resource_with_prefix(metering_json, "AWS::Lambda::Function", "RegistrationRegister")
    assert function["Properties"]["Timeout"] <= 29  # inside API Gateway's integration timeout
    statements = statements_of(metering_json, "RegistrationRegister")
    assert actions_on(statements, "dynamodb:") == [
        "dynamodb:ConditionCheckItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ]
    assert actions_on(statements, "aws-marketplace:") == [
        "aws-marketplace:GetEntitlements",
        "aws-marketplace:ResolveCustomer",
    ]
    assert "aws-marketplace:BatchMeterUsage" not in json.dumps(statements)
    assert actions_on(statements, "sqs:") == ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"]


# Admin API ----------------------------------------------------------------------------------------


def test_every_admin_route_is_iam_authenticated(metering_json: dict[str, Any]) -> None:
    api_id, _ = resource_with_prefix(metering_json, "AWS::ApiGatewayV2::Api", "AdminApi")
    routes = {
        route["Properties"]["RouteKey"]: route["Properties"]["AuthorizationType"]
        for route in resources_of_type(metering_json, "AWS::ApiGatewayV2::Route").values()
        if route["Properties"]["ApiId"] == {"Ref": api_id}
    }
    assert routes == {
        "GET /companies/{alias}/environments": "AWS_IAM",
        "POST /companies/{alias}/environments": "AWS_IAM",
        "DELETE /companies/{alias}/environments/{name}": "AWS_IAM",
        "GET /companies/{alias}/license": "AWS_IAM",
        "POST /seat-check": "AWS_IAM",
    }


def test_admin_function_reads_activity_and_writes_only_tenancy(metering_json: dict[str, Any]) -> None:
    assert set(environment_of(metering_json, "AdminFunction")) >= {
        "TENANCY_TABLE",
        "ACTIVITY_TABLE",
        "PRODUCT_CODE",
    }
    statements = statements_of(metering_json, "AdminRole")
    activity = [
        s for s in statements if "ActivityTable" in json.dumps(s["Resource"]) and "dynamodb" in json.dumps(s)
    ]
    assert actions_on(activity, "dynamodb:") == ["dynamodb:Query"]
    assert "aws-marketplace" not in json.dumps(statements)


# Subscription lifecycle ----------------------------------------------------------------------------


def test_marketplace_events_on_the_default_bus_reach_the_lifecycle_queue(metering: Template) -> None:
    metering.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventBusName": "default",
            "EventPattern": {
                "source": ["aws.agreement-marketplace"],
                "detail-type": list(MARKETPLACE_DETAIL_TYPES),
            },
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [Match.string_like_regexp("LifecycleQueue"), "Arn"]},
                        "DeadLetterConfig": {
                            "Arn": {
                                "Fn::GetAtt": [
                                    Match.string_like_regexp("LifecycleDeliveryDeadLetterQueue"),
                                    "Arn",
                                ]
                            }
                        },
                        "RetryPolicy": {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185},
                    }
                )
            ],
        },
    )


def test_lifecycle_queue_has_a_dead_letter_queue_and_the_function_reports_partial_failures(
    metering: Template, metering_json: dict[str, Any]
) -> None:
    _, queue = resource_with_prefix(metering_json, "AWS::SQS::Queue", "LifecycleQueue")
    properties = queue["Properties"]
    assert properties["RedrivePolicy"]["maxReceiveCount"] == 5
    assert "LifecycleDeadLetterQueue" in json.dumps(properties["RedrivePolicy"]["deadLetterTargetArn"])
    assert properties["SqsManagedSseEnabled"] is True
    assert properties["VisibilityTimeout"] >= 6 * 60
    metering.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "EventSourceArn": {"Fn::GetAtt": [Match.string_like_regexp("LifecycleQueue"), "Arn"]},
        },
    )


def test_lifecycle_function_environment_and_least_privilege(metering_json: dict[str, Any]) -> None:
    variables = environment_of(metering_json, "LifecycleFunction")
    assert set(variables) >= {"TENANCY_TABLE", "PRODUCT_CODE", "METER_QUEUE_URL"}
    assert "MeterWorkQueue" in json.dumps(variables["METER_QUEUE_URL"])
    statements = statements_of(metering_json, "LifecycleRole")
    # DeleteItem and Query: the parked-notification markers are removed at sign-up and read hourly
    assert actions_on(statements, "dynamodb:") == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ]
    assert actions_on(statements, "aws-marketplace:") == ["aws-marketplace:GetEntitlements"]
    [sender] = [s for s in statements if "sqs:SendMessage" in json.dumps(s["Action"])]
    assert "MeteringMeterWorkQueue" in json.dumps(sender["Resource"])  # the meter's queue, nothing else


def test_lifecycle_dead_letters_and_errors_alarm_on_the_operations_topic(
    metering_json: dict[str, Any],
) -> None:
    alarms = {
        k: v
        for k, v in resources_of_type(metering_json, "AWS::CloudWatch::Alarm").items()
        if k.startswith("Lifecycle")
    }
    # dead letters, undelivered events, notifications parked too long, and the parked check's own dead
    # letters; function errors are the operations construct's (it lists the functions)
    assert len(alarms) == 4
    for alarm in alarms.values():
        assert alarm["Properties"]["Threshold"] == 0
        assert "OperationsAlarmTopic" in json.dumps(alarm["Properties"]["AlarmActions"])


def test_notifications_parked_over_an_hour_are_counted_hourly_and_alarmed(
    metering_json: dict[str, Any],
) -> None:
    _, rule = resource_with_prefix(metering_json, "AWS::Events::Rule", "LifecycleParkedCheckSchedule")
    assert rule["Properties"]["ScheduleExpression"] == "cron(40 * * * ? *)"
    [target] = rule["Properties"]["Targets"]
    assert "LifecycleFunction" in json.dumps(target["Arn"])
    assert "ParkedCheckDeadLetterQueue" in json.dumps(target["DeadLetterConfig"])
    _, alarm = resource_with_prefix(metering_json, "AWS::CloudWatch::Alarm", "LifecycleParkedTooLongAlarm")
    properties = alarm["Properties"]
    assert (properties["Namespace"], properties["MetricName"]) == (
        "ConnectMetering",
        "LifecycleEventsParkedTooLong",
    )
    assert properties["Dimensions"] == [{"Name": "service", "Value": "connect-metering-lifecycle"}]
    assert (properties["Period"], properties["Statistic"], properties["Threshold"]) == (3600, "Maximum", 0)
    assert properties["ComparisonOperator"] == "GreaterThanThreshold"
    assert "OperationsAlarmTopic" in json.dumps(properties["AlarmActions"])


def test_tenancy_table_expires_pending_registrations(metering_json: dict[str, Any]) -> None:
    _, table = resource_with_prefix(metering_json, "AWS::DynamoDB::Table", "Tenancy")
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_outputs_name_the_fulfilment_url_and_the_admin_api(metering_json: dict[str, Any]) -> None:
    outputs = metering_json["Outputs"]
    assert "/register" in json.dumps(outputs["RegistrationUrl"]["Value"])
    assert {"AdminApiUrl", "LifecycleQueueUrl"} <= set(outputs)


def test_the_core_layer_ships_the_web_pages(
    synthesized: SynthesizedApp, metering_json: dict[str, Any]
) -> None:
    _, layer = resource_with_prefix(metering_json, "AWS::Lambda::LayerVersion", "RuntimeCoreLayer")
    asset = layer["Properties"]["Content"]["S3Key"].removesuffix(".zip")
    assets = json.loads((synthesized.outdir / f"{METERING_STACK}.assets.json").read_text(encoding="utf-8"))
    staged = (
        synthesized.outdir / str(assets["files"][asset]["source"]["path"]) / "python" / "connect_metering"
    )
    assert (staged / "web" / "pages.py").is_file() and (staged / "services" / "registration.py").is_file()
    assert not (staged / "local").exists()  # serve, admin and the simulator stay out


def test_the_rule_and_the_parser_know_the_same_detail_types() -> None:
    assert set(MARKETPLACE_DETAIL_TYPES) == set(DETAIL_TYPES)
    assert MARKETPLACE_EVENT_SOURCE == EVENTBRIDGE_SOURCE


# Legacy SNS topics ----------------------------------------------------------------------------------


def test_sns_topic_arns_come_from_the_context(tmp_path: Path) -> None:
    def read(value: object) -> tuple[str, ...]:
        app = cdk.App(
            outdir=str(tmp_path), context={"marketplace_sns_topic_arns": value} if value is not None else {}
        )
        return sns_topic_arns_from_context(app)

    assert read(None) == ()
    assert read([TOPIC]) == (TOPIC,)
    assert read(f"{TOPIC}, {ENTITLEMENT_TOPIC}") == (TOPIC, ENTITLEMENT_TOPIC)
    single = cdk.App(outdir=str(tmp_path), context={"marketplace_sns_topic_arn": TOPIC})
    assert sns_topic_arns_from_context(single) == (TOPIC,)
    with pytest.raises(ValueError, match="not an SNS topic ARN"):
        read("arn:aws:sqs:us-east-1:1:q")


def test_legacy_sns_topics_feed_the_same_queue_and_stay_nag_clean(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path / "out"))
    stack = cdk.Stack(app, "LifecycleProbe", env=cdk.Environment(region="us-east-1"))
    table = dynamodb.Table(
        stack,
        "Table",
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
    )
    SubscriptionLifecycle(
        stack,
        "Lifecycle",
        runtime=LambdaRuntime(stack, "Runtime", powertools_layer_version=27),
        tenancy_table=table,
        product_code="connectmeter0demo1",
        meter_queue=sqs.Queue.from_queue_arn(
            stack, "MeterQueue", "arn:aws:sqs:us-east-1:123456789012:meter-work"
        ),
        sns_topic_arns=[TOPIC, ENTITLEMENT_TOPIC],
    )
    apply_nag(app)
    template = Template.from_stack(stack)
    subscriptions = template.find_resources("AWS::SNS::Subscription")
    assert sorted(s["Properties"]["TopicArn"] for s in subscriptions.values()) == [ENTITLEMENT_TOPIC, TOPIC]
    for subscription in subscriptions.values():
        properties = subscription["Properties"]
        assert properties["Protocol"] == "sqs"
        assert properties.get("RawMessageDelivery") in (None, False)  # the envelope carries the Timestamp
        assert "LifecycleDeliveryDeadLetterQueue" in json.dumps(properties["RedrivePolicy"])
    policies = json.dumps(template.find_resources("AWS::SQS::QueuePolicy"))
    assert TOPIC in policies and ENTITLEMENT_TOPIC in policies  # SNS may send only from these topics
    variables = next(iter(template.find_resources("AWS::Lambda::Function").values()))["Properties"][
        "Environment"
    ]["Variables"]
    assert "meter-work" in json.dumps(variables["METER_QUEUE_URL"])  # final metering is never optional
    assert unacknowledged_findings(stack) == []
    assert isinstance(stack.node.find_child("Lifecycle").node.find_child("Queue"), sqs.Queue)
