"""The hourly dispatcher: which companies to meter, through which hour, and what to recompute.

Runs at minute 10 (the grace). The hour due is the latest H with H + 1 h + grace <= now; every company
holding an activated, not yet retired subscription (the sparse index: a few paginated queries, no scan)
gets one work item. Agent-hours that received events after they were metered (the sparse late-events
index) tell each company's worker where to recompute from.

Progress is saved per item: a late marker is cleared once the work item that carries its recompute is
queued (or when there is nothing to recompute for it), so a marker that could not be handled (its
company's lookup or queueing failed) is simply read again next hour, and one failing company never
holds back the others. A recompute never starts before now - ``max_event_age``: no event that old can
be accepted any more (BILLING.md section 2 rule 5).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from connect_metering.domain.activity import LateMarker
from connect_metering.domain.instants import MS_PER_HOUR, from_ms, hour_floor
from connect_metering.domain.metering import MeterRequest
from connect_metering.domain.tenancy import Environment, Subscription

EPOCH = from_ms(0)
SEND_CHUNK = 10
logger = logging.getLogger(__name__)


class SubscriptionIndex(Protocol):
    def list_metered_subscriptions(
        self, *, active_from: datetime, active_before: datetime, page_size: int | None = None
    ) -> Iterator[Subscription]: ...

    def environment_for_instance(self, instance_arn: str) -> Environment | None: ...


class LateEvents(Protocol):
    def late_markers(self) -> list[LateMarker]: ...
    def clear_late_markers(self, markers: Sequence[LateMarker]) -> None: ...


class WorkQueue(Protocol):
    def send(self, requests: Sequence[MeterRequest]) -> None: ...


def due_hour(now_ms: int, grace_ms: int) -> int:
    """The latest hour H whose metering instant H + 1 h + grace has come."""
    return hour_floor(now_ms - grace_ms) - MS_PER_HOUR


def oldest_recompute_hour(now_ms: int, max_event_age_ms: int) -> int:
    """The earliest hour a late event can still be in: events older than ``max_event_age`` at arrival
    are quarantined, so a recompute from before this hour could find nothing new."""
    return hour_floor(now_ms - max_event_age_ms)


@dataclass
class Dispatch:
    """What one run did: the work items queued, and the companies it could not serve (retried next run)."""

    requests: list[MeterRequest] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class MeterDispatcher:
    def __init__(
        self,
        *,
        index: SubscriptionIndex,
        late: LateEvents,
        queue: WorkQueue,
        grace_ms: int,
        max_event_age_ms: int,
    ) -> None:
        self._index = index
        self._late = late
        self._queue = queue
        self._grace_ms = grace_ms
        self._max_event_age_ms = max_event_age_ms

    def dispatch(self, now_ms: int) -> Dispatch:
        through = due_hour(now_ms, self._grace_ms)
        companies = sorted(
            {
                sub.company_alias
                for sub in self._index.list_metered_subscriptions(
                    active_from=EPOCH, active_before=from_ms(through + MS_PER_HOUR)
                )
            }
        )
        outcome = Dispatch()
        oldest = oldest_recompute_hour(now_ms, self._max_event_age_ms)
        recompute: dict[str, dict[str, int]] = {}
        handled: dict[str, list[LateMarker]] = {}
        nothing_to_do: list[LateMarker] = []
        owners: dict[str, str | None] = {}
        for marker in self._late.late_markers():
            if marker.hour_ms > through:
                continue  # not metered yet: the hourly run reads it anyway; kept until then
            if marker.instance_arn not in owners:
                try:
                    environment = self._index.environment_for_instance(marker.instance_arn)
                except Exception:
                    logger.exception("late events: environment lookup failed", extra={"pk": marker.pk})
                    outcome.failed.append(marker.instance_arn)
                    owners[marker.instance_arn] = None
                    continue
                owners[marker.instance_arn] = environment.company_alias if environment else ""
            company = owners[marker.instance_arn]
            if company is None:
                continue  # its lookup failed: the marker stays for the next run
            if not company or company not in companies:
                nothing_to_do.append(marker)  # no environment or no metered subscription: nothing to bill
                continue
            hours = recompute.setdefault(company, {})
            hour = max(marker.hour_ms, oldest)
            hours[marker.instance_arn] = min(hour, hours.get(marker.instance_arn, hour))
            handled.setdefault(company, []).append(marker)
        self._late.clear_late_markers(nothing_to_do)
        requests = [
            MeterRequest(
                company=company, kind="hourly", through_ms=through, recompute_from=recompute.get(company, {})
            )
            for company in companies
        ]
        for first in range(0, len(requests), SEND_CHUNK):
            for request in self._send(requests[first : first + SEND_CHUNK], outcome):
                self._late.clear_late_markers(handled.get(request.company, []))
        return outcome

    def _send(self, chunk: list[MeterRequest], outcome: Dispatch) -> list[MeterRequest]:
        """The work items queued: one call per chunk, item by item when the chunk is refused, so a
        failure is confined to the item that causes it."""
        try:
            self._queue.send(chunk)
            outcome.requests += chunk
            return chunk
        except Exception:
            if len(chunk) == 1:
                logger.exception("meter queue refused a work item", extra={"company": chunk[0].company})
                outcome.failed.append(chunk[0].company)
                return []
        return [request for single in chunk for request in self._send([single], outcome)]
