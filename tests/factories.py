"""AWS-shaped events for tests: the documented samples in tests/fixtures/samples re-aimed through the one
builder of agent events (`connect_metering.local.traffic`), and the verbatim published AWS samples in
tests/fixtures/aws (see its SOURCES.md)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from connect_metering.local import traffic
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
    """The documented HEART_BEAT sample, re-aimed at an instance/agent/time/type (built by
    `connect_metering.local.traffic.agent_event` with the sample's snapshots)."""
    sample = _sample("agent-event-heartbeat.json")
    snapshot = copy.deepcopy(sample["CurrentAgentSnapshot"])
    if status is None:
        del snapshot["AgentStatus"]
    else:
        snapshot["AgentStatus"]["Name"] = status
    return traffic.agent_event(
        instance_arn=instance_arn,
        agent_id=agent,
        event_id=event_id,
        event_type=event_type,
        at=at,
        account=account,
        snapshot=snapshot,
        previous=copy.deepcopy(sample["PreviousAgentSnapshot"]),
    )


def envelope(detail: dict[str, Any], *, arrived: datetime, account: str | None = None) -> dict[str, Any]:
    """The EventBridge envelope the forwarder produces around an agent event."""
    return traffic.eventbridge_envelope(detail, arrived=arrived, account=account)


def sqs_event(bodies: Sequence[str | dict[str, Any]]) -> dict[str, Any]:
    """An SQS event as Lambda receives it from the agent-events queue."""
    return traffic.sqs_batch(
        [body if isinstance(body, str) else json.dumps(body) for body in bodies],
        sent_timestamp="1730000000000",
    )
