"""Property tests of the session core: order, duplication, exact hourly split, bounds, policies."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.domain.instants import MS_PER_HOUR, hour_floor, parse_iso_ms
from connect_metering.domain.sessions import (
    LOGOUT_STATUS_GRACE_MS,
    UNKNOWN_STATUS_START_MS,
    AgentEventPoint,
    BillableTimePolicy,
    EventKind,
    ScanState,
    billable_intervals,
    billable_ms_by_hour,
    billable_ms_by_hour_for_agents,
    scan_pieces,
    scan_spans,
    sessions_for_agent,
)

pytestmark = pytest.mark.unit

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)
BASE_MS = parse_iso_ms("2026-03-02T23:20:00Z")  # the streams cross hours and midnight
STEP_MS = 30_000
TIMEOUTS = st.sampled_from([360_000, 360_000, 120_000, 0])
POLICIES = st.sampled_from(list(BillableTimePolicy))

# How long before its event a status started: unknown (offline by name only), or a few steps back, so
# that statuses entered around a LOGOUT (the post-logout rule of section 3) come up often.
STATUS_AGES = st.one_of(st.none(), st.integers(0, 8).map(lambda steps: steps * STEP_MS))


def _point(ts_ms: int, kind: EventKind, event_id: str, offline: bool, age: int | None) -> AgentEventPoint:
    start = UNKNOWN_STATUS_START_MS if age is None else ts_ms - age
    return AgentEventPoint(ts_ms, kind, event_id, offline, start)


points = st.builds(
    _point,
    st.builds(
        lambda step, jitter: BASE_MS + step * STEP_MS + jitter,
        st.integers(0, 200),
        st.sampled_from([0, 0, 0, 1, -1, 999]),
    ),
    st.sampled_from(list(EventKind)),
    st.integers(0, 80).map(lambda n: f"e{n:02d}"),  # a small id space: some ids collide
    st.booleans(),
    STATUS_AGES,
)
point_lists = st.lists(points, max_size=60)


def _total(intervals: list[tuple[int, int]]) -> int:
    return sum(b - a for a, b in intervals)


@PROPERTY_SETTINGS
@given(events=point_lists, data=st.data(), policy=POLICIES, timeout=TIMEOUTS)
def test_any_permutation_and_duplication_gives_the_same_hours(
    events: list[AgentEventPoint], data: st.DataObject, policy: BillableTimePolicy, timeout: int
) -> None:
    shuffled = data.draw(st.permutations(events))
    copies = data.draw(st.lists(st.sampled_from(events), max_size=20)) if events else []
    arrival = data.draw(st.permutations([*shuffled, *copies]))
    expected = billable_ms_by_hour(billable_intervals(events, policy=policy, silence_timeout_ms=timeout))
    got = billable_ms_by_hour(billable_intervals(arrival, policy=policy, silence_timeout_ms=timeout))
    assert got == expected
    assert sessions_for_agent(arrival, silence_timeout_ms=timeout) == sessions_for_agent(
        events, silence_timeout_ms=timeout
    )


@PROPERTY_SETTINGS
@given(events=point_lists, policy=POLICIES, timeout=TIMEOUTS)
def test_hourly_split_sums_to_the_total(
    events: list[AgentEventPoint], policy: BillableTimePolicy, timeout: int
) -> None:
    intervals = billable_intervals(events, policy=policy, silence_timeout_ms=timeout)
    by_hour = billable_ms_by_hour(intervals)
    assert sum(by_hour.values()) == _total(intervals)
    assert all(ms > 0 and ms <= MS_PER_HOUR and hour % MS_PER_HOUR == 0 for hour, ms in by_hour.items())


@PROPERTY_SETTINGS
@given(
    intervals=st.lists(
        st.tuples(st.integers(-3 * MS_PER_HOUR, 5 * MS_PER_HOUR), st.integers(0, 3 * MS_PER_HOUR)).map(
            lambda pair: (pair[0], pair[0] + pair[1])
        ),
        max_size=8,
    )
)
def test_hourly_split_matches_overlap_with_each_hour(intervals: list[tuple[int, int]]) -> None:
    expected: Counter[int] = Counter()
    for a, b in intervals:
        for hour in range(hour_floor(a), b, MS_PER_HOUR):
            expected[hour] += max(0, min(b, hour + MS_PER_HOUR) - max(a, hour))
    assert billable_ms_by_hour(intervals) == {hour: ms for hour, ms in sorted(expected.items()) if ms > 0}


@PROPERTY_SETTINGS
@given(events=point_lists, policy=POLICIES, timeout=TIMEOUTS)
def test_billable_time_never_exceeds_the_span_of_the_events(
    events: list[AgentEventPoint], policy: BillableTimePolicy, timeout: int
) -> None:
    intervals = billable_intervals(events, policy=policy, silence_timeout_ms=timeout)
    if not events:
        assert intervals == []
        return
    first, last = min(p.ts_ms for p in events), max(p.ts_ms for p in events)
    assert _total(intervals) <= last - first
    assert all(first <= a <= b <= last for a, b in intervals)
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(intervals))


@PROPERTY_SETTINGS
@given(events=point_lists, timeout=TIMEOUTS)
def test_online_never_exceeds_logged_in_in_any_hour(events: list[AgentEventPoint], timeout: int) -> None:
    logged_in, online = (
        billable_ms_by_hour_for_agents({"agent": events}, policy=policy, silence_timeout_ms=timeout)["agent"]
        for policy in (BillableTimePolicy.LOGGED_IN, BillableTimePolicy.ONLINE)
    )
    assert all(ms <= logged_in.get(hour, 0) for hour, ms in online.items())


def _reference(events: list[AgentEventPoint], timeout: int) -> tuple[list[tuple[int, int]], int]:
    """Section 3 read literally (explicit re-read), and online time by sampling the status per step.

    Only for points on the STEP_MS grid: the status is then constant inside each step.
    Returns the logged-in intervals and the online ms.
    """
    unique: dict[str, AgentEventPoint] = {}
    for point in sorted(events):
        unique.setdefault(point.event_id, point)
    ordered = [_offline_as_scanned(sorted(unique.values()), index) for index in range(len(unique))]
    sessions: list[tuple[int, int, list[AgentEventPoint]]] = []
    state = "closed"
    start = last = 0
    members: list[AgentEventPoint] = []
    index = 0
    while index < len(ordered):
        event = ordered[index]
        if state == "closed":
            opens = event.kind == EventKind.LOGIN or (
                event.kind in (EventKind.STATE_CHANGE, EventKind.HEART_BEAT) and not event.offline
            )
            if opens:
                state, start, last, members = "open", event.ts_ms, event.ts_ms, [event]
            index += 1
            continue
        if event.ts_ms - last > timeout:
            sessions.append((start, last, members))
            state = "closed"
            continue  # re-read the same event in state closed
        members.append(event)
        if event.kind == EventKind.LOGOUT:
            sessions.append((start, event.ts_ms, members))
            state = "closed"
        else:
            last = event.ts_ms
        index += 1
    if state == "open":
        sessions.append((start, last, members))
    online_ms = 0
    for begin, end, session_events in sessions:
        for step_start in range(begin, end, STEP_MS):
            status_event = [p for p in session_events if p.ts_ms <= step_start][-1]
            online_ms += 0 if status_event.offline else STEP_MS
    return [(begin, end) for begin, end, _ in sessions], online_ms


def _offline_as_scanned(ordered: list[AgentEventPoint], index: int) -> AgentEventPoint:
    """The point with ``offline`` as section 3 defines it: named Offline, or the agent's latest LOGOUT
    earlier in the scan order is later than its latest LOGIN earlier in the scan order (or there is no
    such LOGIN) and the status started at most 60 s after that LOGOUT (within the 24 h memory)."""
    point = ordered[index]
    earlier = ordered[:index]
    logouts = [i for i, p in enumerate(earlier) if p.kind == EventKind.LOGOUT]
    logins = [i for i, p in enumerate(earlier) if p.kind == EventKind.LOGIN]
    after_logout = bool(logouts) and (not logins or logouts[-1] > logins[-1])
    logout_ms = earlier[logouts[-1]].ts_ms if after_logout else None
    post_logout = (
        logout_ms is not None
        and point.status_start_ms <= logout_ms + LOGOUT_STATUS_GRACE_MS
        and point.ts_ms - logout_ms <= 24 * MS_PER_HOUR
    )
    return point._replace(offline=point.offline or post_logout)


grid_points = st.builds(
    _point,
    st.integers(0, 60).map(lambda step: BASE_MS + step * STEP_MS),
    st.sampled_from(list(EventKind)),
    st.integers(0, 40).map(lambda n: f"e{n:02d}"),
    st.booleans(),
    STATUS_AGES,
)


@PROPERTY_SETTINGS
@given(events=st.lists(grid_points, max_size=40), timeout=st.sampled_from([360_000, 60_000, 30_000, 0]))
def test_scan_matches_a_literal_reference(events: list[AgentEventPoint], timeout: int) -> None:
    logged_in, online_ms = _reference(events, timeout)
    assert billable_intervals(events, silence_timeout_ms=timeout) == logged_in
    online = billable_intervals(events, policy=BillableTimePolicy.ONLINE, silence_timeout_ms=timeout)
    assert _total(online) == online_ms


def _joined(pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Touching pieces ([a, b] then [b, c]) joined, in order."""
    spans: list[tuple[int, int]] = []
    for low, high in pieces:
        if spans and spans[-1][1] == low:
            spans[-1] = (spans[-1][0], high)
        else:
            spans.append((low, high))
    return spans


