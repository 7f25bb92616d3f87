"""Sessions and billable time: one test per clause of BILLING.md section 3 (and section 9)."""

from __future__ import annotations

import itertools

import pytest

from connect_metering.domain.instants import MS_PER_HOUR, parse_iso_ms
from connect_metering.domain.sessions import (
    DEFAULT_SILENCE_TIMEOUT_MS,
    UNKNOWN_STATUS_START_MS,
    AgentEventPoint,
    BillableTimePolicy,
    EventKind,
    Session,
    SessionEnd,
    SessionInputError,
    agents_with_billable_time,
    agents_with_billable_time_by_hour,
    billable_intervals,
    billable_ms_by_hour,
    billable_ms_by_hour_for_agents,
    is_final,
    offline_from_agent_event,
    sessions_for_agent,
    status_start_from_agent_event,
)

pytestmark = pytest.mark.unit

LOGIN, STATE_CHANGE, HEART_BEAT, LOGOUT = EventKind
ONLINE = BillableTimePolicy.ONLINE
T0 = parse_iso_ms("2026-03-02T09:00:00Z")
_ids = itertools.count()


def at(seconds: float) -> int:
    return T0 + round(seconds * 1000)


def ev(
    seconds: float,
    kind: EventKind,
    *,
    offline: bool = False,
    event_id: str | None = None,
    status_since: float | None = None,
) -> AgentEventPoint:
    """A point at T0 + seconds; ``status_since`` is its status's StartTimestamp (seconds after T0)."""
    start = UNKNOWN_STATUS_START_MS if status_since is None else at(status_since)
    return AgentEventPoint(at(seconds), kind, event_id or f"ev-{next(_ids):06d}", offline, start)


def spans(
    events: list[AgentEventPoint],
    *,
    policy: BillableTimePolicy | str = BillableTimePolicy.LOGGED_IN,
    silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS,
) -> list[tuple[float, float]]:
    """Billable intervals as seconds after T0, for readable assertions."""
    intervals = billable_intervals(events, policy=policy, silence_timeout_ms=silence_timeout_ms)
    return [((a - T0) / 1000, (b - T0) / 1000) for a, b in intervals]


def total_ms(events: list[AgentEventPoint]) -> int:
    return sum(b - a for a, b in billable_intervals(events))


# --- tie order: timestamp, then LOGIN < STATE_CHANGE < HEART_BEAT < LOGOUT, then EventId ---------------


def test_event_kinds_carry_the_tie_order_and_points_sort_by_ts_kind_event_id() -> None:
    assert [int(k) for k in (LOGIN, STATE_CHANGE, HEART_BEAT, LOGOUT)] == [0, 1, 2, 3]
    same_ts = [
        AgentEventPoint(T0, LOGOUT, "a", True),
        AgentEventPoint(T0, HEART_BEAT, "b", False),
        AgentEventPoint(T0, STATE_CHANGE, "z", False),
        AgentEventPoint(T0, STATE_CHANGE, "c", False),
        AgentEventPoint(T0, LOGIN, "y", False),
        AgentEventPoint(T0 - 1, LOGOUT, "x", True),
    ]
    assert [p.event_id for p in sorted(same_ts)] == ["x", "y", "c", "z", "b", "a"]


def test_login_and_logout_at_the_same_instant_login_is_read_first() -> None:
    # From closed: the LOGIN opens, the LOGOUT closes at once: a zero-length session, 0 ms billed.
    lone = [ev(0, LOGOUT), ev(0, LOGIN)]
    assert sessions_for_agent(lone) == [Session(at(0), at(0), at(0), SessionEnd.LOGOUT)]
    assert billable_ms_by_hour(billable_intervals(lone)) == {}
    # While open: the LOGIN extends, the LOGOUT then closes; the heartbeat 120 s later opens a new session.
    # (LOGOUT read first would let that LOGIN reopen and bill 300..420 as well.)
    events = [ev(420, HEART_BEAT), ev(300, LOGOUT), ev(300, LOGIN), ev(0, LOGIN)]
    assert spans(events) == [(0, 300), (420, 420)]


