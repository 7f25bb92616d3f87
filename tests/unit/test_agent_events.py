"""Pure acceptance pieces of BILLING.md section 2: the rule-6 split, the audit record's bounds."""

from __future__ import annotations

import hashlib
import json

import pytest

from connect_metering.adapters.activity_table import MAX_STORED_EVENT_ID, stored_event_id
from connect_metering.domain.agent_events import (
    MAX_EVENTS_PER_AGENT_HOUR,
    Quarantined,
    QuarantineReason,
    audit_record,
    reduce_agent_event,
    split_at_hour_bound,
)

pytestmark = pytest.mark.unit


def test_rule_6_keeps_arrival_order_up_to_the_bound() -> None:
    fresh = ["a", "b", "c"]
    assert split_at_hour_bound(0, fresh) == (fresh, [])
    assert split_at_hour_bound(MAX_EVENTS_PER_AGENT_HOUR - 2, fresh) == (["a", "b"], ["c"])
    assert split_at_hour_bound(MAX_EVENTS_PER_AGENT_HOUR, fresh) == ([], fresh)
    assert split_at_hour_bound(MAX_EVENTS_PER_AGENT_HOUR + 5, fresh) == ([], fresh)


def test_long_event_ids_are_stored_as_short_distinct_digests() -> None:
    uuid = "0b5a1d8e-2c4a-4a4e-9c3e-1f2a3b4c5d6e"
    assert stored_event_id(uuid) == uuid
    long_ids = ["x" * 256, "x" * 255 + "y", "z" * 37]
    stored = [stored_event_id(event_id) for event_id in long_ids]
    assert len(set(stored)) == 3
    assert all(len(text) <= MAX_STORED_EVENT_ID and text.startswith("~") for text in stored)


def test_reduction_keeps_exactly_the_fields_billing_reads() -> None:
    detail = {
        "EventId": "e",
        "EventType": "LOGIN",
        "Version": "2017-10-01",
        "CurrentAgentSnapshot": {
            "AgentStatus": {"ARN": "s", "Name": "Available", "StartTimestamp": "t", "Type": "ROUTABLE"},
            "Configuration": {"FirstName": "Zelda", "Username": "zelda"},
            "Contacts": [{"CustomerEndpoint": "+15550100"}],
        },
        "PreviousAgentSnapshot": {"Configuration": {"LastName": "Link"}},
    }
    assert reduce_agent_event(detail) == {
        "EventId": "e",
        "EventType": "LOGIN",
        "CurrentAgentSnapshot": {"AgentStatus": {"ARN": "s", "Name": "Available", "StartTimestamp": "t"}},
    }


@pytest.mark.parametrize("filler", ["\u0000", '"', "é", "\U0001f600", "x"])
def test_the_audit_record_is_bounded_whatever_the_values_hold(filler: str) -> None:
    detail: dict[str, object] = {
        name: filler * 60_000
        for name in ("EventId", "EventType", "EventTimestamp", "AWSAccountId", "InstanceARN", "AgentARN")
    }
    detail["CurrentAgentSnapshot"] = {
        "AgentStatus": {"ARN": filler * 60_000, "Name": [filler] * 1000, "StartTimestamp": 10**400}
    }
    body = json.dumps({"detail": detail})
    rejection = Quarantined(
        QuarantineReason.TOO_LARGE, filler * 60_000, account="012345678901", detail=detail
    )
    record = audit_record(rejection, message_id="m", body=body, received_ms=0, company=None)
    stored = [record.message, record.reduced, record.event_id or "", record.body_sha256]
    assert sum(len(text.encode()) for text in stored) < 3_000
    assert record.body_bytes == len(body.encode())
    assert record.body_sha256 == hashlib.sha256(body.encode()).hexdigest()
    reduced = json.loads(record.reduced)
    assert reduced["CurrentAgentSnapshot"]["AgentStatus"]["Name"] == "<list>"
    assert reduced["CurrentAgentSnapshot"]["AgentStatus"]["StartTimestamp"] == "<int>"
