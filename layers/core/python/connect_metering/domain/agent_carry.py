"""One agent's section 3 scan, resumed from its state at a boundary (the incremental core's unit).

A carry is everything the scan needs from the events before a boundary: see ``usage`` for why resuming
from it is exact. Pure: no boto3, no I/O, no clock reads.

Choices (each one is tested in ``tests/unit/test_usage.py``):

- Only pieces of more than 0 ms are returned; zero-length sessions carry no time.
- An open carry whose ``last`` is more than ``silence_timeout`` before its boundary is closed: every later
  event is at or after the boundary, so it would close the session anyway. Checkpoints therefore only
  hold the agents that may still be logged in, and the agents whose latest LOGOUT (less than
  ``LOGOUT_MEMORY_MS`` old) still makes a later status offline (section 3).
- Duplicates (same ``event_id``) are dropped within one call, the first in sorted order winning, as in
  the whole-set core. A carry does not remember event ids, so the same ``event_id`` stored on both sides
  of a boundary with different timestamps would be counted twice; the stored event set must hold each
  ``EventId`` once (de-duplication is the event store's job).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

from connect_metering.domain.sessions import (
    DEFAULT_SILENCE_TIMEOUT_MS,
    LOGOUT_MEMORY_MS,
    AgentEventPoint,
    BillableTimePolicy,
    Piece,
    ScanState,
    SessionInputError,
    check_policy,
    check_timeout,
    scan_pieces,
    scan_spans,
    sorted_points,
)
from connect_metering.domain.usage_inputs import UsageInputError, require_bool, require_int, require_mapping


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
    def state(self) -> ScanState:
        """The scan state to resume from (the boundary aside)."""
        return ScanState(self.is_open, self.start_ms, self.last_ms, self.online, self.logout_ms)

    @property
    def remembered(self) -> bool:
        """Whether a checkpoint must keep this carry: a session may be open, or a LOGOUT still counts."""
        return self.is_open or self.logout_ms is not None

    def __post_init__(self) -> None:
        if self.boundary_ms is not None:
            require_int(self.boundary_ms, "carry.boundary_ms")
        require_bool(self.is_open, "carry.is_open")
        require_bool(self.online, "carry.online")
        require_int(self.start_ms, "carry.start_ms")
        require_int(self.last_ms, "carry.last_ms")
        if self.logout_ms is not None:
            require_int(self.logout_ms, "carry.logout_ms")
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
        data = require_mapping(document, "carry")
        boundary = data.get("boundary_ms")
        if boundary is not None:
            require_int(boundary, "carry.boundary_ms")
        logout = data.get("logout_ms")
        if logout is not None:
            require_int(logout, "carry.logout_ms")
        if require_bool(data.get("open"), "carry.open"):
            return cls(
                boundary,
                True,
                require_int(data.get("start_ms"), "carry.start_ms"),
                require_int(data.get("last_ms"), "carry.last_ms"),
                require_bool(data.get("online"), "carry.online"),
                logout,
            )
        return cls(boundary, logout_ms=logout)


def settle(carry: AgentCarry, timeout: int) -> AgentCarry:
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


def _check_advance(
    old_boundary: int | None, points: list[AgentEventPoint], boundary_ms: int | None, where: str
) -> None:
    """The points lie in [old boundary, new boundary), and the boundary only moves on."""
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


def _boundary_after(old_boundary: int | None, points: list[AgentEventPoint]) -> int | None:
    """No boundary given: just after the latest point, or the old boundary if that is later."""
    if not points:
        return old_boundary
    after_last = points[-1].ts_ms + 1
    return after_last if old_boundary is None else max(old_boundary, after_last)


def advance(
    carry: AgentCarry,
    points: list[AgentEventPoint],
    timeout: int,
    track_online: bool,
    boundary_ms: int | None,
    where: str,
) -> tuple[list[Piece], AgentCarry]:
    """The section 3 scan over sorted, validated points, from ``carry``; the pieces it produces."""
    _check_advance(carry.boundary_ms, points, boundary_ms, where)
    pieces, state = scan_pieces(points, timeout, track_online, carry.state)
    if boundary_ms is None:
        boundary_ms = _boundary_after(carry.boundary_ms, points)
    new_carry = (
        AgentCarry(boundary_ms, True, state.start_ms, state.last_ms, state.online, state.logout_ms)
        if state.is_open
        else AgentCarry(boundary_ms, logout_ms=state.logout_ms)
    )
    return pieces, settle(new_carry, timeout)


def advance_split(
    carry: AgentCarry,
    points: list[AgentEventPoint],
    cut_ms: int,
    timeout: int,
    track_online: bool,
    where: str,
    *,
    joined: bool = False,
) -> tuple[list[Piece], AgentCarry, list[Piece]]:
    """``advance`` over sorted, validated points with no new boundary, in ONE scan that also stops at
    ``cut_ms`` (not before the carry's boundary): the pieces produced by the points before ``cut_ms``, the
    carry at ``cut_ms`` (what ``advance`` over those points with that boundary returns), and the pieces
    produced by the points from ``cut_ms`` on. The two parts share the duplicate check, so together they
    are exactly the pieces of one ``advance`` over every point. ``joined``: each part's touching pieces
    joined (``scan_spans``), for a caller that only adds up or places their milliseconds."""
    _check_advance(carry.boundary_ms, points, None, where)
    cut = bisect.bisect_left(points, cut_ms, key=_timestamp)
    seen: set[str] = set()
    scan = scan_spans if joined else scan_pieces
    before, state = scan(points[:cut], timeout, track_online, carry.state, seen)
    after, _ = scan(points[cut:], timeout, track_online, state, seen)
    at_cut = (
        AgentCarry(cut_ms, True, state.start_ms, state.last_ms, state.online, state.logout_ms)
        if state.is_open
        else AgentCarry(cut_ms, logout_ms=state.logout_ms)
    )
    return before, settle(at_cut, timeout), after


def _timestamp(point: AgentEventPoint) -> int:
    return point.ts_ms


def checked_points(events: Iterable[AgentEventPoint], where: str) -> list[AgentEventPoint]:
    try:
        return sorted_points(events)
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
    timeout = check_timeout(silence_timeout_ms)
    track_online = check_policy(policy) is BillableTimePolicy.ONLINE
    if carry is None:
        carry = AgentCarry(None)
    elif not isinstance(carry, AgentCarry):
        raise UsageInputError(f"carry: must be an AgentCarry or None, got {type(carry).__name__}")
    if boundary_ms is not None:
        require_int(boundary_ms, "boundary_ms")
    return advance(
        settle(carry, timeout), checked_points(points, "points"), timeout, track_online, boundary_ms, "points"
    )
