"""Amazon Connect agent events: the one builder of them (the record, its EventBridge envelope, the SQS
batch ingest receives) and the realistic traffic built from it.

The record has the shape and key order of the agent event stream samples AWS publishes (Amazon Connect
Administrator Guide, "Sample agent event stream"; verbatim copies in tests/fixtures/aws). The demo, the
benchmarks, the simulator, `serve` and the tests all build their events here.

A shift is a LOGIN, status changes (Available, breaks, a spell Offline), HEART_BEATs every 120 s when
nothing else happened, a LOGOUT (or none: the agent just closes the browser), and Offline heartbeats
for a while after logout, as Connect sends them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import orjson

from connect_metering import ingest_batching
from connect_metering.domain.instants import iso

HEARTBEAT = timedelta(seconds=120)
# The agent event stream's schema version in every published sample.
AGENT_EVENT_VERSION = "2017-10-01"
DETAIL_TYPE = "Amazon Connect Agent Event"
# The forwarder's EventBridge source (infra/constructs/forwarder.py puts events under it).
FORWARDER_SOURCE = "connect-metering.forwarder"
AGENT_EVENTS_QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:connect-metering-agent-events"


@dataclass(frozen=True)
class Shift:
    instance_arn: str
    agent_id: str
    start: datetime
    end: datetime
    logout: bool = True
    heartbeats_after_logout: int = 5


def account_of(instance_arn: str) -> str:
    """The AWS account in an instance ARN (arn:aws:connect:<region>:<account>:instance/<id>)."""
    return instance_arn.split(":")[4]


def agent_arn(instance_arn: str, agent_id: str) -> str:
    return f"{instance_arn}/agent/{agent_id}"


def agent_snapshot(instance_arn: str, status: str, since: datetime, agent_id: str) -> dict[str, Any]:
    """A `CurrentAgentSnapshot` in the documented shape, for an agent of the generated traffic."""
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
    at: datetime | str,
    status: str = "Available",
    since: datetime | None = None,
    account: str | None = None,
    snapshot: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An agent event stream record, keys in AWS's order. ``snapshot`` replaces the generated
    `CurrentAgentSnapshot` (agent in ``status`` since ``since``, default ``at``), for instance with a
    published sample's; ``account`` is the instance's unless given (a forged or mismatched event);
    ``at`` as text is written as is (a malformed timestamp)."""
    if snapshot is None:
        start = since or at
        if isinstance(start, str):
            raise TypeError("a generated snapshot needs `since` when `at` is text")
        snapshot = agent_snapshot(instance_arn, status, start, agent_id)
    return {
        "AWSAccountId": account or account_of(instance_arn),
        "AgentARN": agent_arn(instance_arn, agent_id),
        "CurrentAgentSnapshot": snapshot,
        "EventId": event_id,
        "EventTimestamp": at if isinstance(at, str) else iso(at),
        "EventType": event_type,
        "InstanceARN": instance_arn,
        "PreviousAgentSnapshot": previous,
        "Version": AGENT_EVENT_VERSION,
    }


