"""AWS Marketplace's published notification samples (tests/fixtures/aws), delivered as they are to the
lifecycle Lambda on moto + the Marketplace simulator.

BILLING.md section 1 is the contract: a licence is matched by its licence id whatever ARN spelling AWS
uses, and a legacy customer identifier is read trimmed under either key spelling AWS has published.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connect_metering.domain.instants import iso, parse_iso
from connect_metering.domain.tenancy import Company, Subscription, build
from connect_metering.services.lifecycle import Outcome
from tests.factories import aws_sample
from tests.integration.registration.conftest import World

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

# What the published License samples name.
LICENCE_ID = "l-e52ca6f38bf84d0fafb8802ca15ac11x"
LICENCE_ISSUER_ACCOUNT = "123456789012"
BUYER_ACCOUNT = "845735284135"
LICENCE_PRODUCT_CODE = "aw4fgf5tyo5w2ap6fEXAMPLE"
# The same licence as ResolveCustomer returns it (BILLING.md section 1), and the other spelling AWS uses.
REGISTERED_LICENCE_SPELLINGS = (
    f"arn:aws:license-manager::{LICENCE_ISSUER_ACCOUNT}:license/{LICENCE_ID}",
    f"arn:aws:license-manager::{LICENCE_ISSUER_ACCOUNT}:license:{LICENCE_ID}",
)
# What the published SNS samples name; the samples write the identifier with a leading space.
CUSTOMER_IDENTIFIER = "X01EXAMPLEX"
SNS_PRODUCT_CODE = "n0123EXAMPLEXXXXXXXXXXXX"

AGREEMENT_SAMPLES = tuple(
    f"marketplace-purchase-agreement-{name}-{role}"
    for name in ("created", "amended", "ended")
    for role in ("proposer", "manufacturer")
)
LICENCE_SAMPLES = (
    "marketplace-license-updated-manufacturer",
    "marketplace-license-deprovisioned-manufacturer",
)
SUBSCRIPTION_ACTIONS = ("subscribe-success", "subscribe-fail", "unsubscribe-pending", "unsubscribe-success")
# Each published SNS message with the actions its page lists for it (the samples hold a placeholder).
SNS_MESSAGES_AND_ACTIONS = [
    *(("marketplace-sns-subscription-message", action) for action in SUBSCRIPTION_ACTIONS),
    ("marketplace-sns-entitlement-message", "entitlement-updated"),
    *(
        ("marketplace-sns-message-pascal-case-keys", action)
        for action in (*SUBSCRIPTION_ACTIONS, "entitlement-updated")
    ),
]
SNS_PLACEHOLDER_MESSAGES = (
    "marketplace-sns-subscription-message",
    "marketplace-sns-entitlement-message",
    "marketplace-sns-message-pascal-case-keys",
)


def sample_time(event: dict[str, Any]) -> datetime:
    return parse_iso(event["time"])


def sns_delivery(message: dict[str, Any]) -> dict[str, Any]:
    """The published SNS notification with a Marketplace message in it, as an SQS subscription receives it."""
    notification = aws_sample("sns-notification")
    notification["Message"] = json.dumps(message)
    return notification


def sns_message(name: str, action: str) -> dict[str, Any]:
    message = aws_sample(name)
    message["action"] = action
    return message


SNS_TIMESTAMP = parse_iso(aws_sample("sns-notification")["Timestamp"])


def licence_subscription(world: World, license_arn: str, *, started: datetime | None = None) -> Subscription:
    """The buyer of the License samples, signed up with its licence spelled ``license_arn``."""
    world.store.create_company(Company(alias="acme"))
    subscription = build(
        Subscription,
        company_alias="acme",
        identity={"customer_aws_account_id": BUYER_ACCOUNT, "license_arn": license_arn},
        pricing="usage",
        started=started,
    )
    world.store.add_subscription(subscription)
    return subscription


def legacy_subscription(world: World, *, started: datetime | None = None) -> Subscription:
    """The customer of the SNS samples, signed up with its identifier as ResolveCustomer returns it."""
    world.store.create_company(Company(alias="legacy1"))
    world.marketplace.add_subscription(
        customer_identifier=CUSTOMER_IDENTIFIER, product_code=SNS_PRODUCT_CODE, started=world.clock.now()
    )
    subscription = build(
        Subscription,
        company_alias="legacy1",
        identity={"customer_identifier": CUSTOMER_IDENTIFIER, "product_code": SNS_PRODUCT_CODE},
        pricing="usage",
        started=started,
    )
    world.store.add_subscription(subscription)
    return subscription


@pytest.fixture
def licence_product(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The simulator sells the License samples' product, so GetEntitlements for it answers."""
    monkeypatch.setattr(world.marketplace, "product_code", LICENCE_PRODUCT_CODE)
    return world


