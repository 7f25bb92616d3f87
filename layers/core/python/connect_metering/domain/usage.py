"""Incremental billable time: resume the section 3 scan from hourly checkpoints, exactly.

BILLING.md sections 3, 4, 5 and 7, computed hour by hour instead of from an environment's whole event
history. Pure: no boto3, no I/O, no clock reads.

Why it is exact. The section 3 scan visits events in (timestamp, kind, event id) order, so every event
with a timestamp < X is visited before every event with a timestamp >= X, and the scan state after the
events < X (open or closed, ``start``, ``last``, and for policy ``online`` whether the status in force
since ``last`` is Offline) is all the later events need. A session's billable time is produced piece by
piece as the scan advances:

- the event that opens a session at ``ts`` produces nothing yet;
- each later event of the session at ``ts'`` (not a LOGOUT) produces ``[last, ts']``;
- a LOGOUT at ``ts'`` produces ``[last, ts']`` and closes the session;
- the silence timeout closes the session at ``last`` and produces nothing.

The pieces of a session chain from ``start`` to its end, so they add up to exactly [start, end]. For
policy ``online`` only the pieces whose status in force (the status of the event at their start) is not
Offline are produced: they chain into exactly the online stretches of ``billable_intervals``. So the
pieces produced by the events < X all end at or before X, and the events >= X may produce one piece per
agent that straddles X (billable time before X discovered later). Splitting the events at any boundary,
or at several, gives the same milliseconds as the whole-set core (``tests/unit/test_usage_properties.py``).

The modules of the core: ``agent_carry`` (one agent's scan from its carry, and its pieces),
``attribution`` (section 4: pieces to subscriptions), this one (an environment's checkpoint and the
resumed view of it), ``quantity`` (section 5's hourly quantity and its allocations).

Choices (each one is tested in ``tests/unit/test_usage.py``; the carries' own are in ``agent_carry``):

- A checkpoint records the policy and silence timeout it was computed with; resuming it with other ones
  is refused (rebuild it from the events instead), because its milliseconds would mix two policies.
- A checkpoint's attribution of the time before its boundary is final: if a subscription's ``started``,
  ``ended`` or contract expiry before the boundary changes afterwards, rebuild from an earlier checkpoint.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Self

from connect_metering.domain.agent_carry import AgentCarry, advance, advance_split, checked_points, settle
from connect_metering.domain.attribution import attribute_all, check_subscriptions
from connect_metering.domain.instants import MS_PER_HOUR, hour_floor
from connect_metering.domain.sessions import (
    DEFAULT_SILENCE_TIMEOUT_MS,
    AgentEventPoint,
    BillableTimePolicy,
    Piece,
    SessionInputError,
    check_policy,
    check_timeout,
    hours_touched,
    ms_by_hour,
)
from connect_metering.domain.tenancy import Subscription
from connect_metering.domain.usage_inputs import (
    UsageInputError,
    require_bool,
    require_hour,
    require_int,
    require_mapping,
)

CHECKPOINT_VERSION: Final = 2
# Version 1 checkpoints predate the post-logout status rule: they read as remembering no LOGOUT.
READABLE_CHECKPOINT_VERSIONS: Final = frozenset({1, CHECKPOINT_VERSION})


def _merge_totals(
    billed: Mapping[str, int], unbilled: int, added: Mapping[str | None, int]
) -> tuple[dict[str, int], int]:
    totals = dict(billed)
    for key, value in added.items():
        if key is None:
            unbilled += value
        else:
            totals[key] = totals.get(key, 0) + value
    return dict(sorted(totals.items())), unbilled


@dataclass(frozen=True, slots=True)
class EnvironmentCheckpoint:
    """What an environment's events before ``boundary_ms`` leave for the later hours.

    - ``carries``: agent ARN -> scan state at the boundary; only agents that may still be logged in
      (open carries) or whose LOGOUT still decides whether a status is offline; the others are dropped.
    - ``billed_ms``: subscription key -> cumulative ms of the pieces produced by the events before the
      boundary, attributed by the primary timeline; ``unbilled_ms``: the same with no active subscription.
    - ``agent_hours``: hour -> agents with more than 0 ms in that hour from those pieces, for the hours a
      later event can still add time to (the hour before the boundary, and back to the hour of the
      earliest open ``last``); hours at or after the boundary never have any.
    - ``policy``, ``silence_timeout_ms``: the ones it was computed with.
    """

    boundary_ms: int
    carries: Mapping[str, AgentCarry] = field(default_factory=dict)
    billed_ms: Mapping[str, int] = field(default_factory=dict)
    unbilled_ms: int = 0
    agent_hours: Mapping[int, frozenset[str]] = field(default_factory=dict)
    policy: BillableTimePolicy = BillableTimePolicy.LOGGED_IN
    silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS

    def __post_init__(self) -> None:
        boundary = require_hour(self.boundary_ms, "checkpoint.boundary_ms")
        try:
            policy = check_policy(self.policy)
            timeout = check_timeout(self.silence_timeout_ms)
        except SessionInputError as exc:
            raise UsageInputError(f"checkpoint.{exc}") from None
        carries = _checked_carries(self.carries, boundary, timeout)
        billed = _checked_billed_ms(self.billed_ms)
        require_int(self.unbilled_ms, "checkpoint.unbilled_ms", minimum=0)
        hours = _checked_agent_hours(self.agent_hours, boundary)
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "carries", dict(sorted(carries.items())))
        object.__setattr__(self, "billed_ms", dict(sorted(billed.items())))
        object.__setattr__(self, "agent_hours", dict(sorted(hours.items())))

    @classmethod
    def empty(
        cls,
        boundary_ms: int = 0,
        *,
        policy: BillableTimePolicy | str = BillableTimePolicy.LOGGED_IN,
        silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS,
    ) -> Self:
        """The checkpoint of an environment with no event before ``boundary_ms``."""
        return cls(boundary_ms, policy=check_policy(policy), silence_timeout_ms=silence_timeout_ms)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able values (str keys, ints, bools, lists), sorted for a stable document."""
        return {
            "version": CHECKPOINT_VERSION,
            "boundary_ms": self.boundary_ms,
            "policy": self.policy.value,
            "silence_timeout_ms": self.silence_timeout_ms,
            # Open: [start_ms, last_ms, online, logout_ms | null]; closed, remembering a LOGOUT: [logout_ms].
            "carries": {
                agent: [carry.start_ms, carry.last_ms, carry.online, carry.logout_ms]
                if carry.is_open
                else [carry.logout_ms]
                for agent, carry in self.carries.items()
            },
            "billed_ms": dict(self.billed_ms),
            "unbilled_ms": self.unbilled_ms,
            "agent_hours": {str(hour): sorted(agents) for hour, agents in self.agent_hours.items()},
        }

    @classmethod
    def from_json(cls, document: object) -> Self:
        data = require_mapping(document, "checkpoint")
        version = data.get("version")
        if version not in READABLE_CHECKPOINT_VERSIONS:
            raise UsageInputError(f"checkpoint.version: must be {CHECKPOINT_VERSION}, got {version!r}")
        boundary = require_hour(data.get("boundary_ms"), "checkpoint.boundary_ms")
        carries: dict[str, AgentCarry] = {}
        for agent, raw in require_mapping(data.get("carries"), "checkpoint.carries").items():
            carries[agent] = _carry_from_json(boundary, raw, f"checkpoint.carries[{agent!r}]")
        hours: dict[int, frozenset[str]] = {}
        for raw_hour, agents in require_mapping(data.get("agent_hours"), "checkpoint.agent_hours").items():
            if not isinstance(raw_hour, str) or not raw_hour.isdigit():
                raise UsageInputError(f"checkpoint.agent_hours: key {raw_hour!r} is not an hour in epoch ms")
            if not isinstance(agents, list):
                raise UsageInputError(f"checkpoint.agent_hours[{raw_hour}]: must be a list of agent ARNs")
            hours[int(raw_hour)] = frozenset(agents)
        policy = data.get("policy")
        if not isinstance(policy, str):
            raise UsageInputError(f"checkpoint.policy: must be a string, got {policy!r}")
        try:
            policy_value = check_policy(policy)
        except SessionInputError as exc:
            raise UsageInputError(f"checkpoint.{exc}") from None
        return cls(
            boundary,
            carries,
            require_mapping(data.get("billed_ms"), "checkpoint.billed_ms"),
            require_int(data.get("unbilled_ms"), "checkpoint.unbilled_ms", minimum=0),
            hours,
            policy_value,
            require_int(data.get("silence_timeout_ms"), "checkpoint.silence_timeout_ms", minimum=0),
        )


