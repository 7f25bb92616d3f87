"""One embedded world per test: moto (tenancy and activity tables, the meter queue), the Marketplace
simulator answering every Marketplace client the handlers build, and a virtual clock both read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from connect_metering.adapters.activity_table import DynamoActivityStore, create_activity_table
from connect_metering.adapters.tenancy_lifecycle import DynamoLifecycleStore
from connect_metering.adapters.tenancy_registration import DynamoRegistrationStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.adapters.tenancy_table import create_tenancy_table
from connect_metering.local.embedded import VirtualClock
from connect_metering.local.marketplace_sim import MarketplaceSimulator
from connect_metering.services.lifecycle import LifecycleResult
from connect_metering.settings import load_settings
from functions.admin import handler as admin_handler
from functions.lifecycle import handler as lifecycle_handler
from functions.register import handler as register_handler
from tests.registration_support import PRODUCT_CODE, Browser, eventbridge, license_arn, lifecycle_batch

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

    from connect_metering.domain.tenancy import Subscription

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TENANCY = "tenancy-test"
ACTIVITY = "activity-test"
BUS_ARN = "arn:aws:events:us-east-1:123456789012:event-bus/connect-metering-agent-events"


@dataclass
class World:
    clock: VirtualClock
    marketplace: MarketplaceSimulator
    dynamodb: DynamoDBClient
    sqs: SQSClient
    store: DynamoTenancyStore
    registrations: DynamoRegistrationStore
    lifecycle_store: DynamoLifecycleStore
    activity: DynamoActivityStore
    meter_queue_url: str
    register: ModuleType
    lifecycle: ModuleType
    admin: ModuleType

    def buyer(
        self,
        suffix: str,
        *,
        account: str = "210987654321",
        licensed_agents: int | None = None,
        expires: datetime | None = None,
    ) -> tuple[str, str]:
        """A buyer subscribed in Marketplace (a contract when ``licensed_agents`` is given)."""
        licence = license_arn(suffix)
        self.marketplace.add_subscription(
            customer_aws_account_id=account, license_arn=licence, started=self.clock.now()
        )
        if licensed_agents is not None:
            self.marketplace.set_entitlement(
                license_arn=licence,
                customer_aws_account_id=account,
                dimension="licensed_agents",
                value=licensed_agents,
                expiration=expires or self.clock.now() + timedelta(days=365),
            )
        return account, licence

    def stored(self, subscription: Subscription) -> Subscription:
        """The subscription as the store holds it now."""
        found = self.store.get_subscription(subscription.company_alias, subscription.key)
        assert found is not None
        return found

    def token(self, account: str, licence: str) -> str:
        return self.marketplace.issue_token(customer_aws_account_id=account, license_arn=licence)

    def browser(self) -> Browser:
        return Browser(self.register.lambda_handler)

    def deliver(self, *bodies: dict[str, Any] | str) -> tuple[dict[str, Any], list[LifecycleResult]]:
        response, results = self.lifecycle.handle_batch(lifecycle_batch(*bodies))
        return response, results

    def license_updated(
        self, account: str | None, licence: str, at: datetime, event_id: str = "lu-1"
    ) -> dict[str, Any]:
        return eventbridge(
            "License Updated - Manufacturer", licence=licence, account=account, at=at, event_id=event_id
        )

    def deprovisioned(self, licence: str, at: datetime, event_id: str = "ld-1") -> dict[str, Any]:
        return eventbridge(
            "License Deprovisioned - Manufacturer", licence=licence, account=None, at=at, event_id=event_id
        )

    def final_requests(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.meter_queue_url, MaxNumberOfMessages=10)
            batch = answer.get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                messages.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.meter_queue_url, ReceiptHandle=message["ReceiptHandle"])


HANDLERS = (register_handler, lifecycle_handler, admin_handler)


def _clear_caches() -> None:
    load_settings.cache_clear()
    register_handler.registration_service.cache_clear()
    lifecycle_handler.lifecycle_service.cache_clear()
    admin_handler.licence_service.cache_clear()
    admin_handler.audit_log.cache_clear()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, aws: None) -> Iterator[World]:
    # A fresh default session: the handlers' clients are made from it, and the simulator hooks it.
    boto3.setup_default_session(region_name="us-east-1")
    clock = VirtualClock(T0)
    # The throttle is exercised by the simulator's own tests; here many sign-ups share one virtual instant.
    marketplace = MarketplaceSimulator(
        product_code=PRODUCT_CODE, clock=clock.now, monotonic=clock.monotonic, calls_per_second=10_000
    )
    marketplace.attach_session(boto3._get_default_session().events)
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    create_tenancy_table(dynamodb, TENANCY)
    create_activity_table(dynamodb, ACTIVITY)
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="meter-work-test")["QueueUrl"]
    for name, value in {
        "TENANCY_TABLE": TENANCY,
        "ACTIVITY_TABLE": ACTIVITY,
        "METER_QUEUE_URL": queue_url,
        "PRODUCT_CODE": PRODUCT_CODE,
        "AGENT_EVENTS_BUS_ARN": BUS_ARN,
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for module in HANDLERS:
        monkeypatch.setattr(module, "now", clock.now)
    _clear_caches()
    yield World(
        clock=clock,
        marketplace=marketplace,
        dynamodb=dynamodb,
        sqs=sqs,
        store=DynamoTenancyStore(TENANCY, dynamodb),
        registrations=DynamoRegistrationStore(TENANCY, dynamodb),
        lifecycle_store=DynamoLifecycleStore(TENANCY, dynamodb),
        activity=DynamoActivityStore(ACTIVITY, dynamodb),
        meter_queue_url=queue_url,
        register=register_handler,
        lifecycle=lifecycle_handler,
        admin=admin_handler,
    )
    for module in HANDLERS:
        module.metrics.clear_metrics()
    _clear_caches()
    boto3.DEFAULT_SESSION = None
