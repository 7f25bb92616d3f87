"""DynamoDB store of quarantined events: kept for audit with their reason, expired by TTL.

    pk = <YYYY-MM-DD>#<shard>      sk = <arrival ISO>#<message id>

Sharded by day so an attack or a broken forwarder cannot make one hot partition. Items expire
``retention_days`` after arrival (TTL attribute ``expires_at``), never sooner than 14 days.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from connect_metering.adapters.table_schema import create_table
from connect_metering.domain.agent_events import QuarantinedEvent
from connect_metering.domain.instants import iso_ms

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MIN_RETENTION_DAYS = 14
SHARDS = 8
# A DynamoDB item holds at most 400 KB; a body past this is kept truncated, with its full size noted.
MAX_STORED_BODY = 300 * 1024


class DynamoQuarantineStore:
    def __init__(self, table_name: str, client: DynamoDBClient, *, retention_days: int = 30) -> None:
        if retention_days < MIN_RETENTION_DAYS:
            raise ValueError(
                f"retention_days: quarantined events are kept at least {MIN_RETENTION_DAYS} days"
            )
        self._table = table_name
        self._client = client
        self._retention_s = retention_days * 86_400

    def keep(self, event: QuarantinedEvent) -> None:
        arrival = iso_ms(event.arrival_ms)
        shard = zlib.crc32(event.message_id.encode()) % SHARDS
        item = {
            "pk": {"S": f"{arrival[:10]}#{shard}"},
            "sk": {"S": f"{arrival}#{event.message_id}"},
            "reason": {"S": event.reason},
            "message": {"S": event.message},
            "body": {"S": event.body[:MAX_STORED_BODY]},
            "body_bytes": {"N": str(len(event.body.encode()))},
            "expires_at": {"N": str(event.arrival_ms // 1000 + self._retention_s)},
        }
        for name in ("account", "instance_arn", "company"):
            value = getattr(event, name)
            if value:
                item[name] = {"S": value}
        # Idempotent: a redelivered message rewrites the same item.
        self._client.put_item(TableName=self._table, Item=item)


def create_quarantine_table(client: DynamoDBClient, table_name: str) -> None:
    create_table(client, table_name, ttl_attribute="expires_at")
