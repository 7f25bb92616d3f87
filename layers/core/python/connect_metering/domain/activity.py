"""What the activity store and the services exchange: stored events, the hours read back with their
checkpoints, the late-event markers, and the answer of one agent-hour write.

Pure data. The stored form of each (keys, encodings, the checkpoint codec) belongs to the adapter
(``adapters/activity_table.py``); these are what a service sees of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connect_metering.domain.sessions import AgentEventPoint
from connect_metering.domain.usage import EnvironmentCheckpoint


@dataclass(frozen=True, slots=True)
class StoredEvent:
    agent_arn: str
    point: AgentEventPoint


@dataclass(frozen=True, slots=True)
class HourWindow:
    """What one read returns, for a span of hours: the checkpoints that decoded and sit at their own hour
    (by hour start; an unreadable one is left out and counted by the store) and the events."""

    checkpoints: dict[int, EnvironmentCheckpoint]
    events: list[StoredEvent]


@dataclass(frozen=True, slots=True)
class AgentHoursWindow:
    """``HourWindow`` with the events as stored: per agent-hour item, the agent's ARN and its events
    (one agent may have several items; the lists belong to the store and are not to be changed)."""

    checkpoints: dict[int, EnvironmentCheckpoint]
    agent_hours: list[tuple[str, list[AgentEventPoint]]]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """An environment's scan state at the start of ``hour_ms``, to be stored with the metering commit."""

    instance_arn: str
    hour_ms: int
    checkpoint: EnvironmentCheckpoint


@dataclass(frozen=True, slots=True)
class LateMarker:
    """An agent-hour that received events after it was metered, as the late-events index lists it.
    ``pk``/``sk`` are the store's keys, handed back unread to clear the marker."""

    instance_arn: str
    hour_ms: int
    pk: str
    sk: str
    late_at_ms: int


class EventStored(StrEnum):
    """What one agent-hour write did with one event."""

    NEW = "new"
    DUPLICATE = "duplicate"  # already stored, or an earlier event of the same write is the same event
    REFUSED = "refused"  # the agent-hour is full (BILLING.md section 2 rule 6)


@dataclass(frozen=True, slots=True)
class AddedEvents:
    """The answer of one agent-hour write: one outcome per event given, in the same order."""

    outcomes: list[EventStored]
