"""The one DynamoDB tenancy table the tenancy stores share: its name and injected client, the item codec,
and the reads and writes every store makes. The stores (tenancy_store, tenancy_registration,
tenancy_lifecycle, tenancy_meter_state) each hold one ``TenancyTable``; the keys are in tenancy_keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from connect_metering.adapters.table_schema import Index, create_table
from connect_metering.adapters.tenancy_keys import (
    ACTIVE_SUBSCRIPTIONS_INDEX,
    INDEX_PARTITION_KEY,
    INDEX_SORT_KEY,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
)
from connect_metering.domain.instants import parse_iso, to_ms

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def item(values: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB's typed form of ``values``; None values are left out (never stored as NULL)."""
    return {name: _serializer.serialize(value) for name, value in values.items() if value is not None}


def plain(stored: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in stored.items()}


def key(pk: str, sk: str) -> dict[str, Any]:
    return item({PARTITION_KEY: pk, SORT_KEY: sk})


def optional_instant(value: object) -> datetime | None:
    return parse_iso(value) if isinstance(value, str) else None


def epoch_seconds(moment: datetime) -> int:
    return to_ms(moment) // 1000


def condition_failed(error: ClientError) -> bool:
    """A single write's condition did not hold."""
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


def transaction_cancelled(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "TransactionCanceledException"


def cancellation_codes(error: ClientError) -> list[str]:
    """Per transaction action, why the transaction was cancelled ("None" for the actions that held)."""
    reasons = error.response.get("CancellationReasons", [])
    return [str(reason.get("Code", "None")) for reason in reasons]


class TenancyTable:
    """The table's name and the injected client, with the reads every tenancy store makes."""

    def __init__(self, name: str, client: DynamoDBClient) -> None:
        self.name = name
        self.client = client

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        """One item, read consistently, in plain form."""
        response = self.client.get_item(TableName=self.name, Key=key(pk, sk), ConsistentRead=True)
        found = response.get("Item")
        return plain(found) if found else None

    def query(self, pk: str, prefix: str = "") -> Iterator[dict[str, Any]]:
        """The partition's items whose sort key starts with ``prefix`` (all of them for "")."""
        condition = "pk = :pk AND begins_with(sk, :prefix)" if prefix else "pk = :pk"
        values = {":pk": pk, ":prefix": prefix} if prefix else {":pk": pk}
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.name,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=item(values),
            ConsistentRead=True,
        ):
            for found in page.get("Items", []):
                yield plain(found)

    def transact(self, actions: list[dict[str, Any]]) -> None:
        self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]


def create_tenancy_table(client: DynamoDBClient, table_name: str) -> None:
    """Create the table with the same keys, index and TTL as infra/constructs/tenancy_store.py (local
    runtime and tests; in AWS the CDK stack owns the table)."""
    create_table(
        client,
        table_name,
        index=Index(ACTIVE_SUBSCRIPTIONS_INDEX, INDEX_PARTITION_KEY, INDEX_SORT_KEY),
        ttl_attribute=TTL_ATTRIBUTE,
    )