def test_heartbeat_and_logout_at_the_same_instant_heartbeat_is_read_first() -> None:
    events = [ev(240, HEART_BEAT), ev(120, LOGOUT, offline=True), ev(120, HEART_BEAT), ev(0, LOGIN)]
    # HEART_BEAT@120 extends, LOGOUT@120 closes, HEART_BEAT@240 (not Offline) opens a zero-length session.
    assert spans(events) == [(0, 120), (240, 240)]
    assert total_ms(events) == 120_000


def test_same_instant_same_kind_is_ordered_by_event_id() -> None:
    # Two status changes at the same instant: the status from then on is the later one in EventId order.
    def online_spans(offline_id: str, available_id: str) -> list[tuple[float, float]]:
        events = [
            ev(0, LOGIN),
            ev(60, STATE_CHANGE, offline=True, event_id=offline_id),
            ev(60, STATE_CHANGE, offline=False, event_id=available_id),
            ev(180, HEART_BEAT),
            ev(200, LOGOUT),
        ]
        return spans(events, policy=ONLINE)

    assert online_spans("a", "b") == [(0, 200)]
    assert online_spans("b", "a") == [(0, 60), (180, 200)]


# --- state closed ---------------------------------------------------------------------------------------


def test_closed_login_opens_even_when_its_snapshot_is_offline() -> None:
    assert sessions_for_agent([ev(0, LOGIN, offline=True), ev(30, HEART_BEAT, offline=True)]) == [
        Session(at(0), at(30), at(30), SessionEnd.OPEN)
    ]


@pytest.mark.parametrize("kind", [STATE_CHANGE, HEART_BEAT])
def test_closed_state_change_or_heartbeat_not_offline_opens(kind: EventKind) -> None:
    assert spans([ev(10, kind), ev(70, HEART_BEAT)]) == [(10, 70)]


@pytest.mark.parametrize("kind", [STATE_CHANGE, HEART_BEAT])
def test_closed_state_change_or_heartbeat_offline_is_ignored(kind: EventKind) -> None:
    assert spans([ev(10, kind, offline=True), ev(70, HEART_BEAT)]) == [(70, 70)]
    assert sessions_for_agent([ev(10, kind, offline=True)]) == []


def test_closed_logout_is_ignored() -> None:
    assert sessions_for_agent([ev(0, LOGOUT)]) == []
    assert spans([ev(0, LOGOUT), ev(50, LOGIN), ev(100, LOGOUT)]) == [(50, 100)]


# --- state open -----------------------------------------------------------------------------------------


def test_gap_of_exactly_the_silence_timeout_continues_the_session() -> None:
    events = [ev(0, LOGIN), ev(360, HEART_BEAT, offline=True), ev(720, HEART_BEAT)]
    assert sessions_for_agent(events) == [Session(at(0), at(720), at(720), SessionEnd.OPEN)]


def test_gap_just_over_the_timeout_closes_at_last_and_a_heartbeat_not_offline_reopens() -> None:
    events = [ev(0, LOGIN), ev(100, HEART_BEAT), ev(460.001, HEART_BEAT), ev(500, LOGOUT)]
    assert sessions_for_agent(events) == [
        Session(at(0), at(100), at(100), SessionEnd.SILENCE),
        Session(at(460.001), at(500), at(460.001), SessionEnd.LOGOUT),
    ]


def test_gap_just_over_the_timeout_closes_at_last_and_an_offline_heartbeat_does_not_reopen() -> None:
    events = [ev(0, LOGIN), ev(100, HEART_BEAT), ev(460.001, HEART_BEAT, offline=True), ev(500, HEART_BEAT)]
    assert spans(events) == [(0, 100), (500, 500)]


def test_login_after_the_timeout_opens_a_new_session() -> None:
    assert spans([ev(0, LOGIN), ev(400, LOGIN), ev(460, LOGOUT)]) == [(0, 0), (400, 460)]


def test_logout_after_the_timeout_does_not_stretch_the_session_to_the_logout() -> None:
    # The session closes at last; the LOGOUT is re-read in state closed, where it is ignored.
    events = [ev(0, LOGIN), ev(120, HEART_BEAT), ev(480.001, LOGOUT)]
    assert sessions_for_agent(events) == [Session(at(0), at(120), at(120), SessionEnd.SILENCE)]


def test_silence_timeout_is_a_parameter() -> None:
    events = [ev(0, LOGIN), ev(60, HEART_BEAT), ev(121, HEART_BEAT)]
    assert spans(events, silence_timeout_ms=60_000) == [(0, 60), (121, 121)]
    assert spans(events, silence_timeout_ms=0) == [(0, 0), (60, 60), (121, 121)]
    assert spans(events) == [(0, 121)]


