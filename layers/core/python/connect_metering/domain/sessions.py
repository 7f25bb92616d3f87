"""Agent sessions and billable time, exactly as BILLING.md section 3 (and section 9) says.

Pure and fast: no boto3, no I/O, no clock reads ("now" is always a parameter). Events are light
``NamedTuple`` points with integer epoch milliseconds, so the whole path (sort, scan, hourly split)
runs well above 100,000 events per second on one core (see ``connect_metering.local.bench_core``).

Choices where BILLING.md is silent (each one is tested in ``tests/unit/test_sessions.py``):

- A status is *offline* (section 3) when its ``Name`` is exactly ``Offline`` (case-sensitive, as
  ``EventType`` is), or when the agent's latest LOGIN/LOGOUT earlier in the scan order is a LOGOUT and
  the status's ``StartTimestamp`` is at most 60 s after it (``LOGOUT_STATUS_GRACE_MS``): customers
  rename Offline, and the heartbeats Connect sends after a logout carry the status entered at the
  logout. "Latest LOGOUT is later than the latest LOGIN" is read in scan order, so a LOGIN and a LOGOUT
  at the same instant leave the agent logged out. A missing snapshot, status or name is not named
  Offline; a status without a readable ``StartTimestamp`` is offline by its name only.
- A LOGOUT is remembered for ``LOGOUT_MEMORY_MS`` (24 h): an event stamped more than 24 h after the
  agent's last LOGOUT is judged by its status name alone. Connect sends post-logout heartbeats for up
  to an hour, so this never changes a real stream's result; it keeps the hourly checkpoints from
  remembering every agent that ever left an instance, and keeps exact the metering's shortcut that a
  whole UTC day without any stored item leaves nothing to carry.
- Two points with the same ``event_id`` but different content: the first one in the sorted order
  (``ts_ms``, ``kind``, ``event_id``, then ``offline``) is kept, so the result depends only on the set.
- Zero-length sessions (e.g. LOGIN and LOGOUT at the same instant) are real sessions and appear in
  ``sessions_for_agent`` and in the ``logged_in`` intervals; they carry 0 ms, so the hourly split
  gives them no hour key. Hourly maps only hold hours with more than 0 ms.
- Policy ``online``: see ``billable_intervals``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum, StrEnum
from typing import Final, NamedTuple

from connect_metering.domain.instants import MS_PER_HOUR, InstantError, parse_iso_ms

DEFAULT_SILENCE_TIMEOUT_MS: Final = 360_000
OFFLINE_STATUS_NAME: Final = "Offline"
# A status entered at most this long after the agent's LOGOUT is the post-logout (Offline) status.
LOGOUT_STATUS_GRACE_MS: Final = 60_000
# How long after a LOGOUT its status is still recognised as the post-logout one (see the module doc).
LOGOUT_MEMORY_MS: Final = 24 * 3_600_000
# ``status_start_ms`` of a status without a readable StartTimestamp: later than any LOGOUT + grace, so
# such a status is offline by its name only.
UNKNOWN_STATUS_START_MS: Final = 2**62


class SessionInputError(ValueError):
    """Input that breaks a rule of the session core; the message names the field and the rule."""


class EventKind(IntEnum):
    """Agent event types; the values are the tie order of BILLING.md section 3."""

    LOGIN = 0
    STATE_CHANGE = 1
    HEART_BEAT = 2
    LOGOUT = 3

    @classmethod
    def from_event_type(cls, event_type: object) -> EventKind:
        """``EventType`` string -> kind; case-sensitive (BILLING.md section 9)."""
        if isinstance(event_type, str) and event_type in cls.__members__:
            return cls[event_type]
        raise SessionInputError(
            f"EventType: {event_type!r} is not one of LOGIN, STATE_CHANGE, HEART_BEAT, LOGOUT "
            "(case-sensitive)"
        )


class BillableTimePolicy(StrEnum):
    """``billable_time`` policy (BILLING.md section 8); ``logged_in`` is the default."""

    LOGGED_IN = "logged_in"
    ONLINE = "online"


class SessionEnd(StrEnum):
    """Why a session ended: a LOGOUT, the silence timeout, or not yet (open at the end of the data)."""

    LOGOUT = "logout"
    SILENCE = "silence_timeout"
    OPEN = "open"


class AgentEventPoint(NamedTuple):
    """One accepted agent event, reduced to what the session scan needs.

    ``offline`` is True exactly when ``CurrentAgentSnapshot.AgentStatus.Name == "Offline"``; a
    missing snapshot, status or name counts as not Offline (see ``offline_from_agent_event``).
    ``status_start_ms`` is the status's ``StartTimestamp`` (``UNKNOWN_STATUS_START_MS`` when it has
    none that parses): the scan compares it with the agent's latest LOGOUT (section 3, *offline*).
    The field order is the sort order of section 3: timestamp, then kind, then event id.
    """

    ts_ms: int
    kind: EventKind
    event_id: str
    offline: bool
    status_start_ms: int = UNKNOWN_STATUS_START_MS


class Session(NamedTuple):
    """A session [start_ms, end_ms] of one agent.

    ``last_ms`` is the contract's ``last``: the timestamp of the latest non-LOGOUT event of the
    session (the opening event included). ``end_ms`` is the LOGOUT timestamp for a session closed by
    LOGOUT, and ``last_ms`` otherwise (closed by the silence timeout, or still open).
    """

    start_ms: int
    end_ms: int
    last_ms: int
    end_reason: SessionEnd

    @property
    def closed(self) -> bool:
        """Closed by a LOGOUT or by the silence timeout; False when still open at the end of the data."""
        return self.end_reason is not SessionEnd.OPEN

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


_LOGIN: Final = int(EventKind.LOGIN)
_LOGOUT: Final = int(EventKind.LOGOUT)
_KIND_VALUES: Final = frozenset(int(kind) for kind in EventKind)
_POLICY_VALUES: Final = tuple(policy.value for policy in BillableTimePolicy)
_END_LOGOUT: Final = SessionEnd.LOGOUT
_END_SILENCE: Final = SessionEnd.SILENCE
_END_OPEN: Final = SessionEnd.OPEN


def _agent_status(agent_event: Mapping[str, object]) -> Mapping[str, object]:
    snapshot = agent_event.get("CurrentAgentSnapshot")
    if not isinstance(snapshot, Mapping):
        return {}
    status = snapshot.get("AgentStatus")
    return status if isinstance(status, Mapping) else {}


def offline_from_agent_event(agent_event: Mapping[str, object]) -> bool:
    """``offline`` for an agent event: its ``CurrentAgentSnapshot.AgentStatus.Name`` is exactly ``Offline``.

    A missing or malformed snapshot, status or name is not Offline.
    """
    return _agent_status(agent_event).get("Name") == OFFLINE_STATUS_NAME


def status_start_from_agent_event(agent_event: Mapping[str, object]) -> int:
    """``status_start_ms`` for an agent event: its ``AgentStatus.StartTimestamp`` in epoch ms, or
    ``UNKNOWN_STATUS_START_MS`` when missing or unreadable (the status is then offline by name only)."""
    start = _agent_status(agent_event).get("StartTimestamp")
    if not isinstance(start, str):
        return UNKNOWN_STATUS_START_MS
    try:
        return parse_iso_ms(start, field="AgentStatus.StartTimestamp")
    except InstantError:
        return UNKNOWN_STATUS_START_MS


def is_post_logout_status(status_start_ms: int, ts_ms: int, logout_ms: int | None) -> bool:
    """Section 3's second *offline* case: the agent's latest LOGIN/LOGOUT so far is the LOGOUT at
    ``logout_ms`` (None: it is a LOGIN, or there is neither) and the status started at most 60 s after it."""
    return (
        logout_ms is not None
        and status_start_ms - logout_ms <= LOGOUT_STATUS_GRACE_MS
        and ts_ms - logout_ms <= LOGOUT_MEMORY_MS
    )


def check_timeout(silence_timeout_ms: object) -> int:
    if type(silence_timeout_ms) is not int or silence_timeout_ms < 0:
        raise SessionInputError(
            f"silence_timeout_ms: must be an integer number of milliseconds >= 0, got {silence_timeout_ms!r}"
        )
    return silence_timeout_ms


def check_policy(policy: object) -> BillableTimePolicy:
    if isinstance(policy, str) and policy in _POLICY_VALUES:
        return BillableTimePolicy(policy)
    allowed = ", ".join(_POLICY_VALUES)
    raise SessionInputError(f"policy: must be one of {allowed}, got {policy!r}")


def sorted_points(events: Iterable[AgentEventPoint]) -> list[AgentEventPoint]:
    """The points validated and sorted. Validation runs in one pass of C-level type checks over the
    columns; only a list that fails it is walked point by point, to name the first bad field."""
    points = list(events)
    if not _well_formed(points):
        _name_bad_point(points)
    points.sort()
    return points


_EVENT_POINT_TYPE: Final = frozenset({AgentEventPoint})
_KIND_TYPES: Final = frozenset({EventKind, int})


def _well_formed(points: list[AgentEventPoint]) -> bool:
    """Whether every point is an ``AgentEventPoint`` with fields of the right types (True for none)."""
    if not points:
        return True
    if set(map(type, points)) != _EVENT_POINT_TYPE:  # C-level: no Python step per point
        return False
    stamps, kinds, event_ids, offlines, status_starts = zip(*points, strict=True)
    return (
        set(map(type, stamps)) == {int}
        and set(map(type, kinds)) <= _KIND_TYPES
        and set(kinds) <= _KIND_VALUES
        and set(map(type, event_ids)) == {str}
        and set(map(type, offlines)) == {bool}
        and set(map(type, status_starts)) == {int}
    )


def _name_bad_point(points: list[AgentEventPoint]) -> None:
    """Raise the error for the first point that breaks a rule (one point by one)."""
    kinds = _KIND_VALUES
    for index, point in enumerate(points):
        try:
            ts_ms, kind, event_id, offline, status_start_ms = point
        except (TypeError, ValueError):
            raise SessionInputError(f"events[{index}]: must be an AgentEventPoint, got {point!r}") from None
        if type(ts_ms) is not int:
            raise SessionInputError(f"events[{index}].ts_ms: must be integer epoch ms, got {ts_ms!r}")
        if kind not in kinds or isinstance(kind, bool):
            raise SessionInputError(f"events[{index}].kind: must be an EventKind (0..3), got {kind!r}")
        if type(event_id) is not str:
            raise SessionInputError(f"events[{index}].event_id: must be a string, got {event_id!r}")
        if type(offline) is not bool:
            raise SessionInputError(f"events[{index}].offline: must be a bool, got {offline!r}")
        if type(status_start_ms) is not int:
            raise SessionInputError(
                f"events[{index}].status_start_ms: must be integer epoch ms, got {status_start_ms!r}"
            )


def _sessions(points: list[AgentEventPoint], timeout: int) -> list[Session]:
    """The section 3 scan over sorted points: the sessions, zero-length ones included."""
    sessions: list[Session] = []
    seen: set[str] = set()
    seen_add = seen.add
    is_open = False
    start = last = 0
    logout: int | None = None
    for ts, kind, event_id, named_offline, status_start in points:
        if event_id in seen:
            continue
        seen_add(event_id)
        # (inline test first: the call only happens while a LOGOUT is remembered)
        offline = named_offline or (logout is not None and is_post_logout_status(status_start, ts, logout))
        # The latest LOGOUT, as long as no LOGIN came after it.
        logout = None if kind == _LOGIN else ts if kind == _LOGOUT else logout
        if is_open:
            if ts - last > timeout:
                sessions.append(Session(start, last, last, _END_SILENCE))
                is_open = False
                # The event is re-read in state closed below.
            elif kind == _LOGOUT:
                sessions.append(Session(start, ts, last, _END_LOGOUT))
                is_open = False
                continue
            else:
                last = ts
                continue
        if kind == _LOGIN or (kind != _LOGOUT and not offline):
            is_open = True
            start = last = ts
    if is_open:
        sessions.append(Session(start, last, last, _END_OPEN))
    return sessions


Piece = tuple[int, int]


class ScanState(NamedTuple):
    """The section 3 scan state of one agent between two events.

    Open: a session started at ``start_ms`` whose latest non-LOGOUT event is at ``last_ms``; ``online``
    tells whether the status in force since ``last_ms`` is not Offline. ``logout_ms``: the agent's
    latest LOGOUT when it came after its latest LOGIN (the post-logout status rule), else None.
    """

    is_open: bool = False
    start_ms: int = 0
    last_ms: int = 0
    online: bool = False
    logout_ms: int | None = None


CLOSED: Final = ScanState()


def scan_pieces(
    points: list[AgentEventPoint],
    timeout: int,
    track_online: bool,
    state: ScanState = CLOSED,
    seen: set[str] | None = None,
    *,
    joined: bool = False,
) -> tuple[list[Piece], ScanState]:
    """The section 3 scan over sorted, validated points from ``state``, as billable pieces.

    Each event of an open session at ``ts`` (a LOGOUT included) produces the piece [last, ts], for
    policy ``online`` only when the status in force since ``last`` is not Offline; only pieces of more
    than 0 ms are returned, in time order. The pieces of a session chain from its start to its end, so
    for ``logged_in`` they add up to the sessions and for ``online`` they chain into its online stretches.
    Returns the pieces and the state after the last point. ``seen``: the event ids already scanned, when
    one scan is run in consecutive parts (updated in place); a fresh scan by default. ``joined``: each run
    of touching pieces comes as one span ([a, b] and [b, c] give [a, c]), for readers that only add up or
    place the milliseconds (the metering's hourly view: about one span per agent-hour instead of a piece
    per heartbeat); see ``scan_spans``.
    """
    pieces: list[Piece] = []
    append = pieces.append
    if seen is None:
        seen = set()
    seen_add = seen.add
    is_open, start, last, online, logout = state
    piece_end: int | None = None  # where the latest piece ends, when ``joined``
    for ts, kind, event_id, named_offline, status_start in points:
        if event_id in seen:
            continue
        seen_add(event_id)
        # (inline test first: the call only happens while a LOGOUT is remembered)
        offline = named_offline or (logout is not None and is_post_logout_status(status_start, ts, logout))
        # The latest LOGOUT, as long as no LOGIN came after it.
        logout = None if kind == _LOGIN else ts if kind == _LOGOUT else logout
        if is_open and ts - last <= timeout:
            if ts > last and (online or not track_online):
                if joined and last == piece_end:  # touches the piece before: it grows
                    pieces[-1] = (pieces[-1][0], ts)
                else:
                    append((last, ts))
                piece_end = ts
            if kind == _LOGOUT:
                is_open = False
            else:
                last = ts
                online = not offline
            continue
        # Closed, or just closed by the silence timeout: the event is read in state closed.
        is_open = kind == _LOGIN or (kind != _LOGOUT and not offline)
        if is_open:
            start = last = ts
            online = not offline
    return pieces, ScanState(is_open, start, last, online, logout)


def scan_spans(
    points: list[AgentEventPoint],
    timeout: int,
    track_online: bool,
    state: ScanState = CLOSED,
    seen: set[str] | None = None,
) -> tuple[list[Piece], ScanState]:
    """``scan_pieces`` with each run of touching pieces joined into one span: the same milliseconds in the
    same places, the same state and ``seen`` (``tests/unit/test_sessions_properties.py``: the joined
    pieces of ``scan_pieces``)."""
    return scan_pieces(points, timeout, track_online, state, seen, joined=True)


def _online_stretches(points: list[AgentEventPoint], timeout: int) -> list[Piece]:
    """Policy ``online``: the section 3 scan over sorted points, keeping the stretches of its sessions
    whose status in force is not Offline (see ``billable_intervals``); ``since`` is the start of the
    stretch in force, None while the status is Offline."""
    stretches: list[Piece] = []
    append = stretches.append
    seen: set[str] = set()
    seen_add = seen.add
    is_open = False
    last = 0
    since: int | None = None
    logout: int | None = None
    for ts, kind, event_id, named_offline, status_start in points:
        if event_id in seen:
            continue
        seen_add(event_id)
        # (inline test first: the call only happens while a LOGOUT is remembered)
        offline = named_offline or (logout is not None and is_post_logout_status(status_start, ts, logout))
        # The latest LOGOUT, as long as no LOGIN came after it.
        logout = None if kind == _LOGIN else ts if kind == _LOGOUT else logout
        if is_open and ts - last <= timeout:
            if kind == _LOGOUT or offline:  # the stretch in force ends here
                if since is not None and ts > since:
                    append((since, ts))
                since = None
            elif since is None:
                # Back online at the very instant it went offline: one stretch, not two.
                since = stretches.pop()[0] if stretches and stretches[-1][1] == ts else ts
            last = ts
            is_open = kind != _LOGOUT
            continue
        if is_open and since is not None and last > since:  # closed by the silence timeout
            append((since, last))
        is_open = kind == _LOGIN or (kind != _LOGOUT and not offline)
        last = ts
        since = ts if is_open and not offline else None
    if is_open and since is not None and last > since:
        append((since, last))
    return stretches


def sessions_for_agent(
    events: Iterable[AgentEventPoint], *, silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS
) -> list[Session]:
    """The sessions of one agent (BILLING.md section 3), in time order; they never overlap.

    ``events`` are the agent's accepted events in any order, duplicates allowed: points are
    de-duplicated by ``event_id`` (the first in sorted order wins), sorted by (``ts_ms``, ``kind``,
    ``event_id``) and scanned from state closed. The result depends only on the set of points.
    """
    timeout = check_timeout(silence_timeout_ms)
    return _sessions(sorted_points(events), timeout)


def is_final(session: Session, now_ms: int, silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS) -> bool:
    """Whether no later event can extend the session: closed, or open with ``now - last > timeout``.

    Only events with a timestamp after ``last_ms`` are covered: a late event stamped inside or
    before the session still changes the result, which is always recomputed from the event set.
    """
    timeout = check_timeout(silence_timeout_ms)
    if type(now_ms) is not int:
        raise SessionInputError(f"now_ms: must be integer epoch ms, got {now_ms!r}")
    return session.closed or now_ms - session.last_ms > timeout


def billable_intervals(
    events: Iterable[AgentEventPoint],
    *,
    policy: BillableTimePolicy | str = BillableTimePolicy.LOGGED_IN,
    silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS,
) -> list[tuple[int, int]]:
    """Billable intervals [a, b] of one agent, in time order, disjoint; each is worth b - a ms.

    ``logged_in`` (default): each session's [start, end], zero-length sessions included.

    ``online``: the session time whose current status is not Offline. Inside a session the status at
    t is that of the latest event of the session at or before t in the sorted order, so the stretch
    from an offline event to the next event of the session (or the session end) is removed; a
    stretch from an online event runs until the next offline event or the session end. The opening
    event counts with its own status: a LOGIN whose snapshot is Offline opens the session (it is
    logged-in time) but is not online time until an event with another status arrives; a
    STATE_CHANGE / HEART_BEAT only opens when not Offline. The closing LOGOUT ends the session at
    its timestamp, so its own status covers no time; the time before it keeps the status of the
    event before it. Events outside sessions (ignored while closed) never count. Only stretches of
    more than 0 ms are returned.
    """
    timeout = check_timeout(silence_timeout_ms)
    track_online = check_policy(policy) is BillableTimePolicy.ONLINE
    return _intervals(sorted_points(events), timeout, track_online)


def _intervals(points: list[AgentEventPoint], timeout: int, track_online: bool) -> list[tuple[int, int]]:
    if track_online:
        return _online_stretches(points, timeout)
    return [(session.start_ms, session.end_ms) for session in _sessions(points, timeout)]


def billable_ms_by_hour(intervals: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Hour start (epoch ms) -> billable ms inside [H, H + 1 h), in hour order.

    Each interval [a, b] adds exactly b - a, split at hour boundaries, so the values sum to the sum
    of b - a. Hours with 0 ms (zero-length intervals) get no key. Intervals are added as given: pass
    disjoint ones (as ``billable_intervals`` returns) to avoid counting time twice.
    """
    checked = list(intervals)
    for index, interval in enumerate(checked):
        start, end = interval
        if type(start) is not int or type(end) is not int:
            raise SessionInputError(f"intervals[{index}]: bounds must be integer epoch ms, got {interval!r}")
        if end < start:
            raise SessionInputError(
                f"intervals[{index}]: end {end} is before start {start} (need start <= end)"
            )
    return dict(sorted(ms_by_hour(checked).items()))