def _checked_carries(raw: object, boundary: int, timeout: int) -> dict[str, AgentCarry]:
    """The carries a checkpoint keeps: each at its boundary, settled, only the remembered ones."""
    carries: dict[str, AgentCarry] = {}
    for agent, carry in require_mapping(raw, "checkpoint.carries").items():
        if not isinstance(agent, str) or not agent:
            raise UsageInputError(f"checkpoint.carries: agent ARN must be a non-empty string, got {agent!r}")
        if not isinstance(carry, AgentCarry):
            raise UsageInputError(f"checkpoint.carries[{agent!r}]: must be an AgentCarry")
        if carry.boundary_ms != boundary:
            raise UsageInputError(
                f"checkpoint.carries[{agent!r}].boundary_ms: {carry.boundary_ms} is not the "
                f"checkpoint's boundary {boundary}"
            )
        carry = settle(carry, timeout)
        if carry.remembered:
            carries[agent] = carry
    return carries


def _checked_billed_ms(raw: object) -> dict[str, int]:
    billed: dict[str, int] = {}
    for key, value in require_mapping(raw, "checkpoint.billed_ms").items():
        if not isinstance(key, str) or not key:
            raise UsageInputError(
                f"checkpoint.billed_ms: subscription key must be a non-empty string, got {key!r}"
            )
        billed[key] = require_int(value, f"checkpoint.billed_ms[{key!r}]", minimum=0)
    return billed


