"""ResolveCustomer and GetEntitlements through real boto3 clients answered by the Marketplace simulator:
full paging (empty pages with a NextToken included) and the errors the callers tell apart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from connect_metering.adapters.marketplace import MarketplaceCustomers, MarketplaceEntitlements
from connect_metering.domain.registration import ResolvedCustomer
from connect_metering.domain.tenancy import Entitlements
from connect_metering.local.marketplace_sim import FaultPlan, Outage
from connect_metering.services.ports import (
    ExpiredRegistrationToken,
    InvalidRegistrationToken,
    MarketplaceUnavailable,
)
from tests.integration.registration.conftest import T0, World
from tests.registration_support import PRODUCT_CODE

pytestmark = pytest.mark.integration


def entitlement_client(world: World, pages: list[dict[str, Any]]) -> MarketplaceEntitlements:
    client = boto3.client("marketplace-entitlement", region_name="us-east-1")

    def record(parsed: dict[str, Any], **_: Any) -> None:
        pages.append(parsed)

    client.meta.events.register("after-call.marketplace-entitlement-service.GetEntitlements", record)
    return MarketplaceEntitlements(client)


def test_every_page_is_read_even_after_empty_pages_with_a_next_token(world: World) -> None:
    account, licence = world.buyer("many", licensed_agents=40, expires=T0 + timedelta(days=30))
    for number in range(60):
        world.marketplace.set_entitlement(
            license_arn=licence,
            customer_aws_account_id=account,
            dimension=f"feature_{number:02d}",
            value=number,
        )
    world.marketplace.faults = FaultPlan(seed=7, empty_page_rate=0.6)
    pages: list[dict[str, Any]] = []
    adapter = entitlement_client(world, pages)
    records = adapter.records(product_code=PRODUCT_CODE, license_arn=licence)
    assert len(records) == 61
    assert sorted(record.dimension for record in records)[-1] == "licensed_agents"
    empty_with_token = [page for page in pages if not page["Entitlements"] and page.get("NextToken")]
    assert empty_with_token, "the fault plan should have served empty pages"
    assert len(pages) >= 3 + len(empty_with_token)  # 61 entitlements need 3 full pages besides the empty ones
    assert "NextToken" not in pages[-1]
    assert adapter.entitlements_for(product_code=PRODUCT_CODE, license_arn=licence) == Entitlements(
        licensed_agents=40, expires=T0 + timedelta(days=30)
    )


def test_a_buyer_without_licensed_agents_has_no_contract_entitlements(world: World) -> None:
    _, licence = world.buyer("usage")
    adapter = entitlement_client(world, [])
    assert adapter.entitlements_for(product_code=PRODUCT_CODE, license_arn=licence) is None
    world.marketplace.add_subscription(customer_identifier="LEGACY9", started=T0)
    world.marketplace.set_entitlement(customer_identifier="LEGACY9", dimension="licensed_agents", value=4)
    assert adapter.entitlements_for(product_code=PRODUCT_CODE, customer_identifier="LEGACY9") == Entitlements(
        licensed_agents=4
    )


def test_entitlement_errors(world: World) -> None:
    _, licence = world.buyer("one")
    adapter = entitlement_client(world, [])
    with pytest.raises(ClientError, match="InvalidParameterException"):
        adapter.records(product_code="someone-elses", license_arn=licence)
    world.marketplace.faults = FaultPlan(
        outages=(Outage(T0, T0 + timedelta(minutes=1), "ThrottlingException"),)
    )
    with pytest.raises(MarketplaceUnavailable) as caught:
        adapter.records(product_code=PRODUCT_CODE, license_arn=licence)
    assert caught.value.code == "ThrottlingException"
    with pytest.raises(ValueError, match="licence ARN or a customer identifier"):
        adapter.records(product_code=PRODUCT_CODE)
    with pytest.raises(ValueError, match="page_size"):
        MarketplaceEntitlements(
            boto3.client("marketplace-entitlement", region_name="us-east-1"), page_size=26
        )


def test_resolve_customer_answers_and_errors(world: World) -> None:
    customers = MarketplaceCustomers(boto3.client("meteringmarketplace", region_name="us-east-1"))
    account, licence = world.buyer("one")
    assert customers.resolve(world.token(account, licence)) == ResolvedCustomer(
        product_code=PRODUCT_CODE, customer_aws_account_id=account, license_arn=licence
    )
    with pytest.raises(InvalidRegistrationToken):
        customers.resolve("never-issued")
    with pytest.raises(ExpiredRegistrationToken):
        customers.resolve(
            world.marketplace.expired_token(customer_aws_account_id=account, license_arn=licence)
        )
    world.marketplace.faults = FaultPlan(
        outages=(Outage(T0, T0 + timedelta(minutes=1), "InternalServiceErrorException"),)
    )
    token = world.token(account, licence)
    with pytest.raises(MarketplaceUnavailable) as caught:
        customers.resolve(token)
    assert token not in str(caught.value)
