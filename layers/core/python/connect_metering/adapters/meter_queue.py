"""The meter work queue: hourly work items from the dispatcher and final-metering requests from the
subscription lifecycle, one JSON message each (``MeterRequest.to_json``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3

from connect_metering.domain.instants import to_ms
from connect_metering.services.lifecycle import FinalMetering, FinalMeteringNotConfigured
from connect_metering.services.meter import MeterRequest

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SEND_BATCH = 10


class SqsMeterQueue:
    def __init__(self, queue_url: str, client: SQSClient) -> None:
        self._url = queue_url
        self._client = client

    def send(self, requests: Sequence[MeterRequest]) -> None:
        for first in range(0, len(requests), SEND_BATCH):
            batch = requests[first : first + SEND_BATCH]
            response = self._client.send_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(index), "MessageBody": json.dumps(request.to_json(), sort_keys=True)}
                    for index, request in enumerate(batch)
                ],
            )
            if response.get("Failed"):
                raise RuntimeError(f"meter queue refused {len(response['Failed'])} work items")


class SqsFinalMetering:
    """The lifecycle's port: a subscription ended, meter its last hours now (AWS allows one hour)."""

    def __init__(self, queue_url: str, client: SQSClient) -> None:
        self._queue = SqsMeterQueue(queue_url, client)

    def subscription_ended(self, company_alias: str, subscription_key: str, ended_at: datetime) -> None:
        self._queue.send(
            [
                MeterRequest(
                    company=company_alias,
                    kind="final",
                    through_ms=to_ms(ended_at),
                    subscription=subscription_key,
                )
            ]
        )


def final_metering_port(queue_url: str, report: Callable[[str, dict[str, Any]], None]) -> FinalMetering:
    """The final-metering port a handler needs: the meter queue, or (none configured) a port that only
    reports the request through ``report`` (the handler's logger)."""
    if queue_url:
        return SqsFinalMetering(queue_url, boto3.client("sqs"))
    return FinalMeteringNotConfigured(report)
