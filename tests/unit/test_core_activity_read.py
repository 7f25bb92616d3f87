"""The core engine's memory store answers reads from the decodings it keeps (an agent-hour's events are
decoded once, not at every read): whatever the writes, reads and freezes in between, a read must return
exactly the events the adapter's own decoding of the stored sets gives, and count an event that does
not decode at every read, as the adapter does. ``read_events`` is ``read_hours`` without checkpoints."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.adapters.activity_table import (
    MS_PER_DAY,
    decode_checkpoint,
    decode_event,
    encode_checkpoint,
    parse_hour_of_day,
    parse_partition_key,
    partition_key,
)
from connect_metering.domain.agent_events import AgentEvent
from connect_metering.domain.instants import MS_PER_HOUR
from connect_metering.domain.sessions import AgentEventPoint, EventKind
from connect_metering.domain.usage import checkpoint_from_events
from connect_metering.local.core_activity import MemoryActivityStore
from connect_metering.unreadable import ACTIVITY_EVENTS, CHECKPOINTS
from tests.activity_events import DAY_MS, INSTANCE
from tests.activity_events import heartbeat as event

pytestmark = pytest.mark.unit

HOURS = (0, 1, 23, 25)


events = st.builds(
    event,
    agent=st.integers(0, 2),
    hour=st.sampled_from(HOURS),
    second=st.integers(0, 3),
    event_id=st.sampled_from(["a", "b", "x|y"]),
    offline=st.booleans(),
)
spans = st.tuples(st.sampled_from(HOURS), st.sampled_from(HOURS)).map(
    lambda pair: (DAY_MS + min(pair) * MS_PER_HOUR, DAY_MS + max(pair) * MS_PER_HOUR)
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), events),
        st.tuples(st.just("read"), spans),
        st.tuples(st.just("freeze"), st.sampled_from([DAY_MS, DAY_MS + MS_PER_DAY, DAY_MS + 2 * MS_PER_DAY])),
    ),
    max_size=40,
)


def stored_sets(store: MemoryActivityStore) -> dict[str, dict[str, set[str]]]:
    """Every partition's sets as stored (a frozen one decompressed)."""
    partitions = {pk: store._thawed(pk) for pk in store._frozen}
    partitions.update(store._event_sets)
    return partitions


def adapter_view(
    store: MemoryActivityStore, first_ms: int, last_ms: int
) -> Counter[tuple[str, AgentEventPoint]]:
    """What the adapter's decoding gives for hours [first, last]: every stored encoding, decoded."""
    found: Counter[tuple[str, AgentEventPoint]] = Counter()
    for pk, partition in stored_sets(store).items():
        day_ms = parse_partition_key(pk)[1]
        for sk, texts in partition.items():
            if first_ms <= day_ms + parse_hour_of_day(sk) * MS_PER_HOUR <= last_ms:
                agent_arn = f"{INSTANCE.arn}/agent/{sk.split('#', 2)[2]}"
                found.update((agent_arn, decode_event(text)) for text in texts)
    return found


@settings(max_examples=300, deadline=None)
@given(operations)
def test_a_read_gives_what_the_adapter_decodes(sequence: list[tuple[str, object]]) -> None:
    store = MemoryActivityStore()
    for kind, argument in sequence:
        if kind == "add":
            assert isinstance(argument, AgentEvent)
            store.add_events([argument], late_at_ms=None)
        elif kind == "freeze":
            assert isinstance(argument, int)
            store.freeze_before(argument)
        else:
            assert isinstance(argument, tuple)
            first_ms, last_ms = argument
            window = store.read_hours(INSTANCE.arn, first_ms, last_ms)
            read = Counter((stored.agent_arn, stored.point) for stored in window.events)
            assert read == adapter_view(store, first_ms, last_ms)
            assert store.read_events(INSTANCE.arn, first_ms, last_ms) == window.events
    assert not store.unreadable.counts


