"""Ingest Lambda: SQS batches of forwarded agent events -> accepted (stored once) or quarantined.

Thin: Powertools wires logging, metrics, tracing and partial batch failures; the rules live in
``connect_metering.services.ingest``. A record fails (and SQS redelivers it) only when storage failed.
"""

from __future__ import annotations

import time
from collections import Counter
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.typing import LambdaContext

from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.adapters.quarantine_table import DynamoQuarantineStore
from connect_metering.adapters.tenancy_meter_state import DynamoMeterStateStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.batch_response import respond
from connect_metering.counted import count_by
from connect_metering.observability import logger, metrics, tracer
from connect_metering.services.ingest import (
    CachedEnvironmentLookup,
    IngestResult,
    IngestService,
    Message,
    Outcome,
)
from connect_metering.services.verification import ClaimVerification
from connect_metering.settings import IngestSettings, load_settings

processor = BatchProcessor(event_type=EventType.SQS)


@lru_cache(maxsize=1)
def ingest_service() -> IngestService:
    """Built once per container: settings read once, one DynamoDB client, a warm tenancy cache."""
    settings = load_settings(IngestSettings)
    dynamodb = boto3.client("dynamodb")
    tenancy = DynamoTenancyStore(settings.tenancy_table, dynamodb)
    return IngestService(
        environments=CachedEnvironmentLookup(
            DynamoTenancyStore(settings.tenancy_table, dynamodb), monotonic=time.monotonic
        ),
        activity=DynamoActivityStore(settings.activity_table, dynamodb),
        quarantine=DynamoQuarantineStore(
            settings.quarantine_table, dynamodb, retention_days=settings.quarantine_retention_days
        ),
        grace_ms=settings.policy.grace * 1000,
        max_event_age_ms=settings.policy.max_event_age * 1000,
        counter=DynamoMeterStateStore(settings.tenancy_table, dynamodb),
        claims=ClaimVerification(tenancy),
    )


def _log(result: IngestResult, message_id: str) -> None:
    # Agent ARNs only: names and usernames in the event never reach a log line.
    if result.outcome is Outcome.QUARANTINED:
        reason = result.reason.value if result.reason else "unknown"
        logger.warning("event quarantined", extra={"reason": reason, "message_id": message_id})
    elif result.late:
        logger.info("late event", extra={"agent_arn": result.agent_arn, "company": result.company})


def publish_counts(results: list[IngestResult]) -> None:
    """One metric value per batch and name (not per event): cheaper, and never near EMF's 100-value cap."""
    counts = Counter(result.outcome for result in results)
    for name, outcome in (("EventsAccepted", Outcome.ACCEPTED), ("DuplicateEvents", Outcome.DUPLICATE)):
        if counts[outcome]:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=counts[outcome])
    late = sum(1 for result in results if result.late)
    if late:
        metrics.add_metric(name="LateEvents", unit=MetricUnit.Count, value=late)
    # The busiest sender account's share of the batch: one value, no per-account dimension (that would
    # be one metric per customer, unbounded and billed each); summed over 5 minutes it follows the
    # volume of a sender that floods the bus.
    senders = Counter(result.sender for result in results if result.sender is not None)
    if senders:
        metrics.add_metric(name="MaxEventsPerSender", unit=MetricUnit.Count, value=max(senders.values()))
    count_by("EventsQuarantined", "Reason", Counter(r.reason.value for r in results if r.reason is not None))


def _message(record: dict[str, Any]) -> Message:
    """An SQS record: SentTimestamp is when the bus put it in the queue, ApproximateFirstReceiveTimestamp
    when the event source took it out (what tells an event ingested after its hour was metered)."""
    attributes = record.get("attributes", {})
    return Message(
        record["messageId"],
        record["body"],
        int(attributes.get("SentTimestamp") or 0),
        polled_ms=int(attributes.get("ApproximateFirstReceiveTimestamp") or 0),
    )


def handle_batch(event: dict[str, Any]) -> tuple[dict[str, Any], list[IngestResult]]:
    """The batch -> the partial failure response and each successful record's result (replay reads them).

    The service stores the batch with one write per agent-hour; BatchProcessor then turns each record's
    outcome into the partial batch response: a record fails only if storing it failed."""
    messages = [_message(record) for record in event["Records"]]
    response, results = respond(processor, event["Records"], ingest_service().ingest_batch(messages), _log)
    publish_counts(results)
    return response, results


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response, _ = handle_batch(event)
    return response