@pytest.fixture
def sns_product(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setattr(world.marketplace, "product_code", SNS_PRODUCT_CODE)
    return world


# aws.agreement-marketplace -----------------------------------------------------------------------------


def test_every_purchase_agreement_sample_is_recorded(world: World) -> None:
    response, results = world.deliver(*(aws_sample(name) for name in AGREEMENT_SAMPLES))
    assert response == {"batchItemFailures": []}
    assert [result.outcome for result in results] == [Outcome.RECORDED] * len(AGREEMENT_SAMPLES)


@pytest.mark.parametrize("name", LICENCE_SAMPLES)
def test_a_licence_sample_for_a_licence_nobody_signed_up_with_is_kept_for_sign_up(
    name: str, licence_product: World
) -> None:
    response, [result] = licence_product.deliver(aws_sample(name))
    assert response == {"batchItemFailures": []}
    assert result.outcome is Outcome.KEPT_FOR_SIGNUP


@pytest.mark.parametrize("registered_as", REGISTERED_LICENCE_SPELLINGS)
def test_license_updated_sample_activates_the_subscription_with_that_licence_id(
    registered_as: str, licence_product: World
) -> None:
    world = licence_product
    subscription = licence_subscription(world, registered_as)
    event = aws_sample("marketplace-license-updated-manufacturer")
    response, [result] = world.deliver(event)
    assert response == {"batchItemFailures": []}
    assert (result.outcome, result.company) == (Outcome.APPLIED, "acme")
    assert world.stored(subscription).started == sample_time(event)


@pytest.mark.parametrize("registered_as", REGISTERED_LICENCE_SPELLINGS)
def test_license_deprovisioned_sample_ends_the_subscription_with_that_licence_id(
    registered_as: str, licence_product: World
) -> None:
    world = licence_product
    subscription = licence_subscription(world, registered_as, started=datetime(2024, 8, 1, tzinfo=UTC))
    event = aws_sample("marketplace-license-deprovisioned-manufacturer")
    response, [result] = world.deliver(event)
    assert response == {"batchItemFailures": []}
    assert (result.company, result.final_metering) == ("acme", True)
    assert world.stored(subscription).ended == sample_time(event)
    assert world.final_requests() == [
        {"kind": "final", "company": "acme", "subscription": subscription.key, "at": iso(sample_time(event))}
    ]


# Legacy SNS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SNS_PLACEHOLDER_MESSAGES)
def test_each_sns_sample_as_published_is_read_and_ignored(name: str, sns_product: World) -> None:
    """Its action is AWS's placeholder, which names no action: read, nothing to do."""
    response, [result] = sns_product.deliver(sns_delivery(aws_sample(name)))
    assert response == {"batchItemFailures": []}
    assert result.outcome is Outcome.IGNORED


@pytest.mark.parametrize(("name", "action"), SNS_MESSAGES_AND_ACTIONS)
def test_each_sns_sample_with_each_documented_action_is_read_without_error(
    name: str, action: str, sns_product: World
) -> None:
    response, [result] = sns_product.deliver(sns_delivery(sns_message(name, action)))
    assert response == {"batchItemFailures": []}
    assert result.outcome is Outcome.KEPT_FOR_SIGNUP


@pytest.mark.parametrize(
    "name", ["marketplace-sns-subscription-message", "marketplace-sns-message-pascal-case-keys"]
)
def test_subscribe_success_sample_activates_the_customer_it_names(name: str, sns_product: World) -> None:
    world = sns_product
    subscription = legacy_subscription(world)
    response, [result] = world.deliver(sns_delivery(sns_message(name, "subscribe-success")))
    assert response == {"batchItemFailures": []}
    assert (result.outcome, result.company) == (Outcome.APPLIED, "legacy1")
    assert world.stored(subscription).started == SNS_TIMESTAMP


@pytest.mark.parametrize(
    "name", ["marketplace-sns-subscription-message", "marketplace-sns-message-pascal-case-keys"]
)
def test_unsubscribe_pending_sample_ends_the_customer_it_names_with_final_metering(
    name: str, sns_product: World
) -> None:
    world = sns_product
    subscription = legacy_subscription(world, started=datetime(2012, 5, 1, tzinfo=UTC))
    response, [result] = world.deliver(sns_delivery(sns_message(name, "unsubscribe-pending")))
    assert response == {"batchItemFailures": []}
    assert (result.company, result.final_metering) == ("legacy1", True)
    assert world.stored(subscription).ended == SNS_TIMESTAMP
    assert world.final_requests() == [
        {"kind": "final", "company": "legacy1", "subscription": subscription.key, "at": iso(SNS_TIMESTAMP)}
    ]


@pytest.mark.parametrize(
    "name", ["marketplace-sns-entitlement-message", "marketplace-sns-message-pascal-case-keys"]
)
def test_entitlement_updated_sample_refreshes_the_customer_it_names(name: str, sns_product: World) -> None:
    world = sns_product
    subscription = legacy_subscription(world)
    world.marketplace.set_entitlement(
        customer_identifier=CUSTOMER_IDENTIFIER, dimension="licensed_agents", value=7
    )
    response, [result] = world.deliver(sns_delivery(sns_message(name, "entitlement-updated")))
    assert response == {"batchItemFailures": []}
    assert (result.company, result.entitlements_refreshed) == ("legacy1", True)
    assert world.stored(subscription).entitlements.licensed_agents == 7