def ms_by_hour(pieces: Iterable[Piece]) -> dict[int, int]:
    """``billable_ms_by_hour`` without the checks or the ordering, for pieces the core made itself
    (integer bounds, start <= end)."""
    by_hour: dict[int, int] = {}
    get = by_hour.get
    for start, end in pieces:
        if end <= start:
            continue
        hour = start - start % MS_PER_HOUR
        next_hour = hour + MS_PER_HOUR
        if end <= next_hour:
            by_hour[hour] = get(hour, 0) + end - start
            continue
        by_hour[hour] = get(hour, 0) + next_hour - start
        hour = next_hour
        while end - hour > MS_PER_HOUR:
            by_hour[hour] = get(hour, 0) + MS_PER_HOUR
            hour += MS_PER_HOUR
        by_hour[hour] = get(hour, 0) + end - hour
    return by_hour


def hours_touched(pieces: Iterable[Piece]) -> set[int]:
    """The hours in which pieces the core made (integer bounds, start <= end) hold more than 0 ms: the
    keys of ``billable_ms_by_hour``, without adding up the milliseconds."""
    hours: set[int] = set()
    add = hours.add
    for start, end in pieces:
        if end <= start:
            continue
        hour = start - start % MS_PER_HOUR
        add(hour)
        last = end - 1 - (end - 1) % MS_PER_HOUR
        while hour < last:
            hour += MS_PER_HOUR
            add(hour)
    return hours


