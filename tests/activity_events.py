"""Agent events for the memory store's tests (``tests/unit/test_core_activity_*.py``): heartbeats of one
instance's agents on 2026-01-01 and the hours after it."""

from __future__ import annotations

from connect_metering.domain.agent_events import AgentEvent
from connect_metering.domain.instants import MS_PER_HOUR
from connect_metering.domain.sessions import UNKNOWN_STATUS_START_MS, EventKind
from connect_metering.domain.tenancy import InstanceArn

INSTANCE = InstanceArn.parse(
    "arn:aws:connect:us-east-1:210000000006:instance/bbbbbbbb-0000-4000-8000-000000000006"
)
DAY_MS = 1_767_225_600_000  # 2026-01-01


def heartbeat(
    agent: int, hour: int, second: int, event_id: str, offline: bool, start: int | None = None
) -> AgentEvent:
    """A heartbeat of agent ``agent`` at ``second`` of ``hour`` (from DAY_MS); its status began ``start``
    ms before it, or at an unknown time."""
    ts_ms = DAY_MS + hour * MS_PER_HOUR + second * 1000
    return AgentEvent(
        event_id=event_id,
        kind=EventKind.HEART_BEAT,
        ts_ms=ts_ms,
        agent_arn=f"{INSTANCE.arn}/agent/agent-{agent}",
        instance=INSTANCE,
        aws_account_id=INSTANCE.account_id,
        offline=offline,
        status_start_ms=UNKNOWN_STATUS_START_MS if start is None else ts_ms - start,
    )