scan_states = st.one_of(
    st.just(ScanState()),
    st.builds(
        ScanState,
        st.booleans(),
        st.integers(BASE_MS - 600_000, BASE_MS),
        st.integers(BASE_MS - 400_000, BASE_MS),
        st.booleans(),
        st.one_of(st.none(), st.integers(BASE_MS - 120_000, BASE_MS)),
    ).map(lambda state: state._replace(start_ms=min(state.start_ms, state.last_ms))),
)


@PROPERTY_SETTINGS
@given(
    events=point_lists,
    timeout=TIMEOUTS,
    track_online=st.booleans(),
    state=scan_states,
    seen=st.sets(st.integers(0, 80).map(lambda n: f"e{n:02d}"), max_size=5),
    cut=st.integers(0, 60),
)
def test_scan_spans_are_the_joined_pieces_of_scan_pieces(
    events: list[AgentEventPoint],
    timeout: int,
    track_online: bool,
    state: ScanState,
    seen: set[str],
    cut: int,
) -> None:
    points = sorted(events)
    seen_pieces, seen_spans = set(seen), set(seen)
    # In two parts sharing ``seen``, as advance_split runs them.
    pieces, after_pieces = scan_pieces(points[:cut], timeout, track_online, state, seen_pieces)
    spans, after_spans = scan_spans(points[:cut], timeout, track_online, state, seen_spans)
    assert (spans, after_spans, seen_spans) == (_joined(pieces), after_pieces, seen_pieces)
    pieces, end_pieces = scan_pieces(points[cut:], timeout, track_online, after_pieces, seen_pieces)
    spans, end_spans = scan_spans(points[cut:], timeout, track_online, after_spans, seen_spans)
    assert (spans, end_spans, seen_spans) == (_joined(pieces), end_pieces, seen_pieces)
    assert sum(high - low for low, high in spans) == sum(high - low for low, high in pieces)