def test_open_logout_within_the_timeout_closes_at_its_timestamp() -> None:
    assert sessions_for_agent([ev(0, LOGIN), ev(120, HEART_BEAT), ev(300, LOGOUT)]) == [
        Session(at(0), at(300), at(120), SessionEnd.LOGOUT)
    ]


def test_open_other_events_set_last_whatever_their_status() -> None:
    # An Offline STATE_CHANGE / HEART_BEAT while logged in keeps the session alive (logged_in policy).
    events = [ev(0, LOGIN), ev(300, STATE_CHANGE, offline=True), ev(600, HEART_BEAT, offline=True)]
    assert spans(events) == [(0, 600)]


def test_login_while_open_extends_and_does_not_restart() -> None:
    events = [ev(0, LOGIN), ev(200, LOGIN), ev(400, HEART_BEAT)]
    assert sessions_for_agent(events) == [Session(at(0), at(400), at(400), SessionEnd.OPEN)]


def test_heartbeat_after_logout_offline_is_ignored() -> None:
    events = [ev(0, LOGIN), *(ev(120 * k, HEART_BEAT) for k in range(1, 5)), ev(600, LOGOUT, offline=True)]
    events += [ev(600 + 120 * k, HEART_BEAT, offline=True) for k in range(1, 30)]
    assert spans(events) == [(0, 600)]


def test_heartbeat_after_logout_not_offline_opens_a_new_session() -> None:
    events = [ev(0, LOGIN), ev(300, HEART_BEAT), ev(600, LOGOUT), ev(720, HEART_BEAT), ev(840, HEART_BEAT)]
    assert spans(events) == [(0, 600), (720, 840)]


# --- offline, whatever the status is called (section 3): StartTimestamp against the latest LOGOUT -------


def _renamed_offline_shift() -> list[AgentEventPoint]:
    """Issue 9's shift: 37 minutes logged in, then an hour of Connect's post-logout heartbeats whose
    status (Offline renamed "Signed out") started at the logout."""
    events = [ev(0, LOGIN, status_since=-5)]
    events += [ev(120 * k, HEART_BEAT, status_since=0) for k in range(1, 19)]
    events.append(ev(37 * 60, LOGOUT, status_since=37 * 60 + 0.4))
    events += [ev(37 * 60 + 120 * k, HEART_BEAT, status_since=37 * 60 + 0.4) for k in range(1, 31)]
    return events


def test_renamed_offline_heartbeats_after_logout_never_reopen_a_session() -> None:
    assert spans(_renamed_offline_shift()) == [(0, 37 * 60)]
    assert total_ms(_renamed_offline_shift()) == 37 * 60_000


def test_a_status_entered_up_to_60_s_after_the_logout_is_offline() -> None:
    events = [ev(0, LOGIN), ev(300, LOGOUT), ev(420, HEART_BEAT, status_since=360), ev(540, HEART_BEAT)]
    assert spans(events[:3]) == [(0, 300)]
    # A status entered 61 s after the logout is a new one: the agent is back, the heartbeat opens.
    later = [ev(0, LOGIN), ev(300, LOGOUT), ev(420, HEART_BEAT, status_since=361), ev(540, HEART_BEAT)]
    assert spans(later) == [(0, 300), (420, 540)]


def test_a_status_without_start_timestamp_is_offline_by_its_name_only() -> None:
    events = [ev(0, LOGIN), ev(300, LOGOUT), ev(420, HEART_BEAT), ev(540, HEART_BEAT, offline=True)]
    assert spans(events) == [(0, 300), (420, 540)]  # the unnamed status reopens; open, any event extends
    events = [ev(0, LOGIN), ev(300, LOGOUT), ev(420, HEART_BEAT, offline=True)]
    assert spans(events) == [(0, 300)]


def test_a_login_ends_the_post_logout_status() -> None:
    # After a new LOGIN the old status start no longer makes anything offline.
    events = [
        ev(0, LOGIN),
        ev(300, LOGOUT),
        ev(400, LOGIN),
        ev(500, LOGOUT),
        ev(600, HEART_BEAT, status_since=0),
    ]
    assert spans(events) == [(0, 300), (400, 500)]
    events = [ev(0, LOGIN), ev(300, LOGOUT), ev(400, LOGIN), ev(520, HEART_BEAT, status_since=290)]
    assert spans(events) == [(0, 300), (400, 520)]