def billing_agent_event(
    *,
    instance_arn: str,
    agent_id: str,
    event_id: str,
    event_type: str,
    at: datetime,
    status: str = "Available",
) -> dict[str, Any]:
    """The smallest agent event billing accepts: the fields it reads and the status name alone (the
    tests' replays write events this way; no names, routing profiles or contacts to carry)."""
    return {
        "AWSAccountId": account_of(instance_arn),
        "AgentARN": agent_arn(instance_arn, agent_id),
        "EventId": event_id,
        "EventType": event_type,
        "EventTimestamp": iso(at),
        "InstanceARN": instance_arn,
        "CurrentAgentSnapshot": {"AgentStatus": {"Name": status}},
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
    detail: dict[str, Any], *, arrived: datetime, account: str | None = None, envelope_id: str | None = None
) -> dict[str, Any]:
    """The envelope EventBridge delivers for a forwarded agent event: sent from ``account`` (the
    event's own unless given), arrived at ``arrived``; its id is ``<EventId>-envelope`` unless given."""
    return {
        "version": "0",
        "id": envelope_id or f"{detail.get('EventId', 'event')}-envelope",
        "detail-type": DETAIL_TYPE,
        "source": FORWARDER_SOURCE,
        "account": account or str(detail.get("AWSAccountId", "")),
        "time": iso(arrived),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def sqs_batch(
    bodies: list[str], *, first_message: int = 0, sent_timestamp: str = "0", received_timestamp: str = "0"
) -> dict[str, Any]:
    """An SQS event as the ingest Lambda receives it: ``received_timestamp`` is when the event source
    took the records from the queue (epoch ms, SQS's ApproximateFirstReceiveTimestamp)."""
    return {
        "Records": [
            {
                "messageId": f"message-{first_message + index}",
                "receiptHandle": f"receipt-{first_message + index}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": sent_timestamp,
                    "ApproximateFirstReceiveTimestamp": received_timestamp,
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": AGENT_EVENTS_QUEUE_ARN,
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }


# A record's share of the Lambda payload besides its body's JSON text: the other fields, with message
# and receipt ids of ten digits (longer than any run numbers) and timestamps of fourteen (longer than
# any epoch ms until the year 2286), so the count never falls short, and the ", " before it. The batch's own '{"Records": []}' is taken off the limit once.
_LONGEST_TIMESTAMP = str(10**13)
_RECORD_OVERHEAD = (
    len(
        json.dumps(
            sqs_batch(
                [""],
                first_message=10**9,
                sent_timestamp=_LONGEST_TIMESTAMP,
                received_timestamp=_LONGEST_TIMESTAMP,
            )["Records"][0]
        )
    )
    - len('""')
    + len(", ")
)
_PAYLOAD_FOR_RECORDS = ingest_batching.LAMBDA_PAYLOAD_LIMIT_BYTES - len(json.dumps(sqs_batch([])))

Gathered = TypeVar("Gathered")


def json_string_length(text: str) -> int:
    """``len(json.dumps(text))``: the characters ``text`` takes as a JSON string, quoted and escaped.

    For ASCII (what a recorded agent event almost always is) orjson escapes exactly as json.dumps
    does, except DEL (escaped by orjson only), and several times faster; anything else is measured by
    ``json.dumps`` itself (``tests/unit/test_replay_batching.py`` holds the two to the same length)."""
    if text.isascii() and "\x7f" not in text:
        return len(orjson.dumps(text))
    return len(json.dumps(text))


class DeployedBatches(Generic[Gathered]):
    """The batches the deployed event source mapping hands the ingest Lambda (``ingest_batching``, read
    when each record comes, so a test may change them): one closes at ``BATCH_SIZE`` records, before
    the record that would take the invocation past the payload limit, or before the first record
    delivered after its window (counted from its first record). One poller: records in queue order.
    ``bench`` measures ingest in these batches and ``replay`` delivers in them."""

    def __init__(self) -> None:
        self._items: list[Gathered] = []
        self._opened_ms = 0
        self._payload = 0

    def add(self, item: Gathered, body: str, at_ms: int) -> list[list[Gathered]]:
        """Gather ``item`` (whose SQS body is ``body``) delivered at ``at_ms``; the batches this closed."""
        size = json_string_length(body) + _RECORD_OVERHEAD
        closed = []
        if self._items and (
            at_ms - self._opened_ms > ingest_batching.BATCHING_WINDOW_SECONDS * 1000
            or self._payload + size > _PAYLOAD_FOR_RECORDS
        ):
            closed.append(self.take())
        if not self._items:
            self._opened_ms = at_ms
        self._items.append(item)
        self._payload += size
        if len(self._items) == ingest_batching.BATCH_SIZE:
            closed.append(self.take())
        return closed

    def take(self) -> list[Gathered]:
        """What is gathered, handed over now (and nothing gathered any more)."""
        items, self._items, self._payload = self._items, [], 0
        return items
