"""The meter worker dies at each point of a run; the rerun never bills twice and never loses a minute.

Runs on embedded AWS (moto) and the Marketplace simulator, with the real worker and its stores."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connect_metering.adapters.marketplace_meter import WorkerCrash
from connect_metering.adapters.meter_store import ConcurrentMeterRun, DynamoMeterStore
from connect_metering.domain.instants import to_ms
from connect_metering.domain.metering import MeterRequest, RecordStatus
from connect_metering.domain.tenancy import Company, Environment, Subscription, build, license_key
from connect_metering.local.embedded import EmbeddedAws
from connect_metering.local.lambdas import handler_module
from connect_metering.local.traffic import sqs_batch
from connect_metering.services.meter import MeterWorker
from tests.conftest import environment_restored
from tests.replay_harness import LICENSE, envelope, instance, session

pytestmark = pytest.mark.integration

H8 = datetime(2026, 11, 2, 8, tzinfo=UTC)
LICENCE = LICENSE.format("crash")


class Crashes:
    """Decides, call by call, whether the worker dies right after BatchMeterUsage returned."""

    def __init__(self) -> None:
        self.plan: list[bool] = []

    def __call__(self) -> bool:
        return self.plan.pop(0) if self.plan else False


@pytest.fixture
def aws() -> Iterator[EmbeddedAws]:
    with environment_restored(), EmbeddedAws(product_code="prod1", start=H8) as embedded:
        embedded.tenancy.create_company(Company(alias="acme"))
        embedded.tenancy.add_environment(
            build(Environment, company_alias="acme", name="prod", instance_arn=instance())
        )
        subscription = build(
            Subscription,
            company_alias="acme",
            identity={"customer_aws_account_id": "111122223333", "license_arn": LICENCE},
            pricing="usage",
        )
        embedded.tenancy.add_subscription(subscription)
        embedded.tenancy.save_subscription(subscription.model_copy(update={"started": H8}))
        embedded.marketplace.add_subscription(
            customer_aws_account_id="111122223333", license_arn=LICENCE, started=H8
        )
        ingest = handler_module("ingest")
        ingest.ingest_service.cache_clear()
        bodies = [
            json.dumps(
                envelope(
                    event, arrived=datetime.fromisoformat(event["EventTimestamp"].replace("Z", "+00:00"))
                )
            )
            for event in session(
                instance(), "a1", H8 + timedelta(minutes=5), H8 + timedelta(hours=2, minutes=35)
            )
        ]
        response, _ = ingest.handle_batch(sqs_batch(bodies))
        assert response == {"batchItemFailures": []}
        ingest.metrics.clear_metrics()
        yield embedded


def build_worker(
    aws: EmbeddedAws, crashes: Crashes, before_send: Callable[[], None] | None = None
) -> MeterWorker:
    handler = handler_module("meter_worker")
    worker: MeterWorker = handler.build_worker(
        now_ms=lambda: to_ms(aws.clock.now()),
        monotonic=aws.clock.monotonic,
        sleep=aws.clock.sleep,
        rng=random.Random(1),
        crash=crashes,
        metering=aws.metering,
    )
    if before_send is not None:
        marketplace = worker._marketplace
        original = marketplace.send

        def dying_send(records: Any) -> Any:
            before_send()
            return original(records)

        marketplace.send = dying_send  # type: ignore[method-assign]
    return worker


def run_hour(aws: EmbeddedAws, worker: MeterWorker, hour: datetime) -> Any:
    aws.clock.advance_to(hour + timedelta(hours=1, minutes=10))
    return worker.run(MeterRequest(company="acme", kind="hourly", through_ms=to_ms(hour)))


def ledger(aws: EmbeddedAws) -> list[Any]:
    store = DynamoMeterStore(
        tenancy_table="connect-metering-tenancy",
        ledger_table="connect-metering-ledger",
        activity_table="connect-metering-activity",
        client=aws.dynamodb,
    )
    return store.records_of(license_key(LICENCE))


def total_accepted(aws: EmbeddedAws) -> int:
    return sum(entry.quantity for entry in aws.marketplace.ledger.entries)


def test_without_faults(aws: EmbeddedAws) -> None:
    worker = build_worker(aws, Crashes())
    for hour in range(3):
        run_hour(aws, worker, H8 + timedelta(hours=hour))
    assert total_accepted(aws) == 150
    assert [r.status for r in ledger(aws)] == [RecordStatus.ACCEPTED] * 3


def test_crash_after_the_call_returned_before_the_outcome_was_stored(aws: EmbeddedAws) -> None:
    crashes = Crashes()
    crashes.plan = [True]
    worker = build_worker(aws, crashes)
    with pytest.raises(WorkerCrash):
        run_hour(aws, worker, H8)
    # AWS holds hour 8; the ledger still says pending (in flight)
    assert total_accepted(aws) == 55
    assert [r.status for r in ledger(aws)] == [RecordStatus.PENDING]
    run_hour(aws, worker, H8 + timedelta(hours=1))
    run_hour(aws, worker, H8 + timedelta(hours=2))
    # the rerun resent hour 8 unchanged: Success with the same id, nothing billed twice
    assert len(aws.marketplace.ledger.entries) == 3
    assert total_accepted(aws) == 150
    assert all(r.status is RecordStatus.ACCEPTED for r in ledger(aws))


def test_crash_after_the_commit_before_any_call(aws: EmbeddedAws) -> None:
    def die() -> None:
        raise WorkerCrash("died between the commit and the call")

    with pytest.raises(WorkerCrash):
        run_hour(aws, build_worker(aws, Crashes(), before_send=die), H8)
    assert total_accepted(aws) == 0
    assert [r.quantity for r in ledger(aws)] == [55]
    worker = build_worker(aws, Crashes())
    run_hour(aws, worker, H8 + timedelta(hours=1))
    run_hour(aws, worker, H8 + timedelta(hours=2))
    assert total_accepted(aws) == 150


def test_crash_on_every_call_for_hours_bills_nothing_twice(aws: EmbeddedAws) -> None:
    crashes = Crashes()
    crashes.plan = [True] * 8
    worker = build_worker(aws, crashes)
    for hour in range(8):
        with pytest.raises(WorkerCrash):
            run_hour(aws, worker, H8 + timedelta(hours=hour))
    run_hour(aws, worker, H8 + timedelta(hours=8))
    # hour 8 left the window while its answers were lost: AWS had it, so it is kept, never re-billed
    assert total_accepted(aws) == 150
    statuses = {r.result for r in ledger(aws)}
    assert "Unconfirmed" in statuses


def test_a_concurrent_run_of_the_same_company_stops_before_sending(aws: EmbeddedAws) -> None:
    worker = build_worker(aws, Crashes())
    other = build_worker(aws, Crashes())
    aws.clock.advance_to(H8 + timedelta(hours=1, minutes=10))
    snapshot = aws.tenancy.load_company("acme")
    assert snapshot is not None
    run_hour(aws, worker, H8)
    # the other run read the company before the first one committed
    other._companies.load_company = lambda alias: snapshot  # type: ignore[method-assign]
    with pytest.raises(ConcurrentMeterRun):
        other.run(MeterRequest(company="acme", kind="hourly", through_ms=to_ms(H8)))
    assert total_accepted(aws) == 55
    assert len(aws.marketplace.ledger.entries) == 1


def test_a_rerun_of_a_finished_hour_sends_nothing(aws: EmbeddedAws) -> None:
    worker = build_worker(aws, Crashes())
    run_hour(aws, worker, H8)
    calls = aws.marketplace.counter("BatchMeterUsage").calls
    report = worker.run(MeterRequest(company="acme", kind="hourly", through_ms=to_ms(H8)))
    assert report.records_stored == []
    assert aws.marketplace.counter("BatchMeterUsage").calls == calls