def test_login_and_logout_at_one_instant_leave_the_agent_logged_out() -> None:
    # Scan order reads the LOGIN first, so the LOGOUT is the latest: the status started then is offline.
    events = [ev(0, LOGIN), ev(0, LOGOUT), ev(120, HEART_BEAT, status_since=0)]
    assert spans(events) == [(0, 0)]


def test_post_logout_status_holds_for_24_hours_then_only_its_name_counts() -> None:
    day = 24 * 3600
    events = [ev(0, LOGIN), ev(300, LOGOUT), ev(300 + day, HEART_BEAT, status_since=300)]
    assert spans(events) == [(0, 300)]
    events = [ev(0, LOGIN), ev(300, LOGOUT), ev(300 + day + 1, HEART_BEAT, status_since=300)]
    assert spans(events) == [(0, 300), (300 + day + 1, 300 + day + 1)]


def test_online_policy_counts_the_post_logout_status_as_offline() -> None:
    events = [
        ev(0, LOGIN),
        ev(300, LOGOUT),
        ev(360, STATE_CHANGE, status_since=400),
        ev(480, HEART_BEAT, status_since=330),
    ]
    # The STATE_CHANGE's status began 100 s after the logout: it opens; the heartbeat after it carries
    # a status older than that one, which the rule (StartTimestamp <= LOGOUT + 60 s) calls offline.
    assert spans(events, policy=ONLINE) == [(0, 300), (360, 480)]


def test_status_start_is_read_from_the_agent_event() -> None:
    event = {
        "CurrentAgentSnapshot": {
            "AgentStatus": {"Name": "Signed out", "StartTimestamp": "2026-03-02T09:00:01.500Z"}
        }
    }
    assert status_start_from_agent_event(event) == at(1.5)
    assert not offline_from_agent_event(event)
    for unreadable in ({}, {"CurrentAgentSnapshot": {"AgentStatus": {"StartTimestamp": "yesterday"}}}):
        assert status_start_from_agent_event(unreadable) == UNKNOWN_STATUS_START_MS


# --- end of the data ------------------------------------------------------------------------------------


def test_missing_logout_covers_start_to_last_only() -> None:
    # Section 9: time between the last event and "now" (or a subscription's end) is never billed.
    events = [ev(0, LOGIN), ev(120, HEART_BEAT), ev(240, HEART_BEAT)]
    (session,) = sessions_for_agent(events)
    assert session == Session(at(0), at(240), at(240), SessionEnd.OPEN)
    assert not session.closed
    assert total_ms(events) == 240_000


def test_open_session_is_extended_by_later_events_and_final_only_after_the_timeout() -> None:
    events = [ev(0, LOGIN), ev(120, HEART_BEAT)]
    (session,) = sessions_for_agent(events)
    assert not is_final(session, at(120) + DEFAULT_SILENCE_TIMEOUT_MS, DEFAULT_SILENCE_TIMEOUT_MS)
    assert is_final(session, at(120) + DEFAULT_SILENCE_TIMEOUT_MS + 1, DEFAULT_SILENCE_TIMEOUT_MS)
    assert sessions_for_agent([*events, ev(480, HEART_BEAT)]) == [
        Session(at(0), at(480), at(480), SessionEnd.OPEN)
    ]


def test_closed_sessions_are_final() -> None:
    closed = sessions_for_agent([ev(0, LOGIN), ev(10, LOGOUT), ev(400, HEART_BEAT)])
    assert [s.end_reason for s in closed] == [SessionEnd.LOGOUT, SessionEnd.OPEN]
    assert is_final(closed[0], at(10), DEFAULT_SILENCE_TIMEOUT_MS)
    timed_out = sessions_for_agent([ev(0, LOGIN), ev(361, HEART_BEAT)])[0]
    assert timed_out.closed and is_final(timed_out, at(0), DEFAULT_SILENCE_TIMEOUT_MS)


def test_result_depends_only_on_the_set_of_events() -> None:
    events = [ev(0, LOGIN), ev(60, STATE_CHANGE), ev(180, HEART_BEAT), ev(200, LOGOUT), ev(320, HEART_BEAT)]
    expected = billable_intervals(events)
    for order in itertools.permutations(events):
        assert billable_intervals(order) == expected


