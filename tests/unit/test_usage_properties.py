"""Property tests of the incremental core: resuming at any boundary equals the whole-set core, exactly."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.domain.agent_carry import AgentCarry, advance, advance_agent, advance_split
from connect_metering.domain.attribution import attribute, attribute_all, primary_segments
from connect_metering.domain.instants import MS_PER_HOUR, from_ms, hour_floor, parse_iso_ms
from connect_metering.domain.sessions import (
    UNKNOWN_STATUS_START_MS,
    AgentEventPoint,
    BillableTimePolicy,
    EventKind,
    billable_intervals,
    billable_ms_by_hour,
    hours_touched,
    ms_by_hour,
    sorted_points,
)
from connect_metering.domain.tenancy import Subscription, build, primary_subscription
from connect_metering.domain.usage import EnvironmentCheckpoint, checkpoint_from_events, resume

pytestmark = pytest.mark.unit

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, database=None)
BASE_MS = parse_iso_ms("2026-03-02T22:40:00Z")  # the streams cross several hours and midnight
FIRST_HOUR = hour_floor(BASE_MS)
STEP_MS = 30_000
STEPS = 360  # three hours of 30 s steps
TIMEOUTS = st.sampled_from([360_000, 360_000, 120_000, 0])
# A timeout longer than an hour lets an open carry's ``last`` sit more than an hour before the boundary.
RESUME_TIMEOUTS = st.sampled_from([360_000, 360_000, 120_000, 0, 2 * MS_PER_HOUR])
POLICIES = st.sampled_from(list(BillableTimePolicy))
AGENTS = [
    f"arn:aws:connect:eu-west-2:123456789012:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111/agent/{n}"
    for n in "abc"
]


def _point(
    step: int, jitter: int, kind: EventKind, tag: int, offline: bool, status_age: int | None
) -> AgentEventPoint:
    ts = BASE_MS + step * STEP_MS + jitter
    # Ids collide only between points with the same timestamp: a stored event set holds each EventId once,
    # so the same id never sits on both sides of a boundary (see the module docstring of usage.py).
    # A status's start a few steps back (or unknown) makes the post-logout rule of section 3 come up,
    # also across boundaries (the carry remembers the LOGOUT).
    start = UNKNOWN_STATUS_START_MS if status_age is None else ts - status_age
    return AgentEventPoint(ts, kind, f"e{ts}-{tag}", offline, start)


points = st.builds(
    _point,
    st.integers(0, STEPS),
    st.sampled_from([0, 0, 0, 1, -1, 999, STEP_MS // 2]),
    st.sampled_from(list(EventKind)),
    st.integers(0, 2),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 6).map(lambda steps: steps * STEP_MS)),
)
point_lists = st.lists(points, max_size=80)
instants = st.integers(BASE_MS - MS_PER_HOUR, BASE_MS + STEPS * STEP_MS + MS_PER_HOUR)


def _union(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The instants covered, as sorted disjoint intervals with more than 0 ms (adjacent ones merged)."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(interval for interval in intervals if interval[1] > interval[0]):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _chain(
    events: list[AgentEventPoint], boundaries: list[int], policy: BillableTimePolicy, timeout: int
) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    carry: AgentCarry | None = None
    low: int | None = None
    for boundary in [*boundaries, None]:
        chunk = [
            e for e in events if (low is None or e.ts_ms >= low) and (boundary is None or e.ts_ms < boundary)
        ]
        produced, carry = advance_agent(
            carry, chunk, policy=policy, silence_timeout_ms=timeout, boundary_ms=boundary
        )
        if boundary is not None:
            assert all(high <= boundary for _, high in produced)
            assert carry.boundary_ms == boundary
        pieces.extend(produced)
        low = boundary
    return pieces


@PROPERTY_SETTINGS
@given(events=point_lists, boundary=instants, policy=POLICIES, timeout=TIMEOUTS, data=st.data())
def test_one_boundary_gives_the_whole_set_milliseconds(
    events: list[AgentEventPoint],
    boundary: int,
    policy: BillableTimePolicy,
    timeout: int,
    data: st.DataObject,
) -> None:
    whole = billable_intervals(events, policy=policy, silence_timeout_ms=timeout)
    before = [e for e in events if e.ts_ms < boundary]
    after = data.draw(st.permutations([e for e in events if e.ts_ms >= boundary]))
    explicit = data.draw(st.booleans())
    first, carry = advance_agent(
        None, before, policy=policy, silence_timeout_ms=timeout, boundary_ms=boundary if explicit else None
    )
    assert all(high <= boundary for _, high in first)
    second, _ = advance_agent(carry, after, policy=policy, silence_timeout_ms=timeout)
    pieces = first + second
    assert all(high > low for low, high in pieces)
    assert billable_ms_by_hour(pieces) == billable_ms_by_hour(whole)
    assert _union(pieces) == _union(whole)
    assert sum(high - low for low, high in pieces) == sum(high - low for low, high in whole)


@PROPERTY_SETTINGS
@given(
    events=point_lists,
    boundaries=st.lists(instants, max_size=6, unique=True).map(sorted),
    policy=POLICIES,
    timeout=TIMEOUTS,
)
def test_chained_boundaries_give_the_whole_set_milliseconds(
    events: list[AgentEventPoint], boundaries: list[int], policy: BillableTimePolicy, timeout: int
) -> None:
    whole = billable_intervals(events, policy=policy, silence_timeout_ms=timeout)
    pieces = _chain(events, boundaries, policy, timeout)
    assert billable_ms_by_hour(pieces) == billable_ms_by_hour(whole)
    assert _union(pieces) == _union(whole)


# --- subscriptions and attribution ----------------------------------------------------------------

SUFFIXES = ["aaa", "bbb", "ccc", "ddd"]


@st.composite
def subscription_sets(draw: st.DrawFn) -> list[Subscription]:
    pricing = draw(st.sampled_from(["usage", "contract"]))
    offsets = st.sampled_from([-MS_PER_HOUR, 0, 20 * 60_000, 20 * 60_000, 90 * 60_000 + 7, 150 * 60_000])
    moments = st.one_of(st.none(), offsets.map(lambda offset: BASE_MS + offset))
    subs: list[Subscription] = []
    for suffix in draw(st.lists(st.sampled_from(SUFFIXES), max_size=3, unique=True)):
        started = draw(moments)
        ended = draw(moments)
        if started is not None and ended is not None and ended < started:
            started, ended = ended, started
        expires = draw(moments) if pricing == "contract" else None
        micro = draw(st.sampled_from([0, 0, 500]))  # sub-millisecond instants round up
        if started is not None and ended is not None and ended <= started:
            micro = 0
        subs.append(
            build(
                Subscription,
                company_alias="acme",
                identity={
                    "customer_aws_account_id": "210987654321",
                    "license_arn": f"arn:aws:license-manager::123456789012:license:l-{suffix}",
                },
                pricing=pricing,
                started=None if started is None else from_ms(started).replace(microsecond=micro),
                ended=None if ended is None else from_ms(ended),
                entitlements={"licensed_agents": 3, "expires": None if expires is None else from_ms(expires)},
            )
        )
    return subs


@settings(max_examples=100, deadline=None, database=None)
@given(
    subs=subscription_sets(),
    pieces=st.lists(
        st.tuples(st.integers(-60, 60), st.integers(0, 150)).map(
            lambda pair: (BASE_MS + 20 * 60_000 + pair[0], BASE_MS + 20 * 60_000 + pair[0] + pair[1])
        ),
        max_size=4,
    ),
    until_offset=st.one_of(st.none(), st.integers(-80, 120)),
)
def test_attribute_gives_each_millisecond_to_its_primary(
    subs: list[Subscription], pieces: list[tuple[int, int]], until_offset: int | None
) -> None:
    # A small window around a change point (started / ended at BASE + 20 min): checked millisecond by ms.
    low, high = BASE_MS + 20 * 60_000 - 60, BASE_MS + 20 * 60_000 + 211
    until = None if until_offset is None else BASE_MS + 20 * 60_000 + until_offset
    segments = primary_segments(subs, low, high)
    got = attribute(pieces, segments, until_ms=until)
    expected: dict[str | None, int] = {}
    for start, end in pieces:
        for instant in range(start, end if until is None else min(end, until)):
            primary = primary_subscription(subs, from_ms(instant))
            key = None if primary is None else primary.key
            expected[key] = expected.get(key, 0) + 1
    assert got == expected


@PROPERTY_SETTINGS
@given(
    subs=subscription_sets(),
    pieces=st.lists(st.tuples(instants, st.integers(0, 3 * MS_PER_HOUR)), max_size=8),
    until=st.one_of(st.none(), instants),
)
def test_attribute_sums_to_the_clipped_total(
    subs: list[Subscription], pieces: list[tuple[int, int]], until: int | None
) -> None:
    pieces = [(start, start + length) for start, length in pieces]
    low = min((start for start, _ in pieces), default=BASE_MS)
    high = max((end for _, end in pieces), default=BASE_MS)
    segments = primary_segments(subs, low, high)
    assert all(a < b for a, b, _ in segments)
    assert [s[0] for s in segments[1:]] == [s[1] for s in segments[:-1]]
    assert all(x[2] != y[2] for x, y in itertools.pairwise(segments))
    clipped = sum(max(0, (end if until is None else min(end, until)) - start) for start, end in pieces)
    got = attribute(pieces, segments, until_ms=until)
    assert sum(got.values()) == clipped
    assert all(value > 0 for value in got.values())


# --- resume from checkpoints equals a from-scratch computation -------------------------------------


def _from_scratch(
    events_by_agent: dict[str, list[AgentEventPoint]],
    subs: list[Subscription],
    until: int,
    policy: BillableTimePolicy,
    timeout: int,
) -> tuple[dict[str | None, int], dict[str, dict[int, int]]]:
    per_agent = {
        agent: billable_intervals(events, policy=policy, silence_timeout_ms=timeout)
        for agent, events in events_by_agent.items()
    }
    intervals = [interval for agent_intervals in per_agent.values() for interval in agent_intervals]
    counted = [interval for interval in intervals if interval[0] < until]
    low = min((start for start, _ in counted), default=until)
    totals = attribute(counted, primary_segments(subs, low, until), until_ms=until)
    hours = {agent: billable_ms_by_hour(agent_intervals) for agent, agent_intervals in per_agent.items()}
    return totals, hours


@PROPERTY_SETTINGS
@given(
    events_by_agent=st.fixed_dictionaries({agent: point_lists for agent in AGENTS}),
    subs=subscription_sets(),
    policy=POLICIES,
    timeout=RESUME_TIMEOUTS,
    data=st.data(),
)
def test_resume_from_checkpoints_equals_from_scratch(
    events_by_agent: dict[str, list[AgentEventPoint]],
    subs: list[Subscription],
    policy: BillableTimePolicy,
    timeout: int,
    data: st.DataObject,
) -> None:
    last_hour = FIRST_HOUR + 4 * MS_PER_HOUR
    metered = data.draw(st.integers(0, 4).map(lambda n: FIRST_HOUR + n * MS_PER_HOUR), label="H")
    resume_from = data.draw(st.integers(0, (metered - FIRST_HOUR) // MS_PER_HOUR + 1), label="hours before H")
    boundary = max(FIRST_HOUR - MS_PER_HOUR, metered - resume_from * MS_PER_HOUR)
    # Chain hourly checkpoints from an empty one up to the boundary, each equal to a from-scratch one.
    checkpoint = EnvironmentCheckpoint.empty(
        FIRST_HOUR - MS_PER_HOUR, policy=policy, silence_timeout_ms=timeout
    )
    while checkpoint.boundary_ms < boundary:
        start = checkpoint.boundary_ms
        known = {agent: [e for e in events if e.ts_ms >= start] for agent, events in events_by_agent.items()}
        view = resume(
            checkpoint, known, subs, until_ms=start + MS_PER_HOUR, policy=policy, silence_timeout_ms=timeout
        )
        checkpoint = view.checkpoint_at(start + MS_PER_HOUR)
        assert checkpoint == checkpoint_from_events(
            events_by_agent, subs, start + MS_PER_HOUR, policy=policy, silence_timeout_ms=timeout
        )
        assert EnvironmentCheckpoint.from_json(checkpoint.to_json()) == checkpoint
    until = metered + MS_PER_HOUR
    known = {agent: [e for e in events if e.ts_ms >= boundary] for agent, events in events_by_agent.items()}
    view = resume(checkpoint, known, subs, until_ms=until, policy=policy, silence_timeout_ms=timeout)
    totals, hours = _from_scratch(events_by_agent, subs, until, policy, timeout)
    assert view.total_ms_by_subscription == {key: ms for key, ms in totals.items() if key is not None}
    assert view.unbilled_ms == totals.get(None, 0)
    for hour in range(boundary, min(until, last_hour + MS_PER_HOUR), MS_PER_HOUR):
        expected_agents = {agent for agent, by_hour in hours.items() if by_hour.get(hour, 0) > 0}
        assert view.agents_by_hour.get(hour, frozenset()) == expected_agents
        assert view.billable_ms_by_hour.get(hour, 0) == sum(
            by_hour.get(hour, 0) for by_hour in hours.values()
        )
    # The checkpoint keeps the hours a resumed piece can reach: those are exact too, and so is any hour shown.
    open_lasts = [hour_floor(c.last_ms) for c in checkpoint.carries.values() if c.is_open]
    kept_from = min([boundary - MS_PER_HOUR, *open_lasts])
    shown = set(view.agents_by_hour) | set(range(kept_from, boundary, MS_PER_HOUR))
    for hour in shown:
        expected_agents = {agent for agent, by_hour in hours.items() if by_hour.get(hour, 0) > 0}
        assert view.agents_by_hour.get(hour, frozenset()) == expected_agents
    assert view.checkpoint_at(until) == checkpoint_from_events(
        events_by_agent, subs, until, policy=policy, silence_timeout_ms=timeout
    )


# --- the worker's fast paths equal the checked, general ones ---------------------------------------


@PROPERTY_SETTINGS
@given(
    events_by_agent=st.fixed_dictionaries({agent: point_lists for agent in AGENTS}),
    subs=subscription_sets(),
    policy=POLICIES,
    timeout=RESUME_TIMEOUTS,
    data=st.data(),
)
def test_checkpoint_at_the_view_end_equals_one_computed_from_a_longer_view(
    events_by_agent: dict[str, list[AgentEventPoint]],
    subs: list[Subscription],
    policy: BillableTimePolicy,
    timeout: int,
    data: st.DataObject,
) -> None:
    # ``resume`` keeps its scan at ``until`` for ``checkpoint_at(until)``; any earlier boundary is scanned
    # again from the checkpoint. Both must give the same checkpoint.
    start = FIRST_HOUR - MS_PER_HOUR
    checkpoint = checkpoint_from_events(
        events_by_agent, subs, start, policy=policy, silence_timeout_ms=timeout
    )
    hours = data.draw(st.integers(0, 3), label="hours to the boundary")
    extra = data.draw(st.integers(1, 3), label="hours the longer view runs past it")
    boundary = start + hours * MS_PER_HOUR
    known = {agent: [e for e in events if e.ts_ms >= start] for agent, events in events_by_agent.items()}
    kept = resume(checkpoint, known, subs, until_ms=boundary, policy=policy, silence_timeout_ms=timeout)
    longer = resume(
        checkpoint,
        known,
        subs,
        until_ms=boundary + extra * MS_PER_HOUR,
        policy=policy,
        silence_timeout_ms=timeout,
    )
    assert kept.checkpoint_at(boundary) == longer.checkpoint_at(boundary)


@PROPERTY_SETTINGS
@given(
    events=point_lists,
    policy=POLICIES,
    timeout=RESUME_TIMEOUTS,
    cut=instants,
)
def test_advance_split_is_advance_to_the_cut_and_on(
    events: list[AgentEventPoint], policy: BillableTimePolicy, timeout: int, cut: int
) -> None:
    start = FIRST_HOUR - MS_PER_HOUR
    cut = max(cut, start)
    points = sorted_points(events)
    track_online = policy is BillableTimePolicy.ONLINE
    before, at_cut, after = advance_split(AgentCarry(start), points, cut, timeout, track_online, "points")
    whole, _ = advance(AgentCarry(start), points, timeout, track_online, None, "points")
    assert before + after == whole
    expected_before, expected_carry = advance(
        AgentCarry(start), [p for p in points if p.ts_ms < cut], timeout, track_online, cut, "points"
    )
    assert (before, at_cut) == (expected_before, expected_carry)


@PROPERTY_SETTINGS
@given(
    subs=subscription_sets(),
    pieces=st.lists(st.tuples(instants, st.integers(0, 3 * MS_PER_HOUR)), max_size=8),
    until=instants,
)
def test_attribute_all_equals_attribute_over_the_primary_timeline(
    subs: list[Subscription], pieces: list[tuple[int, int]], until: int
) -> None:
    pieces = [(start, start + length) for start, length in pieces]
    counted = [piece for piece in pieces if piece[0] < until]
    low = min((start for start, _ in counted), default=until)
    expected = attribute(counted, primary_segments(subs, low, until), until_ms=until)
    assert attribute_all(pieces, tuple(subs), until) == expected


@PROPERTY_SETTINGS
@given(pieces=st.lists(st.tuples(instants, st.integers(0, 3 * MS_PER_HOUR)), max_size=8))
def test_hours_touched_and_ms_by_hour_are_billable_ms_by_hour(pieces: list[tuple[int, int]]) -> None:
    pieces = [(start, start + length) for start, length in pieces]
    expected = billable_ms_by_hour(pieces)
    assert ms_by_hour(pieces) == expected
    assert hours_touched(pieces) == set(expected)
