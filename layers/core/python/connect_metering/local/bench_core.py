"""CPU cost of the metering core on a realistic synthetic agent event stream, timed on the path the
meter worker runs (services/meter.py ``MeterWorker._usage_by_hour``): each agent's points sorted once
(``AgentTimeline``), then hour by hour ``usage.resume`` from the previous checkpoint over that hour's
window, ``checkpoint_at`` the next boundary, and each checkpoint encoded as the worker stores it; the
starting checkpoint is decoded as the worker reads it. Timed with ``time.process_time`` (CPU of this
process), because wall time on a shared machine is noise.

Run: ``python -m connect_metering.local.bench_core [n_events] [seed]``.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from datetime import UTC, datetime

from connect_metering.adapters.activity_table import decode_checkpoint, encode_checkpoint
from connect_metering.domain.activity import AgentHoursWindow, HourWindow, StoredEvent
from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_SECOND, hour_floor
from connect_metering.domain.metering import CompanyMeterState
from connect_metering.domain.sessions import (
    DEFAULT_SILENCE_TIMEOUT_MS,
    AgentEventPoint,
    BillableTimePolicy,
    EventKind,
    billable_ms_by_hour_for_agents,
)
from connect_metering.domain.tenancy import Environment, Subscription, build
from connect_metering.domain.usage import EnvironmentCheckpoint
from connect_metering.services.meter import STEP_HOURS
from connect_metering.services.meter_usage import Carry, StepSpan, UsageCalculator

_HEARTBEAT_MS = 120 * MS_PER_SECOND
_DAY_MS = 24 * MS_PER_HOUR
_EPOCH_2026_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_EVENTS_PER_AGENT = 1_000  # about three shifts each


def _shift(
    rng: random.Random,
    agent_no: int,
    shift_no: int,
    start_ms: int,
    out: list[tuple[int, int, AgentEventPoint]],
) -> None:
    """One shift: LOGIN, status changes, contacts, breaks, heartbeats, then (usually) LOGOUT.

    Appends ``(arrival key, agent number, point)``; the arrival key is the event time for now.
    """
    counter = 0

    def emit(ts_ms: int, kind: EventKind, offline: bool) -> None:
        nonlocal counter
        counter += 1
        point = AgentEventPoint(ts_ms, kind, f"{agent_no:05d}-{shift_no:03d}-{counter:05d}", offline)
        out.append((ts_ms, agent_no, point))

    now = start_ms
    emit(now, EventKind.LOGIN, rng.random() < 0.3)
    now += rng.randint(1, 30) * MS_PER_SECOND
    emit(now, EventKind.STATE_CHANGE, False)
    end = start_ms + rng.randint(4, 9) * MS_PER_HOUR + rng.randint(0, MS_PER_HOUR)
    offline = False
    while now < end:
        roll = rng.random()
        if roll < 0.25:  # a contact or a status change, at a random moment before the next heartbeat
            now += rng.randint(1, _HEARTBEAT_MS)
            emit(now, EventKind.STATE_CHANGE, offline)
        elif roll < 0.27:  # a break (not Offline) or a spell in the Offline status while logged in
            offline = rng.random() < 0.3
            now += rng.randint(1, 60) * MS_PER_SECOND
            emit(now, EventKind.STATE_CHANGE, offline)
        elif roll < 0.30 and offline:
            offline = False
            now += rng.randint(1, 60) * MS_PER_SECOND
            emit(now, EventKind.STATE_CHANGE, offline)
        else:
            now += _HEARTBEAT_MS
            emit(now, EventKind.HEART_BEAT, offline)
    if rng.random() < 0.9:
        now += rng.randint(1, 60) * MS_PER_SECOND
        emit(now, EventKind.LOGOUT, True)
        for _ in range(rng.randint(0, 30)):  # heartbeats may keep coming for up to an hour after logout
            now += _HEARTBEAT_MS
            emit(now, EventKind.HEART_BEAT, True)


def synthetic_stream(n_events: int, seed: int) -> list[tuple[str, AgentEventPoint]]:
    """Exactly ``n_events`` (AgentARN, point) pairs in arrival order: about 1% duplicates, 2% late."""
    if type(n_events) is not int or n_events < 1:
        raise ValueError(f"n_events: must be an integer >= 1, got {n_events!r}")
    rng = random.Random(seed)
    n_duplicates = n_events // 100
    target = n_events - n_duplicates
    n_agents = max(1, target // _EVENTS_PER_AGENT)
    generated: list[tuple[int, int, AgentEventPoint]] = []
    shift_no = 0
    while len(generated) < target:
        shift_no += 1
        day = shift_no - 1
        for agent_no in range(n_agents):
            start = _EPOCH_2026_MS + day * _DAY_MS + rng.randint(0, 14 * MS_PER_HOUR)
            _shift(rng, agent_no, shift_no, start, generated)
    generated.sort(key=lambda item: item[0])
    del generated[target:]
    arrivals: list[tuple[int, int, AgentEventPoint]] = []
    for ts_ms, agent_no, point in generated:
        late = rng.random() < 0.02  # Kinesis retries: some points arrive out of order
        arrivals.append((ts_ms + (rng.randint(1, 600) * MS_PER_SECOND if late else 0), agent_no, point))
    for ts_ms, agent_no, point in rng.sample(generated, n_duplicates):
        arrivals.append((ts_ms + rng.randint(0, 900) * MS_PER_SECOND, agent_no, point))
    arrivals.sort(key=lambda item: item[0])
    instance = "arn:aws:connect:us-east-1:111122223333:instance/bench"
    return [(f"{instance}/agent/{agent_no:05d}", point) for _, agent_no, point in arrivals]


def agent_days(agents: int, hours: int, seed: int) -> dict[str, list[AgentEventPoint]]:
    """``agents`` agents' points over ``hours`` hours from 2026-01-01: one shift a day each."""
    rng = random.Random(seed)
    generated: list[tuple[int, int, AgentEventPoint]] = []
    end_ms = _EPOCH_2026_MS + hours * MS_PER_HOUR
    for day in range(-(-hours // 24)):
        for agent_no in range(agents):
            start = _EPOCH_2026_MS + day * _DAY_MS + rng.randint(0, 14 * MS_PER_HOUR)
            _shift(rng, agent_no, day + 1, start, generated)
    instance = "arn:aws:connect:us-east-1:111122223333:instance/bench"
    by_agent: dict[str, list[AgentEventPoint]] = {}
    for ts_ms, agent_no, point in generated:
        if ts_ms < end_ms:
            by_agent.setdefault(f"{instance}/agent/{agent_no:05d}", []).append(point)
    return by_agent


def bench_environment() -> Environment:
    return build(
        Environment,
        company_alias="bench",
        name="bench",
        instance_arn="arn:aws:connect:us-east-1:111122223333:instance/00000000-0000-4000-8000-00000000be0c",
    )


def bench_subscription() -> Subscription:
    return build(
        Subscription,
        company_alias="bench",
        identity={"customer_aws_account_id": "111122223333", "license_arn": _BENCH_LICENCE},
        pricing="usage",
        started=datetime(2025, 1, 1, tzinfo=UTC),
    )


_BENCH_LICENCE = "arn:aws:license-manager::123456789012:license:l-00000001"


class _StoredActivity:
    """The activity table as the worker reads it, in memory: events by hour, checkpoints stored encoded
    (``encode_checkpoint``) and decoded on every read, as the DynamoDB adapter does."""

    def __init__(self, points: dict[str, list[AgentEventPoint]], checkpoint: EnvironmentCheckpoint) -> None:
        self.by_hour: dict[int, list[StoredEvent]] = {}
        for agent_arn, agent_points in points.items():
            for point in agent_points:
                self.by_hour.setdefault(hour_floor(point.ts_ms), []).append(StoredEvent(agent_arn, point))
        self.checkpoints = {checkpoint.boundary_ms: encode_checkpoint(checkpoint)}

    def read_hours(self, instance_arn: str, first_hour_ms: int, last_hour_ms: int) -> HourWindow:
        hours = range(first_hour_ms, last_hour_ms + 1, MS_PER_HOUR)
        return HourWindow(
            {
                hour: decode_checkpoint(self.checkpoints[hour], hour)
                for hour in hours
                if hour in self.checkpoints
            },
            [event for hour in hours for event in self.by_hour.get(hour, ())],
        )

    def read_agent_hours(self, instance_arn: str, first_hour_ms: int, last_hour_ms: int) -> AgentHoursWindow:
        window = self.read_hours(instance_arn, first_hour_ms, last_hour_ms)
        return AgentHoursWindow(
            window.checkpoints, [(stored.agent_arn, [stored.point]) for stored in window.events]
        )


def worker_path_cpu_seconds(
    points: dict[str, list[AgentEventPoint]], first_hour_ms: int, hours: int
) -> float:
    """CPU seconds of metering ``hours`` hours from ``first_hour_ms`` in one worker run: the worker's own
    ``UsageCalculator`` in steps of ``STEP_HOURS``, each step's last checkpoint stored encoded, over an
    in-memory activity table (so DynamoDB emulation is not what is timed). Inputs are built before the
    clock starts."""
    policy = BillableTimePolicy.LOGGED_IN
    timeout = DEFAULT_SILENCE_TIMEOUT_MS
    activity = _StoredActivity(
        points, EnvironmentCheckpoint(first_hour_ms, policy=policy, silence_timeout_ms=timeout)
    )
    calculator = UsageCalculator(activity, policy, timeout)
    environment = bench_environment()
    subscriptions = [bench_subscription()]
    state = CompanyMeterState(checkpoint_through_ms=first_hour_ms)
    end_ms = first_hour_ms + hours * MS_PER_HOUR
    carried: dict[str, Carry] = {}
    # The worker holds one step's window, read from DynamoDB; this harness holds the whole span's input
    # in memory. Frozen, that input is left out of the collector's traversals, which would otherwise cost
    # in proportion to the span (a week measured 7.3x to 10.1x a day under load, 6.5x to 7.1x frozen).
    gc.collect()
    gc.freeze()
    try:
        started = time.process_time()
        step_start = first_hour_ms
        while step_start < end_ms:
            last_hour = min(step_start + STEP_HOURS * MS_PER_HOUR, end_ms) - MS_PER_HOUR
            span = StepSpan(
                step_start,
                last_hour,
                list(range(step_start, last_hour + 1, MS_PER_HOUR)),
                hourly=True,
                final_step=last_hour + MS_PER_HOUR == end_ms,
            )
            usage = calculator.environment_usage(environment, span, None, state, subscriptions, 0, carried)
            boundary = last_hour + MS_PER_HOUR
            activity.checkpoints[boundary] = encode_checkpoint(usage.checkpoints[boundary])
            step_start = boundary
        return time.process_time() - started
    finally:
        gc.unfreeze()


def catch_up_cpu_seconds(agents: int, hours: int, seed: int = 3) -> float:
    """One environment of ``agents`` agents metered ``hours`` hours late in one run (a worker outage)."""
    return worker_path_cpu_seconds(agent_days(agents, hours, seed), _EPOCH_2026_MS, hours)


def worker_core_events_per_cpu_second(
    agents: int = 200, hours: int = 24, repeats: int = 5, seed: int = 1
) -> float:
    """Events per CPU second through the worker's path (resume + checkpoints), hour by hour over a day
    of ``agents`` agents; the median of ``repeats`` runs. Each hour's window also holds the next
    ``silence_timeout`` of events, as in production: events are counted once, as stored."""
    points = agent_days(agents, hours, seed)
    events = sum(len(agent_points) for agent_points in points.values())
    runs = sorted(worker_path_cpu_seconds(points, _EPOCH_2026_MS, hours) for _ in range(repeats))
    return events / runs[len(runs) // 2]


def session_core_events_per_second(
    n_events: int = 200_000,
    seed: int = 1,
    *,
    policy: BillableTimePolicy = BillableTimePolicy.LOGGED_IN,
) -> float:
    """Events per second through the whole core path: group by agent, sessions, intervals, hours.

    The stream is built before the clock starts; only the core path is timed.
    """
    stream = synthetic_stream(n_events, seed)
    started = time.perf_counter()
    by_agent: dict[str, list[AgentEventPoint]] = {}
    for agent, point in stream:
        points = by_agent.get(agent)
        if points is None:
            by_agent[agent] = points = []
        points.append(point)
    per_agent_hours = billable_ms_by_hour_for_agents(by_agent, policy=policy)
    elapsed = time.perf_counter() - started
    if not any(per_agent_hours.values()):
        raise RuntimeError("bench stream produced no billable time: the generator is broken")
    return len(stream) / elapsed


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    n_events = int(args[0]) if args else 200_000
    seed = int(args[1]) if len(args) > 1 else 1
    for policy in BillableTimePolicy:
        rate = session_core_events_per_second(n_events, seed, policy=policy)
        print(f"session core ({policy.value}): {rate:,.0f} events/s over {n_events:,} events")


if __name__ == "__main__":
    main()
