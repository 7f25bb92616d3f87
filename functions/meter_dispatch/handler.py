"""Dispatcher Lambda: the hourly schedule (minute 10) -> one work item per company on the meter queue."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.adapters.meter_queue import SqsMeterQueue
from connect_metering.adapters.meter_store import DynamoDispatcherState
from connect_metering.adapters.tenancy_table import DynamoTenancyStore
from connect_metering.domain.instants import MS_PER_HOUR, parse_iso_ms
from connect_metering.services.dispatch import MeterDispatcher
from connect_metering.services.meter import MeterRequest
from connect_metering.settings import METRICS_NAMESPACE, load_settings

logger = Logger()
metrics = Metrics(namespace=METRICS_NAMESPACE)
tracer = Tracer()


@lru_cache(maxsize=1)
def dispatcher() -> tuple[MeterDispatcher, DynamoDispatcherState]:
    settings = load_settings().require("tenancy_table", "activity_table", "ledger_table", "meter_queue_url")
    dynamodb = boto3.client("dynamodb")
    service = MeterDispatcher(
        index=DynamoTenancyStore(settings.tenancy_table, dynamodb),
        late=DynamoActivityStore(settings.activity_table, dynamodb),
        queue=SqsMeterQueue(settings.meter_queue_url, boto3.client("sqs")),
        grace_ms=settings.policy.grace * 1000,
    )
    return service, DynamoDispatcherState(settings.ledger_table, dynamodb)


def dispatch(event: dict[str, Any]) -> list[MeterRequest]:
    """The scheduled event's ``time`` is the run's instant (a retried invocation keeps it)."""
    now_ms = parse_iso_ms(str(event["time"]), field="time")
    service, state = dispatcher()
    late_since = state.late_since(default_ms=now_ms - 2 * MS_PER_HOUR)
    requests = service.dispatch(now_ms, late_since_ms=late_since)
    state.save(now_ms)
    metrics.add_metric(name="CompaniesDispatched", unit=MetricUnit.Count, value=len(requests))
    logger.info("dispatched", extra={"companies": len(requests), "through": event["time"]})
    return requests


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return {"dispatched": len(dispatch(event))}
