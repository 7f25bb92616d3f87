"""The companies of one worker batch store their last commits in shared TransactWriteItems (issue 14: at
most 3 DynamoDB requests per subscription-hour for an active company). Sharing a transaction must never
change what is billed: each company's records are stored with its state before anything is sent, a
company whose state changed since it was read is refused alone and redone, a company too large to share
commits on its own, and a crash between the commit and the send loses nothing and bills nothing twice.

Runs on embedded AWS (moto) and the Marketplace simulator, with the real worker and its stores."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connect_metering.adapters.marketplace_meter import WorkerCrash
from connect_metering.adapters.meter_store import ConcurrentMeterRun, DynamoMeterStore
from connect_metering.domain.instants import to_ms
from connect_metering.domain.metering import CompanyMeterState, MeterCommit, MeterRequest, RecordStatus
from connect_metering.domain.tenancy import Company, Environment, Subscription, build, license_key
from connect_metering.local.embedded import EmbeddedAws
from connect_metering.local.lambdas import handler_module
from connect_metering.local.traffic import sqs_batch
from connect_metering.services.meter import MeterReport, MeterWorker
from tests.conftest import environment_restored
from tests.replay_harness import LICENSE, envelope, instance, session

pytestmark = pytest.mark.integration

H8 = datetime(2026, 11, 2, 8, tzinfo=UTC)
COMPANIES = 30
BIG_ENVIRONMENTS = 99  # 1 state + 2 record actions + 99 checkpoints: more than a transaction's 100


def alias(number: int) -> str:
    return f"co{number:03d}"


def account(number: int) -> str:
    return f"{200000000000 + number}"


def licence(number: int) -> str:
    return LICENSE.format(f"{number:08d}")


def minutes_worked(number: int) -> int:
    """Company n's agent works from 08:05 for 60 + n minutes (billable [start, end] exactly)."""
    return 60 + number


def add_company(aws: EmbeddedAws, number: int, environments: int = 1) -> None:
    aws.tenancy.create_company(Company(alias=alias(number)))
    for env in range(environments):
        arn = instance(number * 1000 + env, account=account(number))
        aws.tenancy.add_environment(
            build(Environment, company_alias=alias(number), name=f"env{env}", instance_arn=arn)
        )
    subscription = build(
        Subscription,
        company_alias=alias(number),
        identity={"customer_aws_account_id": account(number), "license_arn": licence(number)},
        pricing="usage",
    )
    aws.tenancy.add_subscription(subscription)
    aws.tenancy.save_subscription(subscription.model_copy(update={"started": H8}))
    aws.marketplace.add_subscription(
        customer_aws_account_id=account(number), license_arn=licence(number), started=H8
    )


def ingest_sessions(aws: EmbeddedAws, numbers: Sequence[int]) -> None:
    bodies = []
    for number in numbers:
        start = H8 + timedelta(minutes=5)
        arn = instance(number * 1000, account=account(number))
        for event in session(arn, "a1", start, start + timedelta(minutes=minutes_worked(number))):
            arrived = datetime.fromisoformat(event["EventTimestamp"].replace("Z", "+00:00"))
            bodies.append(json.dumps(envelope(event, arrived=arrived)))
    ingest = handler_module("ingest")
    ingest.ingest_service.cache_clear()
    for first in range(0, len(bodies), 100):
        response, _ = ingest.handle_batch(sqs_batch(bodies[first : first + 100], first_message=first))
        assert response == {"batchItemFailures": []}
    ingest.metrics.clear_metrics()


@pytest.fixture
def aws() -> Iterator[EmbeddedAws]:
    with environment_restored(), EmbeddedAws(product_code="prod1", start=H8) as embedded:
        for number in range(COMPANIES):
            add_company(embedded, number)
        ingest_sessions(embedded, range(COMPANIES))
        yield embedded


