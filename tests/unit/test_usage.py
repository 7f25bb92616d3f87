"""Incremental billable time (domain/usage.py): boundaries, checkpoints, attribution, quantities."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from connect_metering.domain.agent_carry import AgentCarry, advance_agent
from connect_metering.domain.attribution import attribute, primary_segments
from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_MINUTE, from_ms, parse_iso_ms
from connect_metering.domain.quantity import hour_quantity, usage_allocations
from connect_metering.domain.sessions import (
    AgentEventPoint,
    BillableTimePolicy,
    EventKind,
    SessionInputError,
    billable_intervals,
    billable_ms_by_hour,
)
from connect_metering.domain.tenancy import Subscription, build
from connect_metering.domain.usage import EnvironmentCheckpoint, checkpoint_from_events, resume
from connect_metering.domain.usage_inputs import UsageInputError

pytestmark = pytest.mark.unit

LOGIN, STATE_CHANGE, HEART_BEAT, LOGOUT = EventKind
ONLINE = BillableTimePolicy.ONLINE
H0 = parse_iso_ms("2026-03-02T09:00:00Z")
X = H0 + MS_PER_HOUR  # the boundary used by most tests
SEC = 1_000
MIN = MS_PER_MINUTE
INSTANCE = "arn:aws:connect:eu-west-2:123456789012:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111"
AGENT_A = f"{INSTANCE}/agent/aaaa"
AGENT_B = f"{INSTANCE}/agent/bbbb"
_ids = itertools.count()


def ev(ts_ms: int, kind: EventKind, *, offline: bool = False) -> AgentEventPoint:
    return AgentEventPoint(ts_ms, kind, f"ev-{next(_ids):06d}", offline)


def license_arn(suffix: str) -> str:
    return f"arn:aws:license-manager::123456789012:license:l-{suffix}"


def subscription(
    suffix: str, started_ms: int | None, ended_ms: int | None = None, **extra: object
) -> Subscription:
    return build(
        Subscription,
        company_alias="acme",
        identity={"customer_aws_account_id": "210987654321", "license_arn": license_arn(suffix)},
        pricing=extra.pop("pricing", "usage"),
        started=None if started_ms is None else from_ms(started_ms),
        ended=None if ended_ms is None else from_ms(ended_ms),
        **extra,
    )


OLD = subscription("old", H0 - 24 * MS_PER_HOUR)


def split(
    events: list[AgentEventPoint], boundary: int
) -> tuple[list[AgentEventPoint], list[AgentEventPoint]]:
    return [e for e in events if e.ts_ms < boundary], [e for e in events if e.ts_ms >= boundary]


def whole_hours(
    events: list[AgentEventPoint], policy: BillableTimePolicy | str = "logged_in"
) -> dict[int, int]:
    return billable_ms_by_hour(billable_intervals(events, policy=policy))


# --- advance_agent at a boundary ------------------------------------------------------------------


def test_session_crossing_the_boundary_straddles_it() -> None:
    events = [ev(X - 10 * MIN, LOGIN), ev(X - 4 * MIN, HEART_BEAT), ev(X + 2 * MIN, HEART_BEAT)]
    events.append(ev(X + 4 * MIN, LOGOUT))
    before, after = split(events, X)
    first, carry = advance_agent(None, before, boundary_ms=X)
    assert first == [(X - 10 * MIN, X - 4 * MIN)]
    assert carry == AgentCarry(X, True, X - 10 * MIN, X - 4 * MIN, True)
    second, end = advance_agent(carry, after)
    assert second == [(X - 4 * MIN, X + 2 * MIN), (X + 2 * MIN, X + 4 * MIN)]
    assert not end.is_open
    assert billable_ms_by_hour(first + second) == whole_hours(events) == {H0: 10 * MIN, X: 4 * MIN}


def test_straddling_time_is_counted_in_the_earlier_hour_when_clipped() -> None:
    events = [ev(X - 10 * MIN, LOGIN), ev(X - 4 * MIN, HEART_BEAT), ev(X + 2 * MIN, HEART_BEAT)]
    view = resume(EnvironmentCheckpoint.empty(H0), {AGENT_A: events}, [OLD], until_ms=X)
    # [X-10m, X-4m] and the part of [X-4m, X+2m] before X: 10 minutes in hour H0.
    assert view.total_ms(OLD.key) == 10 * MIN
    assert view.billable_ms_by_hour == {H0: 10 * MIN}
    later = resume(view.checkpoint_at(X), {AGENT_A: events[2:]}, [OLD], until_ms=X + MS_PER_HOUR)
    assert later.total_ms(OLD.key) == 12 * MIN
    assert later.billable_ms_by_hour == {X: 2 * MIN}


def test_login_just_before_the_boundary_with_the_next_heartbeat_after_it() -> None:
    events = [ev(X - SEC, LOGIN), ev(X + 30 * SEC, HEART_BEAT)]
    checkpoint = checkpoint_from_events({AGENT_A: events}, [OLD], X)
    assert checkpoint.billed_ms == {}
    assert checkpoint.carries == {AGENT_A: AgentCarry(X, True, X - SEC, X - SEC, True)}
    assert checkpoint.agent_hours == {}  # no time known before X yet
    view = resume(checkpoint, {AGENT_A: events[1:]}, [OLD], until_ms=X + MS_PER_HOUR)
    assert view.total_ms(OLD.key) == 31 * SEC
    assert view.billable_ms_by_hour == {X: 30 * SEC}
    # The straddling piece gives the agent time in the hour before X too.
    assert view.agents_by_hour == {H0: frozenset({AGENT_A}), X: frozenset({AGENT_A})}
    assert view.agent_count(H0) == view.agent_count(X) == 1


def test_silence_timeout_exactly_at_the_boundary_keeps_the_session_open() -> None:
    events = [ev(X - 7 * MIN, LOGIN), ev(X - 6 * MIN, HEART_BEAT), ev(X, HEART_BEAT)]
    before, after = split(events, X)
    _, carry = advance_agent(None, before, boundary_ms=X)
    assert carry.is_open  # X - last == 360 s: not more than the timeout
    pieces, _ = advance_agent(carry, after)
    assert pieces == [(X - 6 * MIN, X)]
    assert billable_ms_by_hour(pieces) == {H0: 6 * MIN}
    assert whole_hours(events) == {H0: 7 * MIN}


def test_silence_timeout_one_ms_past_the_boundary_closes_the_carry() -> None:
    events = [
        ev(X - 7 * MIN - 1, LOGIN),
        ev(X - 6 * MIN - 1, HEART_BEAT),
        ev(X, HEART_BEAT),
        ev(X + MIN, LOGOUT),
    ]
    before, after = split(events, X)
    _, carry = advance_agent(None, before, boundary_ms=X)
    assert carry == AgentCarry.closed(X)  # every later event would close it anyway
    pieces, _ = advance_agent(carry, after)
    assert pieces == [(X, X + MIN)]  # the heartbeat at X opens a new session
    assert billable_intervals(events) == [(X - 7 * MIN - 1, X - 6 * MIN - 1), (X, X + MIN)]
    assert checkpoint_from_events({AGENT_A: events}, [OLD], X).carries == {}


def test_the_post_logout_status_rule_holds_across_checkpoints() -> None:
    # Logged out 10 minutes before the boundary; Connect's heartbeats carry the renamed Offline status
    # (StartTimestamp = the logout) for the next hour. Resumed from the checkpoint, they still bill nothing.
    logout = X - 10 * MIN
    events = [ev(H0 + 5 * MIN, LOGIN), *(ev(H0 + m * MIN, HEART_BEAT) for m in range(7, 50, 2))]
    events.append(ev(logout, LOGOUT))
    events += [
        AgentEventPoint(logout + k * 2 * MIN, HEART_BEAT, f"hb-{k}", False, logout + 300)
        for k in range(1, 31)
    ]
    checkpoint = checkpoint_from_events({AGENT_A: events}, [OLD], X)
    assert checkpoint.carries == {AGENT_A: AgentCarry(X, logout_ms=logout)}
    restored = EnvironmentCheckpoint.from_json(json.loads(json.dumps(checkpoint.to_json())))
    view = resume(restored, {AGENT_A: split(events, X)[1]}, [OLD], until_ms=X + MS_PER_HOUR)
    assert view.total_ms(OLD.key) == 45 * MIN == whole_hours(events)[H0]
    assert view.billable_ms_by_hour == {}


def test_a_logout_is_forgotten_once_24_hours_old() -> None:
    logout = X - 30 * MIN
    events = [ev(logout - MIN, LOGIN), ev(logout, LOGOUT)]
    within_a_day = X + 23 * MS_PER_HOUR  # 23.5 h after the logout
    assert checkpoint_from_events({AGENT_A: events}, [OLD], within_a_day).carries == {
        AGENT_A: AgentCarry(within_a_day, logout_ms=logout)
    }
    assert checkpoint_from_events({AGENT_A: events}, [OLD], within_a_day + MS_PER_HOUR).carries == {}


def test_a_version_1_checkpoint_is_read_as_remembering_no_logout() -> None:
    document = {
        "version": 1,
        "boundary_ms": X,
        "policy": "logged_in",
        "silence_timeout_ms": 360_000,
        "carries": {AGENT_A: [X - 10 * MIN, X - MIN, True]},
        "billed_ms": {},
        "unbilled_ms": 0,
        "agent_hours": {},
    }
    checkpoint = EnvironmentCheckpoint.from_json(document)
    assert checkpoint.carries == {AGENT_A: AgentCarry(X, True, X - 10 * MIN, X - MIN, True)}


def test_logout_at_the_boundary_belongs_to_the_later_side() -> None:
    events = [ev(X - 2 * MIN, LOGIN), ev(X, LOGOUT)]
    before, after = split(events, X)
    first, carry = advance_agent(None, before, boundary_ms=X)
    assert first == []
    assert carry.is_open
    second, end = advance_agent(carry, after)
    assert second == [(X - 2 * MIN, X)]
    assert end == AgentCarry(X + 1, logout_ms=X)  # closed, remembering the LOGOUT (section 3, offline)
    assert whole_hours(events) == billable_ms_by_hour(second) == {H0: 2 * MIN}


def test_online_policy_resumes_an_offline_status_across_the_boundary() -> None:
    events = [
        ev(X - 4 * MIN, LOGIN),
        ev(X - 3 * MIN, STATE_CHANGE, offline=True),
        ev(X + 2 * MIN, HEART_BEAT),
        ev(X + 5 * MIN, LOGOUT),
    ]
    before, after = split(events, X)
    first, carry = advance_agent(None, before, policy=ONLINE, boundary_ms=X)
    assert first == [(X - 4 * MIN, X - 3 * MIN)]
    assert carry == AgentCarry(X, True, X - 4 * MIN, X - 3 * MIN, False)
    second, _ = advance_agent(carry, after, policy=ONLINE)
    assert second == [(X + 2 * MIN, X + 5 * MIN)]  # the offline stretch [X-3m, X+2m] is not billable
    assert billable_ms_by_hour(first + second) == whole_hours(events, ONLINE)


def test_advance_ignores_duplicates_and_order() -> None:
    events = [ev(X + MIN, LOGIN), ev(X + 2 * MIN, HEART_BEAT), ev(X + 3 * MIN, LOGOUT)]
    pieces, carry = advance_agent(AgentCarry.closed(X), [events[2], events[0], events[1], events[0]])
    assert pieces == [(X + MIN, X + 2 * MIN), (X + 2 * MIN, X + 3 * MIN)]
    assert carry == AgentCarry(X + 3 * MIN + 1, logout_ms=X + 3 * MIN)


def test_zero_length_sessions_produce_no_piece() -> None:
    pieces, carry = advance_agent(None, [ev(X, LOGIN), ev(X, LOGOUT)])
    assert pieces == []
    assert not carry.is_open


def test_advance_refuses_events_before_the_carry_boundary() -> None:
    with pytest.raises(UsageInputError, match=r"points\.ts_ms: .* before the carry's boundary"):
        advance_agent(AgentCarry.closed(X), [ev(X - 1, HEART_BEAT)])
    with pytest.raises(UsageInputError, match=r"points\.ts_ms: .* not before the new boundary"):
        advance_agent(None, [ev(X, HEART_BEAT)], boundary_ms=X)
    with pytest.raises(UsageInputError, match=r"boundary_ms: .*boundaries only move on"):
        advance_agent(AgentCarry.closed(X), [], boundary_ms=X - 1)
    with pytest.raises(SessionInputError, match=r"events\[0\]\.ts_ms"):
        advance_agent(None, [AgentEventPoint("soon", LOGIN, "x", False)])  # type: ignore[arg-type]
    with pytest.raises(SessionInputError, match="policy"):
        advance_agent(None, [], policy="busy")


def test_carry_validation_and_json() -> None:
    carry = AgentCarry(X, True, X - MIN, X - SEC, False)
    assert AgentCarry.from_json(json.loads(json.dumps(carry.to_json()))) == carry
    closed = AgentCarry(X, False, 5, 6, True)
    assert closed == AgentCarry.closed(X) and closed.to_json() == {"boundary_ms": X, "open": False}
    assert AgentCarry.from_json({"boundary_ms": None, "open": False}) == AgentCarry.closed()
    with pytest.raises(UsageInputError, match=r"carry\.last_ms: .* not before boundary_ms"):
        AgentCarry(X, True, X - MIN, X, True)
    with pytest.raises(UsageInputError, match=r"carry\.last_ms: .* before start_ms"):
        AgentCarry(X, True, X - MIN, X - 2 * MIN, True)
    with pytest.raises(UsageInputError, match=r"carry\.open: must be a bool"):
        AgentCarry.from_json({"boundary_ms": X, "open": 1})
    with pytest.raises(UsageInputError, match=r"carry\.start_ms: must be an integer"):
        AgentCarry.from_json({"boundary_ms": X, "open": True, "start_ms": "1", "last_ms": 2, "online": True})


# --- primary timeline and attribution -------------------------------------------------------------


def test_primary_switches_mid_piece_when_the_older_subscription_ends() -> None:
    old = subscription("old", H0 - MS_PER_HOUR, X - 30 * SEC)
    new = subscription("new", H0)
    segments = primary_segments([new, old], H0, X + MS_PER_HOUR)
    assert segments == [(H0, X - 30 * SEC, old), (X - 30 * SEC, X + MS_PER_HOUR, new)]
    events = [ev(X - 2 * MIN, LOGIN), ev(X + MIN, HEART_BEAT)]
    view = resume(EnvironmentCheckpoint.empty(H0), {AGENT_A: events}, [old, new], until_ms=X + MS_PER_HOUR)
    assert view.total_ms_by_subscription == {old.key: 90 * SEC, new.key: 90 * SEC}
    assert view.unbilled_ms == 0


def test_expired_contract_hands_over_to_the_next_contract() -> None:
    expires = X - 45 * SEC
    first = subscription(
        "c1",
        H0 - MS_PER_HOUR,
        pricing="contract",
        entitlements={"licensed_agents": 5, "expires": from_ms(expires)},
    )
    second = subscription("c2", H0, pricing="contract", entitlements={"licensed_agents": 5})
    segments = primary_segments([first, second], H0, X + MS_PER_HOUR)
    assert segments == [(H0, expires, first), (expires, X + MS_PER_HOUR, second)]
    pieces = [(X - MIN, X + MIN)]
    assert attribute(pieces, segments) == {first.key: 15 * SEC, second.key: 105 * SEC}
    assert attribute(pieces, segments, until_ms=X) == {first.key: 15 * SEC, second.key: 45 * SEC}


def test_time_without_an_active_subscription_is_unbilled() -> None:
    late = subscription("late", X)
    pending = subscription("pending", None)
    events = [ev(X - 3 * MIN, LOGIN), ev(X + 2 * MIN, HEART_BEAT), ev(X + 4 * MIN, LOGOUT)]
    view = resume(
        EnvironmentCheckpoint.empty(H0), {AGENT_A: events}, [pending, late], until_ms=X + MS_PER_HOUR
    )
    assert view.total_ms_by_subscription == {late.key: 4 * MIN}
    assert view.unbilled_ms == 3 * MIN
    assert primary_segments([], H0, X) == [(H0, X, None)]
    assert attribute([(H0, H0 + 5)], [(H0, X, None)]) == {None: 5}


def test_primary_change_points_round_up_to_the_next_millisecond() -> None:
    started = datetime(2026, 3, 2, 9, 30, tzinfo=UTC) + timedelta(microseconds=500)
    sub = build(
        Subscription,
        company_alias="acme",
        identity={"customer_identifier": "cust-1", "product_code": "prod"},
        pricing="usage",
        started=started,
    )
    half = H0 + 30 * MIN
    assert primary_segments([sub], H0, X) == [(H0, half + 1, None), (half + 1, X, sub)]


def test_attribute_checks_segments_and_pieces() -> None:
    segments = primary_segments([OLD], H0, X)
    assert attribute([(H0, H0)], []) == {}
    assert attribute([(X - 5, X + 100)], segments, until_ms=X) == {OLD.key: 5}
    with pytest.raises(UsageInputError, match=r"pieces\[0\]: .* not inside the primary timeline"):
        attribute([(H0 - 1, H0 + 1)], segments)
    with pytest.raises(UsageInputError, match=r"pieces\[0\]: bounds must be integer ms with start <= end"):
        attribute([(H0 + 2, H0 + 1)], segments)
    with pytest.raises(UsageInputError, match=r"segments\[1\]: starts at .* must be consecutive"):
        attribute([], [(H0, H0 + 5, None), (H0 + 6, H0 + 9, None)])
    with pytest.raises(UsageInputError, match=r"end_ms: .* before start_ms"):
        primary_segments([], X, H0)
    assert primary_segments([OLD], X, X) == []


# --- checkpoints and resume -----------------------------------------------------------------------


def test_checkpoint_json_round_trip() -> None:
    events = {
        AGENT_A: [ev(H0 + 10 * MIN, LOGIN), *(ev(H0 + m * MIN, HEART_BEAT) for m in (20, 30, 40, 50, 59))],
        AGENT_B: [ev(H0 + 5 * MIN, LOGIN), ev(H0 + 6 * MIN, LOGOUT)],
    }
    late = subscription("late", H0 + 15 * MIN)
    checkpoint = checkpoint_from_events(events, [late], X, policy=ONLINE, silence_timeout_ms=600_000)
    document = checkpoint.to_json()
    assert EnvironmentCheckpoint.from_json(json.loads(json.dumps(document))) == checkpoint
    assert document == {
        "version": 2,
        "boundary_ms": X,
        "policy": "online",
        "silence_timeout_ms": 600_000,
        # A: open, no LOGOUT to remember; B: logged out, remembered for the post-logout status rule.
        "carries": {AGENT_A: [H0 + 10 * MIN, X - MIN, True, None], AGENT_B: [H0 + 6 * MIN]},
        "billed_ms": {late.key: 44 * MIN},
        "unbilled_ms": 6 * MIN,
        "agent_hours": {str(H0): [AGENT_A, AGENT_B]},
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 3}, r"checkpoint\.version: must be 2"),
        ({"boundary_ms": X + 1}, r"checkpoint\.boundary_ms: must be the epoch ms of a whole UTC hour"),
        ({"policy": "busy"}, r"checkpoint\.policy: must be one of"),
        (
            {"carries": {AGENT_A: [1, 2]}},
            r"checkpoint\.carries\[.*\]: must be \[start_ms, last_ms, online, logout_ms\]",
        ),
        ({"carries": {AGENT_A: [X]}}, r"carry\.logout_ms: .* not before boundary_ms"),
        ({"carries": {AGENT_A: [X - 5, X + 1, True]}}, r"carry\.last_ms: .* not before boundary_ms"),
        ({"billed_ms": {"k": -1}}, r"checkpoint\.billed_ms\['k'\]: must be >= 0"),
        ({"unbilled_ms": 1.5}, r"checkpoint\.unbilled_ms: must be an integer"),
        ({"agent_hours": {str(X): [AGENT_A]}}, r"checkpoint\.agent_hours\[\d+\]: not before the boundary"),
        ({"agent_hours": {"soon": []}}, r"checkpoint\.agent_hours: key 'soon'"),
        ({"silence_timeout_ms": -1}, r"checkpoint\.silence_timeout_ms: must be >= 0"),
    ],
)
def test_checkpoint_json_errors_name_the_field(change: dict[str, object], message: str) -> None:
    document = {**EnvironmentCheckpoint.empty(X).to_json(), **change}
    with pytest.raises(UsageInputError, match=message):
        EnvironmentCheckpoint.from_json(document)


def test_checkpoint_keeps_only_open_carries() -> None:
    checkpoint = EnvironmentCheckpoint(
        X,
        {AGENT_A: AgentCarry.closed(X), AGENT_B: AgentCarry(X, True, X - 10 * MIN, X - 10 * MIN, True)},
    )
    assert checkpoint.carries == {}  # B's last is more than 360 s before X: closed for good
    with pytest.raises(
        UsageInputError, match=r"checkpoint\.carries\[.*\]\.boundary_ms: .* not the checkpoint's"
    ):
        EnvironmentCheckpoint(X, {AGENT_A: AgentCarry(H0, True, H0 - 5, H0 - 5, True)})


def test_checkpoint_keeps_the_hours_an_open_carry_can_still_reach() -> None:
    timeout = 2 * MS_PER_HOUR  # longer than an hour: ``last`` may sit more than an hour before the boundary
    later = H0 + 2 * MS_PER_HOUR
    events = {
        AGENT_A: [ev(H0 + 10 * MIN, LOGIN), ev(H0 + 20 * MIN, HEART_BEAT), ev(later + 10 * MIN, HEART_BEAT)],
        AGENT_B: [ev(H0 + 5 * MIN, LOGIN), ev(H0 + 15 * MIN, LOGOUT)],
    }
    checkpoint = checkpoint_from_events(events, [OLD], later, silence_timeout_ms=timeout)
    assert checkpoint.carries == {
        AGENT_A: AgentCarry(later, True, H0 + 10 * MIN, H0 + 20 * MIN, True),
        AGENT_B: AgentCarry(later, logout_ms=H0 + 15 * MIN),  # logged out: remembered, no session
    }
    assert checkpoint.agent_hours == {H0: frozenset({AGENT_A, AGENT_B})}
    view = resume(
        checkpoint,
        {AGENT_A: events[AGENT_A][2:]},
        [OLD],
        until_ms=later + MS_PER_HOUR,
        silence_timeout_ms=timeout,
    )
    assert view.agents_by_hour == {
        H0: frozenset({AGENT_A, AGENT_B}),
        X: frozenset({AGENT_A}),
        later: frozenset({AGENT_A}),
    }
    assert view.total_ms(OLD.key) == 10 * MIN + 10 * MIN + 110 * MIN


def test_next_checkpoint_leaves_out_the_events_of_the_next_hour() -> None:
    next_hour = X + MS_PER_HOUR
    events = {
        AGENT_A: [
            ev(X + 55 * MIN, LOGIN),
            ev(next_hour - MIN, HEART_BEAT),
            ev(next_hour + 3 * MIN, HEART_BEAT),
        ],
        AGENT_B: [ev(next_hour + MIN, LOGIN), ev(next_hour + 2 * MIN, HEART_BEAT)],
    }
    checkpoint = checkpoint_from_events(events, [OLD], X)
    assert checkpoint == EnvironmentCheckpoint.empty(X)
    view = resume(checkpoint, events, [OLD], until_ms=next_hour)
    assert view.total_ms(OLD.key) == 5 * MIN  # [X+55m, next-1m] and [next-1m, next) of the straddling piece
    following = view.checkpoint_at(next_hour)
    assert following.carries == {AGENT_A: AgentCarry(next_hour, True, X + 55 * MIN, next_hour - MIN, True)}
    assert following.billed_ms == {
        OLD.key: 4 * MIN
    }  # the piece produced by the event after next_hour is not in
    assert following.agent_hours == {X: frozenset({AGENT_A})}
    assert following == checkpoint_from_events(events, [OLD], next_hour)
    then = resume(
        following,
        {agent: [e for e in points if e.ts_ms >= next_hour] for agent, points in events.items()},
        [OLD],
        until_ms=next_hour + MS_PER_HOUR,
    )
    assert then.total_ms(OLD.key) == 4 * MIN + 4 * MIN + MIN
    assert then.agents_by_hour == {X: frozenset({AGENT_A}), next_hour: frozenset({AGENT_A, AGENT_B})}


def test_resume_refuses_mismatched_inputs() -> None:
    checkpoint = EnvironmentCheckpoint.empty(X)
    with pytest.raises(
        UsageInputError, match=r"events_by_agent\[.*\]\.ts_ms: .* before the carry's boundary"
    ):
        resume(checkpoint, {AGENT_A: [ev(X - 1, LOGIN)]}, [OLD], until_ms=X + MS_PER_HOUR)
    with pytest.raises(UsageInputError, match=r"policy: online differs from the checkpoint's logged_in"):
        resume(checkpoint, {}, [OLD], until_ms=X, policy=ONLINE)
    with pytest.raises(UsageInputError, match=r"silence_timeout_ms: 1 differs"):
        resume(checkpoint, {}, [OLD], until_ms=X, silence_timeout_ms=1)
    with pytest.raises(UsageInputError, match=r"until_ms: .* before the checkpoint's boundary"):
        resume(checkpoint, {}, [OLD], until_ms=X - 1)
    with pytest.raises(UsageInputError, match=r"subscriptions\[0\]: must be a Subscription"):
        resume(checkpoint, {}, ["old"], until_ms=X)  # type: ignore[list-item]
    with pytest.raises(UsageInputError, match=r"events_by_agent\['a'\]: events\[0\]\.kind"):
        resume(checkpoint, {"a": [AgentEventPoint(X, 7, "x", False)]}, [], until_ms=X)  # type: ignore[arg-type]
    view = resume(checkpoint, {}, [OLD], until_ms=X + MS_PER_HOUR)
    with pytest.raises(
        UsageInputError, match=r"next_boundary_ms: .* must be within \[boundary_ms, until_ms\]"
    ):
        view.checkpoint_at(X + 2 * MS_PER_HOUR)
    with pytest.raises(UsageInputError, match=r"next_boundary_ms: must be the epoch ms of a whole UTC hour"):
        view.checkpoint_at(X + 1)
    with pytest.raises(UsageInputError, match=r"hour_ms: must be the epoch ms of a whole UTC hour"):
        view.agent_count(X + 1)
    assert view.checkpoint_at(X) == checkpoint


# --- hourly quantity and allocations --------------------------------------------------------------


def test_hour_quantity_carries_fractions_and_never_goes_negative() -> None:
    assert hour_quantity(119_999, 0) == 1
    assert hour_quantity(120_000, 1) == 1  # the fraction of the first hour completed a minute later
    assert hour_quantity(59_999, 0) == 0
    assert hour_quantity(60_000, 3) == 0
    with pytest.raises(UsageInputError, match="total_ms: must be >= 0"):
        hour_quantity(-1, 0)
    with pytest.raises(UsageInputError, match="already_billed_minutes: must be an integer"):
        hour_quantity(0, 1.0)  # type: ignore[arg-type]


def test_usage_allocations_one_per_environment_with_quantity() -> None:
    quantity, allocations = usage_allocations({"prod": 7, "dev": 0, "eu": 2})
    assert quantity == 9
    assert allocations == [
        {"AllocatedUsageQuantity": 2, "Tags": [{"Key": "environment", "Value": "eu"}]},
        {"AllocatedUsageQuantity": 7, "Tags": [{"Key": "environment", "Value": "prod"}]},
    ]
    assert usage_allocations({"prod": 0}) == (0, [])
    assert usage_allocations({"x": 1}, tag_key="env")[1][0]["Tags"] == [{"Key": "env", "Value": "x"}]
    with pytest.raises(UsageInputError, match=r"quantities_by_environment\['x'\]: must be >= 0"):
        usage_allocations({"x": -1})
