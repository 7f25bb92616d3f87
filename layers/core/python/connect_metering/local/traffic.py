"""Realistic Amazon Connect agent event traffic, in the documented agent event stream shape.

A shift is a LOGIN, status changes (Available, breaks, a spell Offline), HEART_BEATs every 120 s when
nothing else happened, a LOGOUT (or none: the agent just closes the browser), and Offline heartbeats
for a while after logout, as Connect sends them. Used by the demo, the benchmarks and the simulator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connect_metering.domain.instants import iso

HEARTBEAT = timedelta(seconds=120)


@dataclass(frozen=True)
class Shift:
    instance_arn: str
    agent_id: str
    start: datetime
    end: datetime
    logout: bool = True
    heartbeats_after_logout: int = 5


def _snapshot(instance_arn: str, status: str, since: datetime, agent_id: str) -> dict[str, Any]:
    return {
        "AgentStatus": {
            "ARN": f"{instance_arn}/agent-state/{status.lower()}",
            "Name": status,
            "StartTimestamp": iso(since),
        },
        "Configuration": {
            "AgentHierarchyGroups": None,
            # Personal data the product must never log: present on purpose.
            "FirstName": f"First{agent_id[-4:]}",
            "LastName": "Agent",
            "Username": f"user-{agent_id[-6:]}",
            "RoutingProfile": {"ARN": f"{instance_arn}/routing-profile/default", "Name": "Default"},
        },
        "Contacts": [],
    }


def agent_event(
    *,
    instance_arn: str,
    agent_id: str,
    event_id: str,
    event_type: str,
    at: datetime,
    status: str,
    since: datetime,
) -> dict[str, Any]:
    return {
        "AWSAccountId": instance_arn.split(":")[4],
        "AgentARN": f"{instance_arn}/agent/{agent_id}",
        "CurrentAgentSnapshot": _snapshot(instance_arn, status, since, agent_id),
        "EventId": event_id,
        "EventTimestamp": iso(at),
        "EventType": event_type,
        "InstanceARN": instance_arn,
        "PreviousAgentSnapshot": None,
        "Version": "2017-10-01",
    }


def shift_events(shift: Shift, rng: random.Random) -> Iterator[dict[str, Any]]:
    """The events of one shift in time order."""
    counter = 0
    status, since = "Offline", shift.start

    def emit(event_type: str, at: datetime) -> dict[str, Any]:
        nonlocal counter
        counter += 1
        return agent_event(
            instance_arn=shift.instance_arn,
            agent_id=shift.agent_id,
            event_id=f"{shift.agent_id}-{shift.start:%Y%m%d%H%M}-{counter:05d}",
            event_type=event_type,
            at=at,
            status=status,
            since=since,
        )

    now = shift.start
    yield emit("LOGIN", now)
    status, since = "Available", now + timedelta(seconds=rng.randint(1, 20))
    now = since
    yield emit("STATE_CHANGE", now)
    last_event = now
    while True:
        step = timedelta(seconds=rng.randint(20, 400))
        candidate = last_event + min(step, HEARTBEAT)
        if candidate >= shift.end:
            break
        if step < HEARTBEAT:
            roll = rng.random()
            if roll < 0.06:
                status = "Break" if status == "Available" else "Available"
            elif roll < 0.08:
                status = "Offline" if status != "Offline" else "Available"
            since = candidate
            yield emit("STATE_CHANGE", candidate)
        else:
            yield emit("HEART_BEAT", candidate)
        last_event = candidate
    if not shift.logout:
        return
    yield emit("LOGOUT", shift.end)
    status, since = "Offline", shift.end
    for beat in range(1, shift.heartbeats_after_logout + 1):
        yield emit("HEART_BEAT", shift.end + beat * HEARTBEAT)


def eventbridge_envelope(
    detail: dict[str, Any], *, arrived: datetime, account: str | None = None
) -> dict[str, Any]:
    """The envelope EventBridge delivers for a forwarded agent event."""
    return {
        "version": "0",
        "id": f"{detail.get('EventId', 'event')}-envelope",
        "detail-type": "Amazon Connect Agent Event",
        "source": "connect-metering.forwarder",
        "account": account or str(detail.get("AWSAccountId", "")),
        "time": iso(arrived),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def sqs_batch(bodies: list[str], *, first_message: int = 0) -> dict[str, Any]:
    """An SQS event as the ingest Lambda receives it."""
    return {
        "Records": [
            {
                "messageId": f"message-{first_message + index}",
                "receiptHandle": f"receipt-{first_message + index}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:connect-metering-agent-events",
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }
