"""Subscription lifecycle Lambda: AWS Marketplace notifications from one SQS queue -> subscription state.

The queue receives ``aws.agreement-marketplace`` events (default-bus rule) and the legacy SNS messages
(topic subscriptions). An hourly scheduled event (no ``Records``) asks instead how many subscriptions
have had notifications parked for more than an hour with no company to apply them to, and publishes
that as ``LifecycleEventsParkedTooLong`` (alarmed): an activation parked forever is a buyer never billed. Thin: parsing (the Powertools parser, ``adapters/marketplace_notifications.py``) and the rules
(``connect_metering.domain.lifecycle``, ``connect_metering.services.lifecycle``) live in the core package. A record fails (SQS redelivers it, then dead-letters it) when
it cannot be read or when storage, GetEntitlements or the final metering request failed; everything
else, duplicates included, succeeds.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from connect_metering.adapters.marketplace import MarketplaceEntitlements
from connect_metering.adapters.marketplace_notifications import parse_lifecycle_message
from connect_metering.adapters.meter_queue import SqsFinalMetering
from connect_metering.adapters.tenancy_lifecycle import DynamoLifecycleStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.counted import count_by
from connect_metering.domain.lifecycle import LifecycleInputError
from connect_metering.observability import logger, metrics, tracer
from connect_metering.services.lifecycle import (
    LifecycleResult,
    LifecycleService,
    Outcome,
)
from connect_metering.settings import LifecycleSettings, load_settings

# A batch whose every record failed still answers with each failure (SQS retries those), so replay and
# tests see the same response shape whatever fails.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

MARKETPLACE_REGION = "us-east-1"


def now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def lifecycle_service() -> LifecycleService:
    """Built once per container."""
    settings = load_settings(LifecycleSettings)
    dynamodb = boto3.client("dynamodb")
    return LifecycleService(
        subscriptions=DynamoTenancyStore(settings.tenancy_table, dynamodb),
        store=DynamoLifecycleStore(settings.tenancy_table, dynamodb),
        entitlements=MarketplaceEntitlements(
            boto3.client("marketplace-entitlement", region_name=MARKETPLACE_REGION),
            dimension=settings.policy.entitlement_dimension,
        ),
        final_metering=SqsFinalMetering(settings.meter_queue_url, boto3.client("sqs")),
        clock=lambda: now(),
        default_product_code=settings.product_code,
    )


def _handle(record: SQSRecord) -> LifecycleResult:
    sent_ms = int(record.attributes.sent_timestamp or 0)
    try:
        event = parse_lifecycle_message(record.body, message_id=record.message_id, sent_at_ms=sent_ms)
    except LifecycleInputError as error:
        logger.error(
            "unreadable lifecycle message", extra={"message_id": record.message_id, "reason": str(error)}
        )
        raise
    result = lifecycle_service().handle(event)
    logger.info(
        "lifecycle event",
        extra={
            "event": event.name,
            "source": event.source.value,
            "at": event.at.isoformat(),
            "outcome": result.outcome.value,
            "subscription": result.subscription_key,
            "company": result.company,
            "duplicate": result.duplicate,
            "final_metering": result.final_metering,
        },
    )
    return result


def publish_counts(results: list[LifecycleResult]) -> None:
    count_by("LifecycleEvents", "Outcome", Counter(result.outcome.value for result in results))
    parked = sum(1 for result in results if result.outcome is Outcome.KEPT_FOR_SIGNUP)
    if parked:
        metrics.add_metric(name="LifecycleEventsParked", unit=MetricUnit.Count, value=parked)
    finals = sum(1 for result in results if result.final_metering)
    if finals:
        metrics.add_metric(name="FinalMeteringRequests", unit=MetricUnit.Count, value=finals)


def handle_batch(event: dict[str, Any]) -> tuple[dict[str, Any], list[LifecycleResult]]:
    """The batch -> the partial failure response and each successful record's result (replay reads them)."""
    results: list[LifecycleResult] = []
    with processor(records=event["Records"], handler=_handle):
        for status, value, _ in processor.process():
            if status == "success" and isinstance(value, LifecycleResult):
                results.append(value)
    failures = len(event["Records"]) - len(results)
    if failures:
        metrics.add_metric(name="LifecycleFailures", unit=MetricUnit.Count, value=failures)
    publish_counts(results)
    return dict(processor.response()), results


def check_parked() -> dict[str, Any]:
    """Count the subscriptions parked too long; the metric is published every hour, 0 included, so the
    alarm sees a value rather than missing data."""
    parked = lifecycle_service().parked_too_long()
    metrics.add_metric(name="LifecycleEventsParkedTooLong", unit=MetricUnit.Count, value=len(parked))
    for key, since in parked:
        logger.warning(
            "lifecycle events parked without a company",
            extra={"subscription": key, "parked_at": since.isoformat()},
        )
    return {"parked_too_long": len(parked)}


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    lifecycle_service()  # first: without the final-metering queue (METER_QUEUE_URL) nothing runs
    if event.get("detail-type") == "Scheduled Event":
        return check_parked()
    response, _ = handle_batch(event)
    return response
