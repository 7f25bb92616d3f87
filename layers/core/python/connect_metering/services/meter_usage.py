"""An environment's usage over the hours of one metering step: from its stored checkpoint (or the idle
shortcut) and its stored events, a usage view per hour due and the checkpoint at every boundary.

BILLING.md sections 3-5. Each hour reads only its own events (``AgentTimeline``), so a step costs time
linear in its hours and in the environment's events; the worker bounds a step's hours
(``services/meter.py`` ``STEP_HOURS``), so no step is unbounded however long the catch-up.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from connect_metering.domain.activity import AgentHoursWindow
from connect_metering.domain.instants import MS_PER_HOUR
from connect_metering.domain.metering import CompanyMeterState, IdleEnvironment
from connect_metering.domain.sessions import AgentEventPoint, BillableTimePolicy
from connect_metering.domain.tenancy import Environment, Subscription
from connect_metering.domain.usage import EnvironmentCheckpoint, UsageView, resume

MS_PER_DAY = 24 * MS_PER_HOUR
# Events read, per agent-hour item: (agent ARN, its events); the lists are the store's, never changed.
AgentHours = Sequence[tuple[str, list[AgentEventPoint]]]
# How far back a missing checkpoint is looked for before the environment's history is taken as empty.
MAX_LOOKBACK_DAYS = 62


class ActivityReader(Protocol):
    def read_agent_hours(
        self, instance_arn: str, first_hour_ms: int, last_hour_ms: int
    ) -> AgentHoursWindow: ...


@dataclass(frozen=True)
class StepSpan:
    """The hours one step computes: from ``start_ms`` (the earliest boundary any input can have moved:
    the first hour due, the state's checkpoint, a late event) through ``last_hour_ms``; ``hours`` are
    those that get records. ``final_step`` is the step that reaches the request's last hour."""

    start_ms: int
    last_hour_ms: int
    hours: Sequence[int]
    hourly: bool
    final_step: bool


@dataclass(frozen=True)
class Carry:
    """What a step leaves the next step of the same run for one environment: the checkpoint at its end,
    and the events it already read from there through ``read_through_ms`` (the hour after its last,
    read for the silence timeout's reach), so the next step reads only hours after that."""

    checkpoint: EnvironmentCheckpoint
    points: dict[str, list[AgentEventPoint]]
    read_through_ms: int


@dataclass(frozen=True)
class EnvironmentUsage:
    views: dict[int, UsageView]
    checkpoints: dict[int, EnvironmentCheckpoint]


class UsageCalculator:
    def __init__(self, activity: ActivityReader, policy: BillableTimePolicy, silence_timeout_ms: int) -> None:
        self._activity = activity
        self._policy = policy
        self._timeout = silence_timeout_ms

    def environment_usage(
        self,
        environment: Environment,
        span: StepSpan,
        late_ms: int | None,
        state: CompanyMeterState,
        subscriptions: list[Subscription],
        events_stored: int,
        carried: dict[str, Carry],
    ) -> EnvironmentUsage:
        """Usage views for each hour of ``span.hours``, and the checkpoints at every boundary after the
        start through ``span.last_hour_ms + 1 h``. ``carried`` holds, per instance, what the run's
        previous step read beyond its end; this step leaves its own there when it is not the last."""
        arn = environment.instance_arn.arn
        start = span.start_ms if late_ms is None else min(span.start_ms, late_ms)
        read_to = span.last_hour_ms + MS_PER_HOUR
        carry = carried.pop(arn, None)
        idle = state.idle.get(environment.name)
        read = True
        if carry is not None and late_ms is None and carry.checkpoint.boundary_ms == start:
            # The previous step computed this checkpoint and read the hour after it: read on from there.
            checkpoint, points = carry.checkpoint, carry.points
            if read_to > carry.read_through_ms:
                _merge(
                    points,
                    self._activity.read_agent_hours(
                        arn, carry.read_through_ms + MS_PER_HOUR, read_to
                    ).agent_hours,
                )
        elif (
            late_ms is None
            and idle is not None
            and idle.events_seen == events_stored
            and idle.boundary_ms <= start
        ):
            # Nobody logged in and no event stored since: no read, the checkpoint carries forward.
            checkpoint = EnvironmentCheckpoint(
                idle.boundary_ms,
                billed_ms=idle.billed_ms,
                unbilled_ms=idle.unbilled_ms,
                policy=self._policy,
                silence_timeout_ms=self._timeout,
            )
            points = {}
            read = False  # nothing read: a next step takes the same shortcut
        else:
            checkpoint, points = self._base(arn, start, read_to)
        usage = self._hour_by_hour(checkpoint, points, span, subscriptions)
        last = usage.checkpoints.get(read_to, checkpoint)
        if span.hourly and span.final_step:
            # Only the step that reaches the last hour read every event after its checkpoint: an earlier
            # step's "no later event" would not be true of the whole stream.
            _remember_idle(state, environment.name, last, points, events_stored)
        elif read:
            carried[arn] = Carry(last, _from(points, read_to), read_to)
        return usage

    def _hour_by_hour(
        self,
        checkpoint: EnvironmentCheckpoint,
        points: Mapping[str, list[AgentEventPoint]],
        span: StepSpan,
        subscriptions: list[Subscription],
    ) -> EnvironmentUsage:
        views: dict[int, UsageView] = {}
        checkpoints: dict[int, EnvironmentCheckpoint] = {}
        wanted = set(span.hours)
        hour = checkpoint.boundary_ms
        timeline = AgentTimeline(points)
        while hour <= span.last_hour_ms:
            view = resume(
                checkpoint,
                timeline.window(hour, hour + MS_PER_HOUR + self._timeout),
                subscriptions,
                until_ms=hour + MS_PER_HOUR,
                policy=self._policy,
                silence_timeout_ms=self._timeout,
            )
            if hour in wanted:
                views[hour] = view
            checkpoint = view.checkpoint_at(hour + MS_PER_HOUR)
            checkpoints[hour + MS_PER_HOUR] = checkpoint
            hour += MS_PER_HOUR
        return EnvironmentUsage(views, checkpoints)

    def _base(
        self, arn: str, start: int, last_hour: int
    ) -> tuple[EnvironmentCheckpoint, dict[str, list[AgentEventPoint]]]:
        """The latest checkpoint at or before ``start`` and every stored event from it through
        ``last_hour``. A missing checkpoint is looked for day by day; a day without any item means the
        agents were all logged out, so an empty checkpoint at the next day is exact."""
        window = self._activity.read_agent_hours(arn, start, last_hour)
        agent_hours = list(window.agent_hours)
        stored_checkpoint = window.checkpoints.get(start)
        boundary = start
        day = start - start % MS_PER_DAY
        searched_to = start
        for _ in range(MAX_LOOKBACK_DAYS):
            if stored_checkpoint is not None:
                break
            earlier = (
                self._activity.read_agent_hours(arn, day, searched_to - MS_PER_HOUR)
                if searched_to > day
                else AgentHoursWindow({}, [])
            )
            agent_hours += earlier.agent_hours
            if earlier.checkpoints:  # only those that decode and sit at their own hour
                boundary = max(earlier.checkpoints)
                stored_checkpoint = earlier.checkpoints[boundary]
                break
            if not any(points for _, points in earlier.agent_hours) and searched_to - day == MS_PER_DAY:
                boundary = searched_to
                break
            searched_to, day = day, day - MS_PER_DAY
            boundary = searched_to
        checkpoint = (
            stored_checkpoint
            if stored_checkpoint is not None
            else EnvironmentCheckpoint.empty(boundary, policy=self._policy, silence_timeout_ms=self._timeout)
        )
        by_agent: dict[str, list[AgentEventPoint]] = {}
        first = checkpoint.boundary_ms
        for agent_arn, points in agent_hours:
            kept = [point for point in points if point.ts_ms >= first]
            if kept:
                known = by_agent.get(agent_arn)
                if known is None:
                    by_agent[agent_arn] = kept
                else:
                    known += kept
        return checkpoint, by_agent


def _merge(points: dict[str, list[AgentEventPoint]], agent_hours: AgentHours) -> None:
    for agent_arn, agent_points in agent_hours:
        if agent_points:
            points.setdefault(agent_arn, []).extend(agent_points)


def _from(points: Mapping[str, list[AgentEventPoint]], first_ms: int) -> dict[str, list[AgentEventPoint]]:
    kept = {agent: [p for p in agent_points if p.ts_ms >= first_ms] for agent, agent_points in points.items()}
    return {agent: agent_points for agent, agent_points in kept.items() if agent_points}


def _remember_idle(
    state: CompanyMeterState,
    name: str,
    checkpoint: EnvironmentCheckpoint,
    points: Mapping[str, list[AgentEventPoint]],
    events_stored: int,
) -> None:
    later = any(p.ts_ms >= checkpoint.boundary_ms for agent_points in points.values() for p in agent_points)
    if checkpoint.carries or later:
        state.idle.pop(name, None)
    else:
        state.idle[name] = IdleEnvironment(
            checkpoint.boundary_ms, events_stored, dict(checkpoint.billed_ms), checkpoint.unbilled_ms
        )


class AgentTimeline:
    """Each agent's events sorted once, so that every hour of a catch-up or a late-event recompute reads
    only its own events: linear in hours, where re-filtering the whole span every hour was quadratic.

    Why a window [H, H + 1 h + silence_timeout] is exact for hour H: the pieces an hour's view counts end
    by H + 1 h, and an event at or after H + 1 h can only add the piece from the agent's ``last`` (before
    H + 1 h) to itself, which needs it within ``silence_timeout`` of ``last``; every later event produces
    pieces after H + 1 h, which the view clips away."""

    def __init__(self, points: Mapping[str, list[AgentEventPoint]]) -> None:
        self._points = {agent: sorted(agent_points) for agent, agent_points in points.items()}
        self._stamps = {
            agent: [p.ts_ms for p in agent_points] for agent, agent_points in self._points.items()
        }

    def window(self, first_ms: int, last_ms: int) -> dict[str, list[AgentEventPoint]]:
        """Every agent's events with ``first_ms <= ts <= last_ms`` (agents without any are left out)."""
        window: dict[str, list[AgentEventPoint]] = {}
        for agent, stamps in self._stamps.items():
            low = bisect.bisect_left(stamps, first_ms)
            high = bisect.bisect_right(stamps, last_ms, lo=low)
            if high > low:
                window[agent] = self._points[agent][low:high]
        return window
