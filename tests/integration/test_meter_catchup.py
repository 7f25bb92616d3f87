"""A catch-up (a worker outage, or a late event for an old hour) costs time linear in the hours it
covers: each hour's usage reads only its own events (issue 14), and the result is exact."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

import connect_metering.services.meter_usage as meter_module
from connect_metering.domain.instants import parse_iso
from connect_metering.domain.usage import resume
from connect_metering.local.embedded import EmbeddedAws
from connect_metering.local.lambdas import handler_module
from connect_metering.local.traffic import sqs_batch
from tests.integration.test_meter_crash_safety import H8, Crashes, aws, build_worker, run_hour, total_accepted
from tests.replay_harness import envelope, instance, session

pytestmark = pytest.mark.integration
__all__ = ["aws"]  # the fixture: acme, one environment, a session 08:05-10:35 already ingested

HOURS = 24


def test_a_day_of_catch_up_reads_each_event_about_once_and_bills_exactly(
    aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Agent a2 works around the clock from 11:00 (heartbeats every 2 minutes), so every hour has events.
    start, end = H8 + timedelta(hours=3), H8 + timedelta(hours=HOURS + 3)
    events = session(instance(), "a2", start, end)
    ingest = handler_module("ingest")
    for first in range(0, len(events), 100):
        bodies = [
            json.dumps(envelope(event, arrived=parse_iso(event["EventTimestamp"])))
            for event in events[first : first + 100]
        ]
        assert ingest.handle_batch(sqs_batch(bodies))[0] == {"batchItemFailures": []}
    ingest.metrics.clear_metrics()

    passed: list[int] = []

    def counting_resume(checkpoint: Any, events_by_agent: Any, *args: Any, **kwargs: Any) -> Any:
        passed.append(sum(len(points) for points in events_by_agent.values()))
        return resume(checkpoint, events_by_agent, *args, **kwargs)

    monkeypatch.setattr(meter_module, "resume", counting_resume)
    worker = build_worker(aws, Crashes())
    # The worker was down since 08:00: one run meters 08:00 through the last whole hour of the stream.
    run_hour(aws, worker, end - timedelta(hours=1))
    stored = len(events) + 76  # a2's day and a1's 08:05-10:35 session
    assert len(passed) >= HOURS + 3  # every hour from the checkpoint found (the day's start) on
    # Each hour sees its own events plus the next hour's first ones (the silence timeout's reach).
    assert sum(passed) <= 1.25 * stored  # re-filtering the span every hour passed about 12 times that
    monkeypatch.undo()
    # Hours older than Marketplace's 6-hour window were refused; their minutes move into the next
    # accepted records (BILLING.md section 5), so a few more hourly runs bill every minute exactly once.
    for hour in range(7):
        run_hour(aws, worker, end + timedelta(hours=hour))
    assert total_accepted(aws) == 150 + HOURS * 60
