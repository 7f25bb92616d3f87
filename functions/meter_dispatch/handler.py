"""Dispatcher Lambda: the hourly schedule (minute 10) -> one work item per company on the meter queue.

Progress is per item (the late markers, see services/dispatch.py): a company that could not be served
fails the invocation after all the others were queued, so the errors alarm fires and the next run
retries only what is left."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.adapters.meter_queue import SqsMeterQueue
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.counted import count_unreadable
from connect_metering.domain.instants import parse_iso_ms
from connect_metering.domain.metering import MeterRequest
from connect_metering.observability import logger, metrics, tracer
from connect_metering.services.dispatch import MeterDispatcher
from connect_metering.settings import DispatchSettings, load_settings
from connect_metering.unreadable import UnreadableItems


class DispatchIncomplete(RuntimeError):
    """Some companies were not served; every other one was, and the next run retries the rest."""


@lru_cache(maxsize=1)
def dispatcher() -> tuple[MeterDispatcher, UnreadableItems]:
    settings = load_settings(DispatchSettings)
    dynamodb = boto3.client("dynamodb")
    unreadable = UnreadableItems()
    service = MeterDispatcher(
        index=DynamoTenancyStore(settings.tenancy_table, dynamodb),
        late=DynamoActivityStore(settings.activity_table, dynamodb, unreadable),
        queue=SqsMeterQueue(settings.meter_queue_url, boto3.client("sqs")),
        grace_ms=settings.policy.grace * 1000,
        max_event_age_ms=settings.policy.max_event_age * 1000,
    )
    return service, unreadable


def dispatch(event: dict[str, Any]) -> list[MeterRequest]:
    """The scheduled event's ``time`` is the run's instant (a retried invocation keeps it)."""
    now_ms = parse_iso_ms(str(event["time"]), field="time")
    service, unreadable = dispatcher()
    outcome = service.dispatch(now_ms)
    count_unreadable(metrics, unreadable.drain())
    metrics.add_metric(name="CompaniesDispatched", unit=MetricUnit.Count, value=len(outcome.requests))
    logger.info("dispatched", extra={"companies": len(outcome.requests), "through": event["time"]})
    if outcome.failed:
        raise DispatchIncomplete(f"{len(outcome.failed)} companies or instances not served: {outcome.failed}")
    return outcome.requests


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return {"dispatched": len(dispatch(event))}
