"""An environment with nobody logged in and no new events is not read again; new events wake it up."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from connect_metering.local.embedded import EmbeddedAws
from connect_metering.local.lambdas import handler_module
from connect_metering.local.traffic import sqs_batch
from tests.integration.test_meter_crash_safety import H8, Crashes, aws, build_worker, run_hour, total_accepted
from tests.replay_harness import envelope, instance, session

pytestmark = pytest.mark.integration
__all__ = ["aws"]  # the fixture: acme, one environment, a session 08:05-10:35 already ingested


def test_an_idle_environment_is_skipped_until_events_arrive(aws: EmbeddedAws) -> None:
    worker = build_worker(aws, Crashes())
    for hour in range(4):  # through hour 11: the session ended at 10:35, nobody logged in since
        run_hour(aws, worker, H8 + timedelta(hours=hour))
    assert total_accepted(aws) == 150
    aws.requests.counts.clear()
    run_hour(aws, worker, H8 + timedelta(hours=4))
    # The 10:35 LOGOUT is still remembered (a later status started by 10:36 is offline, BILLING.md
    # section 3), so the checkpoint carries it and the environment is read: the company, the environment.
    assert aws.requests.counts["dynamodb.Query"] == 2
    for hour in range(5, 27):  # through 10:00 the next day: the checkpoint at 11:00 forgets the LOGOUT
        run_hour(aws, worker, H8 + timedelta(hours=hour))
    aws.requests.counts.clear()
    run_hour(aws, worker, H8 + timedelta(hours=27))
    # one query: the company; the idle environment was not read
    assert aws.requests.counts["dynamodb.Query"] == 1

    ingest = handler_module("ingest")
    ingest.ingest_service.cache_clear()
    start = H8 + timedelta(hours=28, minutes=20)
    bodies = [
        json.dumps(envelope(event, arrived=start + timedelta(minutes=30)))
        for event in session(instance(), "a2", start, start + timedelta(minutes=12))
    ]
    assert ingest.handle_batch(sqs_batch(bodies))[0] == {"batchItemFailures": []}
    ingest.metrics.clear_metrics()
    aws.requests.counts.clear()
    run_hour(aws, worker, H8 + timedelta(hours=28))
    assert aws.requests.counts["dynamodb.Query"] == 2  # the company, then the awakened environment
    assert total_accepted(aws) == 150 + 12