def billable_ms_by_hour_for_agents(
    points_by_agent: Mapping[str, Iterable[AgentEventPoint]],
    *,
    policy: BillableTimePolicy | str = BillableTimePolicy.LOGGED_IN,
    silence_timeout_ms: int = DEFAULT_SILENCE_TIMEOUT_MS,
) -> dict[str, dict[int, int]]:
    """AgentARN -> (hour start -> billable ms). Every agent given gets a key, possibly with ``{}``."""
    timeout = check_timeout(silence_timeout_ms)
    track_online = check_policy(policy) is BillableTimePolicy.ONLINE
    result: dict[str, dict[int, int]] = {}
    for agent, points in points_by_agent.items():
        result[agent] = billable_ms_by_hour(_intervals(sorted_points(points), timeout, track_online))
    return result


def _check_hour(hour_ms: object) -> int:
    if type(hour_ms) is not int or hour_ms % MS_PER_HOUR != 0:
        raise SessionInputError(f"hour_ms: must be the epoch ms of a whole UTC hour, got {hour_ms!r}")
    return hour_ms


def agents_with_billable_time(per_agent_hours: Mapping[str, Mapping[int, int]], hour_ms: int) -> int:
    """N(H) of contract pricing: how many agents have more than 0 ms of billable time in hour H."""
    hour = _check_hour(hour_ms)
    return sum(1 for hours in per_agent_hours.values() if hours.get(hour, 0) > 0)


def agents_with_billable_time_by_hour(per_agent_hours: Mapping[str, Mapping[int, int]]) -> dict[int, int]:
    """Hour start -> N(H), for every hour in which at least one agent has more than 0 ms."""
    counts: dict[int, int] = {}
    for hours in per_agent_hours.values():
        for hour, billable_ms in hours.items():
            if billable_ms > 0:
                counts[hour] = counts.get(hour, 0) + 1
    return dict(sorted(counts.items()))
