"""Embedded AWS for the local runtime: moto for DynamoDB, the Marketplace simulator for Marketplace, and
a virtual clock that both read, so replay and the demo run hours of billing in seconds, offline."""

from __future__ import annotations

import copy
import functools
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from unittest import mock

import boto3
import botocore
import moto.core.responses
import moto.sqs.models
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.utils import camelcase_to_underscores, method_names_from_class
from moto.dynamodb import models
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.sqs.models import Queue

from connect_metering.adapters.activity_table import DynamoActivityStore, create_activity_table
from connect_metering.adapters.meter_store import create_ledger_table
from connect_metering.adapters.quarantine_table import create_quarantine_table
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.adapters.tenancy_table import create_tenancy_table
from connect_metering.domain.instants import from_ms
from connect_metering.local.embedded_expressions import (
    cached_expression_parsing,
    indexed_reserved_words,
    remembered_condition_shapes,
)
from connect_metering.local.embedded_fast import cheaper_request_ids, constant_user_agent, direct_dynamodb
from connect_metering.local.embedded_validation import (
    lean_update_validation,
    planned_tree_copies,
    remembered_node_kinds,
    remembered_text_checks,
)
from connect_metering.local.marketplace_sim import FaultPlan, MarketplaceSimulator
from connect_metering.local.write_units import WriteUnitMeter

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
    # An instant (epoch ms) the clock was told to move to and nobody has read since: a replay moves it
    # at nearly every line, and builds the datetime only when something reads the clock.
    pending_ms: int | None = None

    def now(self) -> datetime:
        if self.pending_ms is not None:
            self._settle()
        return self.now_value

    def monotonic(self) -> float:
        if self.pending_ms is not None:
            self._settle()
        return self.monotonic_value

    def advance_to(self, moment: datetime) -> None:
        if self.pending_ms is not None:
            self._settle()
        if moment > self.now_value:
            self.monotonic_value += (moment - self.now_value).total_seconds()
            self.now_value = moment

    def advance_to_ms(self, epoch_ms: int) -> None:
        """``advance_to(from_ms(epoch_ms))``, done when the clock is next read."""
        if self.pending_ms is None or epoch_ms > self.pending_ms:
            self.pending_ms = epoch_ms

    def _settle(self) -> None:
        pending, self.pending_ms = self.pending_ms, None
        if pending is not None:
            self.advance_to(from_ms(pending))

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

    with mock.patch.object(DynamoDBBackend, "transact_write_items", transact_write_items):
        yield


