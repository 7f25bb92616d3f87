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

Choices (each one is tested):

- Only pieces of more than 0 ms are returned; zero-length sessions carry no time.
- An open carry whose ``last`` is more than ``silence_timeout`` before its boundary is closed: every later
  event is at or after the boundary, so it would close the session anyway. Checkpoints therefore only
  hold the agents that may still be logged in, and the agents whose latest LOGOUT (less than
  ``LOGOUT_MEMORY_MS`` old) still makes a later status offline (section 3).
- Duplicates (same ``event_id``) are dropped within one call, the first in sorted order winning, as in
  the whole-set core. A carry does not remember event ids, so the same ``event_id`` stored on both sides
  of a boundary with different timestamps would be counted twice; the stored event set must hold each
  ``EventId`` once (de-duplication is the event store's job).
- A checkpoint records the policy and silence timeout it was computed with; resuming it with other ones
  is refused (rebuild it from the events instead), because its milliseconds would mix two policies.
- Attribution (section 4): millisecond [t, t + 1) of a piece goes to primary(t). Change points of the
  primary are rounded up to the next whole millisecond, so they agree with ``Subscription.is_active_at``
  for instants with sub-millisecond parts.
- A checkpoint's attribution of the time before its boundary is final: if a subscription's ``started``,
  ``ended`` or contract expiry before the boundary changes afterwards, rebuild from an earlier checkpoint.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any, Final, Self

from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_MINUTE, from_ms, hour_floor, to_ms
from connect_metering.domain.sessions import (
    DEFAULT_SILENCE_TIMEOUT_MS,
    LOGOUT_MEMORY_MS,
    AgentEventPoint,
    BillableTimePolicy,
    EventKind,
    SessionInputError,
    _check_policy,
    _check_timeout,
    _sorted_points,
    billable_ms_by_hour,
    is_post_logout_status,
)
from connect_metering.domain.tenancy import PricingModel, Subscription, primary_subscription

CHECKPOINT_VERSION: Final = 2
# Version 1 checkpoints predate the post-logout status rule: they read as remembering no LOGOUT.
READABLE_CHECKPOINT_VERSIONS: Final = frozenset({1, CHECKPOINT_VERSION})
DEFAULT_ALLOCATION_TAG_KEY: Final = "environment"

_LOGIN: Final = int(EventKind.LOGIN)
_LOGOUT: Final = int(EventKind.LOGOUT)

Piece = tuple[int, int]
Segment = tuple[int, int, Subscription | None]


class UsageInputError(SessionInputError):
    """Input that breaks a rule of the incremental core; the message names the field and the rule."""


def _is_int(value: object) -> bool:
    return type(value) is int


def _require_int(value: object, name: str, *, minimum: int | None = None) -> int:
    if type(value) is not int:
        raise UsageInputError(f"{name}: must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise UsageInputError(f"{name}: must be >= {minimum}, got {value}")
    return value


def _require_hour(value: object, name: str) -> int:
    if type(value) is not int or value % MS_PER_HOUR != 0:
        raise UsageInputError(f"{name}: must be the epoch ms of a whole UTC hour, got {value!r}")
    return value


def _require_bool(value: object, name: str) -> bool:
    if type(value) is not bool:
        raise UsageInputError(f"{name}: must be a bool, got {value!r}")
    return value


def _require_mapping(value: object, name: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise UsageInputError(f"{name}: must be an object, got {type(value).__name__}")
    return value


# --- the scan state of one agent at a boundary ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentCarry:
    """The section 3 scan state of one agent after every event with a timestamp < ``boundary_ms``.

    ``boundary_ms`` None means "no boundary yet" (nothing was processed). Open: a session started at
    ``start_ms`` whose latest non-LOGOUT event is at ``last_ms``; ``online`` tells whether the status in
    force since ``last_ms`` is not Offline (policy ``online``; the logged_in policy ignores it). A closed
    carry has no session: its ``start_ms``, ``last_ms`` and ``online`` are normalised to 0, 0, False.
    ``logout_ms``, open or closed: the agent's latest LOGOUT when it came after its latest LOGIN (the
    post-logout status rule of section 3), None otherwise or once older than ``LOGOUT_MEMORY_MS``.
    """

    boundary_ms: int | None
    is_open: bool = False
    start_ms: int = 0
    last_ms: int = 0
    online: bool = False
    logout_ms: int | None = None

    @property
    def remembered(self) -> bool:
        """Whether a checkpoint must keep this carry: a session may be open, or a LOGOUT still counts."""
        return self.is_open or self.logout_ms is not None

    def __post_init__(self) -> None:
        if self.boundary_ms is not None:
            _require_int(self.boundary_ms, "carry.boundary_ms")
        _require_bool(self.is_open, "carry.is_open")
        _require_bool(self.online, "carry.online")
        _require_int(self.start_ms, "carry.start_ms")
        _require_int(self.last_ms, "carry.last_ms")
        if self.logout_ms is not None:
            _require_int(self.logout_ms, "carry.logout_ms")
            if self.boundary_ms is not None and self.logout_ms >= self.boundary_ms:
                raise UsageInputError(
                    f"carry.logout_ms: {self.logout_ms} is not before boundary_ms {self.boundary_ms} "
                    "(a carry only holds events before its boundary)"
                )
        if not self.is_open:
            object.__setattr__(self, "start_ms", 0)
            object.__setattr__(self, "last_ms", 0)
            object.__setattr__(self, "online", False)
            return
        if self.last_ms < self.start_ms:
            raise UsageInputError(
                f"carry.last_ms: {self.last_ms} is before start_ms {self.start_ms} (need start <= last)"
            )
        if self.boundary_ms is not None and self.last_ms >= self.boundary_ms:
            raise UsageInputError(
                f"carry.last_ms: {self.last_ms} is not before boundary_ms {self.boundary_ms} "
                "(a carry only holds events before its boundary)"
            )

    @classmethod
    def closed(cls, boundary_ms: int | None = None) -> Self:
        return cls(boundary_ms)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able values; a closed carry omits the session fields, a carry with no LOGOUT to
        remember omits ``logout_ms``."""
        document: dict[str, Any] = {"boundary_ms": self.boundary_ms, "open": self.is_open}
        if self.is_open:
            document.update(start_ms=self.start_ms, last_ms=self.last_ms, online=self.online)
        if self.logout_ms is not None:
            document["logout_ms"] = self.logout_ms
        return document

    @classmethod
    def from_json(cls, document: object) -> Self:
        data = _require_mapping(document, "carry")
        boundary = data.get("boundary_ms")
        if boundary is not None:
            _require_int(boundary, "carry.boundary_ms")
        logout = data.get("logout_ms")
        if logout is not None:
            _require_int(logout, "carry.logout_ms")
        if _require_bool(data.get("open"), "carry.open"):
            return cls(
                boundary,
                True,
                _require_int(data.get("start_ms"), "carry.start_ms"),
                _require_int(data.get("last_ms"), "carry.last_ms"),
                _require_bool(data.get("online"), "carry.online"),
                logout,
            )
        return cls(boundary, logout_ms=logout)


def _settle(carry: AgentCarry, timeout: int) -> AgentCarry:
    """Close an open carry that the silence timeout has already closed for every event >= its boundary,
    and forget a LOGOUT that no event at or after the boundary can still be judged by."""
    boundary = carry.boundary_ms
    if boundary is None:
        return carry
    logout = carry.logout_ms
    if logout is not None and boundary - logout > LOGOUT_MEMORY_MS:
        logout = None
    if carry.is_open and boundary - carry.last_ms > timeout:
        return AgentCarry(boundary, logout_ms=logout)
    if logout != carry.logout_ms:
        return AgentCarry(boundary, carry.is_open, carry.start_ms, carry.last_ms, carry.online, logout)
    return carry


def _advance(
    carry: AgentCarry,
    points: list[AgentEventPoint],
    timeout: int,
    track_online: bool,
    boundary_ms: int | None,
    where: str,
) -> tuple[list[Piece], AgentCarry]:
    """The section 3 scan over sorted, validated points, from ``carry``; the pieces it produces."""
    old_boundary = carry.boundary_ms
    if points:
        first, last_point = points[0], points[-1]
        if old_boundary is not None and first.ts_ms < old_boundary:
            raise UsageInputError(
                f"{where}.ts_ms: event {first.event_id!r} at {first.ts_ms} is before the carry's boundary "
                f"{old_boundary} (events before a boundary belong to its checkpoint: resume from an "
                "earlier checkpoint)"
            )
        if boundary_ms is not None and last_point.ts_ms >= boundary_ms:
            raise UsageInputError(
                f"{where}.ts_ms: event {last_point.event_id!r} at {last_point.ts_ms} is not before the "
                f"new boundary {boundary_ms} (only events before the boundary go into its carry)"
            )
    if boundary_ms is not None and old_boundary is not None and boundary_ms < old_boundary:
        raise UsageInputError(
            f"boundary_ms: {boundary_ms} is before the carry's boundary {old_boundary} (boundaries only move on)"
        )
    pieces: list[Piece] = []
    append = pieces.append
    seen: set[str] = set()
    seen_add = seen.add
    is_open, start, last, online = carry.is_open, carry.start_ms, carry.last_ms, carry.online
    logout = carry.logout_ms
    for ts, kind, event_id, named_offline, status_start in points:
        if event_id in seen:
            continue
        seen_add(event_id)
        # (inline test first: the call only happens while a LOGOUT is remembered)
        offline = named_offline or (logout is not None and is_post_logout_status(status_start, ts, logout))
        if kind == _LOGIN:
            logout = None
        elif kind == _LOGOUT:
            logout = ts
        if is_open:
            if ts - last > timeout:
                is_open = False
                # The event is re-read in state closed below.
            elif kind == _LOGOUT:
                if ts > last and (online or not track_online):
                    append((last, ts))
                is_open = False
                continue
            else:
                if ts > last and (online or not track_online):
                    append((last, ts))
                last = ts
                online = not offline
                continue
        if kind == _LOGIN or (kind != _LOGOUT and not offline):
            is_open = True
            start = last = ts
            online = not offline
    if boundary_ms is None:
        boundary_ms = old_boundary
        if points:
            after_last = points[-1].ts_ms + 1
            boundary_ms = after_last if boundary_ms is None else max(boundary_ms, after_last)
    new_carry = (
        AgentCarry(boundary_ms, True, start, last, online, logout)
        if is_open
        else AgentCarry(boundary_ms, logout_ms=logout)
    )
    return pieces, _settle(new_carry, timeout)


def _points(events: Iterable[AgentEventPoint], where: str) -> list[AgentEventPoint]:
    try:
        return _sorted_points(events)
    except UsageInputError:
        raise
    except SessionInputError as exc:
        raise UsageInputError(f"{where}: {exc}") from None


def advance_agent(
    carry: AgentCarry | None,
    points: Iterable[AgentEventPoint],
    *,
    policy: BillableTimePolicy | str = BillableTimePolicy.LOGGED_IN,
    silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS,
    boundary_ms: int | None = None,
) -> tuple[list[Piece], AgentCarry]:
    """Continue one agent's scan from ``carry`` (None: from state closed) over ``points``.

    ``points`` are the agent's events with a timestamp >= the carry's boundary, in any order, duplicates
    (same ``event_id``) ignored. Returns the pieces [a, b] (each worth b - a > 0 ms, in time order) that
    these events produce, and the carry after them. ``boundary_ms`` is the new carry's boundary: when
    given, every point must be before it; when None it is just after the latest point (or the old
    boundary). Chaining calls over consecutive ranges of events gives the same milliseconds as
    ``billable_intervals`` over all of them.
    """
    timeout = _check_timeout(silence_timeout_ms)
    track_online = _check_policy(policy) is BillableTimePolicy.ONLINE
    if carry is None:
        carry = AgentCarry(None)
    elif not isinstance(carry, AgentCarry):
        raise UsageInputError(f"carry: must be an AgentCarry or None, got {type(carry).__name__}")
    if boundary_ms is not None:
        _require_int(boundary_ms, "boundary_ms")
    return _advance(
        _settle(carry, timeout), _points(points, "points"), timeout, track_online, boundary_ms, "points"
    )


# --- the primary timeline and attribution (section 4) ----------------------------------------------


def _ceil_ms(moment: datetime) -> int:
    """The first whole millisecond at or after ``moment``."""
    epoch_ms = to_ms(moment)
    return epoch_ms if from_ms(epoch_ms) >= moment else epoch_ms + 1


def _check_subscriptions(subscriptions: Iterable[Subscription]) -> tuple[Subscription, ...]:
    checked = tuple(subscriptions)
    for index, subscription in enumerate(checked):
        if not isinstance(subscription, Subscription):
            raise UsageInputError(
                f"subscriptions[{index}]: must be a Subscription, got {type(subscription).__name__}"
            )
    return checked


def primary_segments(subscriptions: Sequence[Subscription], start_ms: int, end_ms: int) -> list[Segment]:
    """Consecutive half-open segments [a, b) covering [start_ms, end_ms), each with one primary.

    The primary (BILLING.md section 4) only changes at a subscription's ``started``, ``ended`` or, for a
    contract, entitlement expiry; adjacent segments always have different primaries. None means no
    active subscription: that time is unbilled. Empty when ``start_ms == end_ms``.
    """
    subs = _check_subscriptions(subscriptions)
    _require_int(start_ms, "start_ms")
    _require_int(end_ms, "end_ms")
    if end_ms < start_ms:
        raise UsageInputError(f"end_ms: {end_ms} is before start_ms {start_ms} (need start <= end)")
    if end_ms == start_ms:
        return []
    cuts = {start_ms, end_ms}
    for subscription in subs:
        if subscription.started is None:
            continue  # pending: never active
        moments = [subscription.started, subscription.ended]
        if subscription.pricing is PricingModel.CONTRACT:
            moments.append(subscription.entitlements.expires)
        for moment in moments:
            if moment is not None:
                cut = _ceil_ms(moment)
                if start_ms < cut < end_ms:
                    cuts.add(cut)
    segments: list[Segment] = []
    for low, high in pairwise(sorted(cuts)):
        primary = primary_subscription(subs, from_ms(low))
        if segments and segments[-1][2] == primary:
            segments[-1] = (segments[-1][0], high, primary)
        else:
            segments.append((low, high, primary))
    return segments


def _check_segments(segments: Sequence[Segment]) -> None:
    previous_end: int | None = None
    for index, segment in enumerate(segments):
        try:
            low, high, subscription = segment
        except (TypeError, ValueError):
            raise UsageInputError(
                f"segments[{index}]: must be (start_ms, end_ms, Subscription | None), got {segment!r}"
            ) from None
        if not _is_int(low) or not _is_int(high) or high <= low:
            raise UsageInputError(
                f"segments[{index}]: bounds must be integer ms with start < end, got ({low!r}, {high!r})"
            )
        if subscription is not None and not isinstance(subscription, Subscription):
            raise UsageInputError(f"segments[{index}]: the primary must be a Subscription or None")
        if previous_end is not None and low != previous_end:
            raise UsageInputError(
                f"segments[{index}]: starts at {low} but the previous segment ends at {previous_end} "
                "(segments must be consecutive)"
            )
        previous_end = high


def attribute(
    pieces: Iterable[Piece], segments: Sequence[Segment], *, until_ms: int | None = None
) -> dict[str | None, int]:
    """Billable ms per subscription key (None: unbilled), each millisecond to the primary of its segment.

    A piece [a, b] covers the milliseconds [a, b); with ``until_ms`` only those before it count. A piece
    split across segments gives each its overlap. Only keys with more than 0 ms appear. The segments
    (from ``primary_segments``) must cover every counted millisecond.
    """
    _check_segments(segments)
    if until_ms is not None:
        _require_int(until_ms, "until_ms")
    starts = [segment[0] for segment in segments]
    totals: dict[str | None, int] = {}
    for index, piece in enumerate(pieces):
        try:
            low, high = piece
        except (TypeError, ValueError):
            raise UsageInputError(f"pieces[{index}]: must be (start_ms, end_ms), got {piece!r}") from None
        if not _is_int(low) or not _is_int(high) or high < low:
            raise UsageInputError(
                f"pieces[{index}]: bounds must be integer ms with start <= end, got {piece!r}"
            )
        if until_ms is not None and high > until_ms:
            high = until_ms
        if high <= low:
            continue
        if not segments or low < segments[0][0] or high > segments[-1][1]:
            span = f"[{segments[0][0]}, {segments[-1][1]})" if segments else "empty"
            raise UsageInputError(
                f"pieces[{index}]: [{low}, {high}) is not inside the primary timeline {span} "
                "(the segments must cover every counted millisecond)"
            )
        position = bisect.bisect_right(starts, low) - 1
        while low < high:
            _, segment_end, primary = segments[position]
            upto = min(high, segment_end)
            key = None if primary is None else primary.key
            totals[key] = totals.get(key, 0) + upto - low
            low = upto
            position += 1
    return totals


def _attribute_all(
    pieces: list[Piece], subscriptions: tuple[Subscription, ...], until_ms: int
) -> dict[str | None, int]:
    counted = [piece for piece in pieces if piece[0] < until_ms]
    if not counted:
        return {}
    start = min(piece[0] for piece in counted)
    return attribute(counted, primary_segments(subscriptions, start, until_ms), until_ms=until_ms)


# --- checkpoints and resuming ----------------------------------------------------------------------


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
        boundary = _require_hour(self.boundary_ms, "checkpoint.boundary_ms")
        try:
            policy = _check_policy(self.policy)
            timeout = _check_timeout(self.silence_timeout_ms)
        except SessionInputError as exc:
            raise UsageInputError(f"checkpoint.{exc}") from None
        carries: dict[str, AgentCarry] = {}
        for agent, carry in _require_mapping(self.carries, "checkpoint.carries").items():
            if not isinstance(agent, str) or not agent:
                raise UsageInputError(
                    f"checkpoint.carries: agent ARN must be a non-empty string, got {agent!r}"
                )
            if not isinstance(carry, AgentCarry):
                raise UsageInputError(f"checkpoint.carries[{agent!r}]: must be an AgentCarry")
            if carry.boundary_ms != boundary:
                raise UsageInputError(
                    f"checkpoint.carries[{agent!r}].boundary_ms: {carry.boundary_ms} is not the "
                    f"checkpoint's boundary {boundary}"
                )
            carry = _settle(carry, timeout)
            if carry.remembered:
                carries[agent] = carry
        billed: dict[str, int] = {}
        for key, value in _require_mapping(self.billed_ms, "checkpoint.billed_ms").items():
            if not isinstance(key, str) or not key:
                raise UsageInputError(
                    f"checkpoint.billed_ms: subscription key must be a non-empty string, got {key!r}"
                )
            billed[key] = _require_int(value, f"checkpoint.billed_ms[{key!r}]", minimum=0)
        _require_int(self.unbilled_ms, "checkpoint.unbilled_ms", minimum=0)
        hours: dict[int, frozenset[str]] = {}
        for hour, agents in _require_mapping(self.agent_hours, "checkpoint.agent_hours").items():
            _require_hour(hour, "checkpoint.agent_hours")
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
        return cls(boundary_ms, policy=_check_policy(policy), silence_timeout_ms=silence_timeout_ms)

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
        data = _require_mapping(document, "checkpoint")
        version = data.get("version")
        if version not in READABLE_CHECKPOINT_VERSIONS:
            raise UsageInputError(f"checkpoint.version: must be {CHECKPOINT_VERSION}, got {version!r}")
        boundary = _require_hour(data.get("boundary_ms"), "checkpoint.boundary_ms")
        carries: dict[str, AgentCarry] = {}
        for agent, raw in _require_mapping(data.get("carries"), "checkpoint.carries").items():
            carries[agent] = _carry_from_json(boundary, raw, f"checkpoint.carries[{agent!r}]")
        hours: dict[int, frozenset[str]] = {}
        for raw_hour, agents in _require_mapping(data.get("agent_hours"), "checkpoint.agent_hours").items():
            if not isinstance(raw_hour, str) or not raw_hour.isdigit():
                raise UsageInputError(f"checkpoint.agent_hours: key {raw_hour!r} is not an hour in epoch ms")
            if not isinstance(agents, list):
                raise UsageInputError(f"checkpoint.agent_hours[{raw_hour}]: must be a list of agent ARNs")
            hours[int(raw_hour)] = frozenset(agents)
        policy = data.get("policy")
        if not isinstance(policy, str):
            raise UsageInputError(f"checkpoint.policy: must be a string, got {policy!r}")
        try:
            policy_value = _check_policy(policy)
        except SessionInputError as exc:
            raise UsageInputError(f"checkpoint.{exc}") from None
        return cls(
            boundary,
            carries,
            _require_mapping(data.get("billed_ms"), "checkpoint.billed_ms"),
            _require_int(data.get("unbilled_ms"), "checkpoint.unbilled_ms", minimum=0),
            hours,
            policy_value,
            _require_int(data.get("silence_timeout_ms"), "checkpoint.silence_timeout_ms", minimum=0),
        )


def _carry_from_json(boundary: int, raw: object, where: str) -> AgentCarry:
    """A checkpoint's carry: ``[start_ms, last_ms, online]`` (version 1), ``[start_ms, last_ms, online,
    logout_ms | null]`` (open) or ``[logout_ms]`` (closed, remembering a LOGOUT)."""
    if isinstance(raw, list) and len(raw) == 1:
        return AgentCarry(boundary, logout_ms=_require_int(raw[0], f"{where}[0] (logout_ms)"))
    if not isinstance(raw, list) or len(raw) not in (3, 4):
        raise UsageInputError(f"{where}: must be [start_ms, last_ms, online, logout_ms], got {raw!r}")
    logout = raw[3] if len(raw) == 4 else None
    return AgentCarry(
        boundary,
        True,
        _require_int(raw[0], f"{where}[0] (start_ms)"),
        _require_int(raw[1], f"{where}[1] (last_ms)"),
        _require_bool(raw[2], f"{where}[2] (online)"),
        None if logout is None else _require_int(logout, f"{where}[3] (logout_ms)"),
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

    def total_ms(self, subscription_key: str) -> int:
        """T(s, e, H): cumulative billable ms attributed to the subscription (0 if none)."""
        return self.total_ms_by_subscription.get(subscription_key, 0)

    def agent_count(self, hour_ms: int) -> int:
        """N(H): agents with more than 0 ms of billable time in the hour."""
        return len(self.agents_by_hour.get(_require_hour(hour_ms, "hour_ms"), frozenset()))

    def checkpoint_at(self, next_boundary_ms: int) -> EnvironmentCheckpoint:
        """The checkpoint at ``next_boundary_ms`` from the checkpoint and ONLY the given events before it.

        ``boundary_ms <= next_boundary_ms <= until_ms``, a whole hour. Events at or after it (the first
        minutes of the next hour) are left out, so the next run sees them again. Every event before it
        that is known must have been passed to ``resume``.
        """
        previous = self._checkpoint
        next_boundary = _require_hour(next_boundary_ms, "next_boundary_ms")
        if not self.boundary_ms <= next_boundary <= self.until_ms:
            raise UsageInputError(
                f"next_boundary_ms: {next_boundary} must be within [boundary_ms, until_ms] = "
                f"[{self.boundary_ms}, {self.until_ms}] (a checkpoint only covers what this view computed)"
            )
        timeout = previous.silence_timeout_ms
        track_online = previous.policy is BillableTimePolicy.ONLINE
        hours: dict[int, set[str]] = {hour: set(agents) for hour, agents in previous.agent_hours.items()}
        carries: dict[str, AgentCarry] = {}
        pieces: list[Piece] = []
        for agent in _agents(previous, self._points):
            points = self._points.get(agent, [])
            cut = bisect.bisect_left(points, next_boundary, key=lambda point: point.ts_ms)
            carry = previous.carries.get(agent) or AgentCarry(previous.boundary_ms)
            agent_pieces, carry = _advance(
                carry, points[:cut], timeout, track_online, next_boundary, f"events_by_agent[{agent!r}]"
            )
            if carry.remembered:
                carries[agent] = carry
            pieces.extend(agent_pieces)
            for hour in billable_ms_by_hour(agent_pieces):
                hours.setdefault(hour, set()).add(agent)
        billed, unbilled = _merge_totals(
            previous.billed_ms,
            previous.unbilled_ms,
            _attribute_all(pieces, self._subscriptions, next_boundary),
        )
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
    timeout = _check_timeout(silence_timeout_ms)
    policy_value = _check_policy(policy)
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
    until = _require_int(until_ms, "until_ms")
    boundary = checkpoint.boundary_ms
    if until < boundary:
        raise UsageInputError(f"until_ms: {until} is before the checkpoint's boundary {boundary}")
    subs = _check_subscriptions(subscriptions)
    track_online = policy_value is BillableTimePolicy.ONLINE
    points_by_agent: dict[str, list[AgentEventPoint]] = {}
    for agent, events in _require_mapping(events_by_agent_from_boundary, "events_by_agent").items():
        if not isinstance(agent, str) or not agent:
            raise UsageInputError(f"events_by_agent: agent ARN must be a non-empty string, got {agent!r}")
        points_by_agent[agent] = _points(events, f"events_by_agent[{agent!r}]")
    pieces: list[Piece] = []
    agents_by_hour: dict[int, set[str]] = {
        hour: set(agents) for hour, agents in checkpoint.agent_hours.items()
    }
    for agent in _agents(checkpoint, points_by_agent):
        carry = checkpoint.carries.get(agent) or AgentCarry(boundary)
        agent_pieces, _ = _advance(
            carry, points_by_agent.get(agent, []), timeout, track_online, None, f"events_by_agent[{agent!r}]"
        )
        clipped = [(low, min(high, until)) for low, high in agent_pieces if low < until]
        pieces.extend(clipped)
        for hour in billable_ms_by_hour(clipped):
            agents_by_hour.setdefault(hour, set()).add(agent)
    totals, unbilled = _merge_totals(
        checkpoint.billed_ms, checkpoint.unbilled_ms, _attribute_all(pieces, subs, until)
    )
    by_hour = {hour: ms for hour, ms in billable_ms_by_hour(pieces).items() if hour >= boundary}
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
    boundary = _require_hour(boundary_ms, "boundary_ms")
    materialised = {
        agent: _points(events, f"events_by_agent[{agent!r}]")
        for agent, events in _require_mapping(events_by_agent, "events_by_agent").items()
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


# --- hourly quantity (section 5) -------------------------------------------------------------------


def hour_quantity(total_ms: int, already_billed_minutes: int) -> int:
    """Q(s, e, H) = max(0, floor(T / 60 s) - B): whole minutes not billed yet; fractions carry over."""
    total = _require_int(total_ms, "total_ms", minimum=0)
    billed = _require_int(already_billed_minutes, "already_billed_minutes", minimum=0)
    return max(0, total // MS_PER_MINUTE - billed)


def usage_allocations(
    quantities_by_environment: Mapping[str, int], *, tag_key: str = DEFAULT_ALLOCATION_TAG_KEY
) -> tuple[int, list[dict[str, Any]]]:
    """The record's ``Quantity`` (sum of Q over environments) and its ``UsageAllocations``.

    One allocation per environment with Q > 0, tagged ``[{"Key": tag_key, "Value": <environment name>}]``,
    in environment-name order; no allocations when the quantity is 0 (BILLING.md sections 5 and 9).
    """
    if not isinstance(tag_key, str) or not tag_key:
        raise UsageInputError(f"tag_key: must be a non-empty string, got {tag_key!r}")
    total = 0
    allocations: list[dict[str, Any]] = []
    for name, quantity in sorted(
        _require_mapping(quantities_by_environment, "quantities_by_environment").items()
    ):
        if not isinstance(name, str) or not name:
            raise UsageInputError(
                f"quantities_by_environment: environment name must be a non-empty string, got {name!r}"
            )
        _require_int(quantity, f"quantities_by_environment[{name!r}]", minimum=0)
        if quantity > 0:
            total += quantity
            allocations.append(
                {"AllocatedUsageQuantity": quantity, "Tags": [{"Key": tag_key, "Value": name}]}
            )
    return total, allocations