# --- duplicates (EventId) -------------------------------------------------------------------------------


def test_duplicates_by_event_id_count_once() -> None:
    login, beat, logout = ev(0, LOGIN), ev(120, HEART_BEAT), ev(200, LOGOUT)
    assert spans([logout, beat, login, beat, logout, login, logout]) == [(0, 200)]


def test_conflicting_points_with_one_event_id_keep_the_first_in_sorted_order() -> None:
    # A second point reusing an EventId is dropped whatever the input order: the result depends on the set.
    events = [ev(0, LOGIN), ev(120, HEART_BEAT, event_id="hb"), ev(300, HEART_BEAT, event_id="hb")]
    assert spans(events) == [(0, 120)]
    assert spans(list(reversed(events))) == [(0, 120)]
    same_ts = [ev(0, STATE_CHANGE, offline=True, event_id="x"), ev(0, STATE_CHANGE, event_id="x")]
    # Same instant, kind and id: the tie goes to offline=False (False < True), which opens.
    assert spans(same_ts) == spans(list(reversed(same_ts))) == [(0, 0)]


# --- hourly split ---------------------------------------------------------------------------------------


def test_session_crossing_hours_is_split_exactly_at_hour_boundaries() -> None:
    start, end = parse_iso_ms("2026-03-02T10:59:30Z"), parse_iso_ms("2026-03-02T12:00:30.500Z")
    h10 = parse_iso_ms("2026-03-02T10:00:00Z")
    beats = [AgentEventPoint(ts, HEART_BEAT, f"h{ts}", False) for ts in range(start, end, 120_000)]
    events = [AgentEventPoint(start, LOGIN, "a", False), *beats, AgentEventPoint(end, LOGOUT, "b", True)]
    by_hour = billable_ms_by_hour(billable_intervals(events))
    assert by_hour == {h10: 30_000, h10 + MS_PER_HOUR: MS_PER_HOUR, h10 + 2 * MS_PER_HOUR: 30_500}
    assert sum(by_hour.values()) == end - start


def test_session_crossing_midnight_is_split_across_days() -> None:
    midnight = parse_iso_ms("2026-03-03T00:00:00Z")
    events = [AgentEventPoint(midnight - 600_001, LOGIN, "a", False)]
    events += [
        AgentEventPoint(midnight - 600_001 + 120_000 * k, HEART_BEAT, f"h{k}", False) for k in range(1, 10)
    ]
    events.append(AgentEventPoint(midnight + 600_000, LOGOUT, "z", True))
    assert billable_ms_by_hour(billable_intervals(events)) == {
        midnight - MS_PER_HOUR: 600_001,
        midnight: 600_000,
    }


def test_hour_boundaries_are_half_open_and_zero_length_gives_no_key() -> None:
    h = parse_iso_ms("2026-03-02T10:00:00Z")
    assert billable_ms_by_hour([(h - 1_000, h)]) == {h - MS_PER_HOUR: 1_000}
    assert billable_ms_by_hour([(h, h + 1)]) == {h: 1}
    assert billable_ms_by_hour([(h, h + MS_PER_HOUR)]) == {h: MS_PER_HOUR}
    assert billable_ms_by_hour([(h, h), (h + 5, h + 5)]) == {}
    assert billable_ms_by_hour([(h, h + 10), (h + 20, h + 30)]) == {h: 20}


def test_hourly_split_handles_instants_before_the_epoch() -> None:
    assert billable_ms_by_hour([(-MS_PER_HOUR - 5, -MS_PER_HOUR + 5)]) == {
        -2 * MS_PER_HOUR: 5,
        -MS_PER_HOUR: 5,
    }


# --- online policy --------------------------------------------------------------------------------------


def test_online_is_not_the_default_policy() -> None:
    events = [ev(0, LOGIN), ev(60, STATE_CHANGE, offline=True), ev(300, LOGOUT)]
    assert spans(events) == spans(events, policy=BillableTimePolicy.LOGGED_IN) == [(0, 300)]
    assert spans(events, policy=ONLINE) == [(0, 60)]