@contextmanager
def partition_scoped_queries() -> Iterator[None]:
    """moto answers a Query by filtering every item of the table; DynamoDB reads one partition (of the
    table or of an index). Handing moto only the queried partition keeps the cost of a query
    independent of how much history the tables hold (replay's hours, the bench's companies); results,
    order and paging are moto's own. An index's partitions are kept up to date from the keys each
    write touched since the last index query (``_IndexPartitions``)."""
    original_query = Table.query
    original_put = Table.put_item
    original_delete = Table.delete_item
    original_update = DynamoDBBackend.update_item
    partitions: dict[int, _IndexPartitions] = {}

    def of(table: Table) -> _IndexPartitions:
        found = partitions.get(id(table))
        if found is None or found.table is not table:
            found = partitions[id(table)] = _IndexPartitions(table)
        return found

    def query(table: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        candidates = _queried_partition(of(table), hash_key, args, kwargs)
        if candidates is None:
            return original_query(table, hash_key, *args, **kwargs)
        table.all_items = lambda: candidates  # type: ignore[method-assign]
        try:
            return original_query(table, hash_key, *args, **kwargs)
        finally:
            del table.all_items

    def put_item(table: Table, *args: Any, **kwargs: Any) -> Any:
        item = original_put(table, *args, **kwargs)
        of(table).touch(item.hash_key, item.range_key)
        return item

    def delete_item(table: Table, hash_key: Any, range_key: Any) -> Any:
        try:
            return original_delete(table, hash_key, range_key)
        finally:
            of(table).touch(hash_key, range_key)

    def update_item(
        backend: DynamoDBBackend, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        try:
            return original_update(backend, table_name, key, *args, **kwargs)
        finally:
            table = backend.get_table(table_name)
            of(table).touch(*_key_values(table, key))

    patches: dict[tuple[type, str], Callable[..., Any]] = {
        (Table, "query"): query,
        (Table, "put_item"): put_item,
        (Table, "delete_item"): delete_item,
    }
    patches[(DynamoDBBackend, "update_item")] = update_item
    with ExitStack() as stack:
        for (owner, name), replacement in patches.items():
            stack.enter_context(mock.patch.object(owner, name, replacement))
        yield


def _queried_partition(
    partitions: _IndexPartitions, hash_key: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any] | None:
    """The items of the partition a query reads, or None when moto should look at every item."""
    table = partitions.table
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name is not None:
        conditions = kwargs.get("hash_key_conditions") or []
        if len(conditions) != 1:
            return None
        attribute, value = conditions[0]
        return partitions.items_with(attribute, value)
    if hash_key is not None and table.range_key_attr:
        return list((table.items.get(hash_key) or {}).values())
    return None


def _key_values(table: Table, key: Mapping[str, Any]) -> tuple[Any, Any]:
    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    return hash_value, range_value


class _IndexPartitions:
    """One table's items by the value of each global index's partition key, built on the first index
    query and then refreshed only for the keys written since (a write may add, change or remove the
    indexed attribute)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._attributes = {
            key["AttributeName"]
            for index in table.global_indexes
            for key in index.schema
            if key["KeyType"] == "HASH"
        }
        self._by_value: dict[tuple[str, Any], dict[tuple[Any, Any], Any]] = {}
        self._placed: dict[tuple[Any, Any], list[tuple[str, Any]]] = {}
        self._written: set[tuple[Any, Any]] = set()
        self._built = False

    def touch(self, hash_value: Any, range_value: Any) -> None:
        if self._built:
            self._written.add((hash_value, range_value))

    def items_with(self, attribute: str, value: Any) -> list[Any]:
        if not self._built:
            for stored in self.table.all_items():
                self._place(stored)
            self._built = True
        for key in self._written:
            for place in self._placed.pop(key, []):
                self._by_value[place].pop(key, None)
            item = self.table.get_item(*key)
            if item is not None:
                self._place(item)
        self._written.clear()
        return list(self._by_value.get((attribute, value), {}).values())

    def _place(self, item: Any) -> None:
        key = (item.hash_key, item.range_key)
        places = [(name, item.attrs[name]) for name in self._attributes if name in item.attrs]
        for place in places:
            self._by_value.setdefault(place, {})[key] = item
        self._placed[key] = places


@contextmanager
def linear_sqs() -> Iterator[None]:
    """moto's SQS recounts the whole queue on every call: each send reads the queue's attributes (three
    counts over every message) for one flag, each receive lists every visible message to take ten, and
    each delete rebuilds the list. With the hour's work of 10,000 companies on one queue that is
    quadratic. Here a send reads only the flag, a receive walks the queue lazily up to what it returns,
    and a delete removes the one message; answers are moto's own."""
    attributes_property: property = vars(Queue)["attributes"]
    original_delete = Queue.delete_message

    def visible(queue: Queue) -> _VisibleMessages:
        return _VisibleMessages(queue)

    def attributes(queue: Queue) -> Mapping[str, Any]:
        return _QueueAttributes(queue, attributes_property.fget)

    def delete_message(queue: Queue, receipt_handle: str) -> None:
        if receipt_handle in queue.deleted_messages:
            return
        for position, message in enumerate(queue._messages):
            if message.had_receipt_handle(receipt_handle):
                queue.pending_messages.discard(message)
                queue.deleted_messages.update(message.all_receipt_handles)  # type: ignore[arg-type]
                del queue._messages[position]
                return
        original_delete(queue, receipt_handle)  # raises moto's ReceiptHandleIsInvalid

    with mock.patch.multiple(
        Queue, messages=property(visible), attributes=property(attributes), delete_message=delete_message
    ):
        yield


class _VisibleMessages:
    """moto's ``Queue.messages`` (visible, not delayed), walked only as far as the caller reads."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def __iter__(self) -> Iterator[Any]:
        return (m for m in self._queue._messages if m.visible and not m.delayed)

    def __bool__(self) -> bool:
        return any(True for _ in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _QueueAttributes(Mapping[str, Any]):
    """moto's queue attributes, each computed when read: the message counts only when asked for."""

    _COUNTS = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
    )

    def __init__(self, queue: Queue, compute: Any) -> None:
        self._queue = queue
        self._compute = compute
        self._without_counts: dict[str, Any] | None = None

    def _plain(self) -> dict[str, Any]:
        if self._without_counts is None:
            self._without_counts = self._compute(_WithoutCounts(self._queue))
        return self._without_counts

    def __getitem__(self, name: str) -> Any:
        if name in self._COUNTS:
            return getattr(self._queue, camelcase_to_underscores(name))
        return self._plain()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._plain())

    def __len__(self) -> int:
        return len(self._plain())


