"""The hourly dispatcher: which companies to meter, through which hour, and what to recompute.

Runs at minute 10 (the grace). The hour due is the latest H with H + 1 h + grace <= now; every company
holding an activated, not yet retired subscription (the sparse index: a few paginated queries, no scan)
gets one work item. Agent-hours that received events after they were metered (the sparse late-events
index) tell each company's worker where to recompute from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from connect_metering.domain.instants import MS_PER_HOUR, from_ms, hour_floor
from connect_metering.domain.tenancy import Environment, Subscription
from connect_metering.services.meter import MeterRequest

EPOCH = from_ms(0)


class SubscriptionIndex(Protocol):
    def list_metered_subscriptions(
        self, *, active_from: datetime, active_before: datetime, page_size: int | None = None
    ) -> Iterator[Subscription]: ...

    def environment_for_instance(self, instance_arn: str) -> Environment | None: ...


class LateEvents(Protocol):
    def late_event_hours(self, *, arrived_since_ms: int) -> dict[str, int]: ...


class WorkQueue(Protocol):
    def send(self, requests: Sequence[MeterRequest]) -> None: ...


def due_hour(now_ms: int, grace_ms: int) -> int:
    """The latest hour H whose metering instant H + 1 h + grace has come."""
    return hour_floor(now_ms - grace_ms) - MS_PER_HOUR


class MeterDispatcher:
    def __init__(
        self, *, index: SubscriptionIndex, late: LateEvents, queue: WorkQueue, grace_ms: int
    ) -> None:
        self._index = index
        self._late = late
        self._queue = queue
        self._grace_ms = grace_ms

    def dispatch(self, now_ms: int, *, late_since_ms: int) -> list[MeterRequest]:
        through = due_hour(now_ms, self._grace_ms)
        companies = sorted(
            {
                sub.company_alias
                for sub in self._index.list_metered_subscriptions(
                    active_from=EPOCH, active_before=from_ms(through + MS_PER_HOUR)
                )
            }
        )
        recompute: dict[str, dict[str, int]] = {}
        for instance_arn, hour in self._late.late_event_hours(arrived_since_ms=late_since_ms).items():
            environment = self._index.environment_for_instance(instance_arn)
            if environment is not None and hour <= through:
                recompute.setdefault(environment.company_alias, {})[instance_arn] = hour
        requests = [
            MeterRequest(
                company=company, kind="hourly", through_ms=through, recompute_from=recompute.get(company, {})
            )
            for company in companies
        ]
        if requests:
            self._queue.send(requests)
        return requests
