"""A line's JSON is decoded once, by the replay's reader (``decode_json``: orjson where it agrees with
json.loads), and handed to ingest: the domain's answer must be the one it gives decoding the body
itself with the stdlib, on every body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.domain.agent_events import Quarantined, parse_agent_event, parse_envelope
from connect_metering.local.replay_input import decode_json

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)
json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def _answer(decode: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", decode(text)
    except (ValueError, RecursionError) as error:
        return "error", type(error).__name__


def _same(left: Any, right: Any) -> bool:
    """Equal values of equal types, NaN equal to NaN."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return list(left) == list(right) and all(_same(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, float) and left != left:
        return bool(right != right)
    return bool(left == right)


@settings(max_examples=1500)
@given(json_values, st.booleans(), st.sampled_from([None, 0, 2]))
def test_decode_json_is_json_loads_on_json(value: Any, ascii_only: bool, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    kind, decoded = _answer(decode_json, text)
    assert kind == "value"
    assert _same(decoded, json.loads(text))


@settings(max_examples=1500)
@given(st.text(alphabet=st.sampled_from('{}[]",:0123456789.eE+-tfnrule \\u\n\ud800aNIy'), max_size=40))
def test_decode_json_is_json_loads_on_any_text(text: str) -> None:
    fast, slow = _answer(decode_json, text), _answer(json.loads, text)
    assert fast[0] == slow[0]
    if fast[0] == "value":
        assert _same(fast[1], slow[1])


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        "18446744073709551616",
        "-9223372036854775809",
        '{"n": 123456789012345678901234567890}',
        "1e400",
        "NaN",
        "-Infinity",
        '"\\ud800"',
        "\ufeff{}",
        "[" * 2000 + "]" * 2000,
        '{"a": "\x01"}',
        " {} ",
        "",
    ],
)
def test_decode_json_edges(text: str) -> None:
    fast, slow = _answer(decode_json, text), _answer(json.loads, text)
    assert fast[0] == slow[0]
    if fast[0] == "value":
        assert _same(fast[1], slow[1])


def _domain(body: str, **document: Any) -> tuple[str, Any]:
    """What the domain makes of a body: the envelope and event, or the rejection's reason and text."""
    try:
        envelope = parse_envelope(body, **document)
        # The detail as text: NaN is not equal to itself, its JSON is.
        read = (envelope.account, envelope.arrival_ms, envelope.resources, json.dumps(envelope.detail))
        return "accepted", (read, parse_agent_event(envelope.detail))
    except Quarantined as rejection:
        detail = json.dumps(rejection.detail)
        return "quarantined", (
            rejection.reason,
            rejection.message,
            rejection.account,
            rejection.arrival_ms,
            detail,
        )


_strings = st.one_of(st.text(max_size=12), st.sampled_from(["", "Offline", "LOGIN", "HEART_BEAT"]))
_event_fields = st.fixed_dictionaries(
    {},
    optional={
        "EventId": st.one_of(_strings, st.integers()),
        "EventType": st.sampled_from(["LOGIN", "LOGOUT", "STATE_CHANGE", "HEART_BEAT", "login", 7]),
        "EventTimestamp": st.sampled_from(
            ["2026-03-01T10:00:00.000Z", "2026-03-01T10:00:00Z", "2026-02-30T10:00:00Z", "x", 1]
        ),
        "AWSAccountId": st.sampled_from(["210000000001", "21000000000", 210000000001]),
        "InstanceARN": st.sampled_from(
            [
                "arn:aws:connect:us-east-1:210000000001:instance/bbbbbbbb-0000-4000-8000-000000000001",
                "arn:aws:connect:us-east-1:210000000001:instance/BAD",
                2**70,
            ]
        ),
        "AgentARN": st.sampled_from(
            [
                "arn:aws:connect:us-east-1:210000000001:instance/bbbbbbbb-0000-4000-8000-000000000001/agent/a1",
                "agent",
            ]
        ),
        "CurrentAgentSnapshot": json_values,
    },
)
_envelopes = st.fixed_dictionaries(
    {
        "source": st.sampled_from(["connect-metering.forwarder", "other"]),
        "detail-type": st.just("Amazon Connect Agent Event"),
        "account": st.sampled_from(["210000000001", "21000000000x", 2**70]),
        "time": st.sampled_from(["2026-03-01T10:00:01.500Z", "2026-03-01T10:00:01Z", "soon", 1.5]),
        "detail": st.one_of(_event_fields, json_values),
    },
    optional={"resources": st.one_of(st.lists(_strings, max_size=3), json_values)},
)


@settings(max_examples=1500)
@given(st.one_of(_envelopes, json_values))
def test_domain_answers_alike_with_the_decoded_document(document: Any) -> None:
    body = json.dumps(document)
    expected = _domain(body)
    assert _domain(body, document=json.loads(body)) == expected
    kind, decoded = _answer(decode_json, body)
    assert kind == "value"
    assert _domain(body, document=decoded) == expected
