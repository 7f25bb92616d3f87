"""Pipe enrichment in the customer's forwarder: Kinesis records in, reduced agent events out.

Inlined into the ForwarderStack template (no asset). Pipes hands the enrichment the raw Kinesis
records (`data` base64-encoded) and sends what it returns to the event bus target, one PutEvents
entry per returned item, so each event's `detail` is the agent event reduced to the fields billing
reads (BILLING.md section 2): agents' names, usernames, routing profiles and contacts never leave
the customer's account.
"""

import base64
import json
from typing import Any

BILLING_FIELDS = ("EventId", "EventType", "EventTimestamp", "AWSAccountId", "InstanceARN", "AgentARN")
AGENT_STATUS_FIELDS = ("ARN", "Name", "StartTimestamp")


def handler(records: list[dict[str, Any]], _context: object) -> list[dict[str, Any]]:
    return [reduce(decode(record)) for record in records]


def decode(record: dict[str, Any]) -> dict[str, Any]:
    data = record["data"]
    # Pipes passes Kinesis data base64-encoded; an already parsed object is accepted as well.
    event = data if isinstance(data, dict) else json.loads(base64.b64decode(data, validate=True))
    if not isinstance(event, dict):
        # Raising fails the batch: the pipe bisects it and parks this record in its DLQ.
        raise TypeError(f"record {record.get('sequenceNumber')} is not a JSON object")
    return event


def reduce(event: dict[str, Any]) -> dict[str, Any]:
    """Only what billing reads; a field the event lacks stays absent (the seller quarantines it)."""
    reduced = {name: event[name] for name in BILLING_FIELDS if name in event}
    snapshot = event.get("CurrentAgentSnapshot")
    status = snapshot.get("AgentStatus") if isinstance(snapshot, dict) else None
    if isinstance(status, dict):
        kept = {name: status[name] for name in AGENT_STATUS_FIELDS if name in status}
        reduced["CurrentAgentSnapshot"] = {"AgentStatus": kept}
    return reduced
