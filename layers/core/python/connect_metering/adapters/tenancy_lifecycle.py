"""The lifecycle store: Marketplace notifications on the tenancy table, kept as an audit log and, for a
subscription nobody has signed up for yet, parked until sign-up:

    LIFECYCLE#<key>    EVENT#<at>#<id>    every Marketplace notification (audit; duplicates once)
    LIFECYCLE#<key>    #PENDING           notifications that arrived before the buyer signed up
                                          (``parked_at``: when the first one was kept)
    LIFECYCLE#PARKED   <parked_at>#<key>  a subscription with kept notifications and no company yet;
                                          removed once they are applied. One small partition, read by a
                                          key-range query for the ones parked too long

The subscription items the notifications change are the tenancy store's (``read_subscription`` and
``replace_subscription`` there, compare-and-set).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from connect_metering.adapters.tenancy_keys import (
    PARKED_PK,
    PARTITION_KEY,
    PENDING_SK,
    SORT_KEY,
    event_sk,
    lifecycle_pk,
    parked_sk,
)
from connect_metering.adapters.tenancy_table import TenancyTable, condition_failed, item, key, plain
from connect_metering.domain.instants import iso, parse_iso
from connect_metering.domain.lifecycle import Effect, LifecycleEvent, PendingLifecycle

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Field kept per effect, and the comparison under which a new instant replaces the stored one.
_PENDING_FIELDS = {
    Effect.ACTIVATE: (("activated", ">"), ("entitlements_changed", "<")),
    Effect.END: (("ended", ">"),),
    Effect.REFRESH_ENTITLEMENTS: (("entitlements_changed", "<"),),
}


class DynamoLifecycleStore:
    """The lifecycle port's notification log and parked notifications; the client is injected."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = TenancyTable(table_name, client)

    def log_event(self, event: LifecycleEvent, *, recorded_at: datetime) -> bool:
        """Keep the notification; False when this very event (same instant and id) was kept before."""
        try:
            self._table.client.put_item(
                TableName=self._table.name,
                Item=item(
                    {
                        PARTITION_KEY: lifecycle_pk(event.log_key),
                        SORT_KEY: event_sk(iso(event.at), event.event_id),
                        "name": event.name,
                        "source": event.source.value,
                        "effect": event.effect.value,
                        "at": iso(event.at),
                        "product_code": event.product_code,
                        "agreement_id": event.agreement_id,
                        "recorded_at": iso(recorded_at),
                        "body": event.body,
                    }
                ),
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def keep_pending(self, event: LifecycleEvent, *, parked_at: datetime) -> None:
        """Merge an event for a subscription nobody has signed up for yet: the earliest activation, the
        earliest end, the latest licence change (License Updated is one too). Each is one conditional
        update, so the result does not depend on the order or the number of deliveries. The subscription
        is marked parked from the first keeping (``parked_at``) until ``resolve_parked``."""
        if event.subscription_key is None:
            return
        self._mark_parked(event.subscription_key, parked_at)
        for name, keep_if in _PENDING_FIELDS.get(event.effect, ()):
            try:
                self._table.client.update_item(
                    TableName=self._table.name,
                    Key=key(lifecycle_pk(event.subscription_key), PENDING_SK),
                    UpdateExpression="SET #field = :at",
                    ConditionExpression=f"attribute_not_exists(#field) OR #field {keep_if} :at",
                    ExpressionAttributeNames={"#field": name},
                    ExpressionAttributeValues=item({":at": iso(event.at)}),
                )
            except ClientError as error:
                if not condition_failed(error):
                    raise

    def _mark_parked(self, subscription_key: str, parked_at: datetime) -> None:
        answer = self._table.client.update_item(
            TableName=self._table.name,
            Key=key(lifecycle_pk(subscription_key), PENDING_SK),
            UpdateExpression="SET parked_at = if_not_exists(parked_at, :now)",
            ExpressionAttributeValues=item({":now": iso(parked_at)}),
            ReturnValues="ALL_NEW",
        )
        first_parked = plain(answer["Attributes"])
        if first_parked.get("resolved"):
            return  # its company exists already: a late copy, applied by the caller
        self._table.client.put_item(
            TableName=self._table.name,
            Item=item(
                {
                    PARTITION_KEY: PARKED_PK,
                    SORT_KEY: parked_sk(first_parked["parked_at"], subscription_key),
                    "subscription": subscription_key,
                    "parked_at": first_parked["parked_at"],
                }
            ),
        )

    def resolve_parked(self, subscription_key: str) -> None:
        """The subscription's kept notifications have a company now: it is no longer parked."""
        try:
            answer = self._table.client.update_item(
                TableName=self._table.name,
                Key=key(lifecycle_pk(subscription_key), PENDING_SK),
                UpdateExpression="SET resolved = :yes",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=item({":yes": True}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if condition_failed(error):
                return  # nothing was ever kept for it
            raise
        parked_at = plain(answer["Attributes"]).get("parked_at")
        if parked_at is not None:
            self._table.client.delete_item(
                TableName=self._table.name, Key=key(PARKED_PK, parked_sk(parked_at, subscription_key))
            )

    def parked_since(self, before: datetime) -> list[tuple[str, datetime]]:
        """(subscription key, parked at) of every subscription still parked that was parked before
        ``before``, oldest first: a key-range query of the parked partition, never a scan. A marker whose
        subscription was resolved meanwhile (a keeping racing the sign-up) is removed, not reported."""
        found: list[tuple[str, datetime]] = []
        paginator = self._table.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table.name,
            KeyConditionExpression="pk = :pk AND sk < :before",
            ExpressionAttributeValues=item({":pk": PARKED_PK, ":before": iso(before)}),
            ConsistentRead=True,
        ):
            for raw in page.get("Items", []):
                marker = plain(raw)
                subscription_key = str(marker["subscription"])
                pending = self._table.get(lifecycle_pk(subscription_key), PENDING_SK)
                if pending is not None and pending.get("resolved"):
                    self._table.client.delete_item(
                        TableName=self._table.name, Key=key(PARKED_PK, str(marker[SORT_KEY]))
                    )
                    continue
                found.append((subscription_key, parse_iso(str(marker["parked_at"]))))
        return found

    def pending_lifecycle(self, subscription_key: str) -> PendingLifecycle | None:
        stored = self._table.get(lifecycle_pk(subscription_key), PENDING_SK)
        if stored is None:
            return None

        def instant(name: str) -> datetime | None:
            value = stored.get(name)
            return parse_iso(value) if isinstance(value, str) else None

        return PendingLifecycle(
            activated=instant("activated"),
            ended=instant("ended"),
            entitlements_changed=instant("entitlements_changed"),
        )
