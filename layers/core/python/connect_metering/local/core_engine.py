"""``replay --engine core``: the product's services driven directly, without the handlers, moto or SQS.

The same code decides as in the handlers engine: ``IngestService`` (BILLING.md section 2, the agent-hour
bound, claim verification), ``MeterDispatcher``, ``MeterWorker`` with its steps (usage, plan, write-ahead
commit, paced send with retries and splitting, settle), ``LifecycleService`` with the Powertools parser of
notifications, and the same ``MarketplaceSimulator`` with its fault plan. What differs is only where
state lives:

- tenancy and ledger tables: ``core_tables.InMemoryTables``, answering the tenancy and meter store
  adapters' own requests (conditional writes, compare-and-set, the version-conditioned transaction);
- accepted events, checkpoints and late markers: ``core_activity.MemoryActivityStore`` (the activity
  adapter's code on dicts); the quarantine is counted;
- the meter queue: a list of work items, served as the SQS event source would (batches of 100,
  until empty);
- Marketplace: the simulator answers botocore clients in process (``before-call``), as in the handlers
  engine, with no HTTP and no SDK retries;
- each line's JSON is decoded once, by the reader (``replay_input.decode_json``), and handed to ingest
  with its body (``Message.document``), where the handlers engine's ingest decodes the SQS body.
"""

from __future__ import annotations

import gc
import json
import random
import time
from collections.abc import Sequence
from datetime import datetime
from itertools import repeat
from types import TracebackType
from typing import Any, Self, cast

import boto3
import botocore.session
from botocore.config import Config

from connect_metering.adapters.marketplace import MarketplaceEntitlements
from connect_metering.adapters.marketplace_meter import MarketplaceMeter, Observer, WorkerCrash
from connect_metering.adapters.marketplace_notifications import parse_lifecycle_message
from connect_metering.adapters.meter_store import DynamoMeterStore
from connect_metering.adapters.tenancy_keys import (
    ACTIVE_SUBSCRIPTIONS_INDEX,
    INDEX_PARTITION_KEY,
    INDEX_SORT_KEY,
)
from connect_metering.adapters.tenancy_lifecycle import DynamoLifecycleStore
from connect_metering.adapters.tenancy_meter_state import DynamoMeterStateStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.agent_events import NOT_DECODED
from connect_metering.domain.instants import from_ms, to_ms
from connect_metering.domain.metering import MeterRequest
from connect_metering.local.core_activity import MemoryActivityStore, MemoryQuarantineStore
from connect_metering.local.core_tables import InMemoryTables, Item
from connect_metering.local.embedded import ACTIVITY_TABLE, LEDGER_TABLE, REGION, TENANCY_TABLE, VirtualClock
from connect_metering.local.marketplace_sim import MarketplaceSimulator
from connect_metering.local.marketplace_sim.wire import MeteringRules
from connect_metering.local.replay_engine import WORKER_BATCH, crash_hook
from connect_metering.local.replay_input import FaultsFile, Registry
from connect_metering.local.replay_output import StoredState
from connect_metering.meter_pacing import CALLS_PER_SECOND
from connect_metering.services.dispatch import MeterDispatcher
from connect_metering.services.ingest import CachedEnvironmentLookup, IngestResult, IngestService, Message
from connect_metering.services.lifecycle import LifecycleResult, LifecycleService
from connect_metering.services.meter import MeterWorker
from connect_metering.services.verification import ClaimVerification
from connect_metering.unreadable import UnreadableItems

# The cyclic collector's thresholds while a core replay runs (generation 0 allocations, then how many
# younger collections between older ones); Python's default is (700, 10, 10).
REPLAY_GC_THRESHOLDS = (50_000, 20, 100)


