"""The short way of admitting a message (``read_common_message``) gives exactly what the long way gives:
``parse_envelope``, ``parse_agent_event``, ``check_sender`` and ``check_timestamp`` in BILLING.md order.
When the short way answers, the long way accepts the message with the same envelope and event; when the
long way refuses it, the short way answers nothing (and ingest then takes the long way, which names the
reason). Checked on a message as the forwarder sends it, with its envelope and event mutated."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.domain.agent_events import (
    MAX_BODY_BYTES,
    NOT_DECODED,
    Quarantined,
    check_sender,
    check_timestamp,
    parse_agent_event,
    parse_envelope,
)
from connect_metering.domain.common_messages import read_common_message
from tests.unit.test_agent_event_fast_path import mutated, mutation, odd_values, published_event

pytestmark = pytest.mark.unit

MAX_EVENT_AGE_MS = 7 * 86_400_000
# The published event's EventTimestamp, and arrivals at and past rule 5's bounds around it.
STAMPED = "2026-01-01T06:01:00.000Z"
ARRIVALS = [
    "2026-01-01T06:01:00.598Z",
    "2026-01-01T05:56:00.000Z",  # the event 300 s ahead: accepted
    "2026-01-01T05:55:59.999Z",  # 300.001 s ahead: future_timestamp
    "2026-01-08T06:01:00.000Z",  # exactly max_event_age old: accepted
    "2026-01-08T06:01:00.001Z",  # older: too_old
    "2026-01-01T06:01:00.598+00:00",
    "2026-01-01T07:01:00.598+01:00",
    "2026-01-01T06:01:00",
    "not a time",
]


def forwarded(detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "envelope-1",
        "detail-type": "Amazon Connect Agent Event",
        "source": "connect-metering.forwarder",
        "account": "210000000006",
        "time": ARRIVALS[0],
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


ENVELOPE_FIELDS = ("account", "time", "source", "detail-type", "detail", "resources")
envelope_values = st.one_of(
    odd_values,
    st.sampled_from(ARRIVALS),
    st.sampled_from(["connect-metering.forwarder", "Amazon Connect Agent Event", "aws.connect"]),
    st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=3),
)
envelope_mutation = st.tuples(
    st.sampled_from(["set", "delete"]), st.sampled_from(ENVELOPE_FIELDS), envelope_values
)


def long_way(body: str, document: Any) -> object:
    """The answer of ingest's rules 1, 2, 4 and 5 taken one by one (rule 3, the instance lookup, left out:
    it is the caller's either way)."""
    try:
        envelope = parse_envelope(body, document=document)
        event = parse_agent_event(envelope.detail)
        check_sender(envelope, event)
        check_timestamp(envelope, event, max_event_age_ms=MAX_EVENT_AGE_MS)
    except Quarantined as rejection:
        return rejection.reason.value
    return envelope, event, event.instance.arn


def message(document: dict[str, Any], padding: int = 0) -> tuple[str, Any]:
    body = json.dumps(document, ensure_ascii=False) + " " * padding
    return body, json.loads(body)


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(mutation, max_size=3),
    st.lists(envelope_mutation, max_size=2),
    st.sampled_from([0, MAX_BODY_BYTES // 4, MAX_BODY_BYTES // 2, MAX_BODY_BYTES]),
    # Under the bound in characters, not always in UTF-8 bytes.
    st.sampled_from(["", "\u00e9" * 4_000, "\U0001f600" * 4_000, "\U0001f600" * 9_000]),
)
def test_the_short_way_gives_what_the_long_way_gives(
    changes: list[tuple[str, str, Any]],
    envelope_changes: list[tuple[str, str, Any]],
    padding: int,
    name: str,
) -> None:
    detail = mutated(published_event(), changes)
    if name:
        detail["FirstName"] = name  # personal data billing never reads, here to make the body large
    document = forwarded(detail)
    for how, field, value in envelope_changes:
        if how == "set":
            document[field] = copy.deepcopy(value)
        else:
            document.pop(field, None)
    body, decoded = message(document, padding)
    expected = long_way(body, decoded)
    short = read_common_message(body, decoded, max_event_age_ms=MAX_EVENT_AGE_MS)
    if short is not None:
        assert short == expected
        assert type(short[0]) is type(expected[0]) and type(short[1]) is type(expected[1])
    else:
        assert read_common_message(body, NOT_DECODED, max_event_age_ms=MAX_EVENT_AGE_MS) is None


@pytest.mark.parametrize("arrival", ARRIVALS[:5])
def test_the_forwarded_shape_takes_the_short_way_within_rule_5(arrival: str) -> None:
    document = forwarded(published_event())
    document["time"] = arrival
    body, decoded = message(document)
    expected = long_way(body, decoded)
    short = read_common_message(body, decoded, max_event_age_ms=MAX_EVENT_AGE_MS)
    if isinstance(expected, str):
        assert short is None
    else:
        assert short == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("account", "210000000007"),  # account_mismatch
        ("source", "aws.connect"),
        ("detail", []),
        ("resources", ["code", 5]),
    ],
)
def test_an_envelope_the_long_way_refuses_or_reads_otherwise_is_left_to_it(field: str, value: Any) -> None:
    document = forwarded(published_event())
    document[field] = value
    body, decoded = message(document)
    short = read_common_message(body, decoded, max_event_age_ms=MAX_EVENT_AGE_MS)
    assert short is None or short == long_way(body, decoded)


def test_a_body_past_the_size_bound_is_left_to_the_long_way() -> None:
    body, decoded = message(forwarded(published_event()), padding=MAX_BODY_BYTES)
    assert read_common_message(body, decoded, max_event_age_ms=MAX_EVENT_AGE_MS) is None
    assert long_way(body, decoded) == "too_large"
