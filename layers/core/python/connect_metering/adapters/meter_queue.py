"""The meter work queue: hourly work items from the dispatcher and final-metering requests from the
subscription lifecycle, one JSON message each (``MeterRequest.to_json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from connect_metering.domain.instants import to_ms
from connect_metering.domain.metering import MeterRequest

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
    """The lifecycle's final-metering port: a subscription ended, meter its last hours now (AWS allows one
    hour). Required: a handler without the queue fails at start (``METER_QUEUE_URL``), since an end
    that is not metered within the hour is never billed."""

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
