"""Meter worker Lambda: one company per work item -> records stored, sent with BatchMeterUsage, settled.

Reserved concurrency x the per-worker pace keeps all workers under Marketplace's 10 calls/s. A failed
item (a concurrent run of the same company, a crash, a storage error) is redelivered by SQS; a rerun
resends the stored pending records unchanged, so it never bills twice.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.adapters.marketplace_meter import MarketplaceMeter, Observer
from connect_metering.adapters.meter_store import DynamoMeterStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.batch_response import respond
from connect_metering.counted import count_unreadable
from connect_metering.domain.metering import MeterRequest, RecordStatus
from connect_metering.meter_pacing import CALLS_PER_SECOND
from connect_metering.observability import logger, metrics, tracer
from connect_metering.services.meter import MeterReport, MeterWorker
from connect_metering.settings import MeterWorkerSettings, load_settings
from connect_metering.unreadable import UnreadableItems

if TYPE_CHECKING:
    from mypy_boto3_meteringmarketplace import MarketplaceMeteringClient

processor = BatchProcessor(event_type=EventType.SQS)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@lru_cache(maxsize=1)
def worker() -> MeterWorker:
    return build_worker(now_ms=_now_ms, monotonic=time.monotonic, sleep=time.sleep, rng=random.Random())  # noqa: S311


def build_worker(
    *,
    now_ms: Callable[[], int],
    monotonic: Callable[[], float],
    sleep: Callable[[float], None],
    rng: random.Random,
    observer: Observer | None = None,
    crash: Callable[[], bool] | None = None,
    metering: MarketplaceMeteringClient | None = None,
) -> MeterWorker:
    """The worker on its AWS clients. Time and fault hooks are parameters so that replay drives this
    very code on a virtual clock."""
    settings = load_settings(MeterWorkerSettings)
    dynamodb = boto3.client("dynamodb")
    unreadable = UnreadableItems()
    # The product retries itself (back-off with jitter, pending records resent by the next run).
    metering = metering or boto3.client(
        "meteringmarketplace", config=Config(retries={"total_max_attempts": 1})
    )
    return MeterWorker(
        companies=DynamoTenancyStore(settings.tenancy_table, dynamodb),
        activity=DynamoActivityStore(settings.activity_table, dynamodb, unreadable),
        store=DynamoMeterStore(
            tenancy_table=settings.tenancy_table,
            ledger_table=settings.ledger_table,
            activity_table=settings.activity_table,
            client=dynamodb,
        ),
        marketplace=MarketplaceMeter(
            metering,
            now_ms=now_ms,
            monotonic=monotonic,
            sleep=sleep,
            rng=rng,
            calls_per_second=CALLS_PER_SECOND,
            observer=observer,
            crash=crash,
        ),
        policy=settings.policy,
        now_ms=now_ms,
        unreadable=unreadable,
        # The worker's steps as X-Ray subsegments; their return values are not recorded (records).
        trace_step=partial(tracer.capture_method, capture_response=False),
    )


def publish(reports: list[MeterReport]) -> None:
    """One value per metric and batch (not per company): cheaper, and never near EMF's 100-value cap."""
    settled = [record for report in reports for record in report.records_settled]
    counts = {
        "RecordsAccepted": sum(1 for r in settled if r.status is RecordStatus.ACCEPTED),
        "DuplicateRecord": sum(1 for r in settled if r.result == "DuplicateRecord"),
        "CustomerNotSubscribed": sum(1 for r in settled if r.status is RecordStatus.NOT_SUBSCRIBED),
        "RecordsExpired": sum(len(report.records_expired) for report in reports),
        "RecordsUnconfirmed": sum(len(report.records_unconfirmed) for report in reports),
        "RecordsPending": sum(report.still_pending for report in reports),
        "RecordsRetried": sum(report.records_retried for report in reports),
        "RecordsRefused": sum(len(report.records_refused) for report in reports),
        "MeteredMinutes": sum(report.metered_minutes for report in reports),
    }
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for report in reports:
        attention = {
            "expired": len(report.records_expired),
            "unconfirmed": len(report.records_unconfirmed),
            "refused": sum(1 for r in report.records_settled if r.status is RecordStatus.NOT_SUBSCRIBED),
            "duplicate": sum(1 for r in report.records_settled if r.result == "DuplicateRecord"),
            "refused_by_code": dict(Counter(str(r.result) for r in report.records_refused)),
        }
        if any(attention.values()):  # record keys and codes only: no agent, no buyer detail
            logger.warning("records need attention", extra={"company": report.company, **attention})


def handle_batch(
    event: dict[str, Any], meter: MeterWorker | None = None, remaining_ms: Callable[[], int] | None = None
) -> tuple[dict[str, Any], list[MeterReport]]:
    """Work items (one company each) -> partial batch response and the reports. The companies of a batch
    share BatchMeterUsage calls; a company whose run failed is redelivered alone. Replay passes its
    virtual-clock worker. ``remaining_ms`` is the invocation's time left: steps stop before it runs out."""
    active = meter or worker()
    requests: dict[str, MeterRequest] = {}
    outcomes: dict[str, MeterReport | Exception] = {}
    for record in event["Records"]:
        try:
            requests[record["messageId"]] = MeterRequest.from_json(json.loads(record["body"]))
        except (KeyError, TypeError, ValueError) as error:
            outcomes[record["messageId"]] = error  # this item alone fails (dead-letter queue, alarmed)
    outcomes.update(
        zip(requests, active.run_batch(list(requests.values()), remaining_ms=remaining_ms), strict=True)
    )
    response, reports = respond(processor, event["Records"], outcomes)
    publish(reports)
    count_unreadable(metrics, active.unreadable.drain())
    return response, reports


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response, _ = handle_batch(event, remaining_ms=context.get_remaining_time_in_millis)
    return response