@pytest.mark.parametrize("frozen", [False, True])
def test_an_event_that_does_not_decode_is_counted_at_every_read(frozen: bool) -> None:
    store = MemoryActivityStore()
    store.add_events([event(0, 0, 0, "a", False)], late_at_ms=None)
    next(iter(next(iter(store._event_sets.values())).values())).add("not an event")
    if frozen:
        store.freeze_before(DAY_MS + MS_PER_DAY)
    hour = DAY_MS
    for reads in (1, 2):
        assert [stored.point.event_id for stored in store.read_hours(INSTANCE.arn, hour, hour).events] == [
            "a"
        ]
        assert store.unreadable.counts == {ACTIVITY_EVENTS: reads}
    if not frozen:  # the set grows: the new event is read, the bad one still counted
        store.add_events([event(0, 0, 1, "b", False)], late_at_ms=None)
        ids = sorted(stored.point.event_id for stored in store.read_hours(INSTANCE.arn, hour, hour).events)
        assert ids == ["a", "b"]
        assert store.unreadable.counts == {ACTIVITY_EVENTS: 3}


def test_read_events_leaves_checkpoints_undecoded() -> None:
    store = MemoryActivityStore()
    store.add_events([event(0, 0, 0, "a", False)], late_at_ms=None)
    store.save_checkpoint(INSTANCE.arn, DAY_MS, b"not a checkpoint")
    events = store.read_events(INSTANCE.arn, DAY_MS, DAY_MS)
    assert not store.unreadable.counts
    window = store.read_hours(INSTANCE.arn, DAY_MS, DAY_MS)
    assert window.events == events
    assert window.checkpoints == {}
    assert store.unreadable.counts == {CHECKPOINTS: 1}


def _written(store: MemoryActivityStore, hour_ms: int, document: bytes) -> None:
    """A checkpoint document written as the meter store's transaction writes it."""
    key = {
        "pk": {"S": partition_key(INSTANCE.arn, hour_ms)},
        "sk": {"S": f"{(hour_ms // MS_PER_HOUR) % 24:02d}#C"},
    }
    store.store_table_write({**key, "doc": {"B": document}}, key)


def test_a_checkpoint_written_by_the_meter_is_read_back_without_decoding() -> None:
    store = MemoryActivityStore()
    hour = DAY_MS + 3 * MS_PER_HOUR
    checkpoint = checkpoint_from_events(
        {"agent": [AgentEventPoint(hour - 60_000, EventKind.LOGIN, "a", False)]}, [], hour
    )
    document = store.encode_checkpoint(checkpoint)
    assert document == encode_checkpoint(checkpoint)
    _written(store, hour, document)
    read = store.read_hours(INSTANCE.arn, hour, hour).checkpoints
    assert read == {hour: decode_checkpoint(document, hour)}
    assert read[hour] is checkpoint  # the remembered one, not a decoding
    # Another document at the same hour (written by something else) is decoded, and a bad one counted.
    other = checkpoint_from_events({}, [], hour)
    _written(store, hour, encode_checkpoint(other))
    assert store.read_hours(INSTANCE.arn, hour, hour).checkpoints == {hour: other}
    _written(store, hour, b"not a checkpoint")
    for reads in (1, 2):
        assert store.read_hours(INSTANCE.arn, hour, hour).checkpoints == {}
        assert store.unreadable.counts == {CHECKPOINTS: reads}


def test_a_checkpoint_encoded_for_another_hour_is_refused_as_the_adapter_refuses_it() -> None:
    store = MemoryActivityStore()
    hour = DAY_MS + 3 * MS_PER_HOUR
    document = store.encode_checkpoint(checkpoint_from_events({}, [], hour))
    _written(store, hour + MS_PER_HOUR, document)
    assert store.read_hours(INSTANCE.arn, hour, hour + MS_PER_HOUR).checkpoints == {}
    assert store.unreadable.counts == {CHECKPOINTS: 1}