def test_online_removes_offline_stretches_inside_the_session() -> None:
    events = [
        ev(0, LOGIN),
        ev(100, STATE_CHANGE, offline=True),
        ev(220, HEART_BEAT, offline=True),
        ev(300, STATE_CHANGE),
        ev(420, HEART_BEAT),
        ev(500, LOGOUT, offline=True),
    ]
    assert spans(events, policy=ONLINE) == [(0, 100), (300, 500)]
    assert spans(events) == [(0, 500)]


def test_online_an_offline_login_opens_but_is_not_online_until_another_status() -> None:
    events = [ev(0, LOGIN, offline=True), ev(45, STATE_CHANGE), ev(165, HEART_BEAT), ev(200, LOGOUT)]
    assert spans(events) == [(0, 200)]
    assert spans(events, policy=ONLINE) == [(45, 200)]


def test_online_the_logout_status_covers_no_time() -> None:
    # The time before the LOGOUT keeps the status of the event before it, whatever the LOGOUT says.
    for logout_offline in (True, False):
        events = [ev(0, LOGIN), ev(100, LOGOUT, offline=logout_offline)]
        assert spans(events, policy=ONLINE) == [(0, 100)]


def test_online_silence_timeout_closes_the_online_stretch_at_last() -> None:
    events = [ev(0, LOGIN), ev(120, HEART_BEAT), ev(600, HEART_BEAT), ev(720, STATE_CHANGE, offline=True)]
    assert spans(events, policy=ONLINE) == [(0, 120), (600, 720)]


def test_policy_accepts_its_string_value_and_refuses_others() -> None:
    events = [ev(0, LOGIN, offline=True), ev(100, HEART_BEAT)]
    assert billable_intervals(events, policy="online") == billable_intervals(events, policy=ONLINE) == []
    with pytest.raises(SessionInputError, match=r"policy: must be one of logged_in, online"):
        billable_intervals(events, policy="Online")


# --- status of a raw agent event (missing snapshot) -----------------------------------------------------


@pytest.mark.parametrize(
    ("agent_event", "offline"),
    [
        ({"CurrentAgentSnapshot": {"AgentStatus": {"Name": "Offline", "ARN": "arn"}}}, True),
        ({"CurrentAgentSnapshot": {"AgentStatus": {"Name": "Available"}}}, False),
        ({"CurrentAgentSnapshot": {"AgentStatus": {"Name": "offline"}}}, False),
        ({"CurrentAgentSnapshot": {"AgentStatus": {}}}, False),
        ({"CurrentAgentSnapshot": {}}, False),
        ({"CurrentAgentSnapshot": None}, False),
        ({}, False),
    ],
)
def test_missing_snapshot_or_status_is_not_offline(agent_event: dict[str, object], offline: bool) -> None:
    assert offline_from_agent_event(agent_event) is offline


def test_heartbeat_without_a_status_opens_a_session() -> None:
    beat = ev(0, HEART_BEAT, offline=offline_from_agent_event({"EventType": "HEART_BEAT"}))
    assert spans([beat, ev(120, HEART_BEAT)]) == [(0, 120)]


def test_event_type_is_case_sensitive() -> None:
    assert EventKind.from_event_type("HEART_BEAT") is HEART_BEAT
    with pytest.raises(SessionInputError, match=r"EventType: 'login' is not one of"):
        EventKind.from_event_type("login")


# --- several agents and contract pricing N(H) -----------------------------------------------------------


def test_hours_for_agents_and_agents_with_billable_time() -> None:
    h = T0  # 2026-03-02T09:00:00Z, a whole hour
    per_agent = billable_ms_by_hour_for_agents(
        {
            "agent/a": [ev(0, LOGIN), ev(10, LOGOUT)],
            "agent/b": [ev(3599.999, LOGIN), ev(3600.5, LOGOUT)],
            "agent/c": [ev(5, LOGIN), ev(5, LOGOUT)],  # zero length: no billable time
            "agent/d": [ev(5, HEART_BEAT, offline=True)],
        }
    )
    assert per_agent == {
        "agent/a": {h: 10_000},
        "agent/b": {h: 1, h + MS_PER_HOUR: 500},
        "agent/c": {},
        "agent/d": {},
    }
    assert agents_with_billable_time(per_agent, h) == 2
    assert agents_with_billable_time(per_agent, h + MS_PER_HOUR) == 1
    assert agents_with_billable_time(per_agent, h + 2 * MS_PER_HOUR) == 0
    assert agents_with_billable_time({"x": {h: 0}}, h) == 0
    assert agents_with_billable_time_by_hour(per_agent) == {h: 2, h + MS_PER_HOUR: 1}