def _checked_agent_hours(raw: object, boundary: int) -> dict[int, frozenset[str]]:
    """Whole hours before the boundary -> agent ARNs; hours with no agent are dropped."""
    hours: dict[int, frozenset[str]] = {}
    for hour, agents in require_mapping(raw, "checkpoint.agent_hours").items():
        require_hour(hour, "checkpoint.agent_hours")
        if hour >= boundary:
            raise UsageInputError(
                f"checkpoint.agent_hours[{hour}]: not before the boundary {boundary} "
                "(only events before the boundary are in a checkpoint)"
            )
        if not isinstance(agents, set | frozenset | list | tuple) or not all(
            isinstance(agent, str) and agent for agent in agents
        ):
            raise UsageInputError(f"checkpoint.agent_hours[{hour}]: must be a set of agent ARNs")
        if agents:
            hours[hour] = frozenset(agents)
    return hours


def _carry_from_json(boundary: int, raw: object, where: str) -> AgentCarry:
    """A checkpoint's carry: ``[start_ms, last_ms, online]`` (version 1), ``[start_ms, last_ms, online,
    logout_ms | null]`` (open) or ``[logout_ms]`` (closed, remembering a LOGOUT)."""
    if isinstance(raw, list) and len(raw) == 1:
        return AgentCarry(boundary, logout_ms=require_int(raw[0], f"{where}[0] (logout_ms)"))
    if not isinstance(raw, list) or len(raw) not in (3, 4):
        raise UsageInputError(f"{where}: must be [start_ms, last_ms, online, logout_ms], got {raw!r}")
    logout = raw[3] if len(raw) == 4 else None
    return AgentCarry(
        boundary,
        True,
        require_int(raw[0], f"{where}[0] (start_ms)"),
        require_int(raw[1], f"{where}[1] (last_ms)"),
        require_bool(raw[2], f"{where}[2] (online)"),
        None if logout is None else require_int(logout, f"{where}[3] (logout_ms)"),
    )


