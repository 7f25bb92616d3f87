"""The facade: one simulated AWS Marketplace (metering + entitlement) for one product, plugged under boto3
clients, composed of the parts that model each operation (registration, metering, entitlements) over
one virtual clock, one fault plan and one lock."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from botocore.model import OperationModel

from connect_metering.domain.instants import to_ms
from connect_metering.local.marketplace_sim.entitlements import Entitlement, Entitlements, EntitlementValue
from connect_metering.local.marketplace_sim.faults import (
    DeterministicIds,
    FaultPlan,
    OperationCounters,
    SlidingWindowThrottle,
)
from connect_metering.local.marketplace_sim.ledger import Ledger, Refusal
from connect_metering.local.marketplace_sim.metering import Metering, MeteringParts
from connect_metering.local.marketplace_sim.registration import (
    Registration,
    Subscription,
    SubscriptionBook,
    derived_agreement_id,
)
from connect_metering.local.marketplace_sim.usage_records import UsageRecordParser
from connect_metering.local.marketplace_sim.wire import (
    ENTITLEMENT_REGION,
    ENTITLEMENT_SERVICE,
    METERING_SERVICE,
    Buyer,
    Call,
    Json,
    MarketplaceError,
    MeteringRules,
    Product,
    decode_request_body,
    require_aware,
    wire_response,
)

ClientT = TypeVar("ClientT", bound=BaseClient)
SESSION_SERVICE_IDS = ("marketplace-metering", "marketplace-entitlement-service")


class MarketplaceSimulator:
    """AWS Marketplace Metering + Entitlement for one product, with a virtual clock and faults."""

    def __init__(
        self,
        *,
        product_code: str,
        dimensions: Iterable[str] = ("agent_minutes", "overage_agents"),
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] | None = None,
        faults: FaultPlan | None = None,
        calls_per_second: int = 10,
        acceptance_window: timedelta = timedelta(hours=6),
        token_ttl: timedelta = timedelta(hours=1),
        rules: MeteringRules | None = None,
    ) -> None:
        """``rules``: the metering model's constraints, when the caller has read them already."""
        self._product = Product(product_code, frozenset(dimensions))
        # Read at every call: a test may swap the plan of a running simulator.
        self.faults = faults or FaultPlan()
        self.token_ttl = token_ttl
        self.calls_per_second = calls_per_second
        self.ledger = Ledger()
        self.refusals: list[Refusal] = []
        self.counters: dict[str, OperationCounters] = defaultdict(OperationCounters)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._monotonic = monotonic or time.monotonic
        self._throttle = SlidingWindowThrottle(calls_per_second, self._monotonic)
        # Every call as it arrived: (operation, monotonic seconds), throttled ones included.
        self.calls: list[tuple[str, float]] = []
        self._ids = DeterministicIds(self.faults.seed)
        self._lock = threading.RLock()
        self._book = SubscriptionBook(self._product)
        self._registration = Registration(self._book, self._ids)
        self._entitlements = Entitlements(self._product, lambda: self.faults, page_seed=self.faults.seed)
        parser = UsageRecordParser(rules or MeteringRules.from_botocore(), self._product)
        parts = MeteringParts(
            product=self._product,
            book=self._book,
            parser=parser,
            ids=self._ids,
            faults=lambda: self.faults,
            counters=self.counters,
            ledger=self.ledger,
            refusals=self.refusals,
        )
        self._metering = Metering(parts, acceptance_window)
        self._operations: dict[str, Callable[[Call], Json]] = {
            "BatchMeterUsage": self._metering.batch_meter_usage,
            "ResolveCustomer": self._registration.resolve_customer,
            "GetEntitlements": self._entitlements.get_entitlements,
        }

    @property
    def product_code(self) -> str:
        return self._product.code

    @product_code.setter
    def product_code(self, code: str) -> None:
        self._product.code = code

    @property
    def dimensions(self) -> frozenset[str]:
        return self._product.dimensions

    @dimensions.setter
    def dimensions(self, dimensions: Iterable[str]) -> None:
        self._product.dimensions = frozenset(dimensions)

    @property
    def acceptance_window(self) -> timedelta:
        return self._metering.acceptance_window

    @acceptance_window.setter
    def acceptance_window(self, window: timedelta) -> None:
        self._metering.acceptance_window = window

    # ---- seller-side set-up -----------------------------------------------------------------
    def add_subscription(
        self,
        *,
        customer_aws_account_id: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        product_code: str | None = None,
        started: datetime | None,
        ended: datetime | None = None,
        agreement_id: str | None = None,
    ) -> None:
        """``agreement_id`` is what ResolveCustomer returns as ``Metadata.AgreementId`` (default: one
        derived from the identity, in AWS's ``agmt-...`` form). ``started`` None: not active until
        ``start_subscription``."""
        buyer = Buyer(customer_aws_account_id, license_arn, customer_identifier)
        if license_arn is None and customer_identifier is None:
            raise ValueError(
                "a subscription needs license_arn (+ customer_aws_account_id) or customer_identifier"
            )
        if license_arn is not None and customer_aws_account_id is None:
            raise ValueError("a subscription with license_arn needs customer_aws_account_id")
        subscription = Subscription(
            buyer=buyer,
            product_code=product_code or self.product_code,
            started_ms=None if started is None else to_ms(require_aware(started, "started")),
            ended_ms=None if ended is None else to_ms(require_aware(ended, "ended")),
        )
        subscription.agreement_id = agreement_id or derived_agreement_id(subscription.key)
        with self._lock:
            self._book.add(subscription)

    def start_subscription(
        self,
        *,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        product_code: str | None = None,
        started: datetime,
    ) -> None:
        """Activate a subscription added with ``started=None`` (an earlier start is kept)."""
        with self._lock:
            subscription = self._book.known(license_arn, customer_identifier, product_code)
            moment = to_ms(require_aware(started, "started"))
            if subscription.started_ms is None or moment < subscription.started_ms:
                subscription.started_ms = moment

    def end_subscription(
        self,
        *,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        product_code: str | None = None,
        ended: datetime,
    ) -> None:
        with self._lock:
            subscription = self._book.known(license_arn, customer_identifier, product_code)
            subscription.ended_ms = to_ms(require_aware(ended, "ended"))

    def set_entitlement(
        self,
        *,
        license_arn: str | None = None,
        customer_aws_account_id: str | None = None,
        customer_identifier: str | None = None,
        dimension: str,
        value: EntitlementValue,
        expiration: datetime | None = None,
    ) -> None:
        """Create or replace the entitlement of one buyer on one dimension. The value's Python type picks
        the EntitlementValue member AWS fills: bool BooleanValue, int IntegerValue, float DoubleValue,
        str StringValue."""
        if expiration is not None:
            require_aware(expiration, "expiration")
        with self._lock:
            buyer = self._book.complete_buyer(
                Buyer(customer_aws_account_id, license_arn, customer_identifier)
            )
            self._entitlements.set(Entitlement(buyer, dimension, value, expiration))

    def remove_entitlements(
        self, *, license_arn: str | None = None, customer_identifier: str | None = None
    ) -> None:
        with self._lock:
            self._entitlements.remove(license_arn=license_arn, customer_identifier=customer_identifier)

    def issue_token(
        self,
        *,
        customer_aws_account_id: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        ttl: timedelta | None = None,
    ) -> str:
        """A registration token as Marketplace posts it to the seller's registration page."""
        expires = self._now() + (self.token_ttl if ttl is None else ttl)
        return self._issue(Buyer(customer_aws_account_id, license_arn, customer_identifier), to_ms(expires))

    def expired_token(
        self,
        *,
        customer_aws_account_id: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
    ) -> str:
        expired_at = to_ms(self._now()) - 1
        return self._issue(Buyer(customer_aws_account_id, license_arn, customer_identifier), expired_at)

    def _issue(self, requested: Buyer, expires_ms: int) -> str:
        with self._lock:
            return self._registration.issue(requested, expires_ms)

    def counter(self, operation: str) -> OperationCounters:
        return self.counters[operation]

    def reset_counters(self) -> None:
        self.counters.clear()

    # ---- plugging under boto3 ---------------------------------------------------------------
    def attach(self, client: ClientT) -> ClientT:
        """Answer every call of this metering or entitlement client from the simulator."""
        service = client.meta.service_model
        if service.service_name not in (METERING_SERVICE, ENTITLEMENT_SERVICE):
            raise ValueError(
                f"cannot simulate {service.service_name}: only {METERING_SERVICE} and {ENTITLEMENT_SERVICE}"
            )
        if service.service_name == ENTITLEMENT_SERVICE and client.meta.region_name != ENTITLEMENT_REGION:
            raise ValueError(
                f"GetEntitlements is served only in {ENTITLEMENT_REGION}, not {client.meta.region_name}"
            )
        event = f"before-call.{service.service_id.hyphenize()}"
        # botocore-stubs types handlers as returning None; before-call handlers may return a response.
        handler = cast("Callable[..., None]", self._on_before_call)
        client.meta.events.register(event, handler, unique_id=f"marketplace-sim-{id(self)}")
        return client

    def attach_session(self, events: Any) -> None:
        """Answer every metering and entitlement client created *later* from the session whose event
        emitter is ``events`` (clients copy it), e.g. the clients the Lambda handlers build themselves."""
        handler = cast("Callable[..., None]", self._on_before_call)
        for service_id in SESSION_SERVICE_IDS:
            events.register(
                f"before-call.{service_id}",
                handler,
                unique_id=f"marketplace-sim-session-{service_id}-{id(self)}",
            )

    def detach_session(self, events: Any) -> None:
        """Undo ``attach_session`` (a stale simulator must never answer a later run's clients)."""
        for service_id in SESSION_SERVICE_IDS:
            events.unregister(
                f"before-call.{service_id}", unique_id=f"marketplace-sim-session-{service_id}-{id(self)}"
            )

    def _on_before_call(self, *, model: OperationModel, params: Json, **_: Any) -> tuple[AWSResponse, Json]:
        with self._lock:
            request_id = self._ids.uuid("request")
            try:
                status, body = 200, self._serve(model, params)
            except MarketplaceError as error:
                status, body = error.status, {"__type": error.code, "message": error.message}
        return wire_response(model, str(params.get("url", "")), status, body, request_id)

    def _serve(self, model: OperationModel, params: Json) -> Json:
        operation = model.name
        counters = self.counters[operation]
        counters.calls += 1
        self.calls.append((operation, self._monotonic()))
        if not self._throttle.admit(operation):
            counters.throttled += 1
            raise MarketplaceError(
                "ThrottlingException",
                f"Rate exceeded: more than {self.calls_per_second} {operation} calls within 1 second",
            )
        now = self._now()
        # An outage answers only with an error the operation models (GetEntitlements has no DisabledApi).
        outage = self.faults.outage(now, {shape.name for shape in model.error_shapes})
        if outage is not None:
            counters.faulted += 1
            raise outage.answer(operation)
        handler = self._operations.get(operation)
        if handler is None:
            counters.rejected += 1
            raise MarketplaceError("UnsupportedOperation", f"the simulator does not model {operation}")
        try:
            body, size = decode_request_body(params)
            answer = handler(Call(operation, body, size, now))
        except MarketplaceError:
            counters.rejected += 1
            raise
        counters.succeeded += 1
        return answer

    def _now(self) -> datetime:
        return require_aware(self._clock(), "clock()").astimezone(UTC)
