"""ForwarderStack: the customer's template (pipe, decoder, local bus, forward rule), bootstrap-free."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from connect_metering.domain.tenancy import carries_code, new_verification_code
from infra.app import FORWARDER_STACK
from infra.constructs.forwarder import DECODER_SOURCE, VERIFICATION_RESOURCE_PREFIX
from infra.inline.agent_event_decoder import handler as decode_records
from infra.stacks.forwarder_stack import TemplateOnlySynthesizer
from tests.factories import BILLING_FIELDS, aws_sample
from tests.infra.conftest import SynthesizedApp
from tests.infra.template_helpers import only_resource, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

SOURCE = "connect-metering.forwarder"
DETAIL_TYPE = "Amazon Connect Agent Event"
AGENT_EVENT = {
    "AWSAccountId": "123456789012",
    "AgentARN": "arn:aws:connect:eu-west-2:123456789012:instance/i-1/agent/a-1",
    "CurrentAgentSnapshot": {
        "AgentStatus": {"ARN": "arn:aws:connect:...:agent-state/s-1", "Name": "Available"},
        "Configuration": {"Username": "jane", "RoutingProfile": {"Name": "Basic"}},
        "Contacts": [],
    },
    "EventId": "0b5a1d8e-2c4a-4a4e-9c3e-1f2a3b4c5d6e",
    "EventTimestamp": "2024-05-01T10:00:00.000Z",
    "EventType": "STATE_CHANGE",
    "InstanceARN": "arn:aws:connect:eu-west-2:123456789012:instance/i-1",
    "PreviousAgentSnapshot": None,
    "Version": "2017-10-01",
}


def _by_prefix(template: dict[str, Any], resource_type: str, prefix: str) -> tuple[str, dict[str, Any]]:
    matches = {i: r for i, r in resources_of_type(template, resource_type).items() if i.startswith(prefix)}
    assert len(matches) == 1, sorted(matches)
    return next(iter(matches.items()))


def _policy_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"] and "Condition" not in policy
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_template_asks_for_the_stream_and_the_seller_bus(forwarder_json: dict[str, Any]) -> None:
    parameters = forwarder_json["Parameters"]
    assert set(parameters) == {
        "AgentEventStreamArn",
        "AgentEventStreamKeyArn",
        "SellerEventBusArn",
        "VerificationCode",
    }
    assert parameters["AgentEventStreamArn"]["Type"] == "String"
    assert parameters["SellerEventBusArn"]["Type"] == "String"
    assert parameters["AgentEventStreamKeyArn"]["Default"] == ""


def test_template_needs_no_bootstrap_and_has_no_assets(
    synthesized: SynthesizedApp, forwarder_json: dict[str, Any]
) -> None:
    assert "Rules" not in forwarder_json
    assert "BootstrapVersion" not in forwarder_json.get("Parameters", {})
    assert "CDKMetadata" not in forwarder_json["Resources"]
    assert "aws:asset:path" not in json.dumps(forwarder_json)
    assert not (synthesized.outdir / f"{FORWARDER_STACK}.assets.json").exists()
    manifest = json.loads((synthesized.outdir / "manifest.json").read_text(encoding="utf-8"))
    artifact = manifest["artifacts"][FORWARDER_STACK]
    # No bootstrap role to assume: `cdk deploy` uses the caller's credentials.
    assert "assumeRoleArn" not in artifact["properties"]
    assert "cloudFormationExecutionRoleArn" not in artifact["properties"]
    assert artifact.get("dependencies", []) == []


def test_synthesizer_refuses_assets(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.py").write_text("x = 1\n", encoding="utf-8")
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path / "out")), "Scratch", synthesizer=TemplateOnlySynthesizer())
    with pytest.raises(Exception, match="must have no assets"):
        lambda_.Function(
            stack,
            "WithAsset",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(tmp_path / "src")),
        )


def test_local_bus_has_the_configured_name(forwarder: Template) -> None:
    forwarder.has_resource_properties("AWS::Events::EventBus", {"Name": "connect-metering-forwarder"})


def test_pipe_reads_the_stream_in_batches_and_parks_failures(forwarder_json: dict[str, Any]) -> None:
    _, pipe = only_resource(forwarder_json, "AWS::Pipes::Pipe")
    dlq_id, _ = _by_prefix(forwarder_json, "AWS::SQS::Queue", "ForwarderPipeDeadLetterQueue")
    properties = pipe["Properties"]
    assert properties["Source"] == {"Ref": "AgentEventStreamArn"}
    assert properties["DesiredState"] == "RUNNING"
    assert properties["SourceParameters"]["KinesisStreamParameters"] == {
        "StartingPosition": "LATEST",
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 5,
        "MaximumRecordAgeInSeconds": 86400,
        "MaximumRetryAttempts": 185,
        "OnPartialBatchItemFailure": "AUTOMATIC_BISECT",
        "ParallelizationFactor": 1,
        "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}},
    }


def test_pipe_lets_only_agent_events_leave_the_account(forwarder_json: dict[str, Any]) -> None:
    _, pipe = only_resource(forwarder_json, "AWS::Pipes::Pipe")
    [pattern] = pipe["Properties"]["SourceParameters"]["FilterCriteria"]["Filters"]
    assert json.loads(pattern["Pattern"]) == {
        "data": {"EventType": ["LOGIN", "LOGOUT", "STATE_CHANGE", "HEART_BEAT"]}
    }


def test_pipe_puts_the_decoded_agent_event_on_the_local_bus_with_the_envelope(
    forwarder_json: dict[str, Any],
) -> None:
    _, pipe = only_resource(forwarder_json, "AWS::Pipes::Pipe")
    bus_id, _ = only_resource(forwarder_json, "AWS::Events::EventBus")
    decoder_id, _ = only_resource(forwarder_json, "AWS::Lambda::Function")
    properties = pipe["Properties"]
    assert properties["Enrichment"] == {"Fn::GetAtt": [decoder_id, "Arn"]}
    assert properties["Target"] == {"Fn::GetAtt": [bus_id, "Arn"]}
    # No input template: `<$.data>` alone would arrive with its inner quotes stripped (see forwarder.py).
    assert properties["TargetParameters"] == {
        "EventBridgeEventBusParameters": {
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Resources": [{"Fn::Join": ["", [VERIFICATION_RESOURCE_PREFIX, {"Ref": "VerificationCode"}]]}],
        }
    }


# The Pipes API's pattern for an event bus target's Resources (PipeTargetEventBridgeEventBusParameters).
PIPES_RESOURCE_PATTERN = (
    r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-]+):([a-z]{2,4}((-gov)|(-de)|(-iso([a-z]?)))?-[a-z]+(-\d{1})?)?"
    r":(\d{12})?:(.+)"
)


def test_every_event_carries_the_verification_code_the_ingest_reads(forwarder_json: dict[str, Any]) -> None:
    parameter = forwarder_json["Parameters"]["VerificationCode"]
    assert parameter["Type"] == "String" and parameter["NoEcho"] is True and "Default" not in parameter
    for _ in range(50):
        code = new_verification_code()
        assert re.fullmatch(parameter["AllowedPattern"], code)
        # What the pipe puts in `resources` once CloudFormation substitutes the parameter:
        resource = f"{VERIFICATION_RESOURCE_PREFIX}{code}"
        assert re.fullmatch(PIPES_RESOURCE_PATTERN, resource)
        assert carries_code([resource], code)
    assert not re.fullmatch(parameter["AllowedPattern"], "")
    assert not re.fullmatch(parameter["AllowedPattern"], "code with spaces and more than enough length")


def test_decoder_is_inline_code_of_the_tested_source(forwarder_json: dict[str, Any]) -> None:
    _, decoder = only_resource(forwarder_json, "AWS::Lambda::Function")
    properties = decoder["Properties"]
    assert properties["Code"] == {"ZipFile": Path(DECODER_SOURCE).read_text(encoding="utf-8")}
    assert properties["Handler"] == "index.handler"
    assert properties["Runtime"] == "python3.14"
    assert properties["Architectures"] == ["arm64"]


REDUCED_EVENT = {
    "AWSAccountId": "123456789012",
    "AgentARN": "arn:aws:connect:eu-west-2:123456789012:instance/i-1/agent/a-1",
    "CurrentAgentSnapshot": {
        "AgentStatus": {"ARN": "arn:aws:connect:...:agent-state/s-1", "Name": "Available"},
    },
    "EventId": "0b5a1d8e-2c4a-4a4e-9c3e-1f2a3b4c5d6e",
    "EventTimestamp": "2024-05-01T10:00:00.000Z",
    "EventType": "STATE_CHANGE",
    "InstanceARN": "arn:aws:connect:eu-west-2:123456789012:instance/i-1",
}


def test_decoder_returns_each_agent_event_reduced_to_the_fields_billing_reads() -> None:
    data = base64.b64encode(json.dumps(AGENT_EVENT).encode()).decode()
    records = [{"data": data, "sequenceNumber": str(n), "partitionKey": "a-1"} for n in range(3)]
    assert decode_records(records, None) == [REDUCED_EVENT] * 3


def test_decoder_keeps_the_status_start_and_drops_names_usernames_and_contacts() -> None:
    event = aws_sample("agent-event-state-change-acw-entered")
    [reduced] = decode_records([{"data": event, "sequenceNumber": "1"}], None)
    assert set(reduced) == BILLING_FIELDS
    assert reduced["CurrentAgentSnapshot"] == {
        "AgentStatus": {
            name: event["CurrentAgentSnapshot"]["AgentStatus"][name]
            for name in ("ARN", "Name", "StartTimestamp")
        }
    }
    configuration = event["CurrentAgentSnapshot"]["Configuration"]
    for personal in (configuration["FirstName"], configuration["LastName"], configuration["Username"]):
        assert personal not in json.dumps(reduced)


def test_decoder_leaves_missing_fields_missing() -> None:
    partial = {"EventId": "e", "EventType": "LOGIN", "CurrentAgentSnapshot": None, "Name": "x"}
    assert decode_records([{"data": partial, "sequenceNumber": "1"}], None) == [
        {"EventId": "e", "EventType": "LOGIN"}
    ]


def test_the_template_decoder_reduces_events(forwarder_json: dict[str, Any]) -> None:
    _, decoder = only_resource(forwarder_json, "AWS::Lambda::Function")
    namespace: dict[str, Any] = {}
    exec(compile(decoder["Properties"]["Code"]["ZipFile"], "index.py", "exec"), namespace)  # noqa: S102
    data = base64.b64encode(json.dumps(AGENT_EVENT).encode()).decode()
    assert namespace["handler"]([{"data": data, "sequenceNumber": "1"}], None) == [REDUCED_EVENT]


def test_decoder_accepts_data_pipes_already_parsed() -> None:
    assert decode_records([{"data": AGENT_EVENT, "sequenceNumber": "1"}], None) == [REDUCED_EVENT]


def test_decoder_fails_the_batch_on_a_record_that_is_not_an_object() -> None:
    data = base64.b64encode(b'["not", "an", "event"]').decode()
    with pytest.raises(TypeError, match="not a JSON object"):
        decode_records([{"data": data, "sequenceNumber": "7"}], None)


def test_pipe_role_is_least_privilege(forwarder_json: dict[str, Any]) -> None:
    _, pipe = only_resource(forwarder_json, "AWS::Pipes::Pipe")
    role_id = pipe["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    bus_id, _ = only_resource(forwarder_json, "AWS::Events::EventBus")
    decoder_id, _ = only_resource(forwarder_json, "AWS::Lambda::Function")
    dlq_id, _ = _by_prefix(forwarder_json, "AWS::SQS::Queue", "ForwarderPipeDeadLetterQueue")
    trust = forwarder_json["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            "Effect": "Allow",
            "Principal": {"Service": "pipes.amazonaws.com"},
        }
    ]
    resources_by_action = {
        action: statement["Resource"]
        for statement in _policy_statements(forwarder_json, role_id)
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    assert resources_by_action == {
        "kinesis:DescribeStream": {"Ref": "AgentEventStreamArn"},
        "kinesis:DescribeStreamSummary": {"Ref": "AgentEventStreamArn"},
        "kinesis:GetRecords": {"Ref": "AgentEventStreamArn"},
        "kinesis:GetShardIterator": {"Ref": "AgentEventStreamArn"},
        "kinesis:ListShards": {"Ref": "AgentEventStreamArn"},
        "lambda:InvokeFunction": {"Fn::GetAtt": [decoder_id, "Arn"]},
        "events:PutEvents": {"Fn::GetAtt": [bus_id, "Arn"]},
        "sqs:SendMessage": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "sqs:GetQueueAttributes": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "sqs:GetQueueUrl": {"Fn::GetAtt": [dlq_id, "Arn"]},
    }


def test_stream_key_grant_exists_only_when_a_key_is_given(forwarder_json: dict[str, Any]) -> None:
    [key_policy] = [
        p for p in resources_of_type(forwarder_json, "AWS::IAM::Policy").values() if "Condition" in p
    ]
    condition = forwarder_json["Conditions"][key_policy["Condition"]]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AgentEventStreamKeyArn"}, ""]}]}
    [statement] = key_policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "kms:Decrypt"
    assert statement["Resource"] == {"Ref": "AgentEventStreamKeyArn"}


def _references(node: Any, true_conditions: set[str]) -> set[str]:
    """Logical ids `node` refers to (Ref, Fn::GetAtt) once CloudFormation has resolved its Fn::If."""
    if isinstance(node, list):
        return set().union(*(_references(item, true_conditions) for item in node))
    if not isinstance(node, dict):
        return set()
    if "Fn::If" in node:
        condition, when_true, when_false = node["Fn::If"]
        return _references(when_true if condition in true_conditions else when_false, true_conditions)
    if "Ref" in node:
        return {node["Ref"]}
    if "Fn::GetAtt" in node:
        return {node["Fn::GetAtt"][0]}
    return set().union(*(_references(value, true_conditions) for value in node.values()))


def _pipe_waits_for(forwarder_json: dict[str, Any], true_conditions: set[str]) -> set[str]:
    """The resources CloudFormation creates before the pipe: DependsOn, and every Ref or GetAtt in its
    properties and metadata."""
    _, pipe = only_resource(forwarder_json, "AWS::Pipes::Pipe")
    depends_on = pipe.get("DependsOn", [])
    named = {depends_on} if isinstance(depends_on, str) else set(depends_on)
    referenced = _references(pipe.get("Properties", {}), true_conditions) | _references(
        pipe.get("Metadata", {}), true_conditions
    )
    return (named | referenced) & set(forwarder_json["Resources"])


@pytest.mark.parametrize("stream_has_key", [True, False], ids=["customer-managed-key", "no-key"])
def test_pipe_is_created_after_the_stream_key_grant_when_there_is_one(
    forwarder_json: dict[str, Any], stream_has_key: bool
) -> None:
    [(key_policy_id, key_policy)] = [
        (logical_id, p)
        for logical_id, p in resources_of_type(forwarder_json, "AWS::IAM::Policy").items()
        if "Condition" in p
    ]
    true_conditions = {key_policy["Condition"]} if stream_has_key else set()
    waits_for = _pipe_waits_for(forwarder_json, true_conditions)
    _, pipe = only_resource(forwarder_json, "AWS::Pipes::Pipe")
    # A literal DependsOn on a resource its condition may leave out makes CloudFormation reject the
    # whole template ("Unresolved resource dependencies") for customers without a key.
    assert key_policy_id not in pipe.get("DependsOn", [])
    if stream_has_key:
        assert key_policy_id in waits_for
    else:
        assert key_policy_id not in waits_for
    # Whatever the pipe waits for exists under these conditions.
    existing = {
        logical_id
        for logical_id, resource in forwarder_json["Resources"].items()
        if resource.get("Condition") is None or resource["Condition"] in true_conditions
    }
    assert waits_for <= existing


def test_pipe_metadata_refers_to_the_key_policy_only_under_its_condition(
    forwarder_json: dict[str, Any],
) -> None:
    [(key_policy_id, key_policy)] = [
        (logical_id, p)
        for logical_id, p in resources_of_type(forwarder_json, "AWS::IAM::Policy").items()
        if "Condition" in p
    ]
    _, pipe = only_resource(forwarder_json, "AWS::Pipes::Pipe")
    assert pipe["Metadata"]["WaitsForStreamKeyPolicy"] == {
        "Fn::If": [key_policy["Condition"], {"Ref": key_policy_id}, ""]
    }


def test_forward_rule_sends_agent_events_to_the_seller_bus(forwarder_json: dict[str, Any]) -> None:
    bus_id, _ = only_resource(forwarder_json, "AWS::Events::EventBus")
    dlq_id, _ = _by_prefix(forwarder_json, "AWS::SQS::Queue", "ForwarderForwardDeadLetterQueue")
    role_id, _ = _by_prefix(forwarder_json, "AWS::IAM::Role", "ForwarderForwardRole")
    _, rule = only_resource(forwarder_json, "AWS::Events::Rule")
    properties = rule["Properties"]
    assert properties["EventBusName"] == {"Ref": bus_id}
    assert properties["EventPattern"] == {"source": [SOURCE], "detail-type": [DETAIL_TYPE]}
    [target] = properties["Targets"]
    assert target["Arn"] == {"Ref": "SellerEventBusArn"}
    assert target["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    assert "InputTransformer" not in target and "Input" not in target


def test_forward_role_may_only_put_events_on_the_seller_bus(forwarder_json: dict[str, Any]) -> None:
    role_id, role = _by_prefix(forwarder_json, "AWS::IAM::Role", "ForwarderForwardRole")
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert _policy_statements(forwarder_json, role_id) == [
        {"Action": "events:PutEvents", "Effect": "Allow", "Resource": {"Ref": "SellerEventBusArn"}}
    ]


def test_dead_letter_queues_are_encrypted_kept_two_weeks_and_tls_only(forwarder_json: dict[str, Any]) -> None:
    queues = resources_of_type(forwarder_json, "AWS::SQS::Queue")
    assert len(queues) == 2
    policies = list(resources_of_type(forwarder_json, "AWS::SQS::QueuePolicy").values())
    for queue_id, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
        [policy] = [p for p in policies if p["Properties"]["Queues"] == [{"Ref": queue_id}]]
        denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert denies == [
            {
                "Action": "sqs:*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Resource": {"Fn::GetAtt": [queue_id, "Arn"]},
            }
        ]


def test_decoder_logs_are_kept_one_month(forwarder_json: dict[str, Any]) -> None:
    log_group_id, log_group = only_resource(forwarder_json, "AWS::Logs::LogGroup")
    assert log_group["Properties"]["RetentionInDays"] == 30
    _, decoder = only_resource(forwarder_json, "AWS::Lambda::Function")
    assert decoder["Properties"]["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}
