"""The short way of reading an agent event (``_common_agent_event``) gives exactly what the general,
rule-by-rule way gives: the same ``AgentEvent``, or nothing (and the general way then refuses the event
with its reason). Checked on an event as AWS publishes it with one or more fields mutated."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.domain.agent_events import (
    AgentEvent,
    Quarantined,
    _common_agent_event,
    _parsed_agent_event,
    parse_agent_event,
)

pytestmark = pytest.mark.unit

INSTANCE = "arn:aws:connect:us-east-1:210000000006:instance/bbbbbbbb-0000-4000-8000-000000000006"


def published_event() -> dict[str, Any]:
    return {
        "AWSAccountId": "210000000006",
        "AgentARN": f"{INSTANCE}/agent/agent-06-018",
        "CurrentAgentSnapshot": {
            "AgentStatus": {
                "ARN": f"{INSTANCE}/agent-state/offline",
                "Name": "Offline",
                "StartTimestamp": "2026-01-01T06:01:00.000Z",
            },
            "Configuration": {"FirstName": "First", "LastName": "Agent", "Username": "user"},
            "Contacts": [],
        },
        "EventId": "agent-06-018-202601010601-00001",
        "EventTimestamp": "2026-01-01T06:01:00.000Z",
        "EventType": "LOGIN",
        "InstanceARN": INSTANCE,
        "PreviousAgentSnapshot": None,
        "Version": "2017-10-01",
    }


FIELDS = ("AWSAccountId", "AgentARN", "EventId", "EventTimestamp", "EventType", "InstanceARN")
STATUS_FIELDS = ("Name", "StartTimestamp")

# Values near the rules' edges, and of every JSON type.
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.just(""),
    st.just("Offline"),
    st.sampled_from(["LOGIN", "LOGOUT", "STATE_CHANGE", "HEART_BEAT", "login", "CONNECTED_TO_AGENT"]),
    st.sampled_from(
        [
            "2026-01-01T06:01:00Z",
            "2026-01-01T06:01:00.5Z",
            "2026-01-01T06:01:00+01:00",
            "2026-01-01T24:00:00Z",
            "2026-02-30T06:01:00.000Z",
            "2026-01-01T06:01:60.000Z",
            "2026-01-01 06:01:00",
            "0001-01-01T00:00:00+01:00",
        ]
    ),
    st.sampled_from(["210000000006", "21000000000\uff16", "2100000000061", "abcdefghijkl", "310000000006"]),
    st.sampled_from(
        [
            INSTANCE,
            INSTANCE.upper(),
            INSTANCE + "/",
            INSTANCE.replace("210000000006", "310000000006"),
            f"{INSTANCE}/agent/",
            f"{INSTANCE}/agent/a/b",
            f"{INSTANCE}/agent/a#b",
            f"{INSTANCE}/agent/é",
            f"{INSTANCE}/agent/" + "x" * 300,
            f"{INSTANCE}/queue/q",
        ]
    ),
    st.text(max_size=40),
    st.text(alphabet="x", min_size=250, max_size=260),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["Name", "StartTimestamp", "AgentStatus"]), st.text(max_size=5)),
)

mutation = st.tuples(
    st.sampled_from(["field", "status", "snapshot", "delete", "delete_status"]),
    st.sampled_from(FIELDS + STATUS_FIELDS),
    odd_values,
)


def mutated(event: dict[str, Any], changes: list[tuple[str, str, Any]]) -> dict[str, Any]:
    detail = copy.deepcopy(event)
    for where, name, value in changes:
        snapshot = detail.get("CurrentAgentSnapshot")
        status = snapshot.get("AgentStatus") if isinstance(snapshot, dict) else None
        if where == "field" and name in FIELDS:
            detail[name] = value
        elif where == "delete" and name in FIELDS:
            detail.pop(name, None)
        elif where == "status" and isinstance(status, dict):
            status[name] = value
        elif where == "delete_status" and isinstance(status, dict):
            status.pop(name, None)
        elif where == "snapshot":
            detail["CurrentAgentSnapshot"] = value if name == "Name" else {"AgentStatus": value}
    return detail


def general_answer(detail: dict[str, Any]) -> AgentEvent | tuple[str, str]:
    try:
        return _parsed_agent_event(detail)
    except Quarantined as rejection:
        return rejection.reason.value, rejection.message


@settings(max_examples=1500, deadline=None)
@given(st.lists(mutation, max_size=3))
def test_the_short_way_gives_what_the_general_way_gives(changes: list[tuple[str, str, Any]]) -> None:
    detail = mutated(published_event(), changes)
    expected = general_answer(detail)
    fast = _common_agent_event(detail)
    if fast is not None:
        assert fast == expected
    try:
        answer: AgentEvent | tuple[str, str] = parse_agent_event(detail)
    except Quarantined as rejection:
        answer = rejection.reason.value, rejection.message
    assert answer == expected


def test_the_published_shape_takes_the_short_way() -> None:
    event = _common_agent_event(published_event())
    assert event is not None
    assert event == _parsed_agent_event(published_event())
    assert event.offline
    assert event.status_start_ms == event.ts_ms


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("EventId", "x" * 257, "unparseable"),
        ("EventType", "CONNECTED_TO_AGENT", "unsupported_type"),
        ("AWSAccountId", "21000000000\uff16", "unparseable"),
        ("AgentARN", f"{INSTANCE}/agent/a/b", "unparseable"),
        ("EventTimestamp", "2026-01-01T06:01:00", "unparseable"),
    ],
)
def test_a_refused_event_keeps_its_reason(name: str, value: str, reason: str) -> None:
    detail = published_event()
    detail[name] = value
    assert _common_agent_event(detail) is None
    with pytest.raises(Quarantined) as refused:
        parse_agent_event(detail)
    assert refused.value.reason.value == reason
