"""DynamoDB store of quarantined events: kept for audit with their reason, expired by TTL.

    pk = <YYYY-MM-DD>#<shard>   sk = <arrival ISO>#<message id>         a record (registered senders)
    pk = <YYYY-MM-DD>#<shard>   sk = <hour ISO>#count#<account>#<reason> rejected messages of that hour
    pk = <YYYY-MM-DD>#<shard>   sk = <hour ISO>#sample#<account>         the first record of that hour

Records and samples are ``QuarantinedEvent``s: the reason, who sent it, its size and SHA-256, and the
event reduced to the fields billing reads, a few KB at most whatever the body (never the body, so no
names, usernames or contacts). Counters are one atomic ADD per batch; a sample is a conditional put,
so a flood from one account costs a bounded number of items per hour. Sharded by day so an attack or
a broken forwarder cannot make one hot partition. Items expire ``retention_days`` after arrival (TTL
attribute ``expires_at``), never sooner than 14 days.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from connect_metering.adapters.table_schema import create_table
from connect_metering.domain.agent_events import UNKNOWN_SENDER, QuarantinedEvent, QuarantineTally
from connect_metering.domain.instants import MS_PER_HOUR, iso_ms

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MIN_RETENTION_DAYS = 14
SHARDS = 8


def _partition(arrival_iso: str, spread_by: str) -> str:
    return f"{arrival_iso[:10]}#{zlib.crc32(spread_by.encode()) % SHARDS}"


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
        """One record per message; idempotent: a redelivered message rewrites the same item."""
        arrival = iso_ms(event.arrival_ms)
        item = self._record(event)
        item["pk"] = {"S": _partition(arrival, event.message_id)}
        item["sk"] = {"S": f"{arrival}#{event.message_id}"}
        self._client.put_item(TableName=self._table, Item=item)

    def count(self, tally: QuarantineTally, events: int, *, company: str | None) -> None:
        """Add ``events`` to the counter of (sender account, reason, hour)."""
        hour = iso_ms(tally.hour_ms)[:13]
        update = "ADD events :events SET reason = :reason, account = :account, expires_at = :expires"
        values: dict[str, Any] = {
            ":events": {"N": str(events)},
            ":reason": {"S": tally.reason},
            ":account": {"S": tally.account},
            ":expires": {"N": str(self._expires_at(tally.hour_ms + MS_PER_HOUR))},
        }
        if company is not None:
            update += ", company = :company"
            values[":company"] = {"S": company}
        self._client.update_item(
            TableName=self._table,
            Key={
                "pk": {"S": _partition(hour, tally.account)},
                "sk": {"S": f"{hour}#count#{tally.account}#{tally.reason}"},
            },
            UpdateExpression=update,
            ExpressionAttributeValues=values,
        )

    def keep_sample(self, event: QuarantinedEvent) -> None:
        """The record of (sender account, arrival hour), unless that hour already has one."""
        account = event.account or UNKNOWN_SENDER
        hour = iso_ms(event.arrival_ms)[:13]
        item = self._record(event)
        item["pk"] = {"S": _partition(hour, account)}
        item["sk"] = {"S": f"{hour}#sample#{account}"}
        item["account"] = {"S": account}
        try:
            self._client.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def _record(self, event: QuarantinedEvent) -> dict[str, Any]:
        item: dict[str, Any] = {
            "reason": {"S": event.reason},
            "message": {"S": event.message},
            "arrived": {"S": iso_ms(event.arrival_ms)},
            "message_id": {"S": event.message_id},
            "body_bytes": {"N": str(event.body_bytes)},
            "body_sha256": {"S": event.body_sha256},
            "reduced": {"S": event.reduced},
            "expires_at": {"N": str(self._expires_at(event.arrival_ms))},
        }
        for name in ("account", "instance_arn", "event_id", "company"):
            value = getattr(event, name)
            if value:
                item[name] = {"S": value}
        return item

    def _expires_at(self, arrival_ms: int) -> int:
        return arrival_ms // 1000 + self._retention_s


def create_quarantine_table(client: DynamoDBClient, table_name: str) -> None:
    create_table(client, table_name, ttl_attribute="expires_at")