@dataclass(frozen=True, slots=True)
class UsageView:
    """An environment's usage as known from a checkpoint and the events at or after its boundary.

    Every number counts only the instants before ``until_ms``:

    - ``total_ms_by_subscription``: subscription key -> cumulative billable ms attributed to it, T(s,e,H)
      of section 5 when ``until_ms`` = H + 1 h; ``unbilled_ms``: cumulative, no active subscription.
    - ``billable_ms_by_hour``: hour -> environment billable ms, for the hours in [boundary, until).
    - ``agents_by_hour``: hour -> agents with more than 0 ms in it (N(H) of section 7 is its size), for
      the hours in [boundary, until) and the hours before the boundary that the checkpoint keeps.
    """

    boundary_ms: int
    until_ms: int
    total_ms_by_subscription: dict[str, int]
    unbilled_ms: int
    billable_ms_by_hour: dict[int, int]
    agents_by_hour: dict[int, frozenset[str]]
    _checkpoint: EnvironmentCheckpoint = field(repr=False, compare=False)
    _points: dict[str, list[AgentEventPoint]] = field(repr=False, compare=False)
    _subscriptions: tuple[Subscription, ...] = field(repr=False, compare=False)
    _at_until: _ScanToBoundary | None = field(default=None, repr=False, compare=False)

    def total_ms(self, subscription_key: str) -> int:
        """T(s, e, H): cumulative billable ms attributed to the subscription (0 if none)."""
        return self.total_ms_by_subscription.get(subscription_key, 0)

    def agent_count(self, hour_ms: int) -> int:
        """N(H): agents with more than 0 ms of billable time in the hour."""
        return len(self.agents_by_hour.get(require_hour(hour_ms, "hour_ms"), frozenset()))

    def checkpoint_at(self, next_boundary_ms: int) -> EnvironmentCheckpoint:
        """The checkpoint at ``next_boundary_ms`` from the checkpoint and ONLY the given events before it.

        ``boundary_ms <= next_boundary_ms <= until_ms``, a whole hour. Events at or after it (the first
        minutes of the next hour) are left out, so the next run sees them again. Every event before it
        that is known must have been passed to ``resume``.
        """
        previous = self._checkpoint
        next_boundary = require_hour(next_boundary_ms, "next_boundary_ms")
        if not self.boundary_ms <= next_boundary <= self.until_ms:
            raise UsageInputError(
                f"next_boundary_ms: {next_boundary} must be within [boundary_ms, until_ms] = "
                f"[{self.boundary_ms}, {self.until_ms}] (a checkpoint only covers what this view computed)"
            )
        timeout = previous.silence_timeout_ms
        hours: dict[int, set[str]] = {hour: set(agents) for hour, agents in previous.agent_hours.items()}
        at_cut = self._at_until
        if at_cut is None or next_boundary != self.until_ms:
            at_cut = self._scan_to(next_boundary)
        carries = {agent: carry for agent, carry in at_cut.carries.items() if carry.remembered}
        for agent, agent_hours in at_cut.hours.items():
            for hour in agent_hours:
                hours.setdefault(hour, set()).add(agent)
        billed, unbilled = _merge_totals(previous.billed_ms, previous.unbilled_ms, at_cut.attributed)
        keep_from = min(
            [next_boundary - MS_PER_HOUR, *(hour_floor(c.last_ms) for c in carries.values() if c.is_open)]
        )
        return EnvironmentCheckpoint(
            next_boundary,
            carries,
            billed,
            unbilled,
            {hour: frozenset(agents) for hour, agents in hours.items() if hour >= keep_from},
            previous.policy,
            timeout,
        )

    def _scan_to(self, next_boundary: int) -> _ScanToBoundary:
        """The scan from the checkpoint over the view's events before ``next_boundary`` (when it is not
        ``until_ms``, whose scan ``resume`` already kept)."""
        previous = self._checkpoint
        timeout = previous.silence_timeout_ms
        track_online = previous.policy is BillableTimePolicy.ONLINE
        carries: dict[str, AgentCarry] = {}
        hours: dict[str, set[int]] = {}
        pieces: list[Piece] = []
        for agent in _agents(previous, self._points):
            points = self._points.get(agent, [])
            cut = bisect.bisect_left(points, next_boundary, key=lambda point: point.ts_ms)
            carry = previous.carries.get(agent) or AgentCarry(previous.boundary_ms)
            agent_pieces, carries[agent] = advance(
                carry, points[:cut], timeout, track_online, next_boundary, f"events_by_agent[{agent!r}]"
            )
            pieces.extend(agent_pieces)
            hours[agent] = hours_touched(agent_pieces)
        return _ScanToBoundary(carries, hours, attribute_all(pieces, self._subscriptions, next_boundary))


@dataclass(frozen=True, slots=True)
class _ScanToBoundary:
    """The scan from a checkpoint over the events before one boundary: each agent's carry there, the
    hours its pieces touch, and those pieces attributed (what ``checkpoint_at`` that boundary needs)."""

    carries: dict[str, AgentCarry]
    hours: dict[str, set[int]]
    attributed: dict[str | None, int]


def _agents(checkpoint: EnvironmentCheckpoint, points: Mapping[str, object]) -> list[str]:
    return sorted(set(checkpoint.carries) | set(points))


