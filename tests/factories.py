"""Builders of AWS-shaped events for tests, starting from the documented samples in tests/fixtures/samples,
and the verbatim published AWS samples in tests/fixtures/aws (see its SOURCES.md)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from connect_metering.domain.instants import iso
from connect_metering.local.traffic import eventbridge_envelope, sqs_batch
from tests.conftest import REPO_ROOT, SAMPLES

SAMPLE_INSTANCE = "arn:aws:connect:us-west-2:012345678901:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111"
SAMPLE_ACCOUNT = "012345678901"
# The agent event reduced to what billing reads (BILLING.md section 2): what the forwarder sends.
BILLING_FIELDS = frozenset(
    {
        "EventId",
        "EventType",
        "EventTimestamp",
        "AWSAccountId",
        "InstanceARN",
        "AgentARN",
        "CurrentAgentSnapshot",
    }
)
AWS_SAMPLES = REPO_ROOT / "tests" / "fixtures" / "aws"


@cache
def _sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return loaded


def aws_sample(name: str) -> dict[str, Any]:
    """A published AWS sample by file name (``.json`` optional), as a fresh copy the caller may change."""
    file_name = name if name.endswith(".json") else f"{name}.json"
    loaded: dict[str, Any] = json.loads((AWS_SAMPLES / file_name).read_text())
    return loaded


def agent_event(
    *,
    event_id: str = "EventId-1",
    event_type: str = "HEART_BEAT",
    at: datetime | str,
    agent: str = "agent-1",
    instance_arn: str = SAMPLE_INSTANCE,
    account: str | None = None,
    status: str | None = "Available",
) -> dict[str, Any]:
    """The documented HEART_BEAT sample, re-aimed at an instance/agent/time/type."""
    event = copy.deepcopy(_sample("agent-event-heartbeat.json"))
    event["EventId"] = event_id
    event["EventType"] = event_type
    event["EventTimestamp"] = at if isinstance(at, str) else iso(at)
    event["InstanceARN"] = instance_arn
    event["AgentARN"] = f"{instance_arn}/agent/{agent}"
    event["AWSAccountId"] = account or instance_arn.split(":")[4]
    if status is None:
        del event["CurrentAgentSnapshot"]["AgentStatus"]
    else:
        event["CurrentAgentSnapshot"]["AgentStatus"]["Name"] = status
    return event


def envelope(detail: dict[str, Any], *, arrived: datetime, account: str | None = None) -> dict[str, Any]:
    """The EventBridge envelope the forwarder produces around an agent event."""
    return eventbridge_envelope(detail, arrived=arrived, account=account)


def sqs_event(bodies: Sequence[str | dict[str, Any]]) -> dict[str, Any]:
    """An SQS event as Lambda receives it from the agent-events queue."""
    event = sqs_batch([body if isinstance(body, str) else json.dumps(body) for body in bodies])
    for record in event["Records"]:
        record["attributes"]["SentTimestamp"] = "1730000000000"
    return event
