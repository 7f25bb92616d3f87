"""Licence identity through the lifecycle and registration handlers on moto + the Marketplace simulator:
every spelling AWS writes for one licence names one subscription, legacy SNS messages in both key
spellings and with blanks, a licence buyer's legacy notifications, and notifications parked too long."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest

from connect_metering.adapters.marketplace import MarketplaceEntitlements
from connect_metering.domain.instants import iso
from connect_metering.domain.tenancy import Company, Subscription, build, license_key
from connect_metering.services.lifecycle import Outcome
from tests.integration.registration.conftest import T0, World
from tests.registration_support import PRODUCT_CODE, SIGNUP, context, sns_notification

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

A = T0 + timedelta(minutes=5)
E = T0 + timedelta(hours=3, minutes=20)
BUYER = "210987654321"
LICENCE_ID = "l-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
# ResolveCustomer's spelling, the one records must be sent with.
RESOLVED = f"arn:aws:license-manager::{BUYER}:license/{LICENCE_ID}"
# The spelling of aws.agreement-marketplace License Updated / Deprovisioned events.
IN_EVENTS = f"aws:license-manager:us-east-1:{BUYER}:{LICENCE_ID}"
# The regional spelling botocore's meteringmarketplace LicenseArn pattern admits.
REGIONAL = f"arn:aws:license-manager:us-east-1:{BUYER}:license:{LICENCE_ID}"
# The global spelling with a colon, which the product always accepted.
GLOBAL_COLON = f"arn:aws:license-manager::{BUYER}:license:{LICENCE_ID}"


def registered(world: World, *, customer_identifier: str | None = None) -> Subscription:
    """A company holding the licence (spelt as ResolveCustomer spells it), not yet activated."""
    world.marketplace.add_subscription(
        customer_aws_account_id=BUYER,
        license_arn=RESOLVED,
        customer_identifier=customer_identifier,
        started=world.clock.now(),
    )
    world.store.create_company(Company(alias="acme"))
    subscription = build(
        Subscription,
        company_alias="acme",
        identity={"customer_aws_account_id": BUYER, "license_arn": RESOLVED},
        pricing="usage",
    )
    world.store.add_subscription(subscription)
    return subscription


def sign_up_with_token(world: World, token: str) -> None:
    browser = world.browser()
    page = browser.post("/register", {"x-amzn-marketplace-token": token})
    assert page.status == 303, page.body
    form = browser.get(page.location)
    done = browser.post(
        "/signup",
        {"registration": form.field("registration"), "csrf_token": form.field("csrf_token"), **SIGNUP},
    )
    assert done.status == 303, done.body


def legacy(action: str, **identity: str) -> dict[str, Any]:
    return {"action": action, **identity}


def test_events_in_other_spellings_activate_and_end_the_subscription(world: World) -> None:
    subscription = registered(world)
    assert subscription.key == license_key(IN_EVENTS) == f"license#{LICENCE_ID}"

    response, [activated] = world.deliver(world.license_updated(BUYER, IN_EVENTS, A))
    assert response == {"batchItemFailures": []}
    assert (activated.outcome, activated.company) == (Outcome.APPLIED, "acme")
    assert world.stored(subscription).started == A

    _, [ended] = world.deliver(world.deprovisioned(REGIONAL, E))
    assert (ended.outcome, ended.final_metering) == (Outcome.APPLIED, True)
    after = world.stored(subscription)
    assert (after.started, after.ended) == (A, E)
    # the records are sent with the ARN exactly as ResolveCustomer returned it
    assert after.identity.license_arn == RESOLVED
    assert world.final_requests() == [
        {"kind": "final", "company": "acme", "subscription": subscription.key, "at": iso(E)}
    ]


def test_an_event_parked_in_the_event_spelling_applies_at_sign_up(world: World) -> None:
    world.marketplace.add_subscription(customer_aws_account_id=BUYER, license_arn=RESOLVED, started=T0)
    _, [parked] = world.deliver(world.license_updated(BUYER, IN_EVENTS, A))
    assert parked.outcome is Outcome.KEPT_FOR_SIGNUP
    sign_up_with_token(world, world.token(BUYER, RESOLVED))
    [subscription] = world.store.list_subscriptions("acme")
    assert subscription.identity.license_arn == RESOLVED
    assert subscription.started == A


@pytest.mark.parametrize(
    ("customer_key", "product_key"),
    [("customer-identifier", "product-code"), ("CustomerIdentifier", "ProductCode")],
)
def test_legacy_sns_messages_in_both_key_spellings_with_a_leading_space(
    world: World, customer_key: str, product_key: str
) -> None:
    world.store.create_company(Company(alias="legacy1"))
    world.marketplace.add_subscription(customer_identifier="X01EXAMPLEX", started=T0)
    subscription = build(
        Subscription,
        company_alias="legacy1",
        identity={"customer_identifier": "X01EXAMPLEX", "product_code": PRODUCT_CODE},
        pricing="usage",
    )
    world.store.add_subscription(subscription)
    identity = {customer_key: " X01EXAMPLEX", product_key: PRODUCT_CODE}

    response, [activated] = world.deliver(sns_notification(legacy("subscribe-success", **identity), at=A))
    assert response == {"batchItemFailures": []}
    assert (activated.outcome, activated.company) == (Outcome.APPLIED, "legacy1")
    pending = sns_notification(legacy("unsubscribe-pending", **identity), at=E, message_id="sns-2")
    _, [ended] = world.deliver(pending)
    assert ended.final_metering is True
    after = world.stored(subscription)
    assert (after.started, after.ended) == (A, E)


def test_a_licence_buyer_receives_its_legacy_notifications_by_customer_identifier(world: World) -> None:
    """ResolveCustomer gave CustomerAWSAccountId + LicenseArn and also a CustomerIdentifier: the legacy SNS
    topic names the buyer by that identifier only, before and after sign-up."""
    world.marketplace.add_subscription(
        customer_aws_account_id=BUYER, license_arn=GLOBAL_COLON, customer_identifier="CUSTLIC1", started=T0
    )
    token = world.token(BUYER, GLOBAL_COLON)
    early = sns_notification(
        legacy("subscribe-success", **{"customer-identifier": " CUSTLIC1", "product-code": PRODUCT_CODE}),
        at=A,
        message_id="sns-early",
    )
    _, [parked] = world.deliver(early)
    assert parked.outcome is Outcome.KEPT_FOR_SIGNUP

    sign_up_with_token(world, token)
    [subscription] = world.store.list_subscriptions("acme")
    assert subscription.identity.usage_record_identity() == {
        "CustomerAWSAccountId": BUYER,
        "LicenseArn": GLOBAL_COLON,
    }
    assert subscription.started == A  # the legacy activation kept before sign-up was applied

    world.marketplace.set_entitlement(
        license_arn=GLOBAL_COLON, customer_aws_account_id=BUYER, dimension="licensed_agents", value=4
    )
    updated = sns_notification(
        legacy("entitlement-updated", CustomerIdentifier="CUSTLIC1", ProductCode=PRODUCT_CODE),
        at=A + timedelta(hours=1),
        message_id="sns-ent",
    )
    _, [refreshed] = world.deliver(updated)
    assert (refreshed.company, refreshed.subscription_key) == ("acme", subscription.key)
    assert refreshed.entitlements_refreshed is True

    ending = sns_notification(
        legacy("unsubscribe-pending", CustomerIdentifier="CUSTLIC1", ProductCode=PRODUCT_CODE),
        at=E,
        message_id="sns-end",
    )
    _, [ended] = world.deliver(ending)
    assert (ended.outcome, ended.final_metering) == (Outcome.APPLIED, True)
    assert world.stored(subscription).ended == E
    assert world.final_requests()[-1] == {
        "kind": "final",
        "company": "acme",
        "subscription": subscription.key,
        "at": iso(E),
    }


def run_parked_check(world: World) -> tuple[dict[str, Any], float]:
    """The hourly scheduled invocation; returns its answer and the metric it published."""
    world.lifecycle.metrics.clear_metrics()
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    answer = world.lifecycle.lambda_handler(scheduled, context("lifecycle"))
    (value,) = world.lifecycle.metrics.metric_set["LifecycleEventsParkedTooLong"]["Value"]
    return answer, value


def test_events_parked_more_than_an_hour_are_counted_until_sign_up(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # keep the metric set readable after the handler ran (flushing it is Powertools' business)
    monkeypatch.setattr(world.lifecycle.metrics, "flush_metrics", lambda raise_on_empty_metrics=False: None)
    world.marketplace.add_subscription(customer_aws_account_id=BUYER, license_arn=RESOLVED, started=T0)
    _, [parked] = world.deliver(world.license_updated(BUYER, IN_EVENTS, A))
    assert parked.outcome is Outcome.KEPT_FOR_SIGNUP
    assert world.lifecycle.metrics.metric_set["LifecycleEventsParked"]["Value"] == [1.0]

    world.clock.advance_to(T0 + timedelta(minutes=59))
    assert run_parked_check(world) == ({"parked_too_long": 0}, 0.0)
    world.clock.advance_to(T0 + timedelta(hours=1, minutes=1))
    assert run_parked_check(world) == ({"parked_too_long": 1}, 1.0)
    # a redelivery, or another event for the same licence, keeps the first parking time
    world.deliver(world.deprovisioned(REGIONAL, E, event_id="ld-early"))
    assert run_parked_check(world) == ({"parked_too_long": 1}, 1.0)

    sign_up_with_token(world, world.token(BUYER, RESOLVED))
    assert run_parked_check(world) == ({"parked_too_long": 0}, 0.0)
    [subscription] = world.store.list_subscriptions("acme")
    assert (subscription.started, subscription.ended) == (A, E)


def test_entitlement_answers_are_matched_by_licence_id(world: World) -> None:
    """GetEntitlements is asked with the stored ARN; an answer naming the same licence in another spelling
    counts, one naming another licence does not."""
    world.marketplace.add_subscription(customer_aws_account_id=BUYER, license_arn=RESOLVED, started=T0)
    world.marketplace.set_entitlement(
        license_arn=RESOLVED, customer_aws_account_id=BUYER, dimension="licensed_agents", value=5
    )
    client = boto3.client("marketplace-entitlement", region_name="us-east-1")
    asked: list[dict[str, Any]] = []

    def respell(params: dict[str, Any], **_: Any) -> None:
        asked.append(params)

    def answer_with_other_spellings(parsed: dict[str, Any], **_: Any) -> None:
        [entry] = parsed["Entitlements"]
        entry["LicenseArn"] = IN_EVENTS
        other = {
            **entry,
            "LicenseArn": f"arn:aws:license-manager::{BUYER}:license/l-ffff",
            "Value": {"IntegerValue": 100},
        }
        parsed["Entitlements"].append(other)

    client.meta.events.register(
        "provide-client-params.marketplace-entitlement-service.GetEntitlements", respell
    )
    client.meta.events.register(
        "after-call.marketplace-entitlement-service.GetEntitlements", answer_with_other_spellings
    )
    found = MarketplaceEntitlements(client).entitlements_for(product_code=PRODUCT_CODE, license_arn=RESOLVED)
    assert found is not None and found.licensed_agents == 5
    assert asked[0]["Filter"] == {"LICENSE_ARN": [RESOLVED]}
