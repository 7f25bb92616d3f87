"""Embedded AWS for the local runtime: moto for DynamoDB, the Marketplace simulator for Marketplace, and
a virtual clock that both read, so replay and the demo run hours of billing in seconds, offline."""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import boto3
from moto import mock_aws
from moto.dynamodb import models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

from connect_metering.adapters.activity_table import DynamoActivityStore, create_activity_table
from connect_metering.adapters.meter_store import create_ledger_table
from connect_metering.adapters.quarantine_table import create_quarantine_table
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.adapters.tenancy_table import create_tenancy_table
from connect_metering.local.marketplace_sim import FaultPlan, MarketplaceSimulator

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_marketplace_entitlement import MarketplaceEntitlementServiceClient
    from mypy_boto3_meteringmarketplace import MarketplaceMeteringClient
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"
TENANCY_TABLE = "connect-metering-tenancy"
ACTIVITY_TABLE = "connect-metering-activity"
QUARANTINE_TABLE = "connect-metering-quarantine"
LEDGER_TABLE = "connect-metering-ledger"
METER_QUEUE = "connect-metering-meter-work"
TABLE_ENVIRONMENT = {
    "TENANCY_TABLE": TENANCY_TABLE,
    "ACTIVITY_TABLE": ACTIVITY_TABLE,
    "QUARANTINE_TABLE": QUARANTINE_TABLE,
    "LEDGER_TABLE": LEDGER_TABLE,
}


@dataclass
class VirtualClock:
    """The local runtime's notion of now; it only moves forward, when told to."""

    now_value: datetime
    monotonic_value: float = 0.0

    def now(self) -> datetime:
        return self.now_value

    def monotonic(self) -> float:
        return self.monotonic_value

    def advance_to(self, moment: datetime) -> None:
        if moment > self.now_value:
            self.monotonic_value += (moment - self.now_value).total_seconds()
            self.now_value = moment

    def sleep(self, seconds: float) -> None:
        """Client-side pacing in virtual time: the throttle sees the pause, nobody waits for it."""
        self.monotonic_value += max(0.0, seconds)


@dataclass
class RequestCounter:
    """Counts real boto3 requests by service and operation through botocore's event hooks."""

    counts: Counter[str] = field(default_factory=Counter)

    def watch(self, events: Any) -> None:
        """Count every call made through clients created from this event emitter (a session's or a
        client's ``events``)."""
        events.register("before-call.*.*", self._count)

    def total(self, service: str, operations: tuple[str, ...] | None = None) -> int:
        return sum(
            count
            for name, count in self.counts.items()
            if name.startswith(f"{service}.") and (operations is None or name.split(".", 1)[1] in operations)
        )

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[f"{model.service_model.service_id.hyphenize()}.{model.name}"] += 1


@contextmanager
def item_level_transaction_rollback() -> Iterator[None]:
    """moto backs up every table a TransactWriteItems touches with a deep copy, once per action: the cost
    grows with the table, and a day of replay spends its time copying. This keeps moto's semantics (all
    actions applied, or none) by saving just the items the transaction touches and restoring them on
    failure, and lets moto's own table backup be the table itself."""
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        saved: list[tuple[Any, Any, Any, Any]] = []
        for action in transact_items:
            _, operation = next(iter(action.items()))
            table = backend.get_table(operation["TableName"])
            key = operation.get("Key") or operation["Item"]
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            previous = table.get_item(hash_value, range_value)
            saved.append((table, hash_value, range_value, copy.deepcopy(previous)))
        setattr(models, "copy", _TablesByReference)  # noqa: B010 - moto reads its module global
        try:
            original(backend, transact_items)
        except Exception:
            for table, hash_value, range_value, previous in reversed(saved):
                bucket = table.items[hash_value] if range_value is not None else table.items
                slot = range_value if range_value is not None else hash_value
                if previous is None:
                    bucket.pop(slot, None)
                else:
                    bucket[slot] = previous
            raise
        finally:
            setattr(models, "copy", copy)  # noqa: B010

    setattr(DynamoDBBackend, "transact_write_items", transact_write_items)  # noqa: B010
    try:
        yield
    finally:
        setattr(DynamoDBBackend, "transact_write_items", original)  # noqa: B010