class _WithoutCounts:
    """The queue as moto's attribute code reads it, with the message counts left at 0 (read apart)."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        if name in (
            "approximate_number_of_messages",
            "approximate_number_of_messages_delayed",
            "approximate_number_of_messages_not_visible",
        ):
            return 0
        return getattr(self._queue, name)


@contextmanager
def lean_requests(events: Any) -> Iterator[None]:
    """Per-request work that moto and botocore repeat and the embedded runtime does not need: moto lists
    its response class's methods (``inspect.getmembers``) and re-derives the action's snake_case name on
    every request (both depend on the class and the name alone, so they are remembered), and botocore
    signs every request with SigV4, which moto never checks (no IAM here; the region comes from the
    endpoint's host name, the account from moto's default for unsigned requests, as for signed ones with
    moto's fake keys). ``events``: the emitter of the session every embedded client comes from."""
    original_names, original_underscores = method_names_from_class, camelcase_to_underscores  # moto's own

    def unsigned(**_: Any) -> Any:
        return botocore.UNSIGNED

    events.register("choose-signer", unsigned, unique_id="embedded-aws-unsigned")
    try:
        with (
            mock.patch.multiple(
                moto.core.responses,
                method_names_from_class=functools.cache(original_names),
                camelcase_to_underscores=functools.cache(original_underscores),
            ),
            # SQS's queue attributes convert every attribute name on each read (each send reads them).
            mock.patch.object(
                moto.sqs.models, "camelcase_to_underscores", functools.cache(original_underscores)
            ),
        ):
            yield
    finally:
        events.unregister("choose-signer", unique_id="embedded-aws-unsigned")


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
        self._moto_speedups.enter_context(linear_sqs())
        # Every client made from here on (the handlers' too) comes from this session and is counted.
        boto3.setup_default_session(region_name=REGION)
        self.requests.watch(boto3._get_default_session().events)
        self._moto_speedups.enter_context(lean_requests(boto3._get_default_session().events))
        self._moto_speedups.enter_context(direct_dynamodb())
        self._moto_speedups.enter_context(cached_expression_parsing())
        self._moto_speedups.enter_context(remembered_node_kinds())
        self._moto_speedups.enter_context(lean_update_validation())
        self._moto_speedups.enter_context(planned_tree_copies())
        self._moto_speedups.enter_context(remembered_condition_shapes())
        self._moto_speedups.enter_context(remembered_text_checks())
        self._moto_speedups.enter_context(constant_user_agent())
        self._moto_speedups.enter_context(indexed_reserved_words())
        self._moto_speedups.enter_context(cheaper_request_ids())
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

    def stored_item(self, table_name: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The item with this key (the key attributes of ``key``) as DynamoDB's wire form, read from
        moto directly: not a request, so not counted."""
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(table_name)
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        item = table.get_item(hash_value, range_value)
        return None if item is None else dict(item.to_json()["Attributes"])

    def count_write_units(self) -> WriteUnitMeter:
        """From now on, the write units of every DynamoDB write of this session's clients and ``self.dynamodb``."""
        meter = WriteUnitMeter(self.stored_item)
        meter.watch(boto3._get_default_session().events)  # clients made from now on
        meter.watch(self.dynamodb.meta.events)  # a client copies the session's hooks when made
        return meter

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