def resume(
    checkpoint: EnvironmentCheckpoint,
    events_by_agent_from_boundary: Mapping[str, Iterable[AgentEventPoint]],
    subscriptions: Iterable[Subscription],
    *,
    until_ms: int,
    policy: BillableTimePolicy | str = BillableTimePolicy.LOGGED_IN,
    silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS,
) -> UsageView:
    """Resume an environment's scan from ``checkpoint`` with the events at or after its boundary.

    The metering run for hour H: load the checkpoint at H, pass every known event with a timestamp >= H
    (per agent ARN; some of H + 1 h included), ``until_ms`` = H + 1 h, the company's subscriptions; read
    T(s, e, H) from ``total_ms_by_subscription`` and N(H) from ``agents_by_hour``; store
    ``checkpoint_at(H + 1 h)``. ``policy`` and ``silence_timeout_ms`` must be the checkpoint's.
    """
    if not isinstance(checkpoint, EnvironmentCheckpoint):
        raise UsageInputError(
            f"checkpoint: must be an EnvironmentCheckpoint, got {type(checkpoint).__name__}"
        )
    timeout = check_timeout(silence_timeout_ms)
    policy_value = check_policy(policy)
    if policy_value is not checkpoint.policy:
        raise UsageInputError(
            f"policy: {policy_value.value} differs from the checkpoint's {checkpoint.policy.value} "
            "(rebuild the checkpoint from the events to change the policy)"
        )
    if timeout != checkpoint.silence_timeout_ms:
        raise UsageInputError(
            f"silence_timeout_ms: {timeout} differs from the checkpoint's {checkpoint.silence_timeout_ms} "
            "(rebuild the checkpoint from the events to change the timeout)"
        )
    until = require_int(until_ms, "until_ms")
    boundary = checkpoint.boundary_ms
    if until < boundary:
        raise UsageInputError(f"until_ms: {until} is before the checkpoint's boundary {boundary}")
    subs = check_subscriptions(subscriptions)
    track_online = policy_value is BillableTimePolicy.ONLINE
    points_by_agent: dict[str, list[AgentEventPoint]] = {}
    for agent, events in require_mapping(events_by_agent_from_boundary, "events_by_agent").items():
        if not isinstance(agent, str) or not agent:
            raise UsageInputError(f"events_by_agent: agent ARN must be a non-empty string, got {agent!r}")
        points_by_agent[agent] = checked_points(events, f"events_by_agent[{agent!r}]")
    # One scan per agent, stopped at ``until`` on the way: the pieces of the events before it (all inside
    # [boundary, until)) and the carry there are what ``checkpoint_at(until)`` needs; the events from
    # ``until`` on add at most the one piece that straddles it, clipped to it.
    before: list[Piece] = []
    straddling: list[Piece] = []
    carries: dict[str, AgentCarry] = {}
    hours_before: dict[str, set[int]] = {}
    agents_by_hour: dict[int, set[str]] = {
        hour: set(agents) for hour, agents in checkpoint.agent_hours.items()
    }
    for agent in _agents(checkpoint, points_by_agent):
        carry = checkpoint.carries.get(agent) or AgentCarry(boundary)
        # Joined pieces: every use below adds up or places milliseconds (an hour, a subscription), and
        # a span per stretch makes that work per agent-hour instead of per event.
        agent_before, carries[agent], agent_after = advance_split(
            carry,
            points_by_agent.get(agent, []),
            until,
            timeout,
            track_online,
            f"events_by_agent[{agent!r}]",
            joined=True,
        )
        clipped = [(low, min(high, until)) for low, high in agent_after if low < until]
        before.extend(agent_before)
        straddling.extend(clipped)
        hours_before[agent] = agent_hours = hours_touched(agent_before)
        for hour in agent_hours.union(hours_touched(clipped)):
            agents_by_hour.setdefault(hour, set()).add(agent)
    attributed_before = attribute_all(before, subs, until)
    totals, unbilled = _merge_totals(checkpoint.billed_ms, checkpoint.unbilled_ms, attributed_before)
    totals, unbilled = _merge_totals(totals, unbilled, attribute_all(straddling, subs, until))
    by_hour = {hour: ms for hour, ms in sorted(ms_by_hour(before + straddling).items()) if hour >= boundary}
    return UsageView(
        boundary,
        until,
        totals,
        unbilled,
        by_hour,
        {hour: frozenset(agents) for hour, agents in sorted(agents_by_hour.items())},
        checkpoint,
        points_by_agent,
        subs,
        _ScanToBoundary(carries, hours_before, attributed_before),
    )


def checkpoint_from_events(
    events_by_agent: Mapping[str, Iterable[AgentEventPoint]],
    subscriptions: Iterable[Subscription],
    boundary_ms: int,
    *,
    policy: BillableTimePolicy | str = BillableTimePolicy.LOGGED_IN,
    silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS,
) -> EnvironmentCheckpoint:
    """The checkpoint at ``boundary_ms`` computed from scratch (events at or after it are left out)."""
    boundary = require_hour(boundary_ms, "boundary_ms")
    materialised = {
        agent: checked_points(events, f"events_by_agent[{agent!r}]")
        for agent, events in require_mapping(events_by_agent, "events_by_agent").items()
    }
    earliest = min((points[0].ts_ms for points in materialised.values() if points), default=boundary)
    start = min(boundary, hour_floor(earliest))
    empty = EnvironmentCheckpoint.empty(start, policy=policy, silence_timeout_ms=silence_timeout_ms)
    view = resume(
        empty,
        materialised,
        subscriptions,
        until_ms=boundary,
        policy=policy,
        silence_timeout_ms=silence_timeout_ms,
    )
    return view.checkpoint_at(boundary)
