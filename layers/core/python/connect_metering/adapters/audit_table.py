"""Admin audit items in the tenancy table: ``AUDIT#<alias>`` / ``<time>#<request id>``, kept (no TTL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from boto3.dynamodb.types import TypeSerializer

from connect_metering.adapters.tenancy_keys import PARTITION_KEY, SORT_KEY
from connect_metering.domain.audit import AuditEntry

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serializer = TypeSerializer()


class DynamoAuditLog:
    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = table_name
        self._client = client

    def record(self, entry: AuditEntry) -> None:
        item = {PARTITION_KEY: entry.partition, SORT_KEY: entry.sort_key, **entry.fields()}
        self._client.put_item(
            TableName=self._table,
            Item={name: _serializer.serialize(value) for name, value in item.items()},
        )
