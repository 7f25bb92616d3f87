"""Pipe enrichment in the customer's forwarder: Kinesis records in, agent events out, unchanged.

Inlined into the ForwarderStack template (no asset). Pipes hands the enrichment the raw Kinesis
records (`data` base64-encoded) and sends what it returns to the event bus target, one PutEvents
entry per returned item, so each event's `detail` is exactly the agent event JSON.
"""

import base64
import json
from typing import Any


def handler(records: list[dict[str, Any]], _context: object) -> list[dict[str, Any]]:
    return [decode(record) for record in records]


def decode(record: dict[str, Any]) -> dict[str, Any]:
    data = record["data"]
    # Pipes passes Kinesis data base64-encoded; an already parsed object is accepted as well.
    event = data if isinstance(data, dict) else json.loads(base64.b64decode(data, validate=True))
    if not isinstance(event, dict):
        # Raising fails the batch: the pipe bisects it and parks this record in its DLQ.
        raise TypeError(f"record {record.get('sequenceNumber')} is not a JSON object")
    return event