class MeterQueue:
    """The meter work queue in memory: the dispatcher's and the lifecycle's work items, in order. Each
    goes through its JSON form, as it would through SQS."""

    def __init__(self) -> None:
        self.items: list[MeterRequest] = []

    def send(self, requests: Sequence[MeterRequest]) -> None:
        self.items += [MeterRequest.from_json(json.loads(json.dumps(r.to_json()))) for r in requests]

    def subscription_ended(self, company_alias: str, subscription_key: str, ended_at: datetime) -> None:
        self.send(
            [
                MeterRequest(
                    company=company_alias,
                    kind="final",
                    through_ms=to_ms(ended_at),
                    subscription=subscription_key,
                )
            ]
        )

    def take(self) -> list[MeterRequest]:
        taken, self.items = self.items, []
        return taken


class CoreEngine:
    """The services on in-memory stores, the simulator and a virtual clock (``ReplayEngine``)."""

    def __init__(self, registry: Registry, faults: FaultsFile, start_ms: int, observer: Observer) -> None:
        policy = registry.policy
        self.clock = VirtualClock(from_ms(start_ms))
        # In-process botocore clients the simulator answers (no credentials, no HTTP, no retries), and
        # the simulator's own reading of the metering model, all from one botocore session.
        botocore_session = botocore.session.get_session()
        session = boto3.session.Session(
            aws_access_key_id="core",
            aws_secret_access_key="core",  # noqa: S106 - never sent: the simulator answers first
            region_name=REGION,
            botocore_session=botocore_session,
        )
        self.marketplace = MarketplaceSimulator(
            product_code=registry.product_code,
            dimensions=(policy.usage_dimension, policy.overage_dimension),
            clock=self.clock.now,
            monotonic=self.clock.monotonic,
            faults=faults.plan(),
            rules=MeteringRules.from_botocore(botocore_session),
        )
        unreadable = UnreadableItems()
        self._freeze_after_ms = (policy.max_event_age + 2 * 86_400) * 1000
        self.activity = MemoryActivityStore(unreadable)
        self.dynamodb = InMemoryTables(
            {
                TENANCY_TABLE: {ACTIVE_SUBSCRIPTIONS_INDEX: (INDEX_PARTITION_KEY, INDEX_SORT_KEY)},
                LEDGER_TABLE: {},
            },
            sink=self._other_table,
        )
        tables: Any = self.dynamodb
        self.tenancy = DynamoTenancyStore(TENANCY_TABLE, tables)
        self.queue = MeterQueue()
        self.quarantine = MemoryQuarantineStore()
        self._ingest = IngestService(
            # As in the ingest handler: the container's cache lives on the real monotonic clock.
            environments=CachedEnvironmentLookup(self.tenancy, monotonic=time.monotonic),
            activity=self.activity,
            quarantine=self.quarantine,
            grace_ms=policy.grace * 1000,
            max_event_age_ms=policy.max_event_age * 1000,
            counter=DynamoMeterStateStore(TENANCY_TABLE, tables),
            claims=ClaimVerification(self.tenancy),
        )
        self._dispatcher = MeterDispatcher(
            index=self.tenancy,
            late=self.activity,
            queue=self.queue,
            grace_ms=policy.grace * 1000,
            max_event_age_ms=policy.max_event_age * 1000,
        )
        entitlements = self.marketplace.attach(session.client("marketplace-entitlement"))
        metering = self.marketplace.attach(
            session.client("meteringmarketplace", config=Config(retries={"total_max_attempts": 1}))
        )
        self._lifecycle = LifecycleService(
            subscriptions=self.tenancy,
            store=DynamoLifecycleStore(TENANCY_TABLE, tables),
            entitlements=MarketplaceEntitlements(entitlements, dimension=policy.entitlement_dimension),
            final_metering=self.queue,
            clock=self.clock.now,
            default_product_code=registry.product_code,
        )
        now_ms = self._now_ms
        self._worker = MeterWorker(
            companies=self.tenancy,
            activity=self.activity,
            store=DynamoMeterStore(
                tenancy_table=TENANCY_TABLE,
                ledger_table=LEDGER_TABLE,
                activity_table=ACTIVITY_TABLE,
                client=tables,
                encode=self.activity.encode_checkpoint,
            ),
            marketplace=MarketplaceMeter(
                metering,
                now_ms=now_ms,
                monotonic=self.clock.monotonic,
                sleep=self.clock.sleep,
                rng=random.Random(faults.seed),
                calls_per_second=CALLS_PER_SECOND,
                observer=observer,
                crash=crash_hook(faults),
            ),
            policy=policy,
            now_ms=now_ms,
            unreadable=unreadable,
        )

    def __enter__(self) -> Self:
        # The replay keeps millions of long-lived objects (stored events, their decodings, the tables):
        # at the default thresholds the cyclic collector ran about 1,800 times per 100,000 lines and
        # traversed them again each time (about a tenth of the replay's CPU, measured with gc.callbacks).
        # Collections stay on, just rarer: the few cycles made (a caught rejection and its traceback) are
        # still collected.
        self._gc_thresholds = gc.get_threshold()
        gc.set_threshold(*REPLAY_GC_THRESHOLDS)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        gc.set_threshold(*self._gc_thresholds)

    def _now_ms(self) -> int:
        return to_ms(self.clock.now())

    def _other_table(self, table: str, item: Item | None, key: Item) -> None:
        if table != ACTIVITY_TABLE:
            raise ValueError(f"core engine: no table {table}")
        self.activity.store_table_write(item, key)

    def ingest(
        self, bodies: list[str], first_message: int, documents: list[Any] | None = None
    ) -> list[IngestResult]:
        """The results of ``bodies`` (their documents decoded, when given), in order; numbered from
        ``first_message`` (the message ids an audit record names). A record that failed fails the run."""
        decoded = documents if documents is not None else [NOT_DECODED] * len(bodies)
        if len(decoded) != len(bodies):
            raise ValueError(f"{len(bodies)} bodies, {len(decoded)} documents")
        numbers = range(first_message, first_message + len(bodies))
        # ``Message(...)`` without the named tuple's Python-level ``__new__``, as its ``_make`` does: every
        # field given, ``polled_ms`` the replay clock's now (when the batch is taken from the queue).
        fields = zip(map("message-{}".format, numbers), bodies, repeat(0), decoded, repeat(self._now_ms()))
        results = self._ingest.ingest([tuple.__new__(Message, message) for message in fields])
        failed = [outcome for outcome in results if isinstance(outcome, Exception)]
        if failed:
            raise RuntimeError(f"ingest failed {len(failed)} records") from failed[0]
        return cast(list[IngestResult], results)

    def notify(self, body: str, message_id: str) -> tuple[bool, list[LifecycleResult]]:
        """As the lifecycle handler's batch processor: any error refuses the message."""
        try:
            event = parse_lifecycle_message(body, message_id=message_id, sent_at_ms=0)
            return False, [self._lifecycle.handle(event)]
        except Exception:
            return True, []

    def dispatch(self, at_ms: int) -> None:
        outcome = self._dispatcher.dispatch(at_ms)
        if outcome.failed:
            raise RuntimeError(f"{len(outcome.failed)} companies or instances not served: {outcome.failed}")

    def work(self) -> None:
        # Days no event can reach any more (older than max_event_age, with a day's margin) are compressed.
        self.activity.freeze_before(self._now_ms() - self._freeze_after_ms)
        while requests := self.queue.take():
            for first in range(0, len(requests), WORKER_BATCH):
                try:
                    outcomes = self._worker.run_batch(requests[first : first + WORKER_BATCH])
                except WorkerCrash:
                    continue  # the invocation died after a call returned
                errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
                # As the batch processor: a batch whose every item failed fails the invocation.
                if errors and len(errors) == len(outcomes):
                    culprit = next((e for e in errors if not isinstance(e, WorkerCrash)), None)
                    if culprit is not None:
                        raise culprit

    def stored(self) -> StoredState:
        return self