def build_worker(aws: EmbeddedAws, before_send: Callable[[], None] | None = None) -> MeterWorker:
    handler = handler_module("meter_worker")
    worker: MeterWorker = handler.build_worker(
        now_ms=lambda: to_ms(aws.clock.now()),
        monotonic=aws.clock.monotonic,
        sleep=aws.clock.sleep,
        rng=random.Random(1),
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


def run_hour(
    aws: EmbeddedAws, worker: MeterWorker, hour: datetime, numbers: Sequence[int] = range(COMPANIES)
) -> list[MeterReport | Exception]:
    aws.clock.advance_to(hour + timedelta(hours=1, minutes=10))
    requests = [MeterRequest(company=alias(n), kind="hourly", through_ms=to_ms(hour)) for n in numbers]
    return worker.run_batch(requests)


def accepted_minutes(aws: EmbeddedAws, number: int) -> int:
    return sum(
        entry.quantity
        for entry in aws.marketplace.ledger.entries
        if entry.customer_aws_account_id == account(number)
    )


def stored_records(aws: EmbeddedAws, number: int) -> list[Any]:
    return meter_store(aws).records_of(license_key(licence(number)))


def transactions(aws: EmbeddedAws) -> int:
    return aws.requests.counts["dynamodb.TransactWriteItems"]


def test_a_batchs_commits_share_transactions_and_each_company_is_billed_exactly(aws: EmbeddedAws) -> None:
    worker = build_worker(aws)
    for hour in range(3):
        aws.requests.counts.clear()
        outcomes = run_hour(aws, worker, H8 + timedelta(hours=hour))
        assert all(isinstance(outcome, MeterReport) for outcome in outcomes)
        if hour:  # the first hour also stores the checkpoints of the day's earlier hours
            # 30 companies x 4 actions (state, ledger record, pending marker, checkpoint): 100 + 20
            assert transactions(aws) == 2
    for number in range(COMPANIES):
        assert accepted_minutes(aws, number) == minutes_worked(number)
        assert [r.status for r in stored_records(aws, number)] == [RecordStatus.ACCEPTED] * 3
    assert len(aws.marketplace.ledger.entries) == 3 * COMPANIES


def test_a_company_whose_state_changed_since_it_was_read_is_refused_alone_and_redone(
    aws: EmbeddedAws,
) -> None:
    stale = build_worker(aws)
    concurrent = build_worker(aws)
    store = stale._company._store
    original = store.commit_together

    def another_run_commits_first(commits: Sequence[MeterCommit]) -> list[int | Exception]:
        # Company 7 is metered by another run between this run's read and its commit.
        (report,) = concurrent.run_batch(
            [MeterRequest(company=alias(7), kind="hourly", through_ms=to_ms(H8))]
        )
        assert isinstance(report, MeterReport)
        assert report.records_stored
        return original(commits)

    store.commit_together = another_run_commits_first  # type: ignore[method-assign]
    aws.requests.counts.clear()
    outcomes = run_hour(aws, stale, H8)
    assert isinstance(outcomes[7], ConcurrentMeterRun)
    assert all(isinstance(outcome, MeterReport) for n, outcome in enumerate(outcomes) if n != 7)
    # the other run's commit, then the first hour's shared ones (4 x 12 actions x 8 companies at most):
    # the one holding company 7 refused, and tried again without it
    assert transactions(aws) == 1 + 4 + 1
    assert len(aws.marketplace.ledger.entries) == COMPANIES
    # SQS redelivers company 7's item: it reads the state afresh and has nothing left to bill
    store.commit_together = original  # type: ignore[method-assign]
    (redone,) = run_hour(aws, stale, H8, [7])
    assert isinstance(redone, MeterReport)
    assert redone.records_stored == []
    for hour in (1, 2):
        run_hour(aws, stale, H8 + timedelta(hours=hour))
    for number in range(COMPANIES):
        assert accepted_minutes(aws, number) == minutes_worked(number)
    assert len(aws.marketplace.ledger.entries) == 3 * COMPANIES


def test_a_company_too_large_to_share_a_transaction_commits_on_its_own() -> None:
    with environment_restored(), EmbeddedAws(product_code="prod1", start=H8) as aws:
        add_company(aws, 0, environments=BIG_ENVIRONMENTS)
        for number in (1, 2):
            add_company(aws, number)
        ingest_sessions(aws, [0, 1, 2])
        worker = build_worker(aws)
        for hour in range(3):
            aws.requests.counts.clear()
            outcomes = run_hour(aws, worker, H8 + timedelta(hours=hour), [0, 1, 2])
            assert all(isinstance(outcome, MeterReport) for outcome in outcomes)
            # the large company's own transaction (its checkpoints written first), and the others' shared one
            assert transactions(aws) == 2
            assert aws.requests.counts["dynamodb.BatchWriteItem"] >= 4  # 99 checkpoints, 25 a request
        for number in (0, 1, 2):
            assert accepted_minutes(aws, number) == minutes_worked(number)
            assert [r.status for r in stored_records(aws, number)] == [RecordStatus.ACCEPTED] * 3


def test_a_crash_between_the_shared_commit_and_the_send_loses_nothing_and_bills_nothing_twice(
    aws: EmbeddedAws,
) -> None:
    def die() -> None:
        raise WorkerCrash("died between the commit and the call")

    with pytest.raises(WorkerCrash):
        run_hour(aws, build_worker(aws, before_send=die), H8)
    assert len(aws.marketplace.ledger.entries) == 0
    for number in range(COMPANIES):
        assert [r.status for r in stored_records(aws, number)] == [RecordStatus.PENDING]
    worker = build_worker(aws)
    for hour in (1, 2):
        run_hour(aws, worker, H8 + timedelta(hours=hour))
    for number in range(COMPANIES):
        assert accepted_minutes(aws, number) == minutes_worked(number)
        assert [r.status for r in stored_records(aws, number)] == [RecordStatus.ACCEPTED] * 3
    assert len(aws.marketplace.ledger.entries) == 3 * COMPANIES


def meter_store(aws: EmbeddedAws) -> DynamoMeterStore:
    return DynamoMeterStore(
        tenancy_table="connect-metering-tenancy",
        ledger_table="connect-metering-ledger",
        activity_table="connect-metering-activity",
        client=aws.dynamodb,
    )


def test_a_group_without_a_per_action_answer_commits_each_company_on_its_own() -> None:
    with environment_restored(), EmbeddedAws(product_code="prod1", start=H8) as aws:
        store = meter_store(aws)
        assert store.commit("b", version=0, state=CompanyMeterState(), new_records=[]) == 1
        original = aws.dynamodb.transact_write_items
        calls: list[int] = []

        def throttled_once(**kwargs: Any) -> Any:
            calls.append(len(kwargs["TransactItems"]))
            if len(calls) == 1:
                raise ClientError(
                    {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems"
                )
            return original(**kwargs)

        aws.dynamodb.transact_write_items = throttled_once  # type: ignore[method-assign]
        outcomes = store.commit_together(
            [MeterCommit(company, 0, CompanyMeterState()) for company in ("a", "b", "c")]
        )
        assert outcomes[0] == 1 and outcomes[2] == 1
        assert isinstance(outcomes[1], ConcurrentMeterRun)  # its own commit found another run's state
        assert calls == [3, 1, 1, 1]


def test_a_refused_company_is_taken_out_and_the_others_commit_together() -> None:
    with environment_restored(), EmbeddedAws(product_code="prod1", start=H8) as aws:
        store = meter_store(aws)
        assert store.commit("b", version=0, state=CompanyMeterState(), new_records=[]) == 1
        aws.requests.counts.clear()
        outcomes = store.commit_together(
            [MeterCommit(company, 0, CompanyMeterState()) for company in ("a", "b", "c")]
        )
        assert outcomes[0] == 1 and outcomes[2] == 1
        assert isinstance(outcomes[1], ConcurrentMeterRun)
        assert transactions(aws) == 2
        assert store.commit_together([]) == []


def test_two_runs_of_one_company_in_a_batch_never_share_a_transaction() -> None:
    with environment_restored(), EmbeddedAws(product_code="prod1", start=H8) as aws:
        store = meter_store(aws)
        outcomes = store.commit_together(
            [MeterCommit(company, 0, CompanyMeterState()) for company in ("a", "b", "a", "c")]
        )
        assert outcomes[:2] == [1, 1] and outcomes[3] == 1
        assert isinstance(outcomes[2], ConcurrentMeterRun)  # both read version 0: the second is refused
        assert transactions(aws) == 3  # (a, b); (a, c) refused for the second a; (c)
