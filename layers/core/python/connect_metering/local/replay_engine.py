"""What the replay drives: an engine that ingests batches, delivers lifecycle notifications, runs the
hourly dispatcher and serves the meter queue, on a virtual clock and a Marketplace simulator.

``replay`` (the driver: clock, schedule, batching, tally) is the same for both engines:

- ``handlers`` (the reference): the real Lambda handlers (functions/*/handler.py) on embedded AWS (moto,
  SQS, the simulator under botocore);
- ``core`` (``core_engine``): the same services wired to in-memory stores, no SQS, no moto.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self

import boto3
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from connect_metering.adapters.marketplace_meter import Observer, WorkerCrash
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.instants import from_ms, iso_ms, to_ms
from connect_metering.local.embedded import EmbeddedAws, VirtualClock, drain
from connect_metering.local.lambdas import handler_module
from connect_metering.local.marketplace_sim import MarketplaceSimulator
from connect_metering.local.replay_input import FaultsFile, Registry
from connect_metering.local.replay_output import StoredState
from connect_metering.local.traffic import sqs_batch
from connect_metering.services.ingest import IngestResult
from connect_metering.services.lifecycle import LifecycleResult
from connect_metering.settings import POLICY_VARIABLES

ENGINES = ("handlers", "core")
# The meter queue's event source batch size (infra/constructs/metering.py).
WORKER_BATCH = 100


class ReplayEngine(Protocol):
    """One replay's product: entered once, driven by ``Replay``, read by the summary."""

    clock: VirtualClock
    marketplace: MarketplaceSimulator
    tenancy: DynamoTenancyStore

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...

    def ingest(
        self, bodies: list[str], first_message: int, documents: list[Any] | None = None
    ) -> list[IngestResult]:
        """Agent-event bodies as one SQS batch (message ids from ``first_message``); each one's result.
        ``documents``: each body's decoded JSON as the reader has it (``NOT_DECODED`` where it has not),
        for an engine that can skip decoding it again."""
        ...

    def notify(self, body: str, message_id: str) -> tuple[bool, list[LifecycleResult]]:
        """One Marketplace notification to the subscription lifecycle: (refused, results)."""
        ...

    def dispatch(self, at_ms: int) -> None:
        """The hourly dispatcher's run at ``at_ms``: work items queued."""
        ...

    def work(self) -> None:
        """Serve every work item queued (hourly and final metering); a crashed worker's item is dropped
        (the next scheduled run recovers its pending records)."""
        ...

    def stored(self) -> StoredState:
        """The stored state the summary reads."""
        ...


def crash_hook(faults: FaultsFile) -> Callable[[], bool] | None:
    """The worker's crash fault (``crash_rate``), seeded."""
    if faults.crash_rate <= 0:
        return None
    rng = random.Random(faults.seed)
    return lambda: rng.random() < faults.crash_rate


class HandlersEngine:
    """The real handlers on embedded AWS: each batch through the ingest handler, notifications through the
    lifecycle handler, work items through SQS to the meter worker handler."""

    def __init__(
        self,
        registry: Registry,
        faults: FaultsFile,
        start_ms: int,
        observer: Observer,
        *,
        into: EmbeddedAws | None = None,
    ) -> None:
        """``into``: an embedded AWS that is already running and outlives the replay (``serve``'s)."""
        self._registry = registry
        self._faults = faults
        self._observer = observer
        self._owns_aws = into is None
        self.aws = into or EmbeddedAws(
            product_code=registry.product_code,
            start=from_ms(start_ms),
            faults=faults.plan(),
            dimensions=(registry.policy.usage_dimension, registry.policy.overage_dimension),
        )
        self.clock = self.aws.clock
        self.marketplace = self.aws.marketplace

    def __enter__(self) -> Self:
        if self._owns_aws:
            self.aws.__enter__()
        self.tenancy = self.aws.tenancy
        # The handlers build their own Marketplace clients (the lifecycle's GetEntitlements).
        self._session_events = boto3._get_default_session().events
        self.marketplace.attach_session(self._session_events)
        self._configure_handlers()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self.marketplace.detach_session(self._session_events)
        finally:
            if self._owns_aws:
                self.aws.__exit__(kind, error, trace)

    def _configure_handlers(self) -> None:
        policy = self._registry.policy
        for name, variable in POLICY_VARIABLES.items():
            os.environ[variable] = str(getattr(policy, name))
        from connect_metering.settings import load_settings

        load_settings.cache_clear()
        self._ingest = handler_module("ingest")
        self._ingest.ingest_service.cache_clear()
        self._dispatch = handler_module("meter_dispatch")
        self._dispatch.dispatcher.cache_clear()
        self._lifecycle = handler_module("lifecycle")
        self._lifecycle.lifecycle_service.cache_clear()
        self._worker_handler = handler_module("meter_worker")
        clock = self.clock
        self._worker = self._worker_handler.build_worker(
            now_ms=lambda: to_ms(clock.now()),
            monotonic=clock.monotonic,
            sleep=clock.sleep,
            rng=random.Random(self._faults.seed),
            observer=self._observer,
            crash=crash_hook(self._faults),
            metering=self.aws.metering,
        )

    def ingest(
        self, bodies: list[str], first_message: int, documents: list[Any] | None = None
    ) -> list[IngestResult]:
        batch = sqs_batch(
            bodies, first_message=first_message, received_timestamp=str(to_ms(self.clock.now()))
        )
        response, results = self._ingest.handle_batch(batch)
        self._ingest.metrics.clear_metrics()
        if response.get("batchItemFailures"):
            raise RuntimeError(f"ingest failed {len(response['batchItemFailures'])} records")
        return list(results)

    def notify(self, body: str, message_id: str) -> tuple[bool, list[LifecycleResult]]:
        batch = sqs_batch([body])
        batch["Records"][0]["messageId"] = message_id
        response, results = self._lifecycle.handle_batch(batch)
        self._lifecycle.metrics.clear_metrics()
        return bool(response.get("batchItemFailures")), list(results)

    def dispatch(self, at_ms: int) -> None:
        self._dispatch.dispatch({"time": iso_ms(at_ms)})

    def work(self) -> None:
        while records := drain(self.aws, self.aws.meter_queue_url):
            for first in range(0, len(records), WORKER_BATCH):
                try:
                    self._worker_handler.handle_batch(
                        {"Records": records[first : first + WORKER_BATCH]}, meter=self._worker
                    )
                except WorkerCrash:
                    continue  # the invocation died after a call returned
                except BatchProcessingError as failure:
                    errors = [error for _, error, _ in failure.child_exceptions]
                    if not all(isinstance(error, WorkerCrash) for error in errors):
                        raise
            self._worker_handler.metrics.clear_metrics()

    def stored(self) -> StoredState:
        return self.aws


def engine_for(name: str, registry: Registry, faults: FaultsFile, start_ms: int, observer: Observer) -> Any:
    """The engine called ``name`` (one of ``ENGINES``)."""
    if name == "core":
        from connect_metering.local.core_engine import CoreEngine

        return CoreEngine(registry, faults, start_ms, observer)
    if name != "handlers":
        raise ValueError(f"engine: {name!r} is not one of {', '.join(ENGINES)}")
    return HandlersEngine(registry, faults, start_ms, observer)