def test_hours_for_agents_honours_policy_and_timeout() -> None:
    events = {"agent/a": [ev(0, LOGIN, offline=True), ev(100, STATE_CHANGE), ev(200, HEART_BEAT)]}
    assert billable_ms_by_hour_for_agents(events, policy=ONLINE) == {"agent/a": {T0: 100_000}}
    assert billable_ms_by_hour_for_agents(events) == {"agent/a": {T0: 200_000}}
    assert billable_ms_by_hour_for_agents(events, silence_timeout_ms=100_000) == {"agent/a": {T0: 200_000}}
    assert billable_ms_by_hour_for_agents(events, silence_timeout_ms=99_999) == {"agent/a": {}}


# --- validation: every error names the field and the rule -----------------------------------------------


@pytest.mark.parametrize("timeout", [-1, 1.5, True, "360000"])
def test_bad_silence_timeout_is_refused(timeout: object) -> None:
    with pytest.raises(SessionInputError, match=r"silence_timeout_ms: must be an integer .* >= 0"):
        sessions_for_agent([], silence_timeout_ms=timeout)  # type: ignore[arg-type]
    with pytest.raises(SessionInputError, match=r"silence_timeout_ms"):
        billable_ms_by_hour_for_agents({}, silence_timeout_ms=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (AgentEventPoint(1.5, LOGIN, "a", False), r"events\[1\]\.ts_ms: must be integer epoch ms"),  # type: ignore[arg-type]
        (AgentEventPoint(0, 7, "a", False), r"events\[1\]\.kind: must be an EventKind"),  # type: ignore[arg-type]
        (AgentEventPoint(0, LOGIN, 5, False), r"events\[1\]\.event_id: must be a string"),  # type: ignore[arg-type]
        (AgentEventPoint(0, LOGIN, "a", None), r"events\[1\]\.offline: must be a bool"),  # type: ignore[arg-type]
        (AgentEventPoint(0, True, "a", False), r"events\[1\]\.kind: must be an EventKind"),  # type: ignore[arg-type]
        (AgentEventPoint(0, LOGIN, "a", False, 1.5), r"events\[1\]\.status_start_ms: must be integer"),  # type: ignore[arg-type]
        ((0, LOGIN), r"events\[1\]: must be an AgentEventPoint"),
        (None, r"events\[1\]: must be an AgentEventPoint"),
    ],
)
def test_malformed_points_are_refused(point: AgentEventPoint, message: str) -> None:
    with pytest.raises(SessionInputError, match=message):
        sessions_for_agent([ev(0, LOGIN), point])


def test_a_plain_tuple_of_the_five_fields_is_a_point() -> None:
    # The checks read the fields, not the class: a tuple in the point's shape scans like the point.
    plain = (T0 + 60_000, int(LOGOUT), "b", True, UNKNOWN_STATUS_START_MS)
    expected = sessions_for_agent([ev(0, LOGIN), AgentEventPoint(*plain)])  # type: ignore[arg-type]
    assert sessions_for_agent([ev(0, LOGIN), plain]) == expected  # type: ignore[list-item]


def test_bad_intervals_hours_and_now_are_refused() -> None:
    with pytest.raises(SessionInputError, match=r"intervals\[1\]: end 4 is before start 5"):
        billable_ms_by_hour([(0, 1), (5, 4)])
    with pytest.raises(SessionInputError, match=r"intervals\[0\]: bounds must be integer epoch ms"):
        billable_ms_by_hour([(0.5, 1)])  # type: ignore[list-item]
    with pytest.raises(SessionInputError, match=r"hour_ms: must be the epoch ms of a whole UTC hour"):
        agents_with_billable_time({}, T0 + 1)
    session = Session(0, 0, 0, SessionEnd.OPEN)
    with pytest.raises(SessionInputError, match=r"now_ms: must be integer epoch ms"):
        is_final(session, 1.0, DEFAULT_SILENCE_TIMEOUT_MS)  # type: ignore[arg-type]
    with pytest.raises(SessionInputError, match=r"silence_timeout_ms"):
        is_final(session, 0, -5)