@contextmanager
def partition_scoped_queries() -> Iterator[None]:
    """moto answers a base-table Query by filtering every item of the table; DynamoDB reads one
    partition. Handing moto only the queried partition keeps replay's cost per query independent of
    how much history the tables hold; results, order and paging are moto's own."""
    original = Table.query

    def query(table: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name is not None or hash_key is None or not table.range_key_attr:
            return original(table, hash_key, *args, **kwargs)
        partition = table.items.get(hash_key) or {}
        table.all_items = lambda: list(partition.values())  # type: ignore[method-assign]
        try:
            return original(table, hash_key, *args, **kwargs)
        finally:
            del table.all_items

    setattr(Table, "query", query)  # noqa: B010
    try:
        yield
    finally:
        setattr(Table, "query", original)  # noqa: B010


class _TablesByReference:
    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


class EmbeddedAws:
    """Context manager: every AWS call inside goes to moto or the Marketplace simulator, never out."""

    def __init__(
        self,
        *,
        product_code: str,
        start: datetime,
        faults: FaultPlan | None = None,
        dimensions: tuple[str, ...] = ("agent_minutes", "overage_agents"),
    ) -> None:
        self.clock = VirtualClock(start)
        self.requests = RequestCounter()
        self.marketplace = MarketplaceSimulator(
            product_code=product_code,
            dimensions=dimensions,
            clock=self.clock.now,
            monotonic=self.clock.monotonic,
            faults=faults,
        )
        self._mock = mock_aws()

    def __enter__(self) -> Self:
        self._mock.start()
        self._moto_speedups = ExitStack()
        self._moto_speedups.enter_context(item_level_transaction_rollback())
        self._moto_speedups.enter_context(partition_scoped_queries())
        # Every client made from here on (the handlers' too) comes from this session and is counted.
        boto3.setup_default_session(region_name=REGION)
        self.requests.watch(boto3._get_default_session().events)
        os.environ.update(TABLE_ENVIRONMENT)
        self.dynamodb: DynamoDBClient = boto3.client("dynamodb", region_name=REGION)
        self.metering: MarketplaceMeteringClient = self.marketplace.attach(
            boto3.client("meteringmarketplace", region_name=REGION)
        )
        self.entitlements: MarketplaceEntitlementServiceClient = self.marketplace.attach(
            boto3.client("marketplace-entitlement", region_name=REGION)
        )
        create_tenancy_table(self.dynamodb, TENANCY_TABLE)
        create_activity_table(self.dynamodb, ACTIVITY_TABLE)
        create_quarantine_table(self.dynamodb, QUARANTINE_TABLE)
        create_ledger_table(self.dynamodb, LEDGER_TABLE)
        self.sqs: SQSClient = boto3.client("sqs", region_name=REGION)
        self.meter_queue_url = self.sqs.create_queue(QueueName=METER_QUEUE)["QueueUrl"]
        os.environ["METER_QUEUE_URL"] = self.meter_queue_url
        os.environ["PRODUCT_CODE"] = self.marketplace.product_code
        self.tenancy = DynamoTenancyStore(TENANCY_TABLE, self.dynamodb)
        self.activity = DynamoActivityStore(ACTIVITY_TABLE, self.dynamodb)
        self.requests.counts.clear()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._moto_speedups.close()
        self._mock.stop()
        boto3.DEFAULT_SESSION = None


def drain(aws: EmbeddedAws, queue_url: str) -> list[dict[str, Any]]:
    """Every message now on an embedded queue, removed, as Lambda's SQS event records."""
    records: list[dict[str, Any]] = []
    while True:
        response = aws.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])
        messages = response.get("Messages", [])
        if not messages:
            return records
        for message in messages:
            records.append(
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": message.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": f"arn:aws:sqs:{REGION}:000000000000:{queue_url.rsplit('/', 1)[1]}",
                    "awsRegion": REGION,
                }
            )
            aws.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
