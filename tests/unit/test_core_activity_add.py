"""The core engine's memory store answers its commonest ``add_events`` call (one event, an agent-hour
with room, a day not frozen) without the adapter's write loop: the outcomes, the stored sets and the
late markers must come out exactly as through the adapter's own ``add_events`` on the same store."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.domain.agent_events import MAX_EVENTS_PER_AGENT_HOUR, AgentEvent
from connect_metering.domain.instants import MS_PER_HOUR
from connect_metering.local.core_activity import MemoryActivityStore
from tests.activity_events import DAY_MS
from tests.activity_events import heartbeat as event

pytestmark = pytest.mark.unit


events = st.builds(
    event,
    agent=st.integers(0, 2),
    hour=st.sampled_from([0, 1, 25]),
    second=st.integers(0, 3),
    event_id=st.sampled_from(["a", "b", "x|y", "z" * 40]),
    offline=st.booleans(),
    start=st.none() | st.integers(0, 5),
)
calls = st.lists(
    st.tuples(st.lists(events, min_size=1, max_size=3), st.none() | st.integers(0, 10**13)), max_size=25
)


def state(store: MemoryActivityStore) -> tuple[Any, ...]:
    return store._event_sets, store._marked_late, store._frozen


def same_agent_hour(batch: list[AgentEvent]) -> list[AgentEvent]:
    first = batch[0]
    return [
        e
        for e in batch
        if e.agent_arn == first.agent_arn and e.ts_ms // MS_PER_HOUR == first.ts_ms // MS_PER_HOUR
    ]


@settings(max_examples=400, deadline=None)
@given(calls, st.booleans(), st.booleans())
def test_the_direct_answer_is_the_adapters(
    sequence: list[tuple[list[AgentEvent], int | None]], nearly_full: bool, frozen: bool
) -> None:
    direct, through_adapter = MemoryActivityStore(), MemoryActivityStore()
    for store in (direct, through_adapter):
        if nearly_full:
            # agent-0's hour 0 one short of the bound: the next new event fills it, the one after is refused.
            store.add_events([event(0, 0, 59, "first", False, None)], late_at_ms=None)
            pk, partition = next(iter(store._event_sets.items()))
            sk = next(iter(partition))
            partition[sk] |= {f"{n}|2|0|filler" for n in range(MAX_EVENTS_PER_AGENT_HOUR - 2)}
            assert len(store._event_sets[pk][sk]) == MAX_EVENTS_PER_AGENT_HOUR - 1
        if frozen:
            store.add_events([event(1, 1, 0, "old", True, 1)], late_at_ms=5)
            store.freeze_before(DAY_MS + 86_400_000)
    for batch, late_at_ms in sequence:
        batch = same_agent_hour(batch)
        answer = direct.add_events(batch, late_at_ms=late_at_ms)
        expected = DynamoActivityStore.add_events(through_adapter, batch, late_at_ms=late_at_ms)
        assert answer == expected
        assert state(direct) == state(through_adapter)


def test_a_full_agent_hour_refuses_and_a_duplicate_is_told() -> None:
    store = MemoryActivityStore()
    first = event(0, 0, 0, "a", False, None)
    assert [o.value for o in store.add_events([first], late_at_ms=None).outcomes] == ["new"]
    assert [o.value for o in store.add_events([first], late_at_ms=7).outcomes] == ["duplicate"]
    assert next(iter(store._marked_late.values()))[1] == 7
    partition = next(iter(store._event_sets.values()))
    sk = next(iter(partition))
    partition[sk] |= {f"{n}|2|0|filler" for n in range(MAX_EVENTS_PER_AGENT_HOUR - 1)}
    refused = store.add_events([event(0, 0, 1, "b", False, None)], late_at_ms=None)
    assert [o.value for o in refused.outcomes] == ["refused"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(events, min_size=1, max_size=6), st.none() | st.integers(0, 10**13)), max_size=12
    ),
    st.none() | st.integers(0, 6),
)
def test_a_group_of_events_near_the_bound_is_answered_as_the_adapter_does(
    sequence: list[tuple[list[AgentEvent], int | None]], room: int | None
) -> None:
    """Groups of several events (duplicates among them, or already stored), with the agent-hour ``room``
    events short of the bound: the direct answer and the adapter's agree on outcomes, sets and markers,
    and a call mixing agent-hours is refused by both."""
    direct, through_adapter = MemoryActivityStore(), MemoryActivityStore()
    for store in (direct, through_adapter):
        if room is not None:
            store.add_events([event(0, 0, 59, "first", False, None)], late_at_ms=None)
            partition = next(iter(store._event_sets.values()))
            sk = next(iter(partition))
            partition[sk] |= {f"{n}|2|0|filler" for n in range(MAX_EVENTS_PER_AGENT_HOUR - 1 - room)}
    for batch, late_at_ms in sequence:
        try:
            expected: Any = DynamoActivityStore.add_events(through_adapter, batch, late_at_ms=late_at_ms)
        except ValueError as error:
            expected = str(error)
        try:
            answer: Any = direct.add_events(batch, late_at_ms=late_at_ms)
        except ValueError as error:
            answer = str(error)
        assert answer == expected
        assert state(direct) == state(through_adapter)
