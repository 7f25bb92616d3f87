"""The lifecycle Lambda on moto + the Marketplace simulator: every notification of both sources, duplicates,
out-of-order delivery, entitlements, final metering requests and unreadable messages."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from connect_metering.adapters.tenancy_keys import index_shard
from connect_metering.domain.instants import iso
from connect_metering.domain.lifecycle import legacy_key, license_key
from connect_metering.domain.tenancy import Company, Entitlements, Subscription, build
from connect_metering.services.lifecycle import Outcome
from connect_metering.settings import load_settings
from tests.integration.registration.conftest import T0, World
from tests.registration_support import (
    PRODUCT_CODE,
    context,
    eventbridge,
    lifecycle_batch,
    sns_message,
    sns_notification,
)

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

A = T0 + timedelta(minutes=5)
E = T0 + timedelta(hours=3, minutes=20)


def registered(
    world: World, suffix: str, *, alias: str = "acme", pricing: str = "usage", account: str = "210987654321"
) -> Subscription:
    """A company holding a pending (not yet activated) subscription, as sign-up leaves it."""
    if world.store.get_company(alias) is None:
        world.store.create_company(Company(alias=alias))
    subscription = build(
        Subscription,
        company_alias=alias,
        identity={"customer_aws_account_id": account, "license_arn": world.buyer(suffix, account=account)[1]},
        pricing=pricing,
    )
    world.store.add_subscription(subscription)
    return subscription


def legacy_registered(world: World, customer: str, *, alias: str = "legacy1") -> Subscription:
    world.store.create_company(Company(alias=alias))
    world.marketplace.add_subscription(customer_identifier=customer, started=world.clock.now())
    subscription = build(
        Subscription,
        company_alias=alias,
        identity={"customer_identifier": customer, "product_code": PRODUCT_CODE},
        pricing="usage",
    )
    world.store.add_subscription(subscription)
    return subscription


def in_index(world: World, subscription: Subscription) -> bool:
    item = world.dynamodb.get_item(
        TableName="tenancy-test",
        Key={"pk": {"S": f"COMPANY#{subscription.company_alias}"}, "sk": {"S": f"SUB#{subscription.key}"}},
    )["Item"]
    return item.get("meter_shard", {}).get("S") == index_shard(subscription.key)


def test_license_updated_activates_and_deprovisioned_ends_with_final_metering(world: World) -> None:
    subscription = registered(world, "one")
    licence = subscription.identity.license_arn or ""
    response, [result] = world.deliver(world.license_updated("210987654321", licence, A))
    assert response == {"batchItemFailures": []}
    assert (result.outcome, result.company, result.final_metering) == (Outcome.APPLIED, "acme", False)
    assert world.stored(subscription).started == A
    assert in_index(world, subscription)  # the meter lists it from here on
    assert world.final_requests() == []

    response, [result] = world.deliver(world.deprovisioned(licence, E))
    assert response == {"batchItemFailures": []}
    assert result.final_metering is True
    after = world.stored(subscription)
    assert (after.started, after.ended) == (A, E)
    assert in_index(world, subscription)  # it leaves the index once its final metering is done
    assert world.final_requests() == [
        {"kind": "final", "company": "acme", "subscription": subscription.key, "at": iso(E)}
    ]


def test_redelivered_events_change_nothing_and_the_final_request_is_repeated(world: World) -> None:
    subscription = registered(world, "one")
    licence = subscription.identity.license_arn or ""
    activation, end = world.license_updated("210987654321", licence, A), world.deprovisioned(licence, E)
    world.deliver(activation, end)
    first = world.final_requests()
    _, results = world.deliver(activation, end, end)
    assert [r.duplicate for r in results] == [True, True, True]
    assert [r.outcome for r in results] == [Outcome.UNCHANGED] * 3
    after = world.stored(subscription)
    assert (after.started, after.ended) == (A, E)
    # at least once: every delivery of an end asks again, with the same body; the engine de-duplicates
    assert world.final_requests() == first * 2


def test_any_delivery_order_leaves_the_same_state(world: World) -> None:
    """Two activations (the first and a renewal) and two ends, in all 24 orders: always [A, E)."""
    for number, order in enumerate(itertools.permutations(range(4))):
        subscription = registered(world, f"perm{number}")
        licence = subscription.identity.license_arn or ""
        events = [
            world.license_updated("210987654321", licence, A, event_id="first"),
            world.license_updated("210987654321", licence, A + timedelta(days=30), event_id="renewal"),
            world.deprovisioned(licence, E + timedelta(days=60), event_id="late-end"),
            world.deprovisioned(licence, E, event_id="end"),
        ]
        response, _ = world.deliver(*(events[index] for index in order))
        assert response == {"batchItemFailures": []}, order
        after = world.stored(subscription)
        assert (after.started, after.ended) == (A, E), order
        assert world.final_requests()[-1]["at"] == iso(E), order


def test_an_end_that_arrives_before_the_activation(world: World) -> None:
    subscription = registered(world, "one")
    licence = subscription.identity.license_arn or ""
    _, [ended] = world.deliver(world.deprovisioned(licence, E))
    assert ended.final_metering is False  # nothing was active yet
    assert (world.stored(subscription).started, world.stored(subscription).ended) == (None, E)
    assert not in_index(world, subscription)
    _, [activated] = world.deliver(world.license_updated("210987654321", licence, A))
    # the late activation completes a known end: [A, E) was active and must be metered now
    assert activated.final_metering is True
    assert (world.stored(subscription).started, world.stored(subscription).ended) == (A, E)
    assert world.final_requests() == [
        {"kind": "final", "company": "acme", "subscription": subscription.key, "at": iso(E)}
    ]


def test_an_activation_stamped_after_the_end_never_happened(world: World) -> None:
    subscription = registered(world, "one")
    licence = subscription.identity.license_arn or ""
    world.deliver(world.license_updated("210987654321", licence, E + timedelta(minutes=1)))
    assert world.stored(subscription).started == E + timedelta(minutes=1)
    _, [ended] = world.deliver(world.deprovisioned(licence, E))
    assert ended.final_metering is False
    assert (world.stored(subscription).started, world.stored(subscription).ended) == (None, E)
    assert not in_index(world, subscription)


def test_events_for_an_unknown_subscription_are_kept_for_sign_up(world: World) -> None:
    _, licence = world.buyer("later")
    _, [result] = world.deliver(world.license_updated("210987654321", licence, A))
    assert result.outcome is Outcome.KEPT_FOR_SIGNUP
    _, [again] = world.deliver(
        world.license_updated("210987654321", licence, A - timedelta(minutes=1), event_id="x")
    )
    assert again.outcome is Outcome.KEPT_FOR_SIGNUP
    pending = world.lifecycle_store.pending_lifecycle(license_key(licence))
    assert pending is not None
    assert pending.activated == A - timedelta(minutes=1)  # the earliest, whatever the order
    assert pending.ended is None


def test_license_updated_refreshes_contract_entitlements_and_lowering_deletes_nothing(world: World) -> None:
    subscription = registered(world, "contract", pricing="contract")
    licence = subscription.identity.license_arn or ""
    account = subscription.identity.customer_aws_account_id or ""
    expires = T0 + timedelta(days=365)
    world.marketplace.set_entitlement(
        license_arn=licence,
        customer_aws_account_id=account,
        dimension="licensed_agents",
        value=25,
        expiration=expires,
    )
    _, [result] = world.deliver(world.license_updated(account, licence, A))
    assert result.entitlements_refreshed is True
    assert world.stored(subscription).entitlements == Entitlements(licensed_agents=25, expires=expires)

    world.marketplace.set_entitlement(
        license_arn=licence,
        customer_aws_account_id=account,
        dimension="licensed_agents",
        value=3,
        expiration=expires,
    )
    _, [lowered] = world.deliver(
        world.license_updated(account, licence, A + timedelta(days=2), event_id="amend")
    )
    assert lowered.outcome is Outcome.APPLIED
    after = world.stored(subscription)
    assert after.entitlements.licensed_agents == 3
    assert after.started == A  # an amendment never moves the activation
    assert world.store.get_company("acme") is not None
    assert world.store.list_subscriptions("acme") == [after]


def test_legacy_sns_messages_map_to_the_same_internal_events(world: World) -> None:
    subscription = legacy_registered(world, "CUST001")
    assert subscription.key == legacy_key(PRODUCT_CODE, "CUST001")
    success = sns_notification(sns_message("subscribe-success", customer="CUST001"), at=A, message_id="m1")
    response, [activated] = world.deliver(success)
    assert response == {"batchItemFailures": []}
    assert (activated.outcome, activated.company) == (Outcome.APPLIED, "legacy1")
    assert world.stored(subscription).started == A

    world.marketplace.set_entitlement(customer_identifier="CUST001", dimension="licensed_agents", value=7)
    updated = sns_notification(
        sns_message("entitlement-updated", customer="CUST001"), at=A + timedelta(hours=1), message_id="m2"
    )
    _, [refreshed] = world.deliver(updated)
    assert refreshed.entitlements_refreshed is True
    assert world.stored(subscription).entitlements.licensed_agents == 7

    pending = sns_notification(sns_message("unsubscribe-pending", customer="CUST001"), at=E, message_id="m3")
    done = sns_notification(
        sns_message("unsubscribe-success", customer="CUST001"), at=E + timedelta(hours=1), message_id="m4"
    )
    _, results = world.deliver(done, pending)  # the success overtakes the pending: the earlier end wins
    assert [r.final_metering for r in results] == [True, True]
    assert world.stored(subscription).ended == E
    assert world.final_requests()[-1] == {
        "kind": "final",
        "company": "legacy1",
        "subscription": subscription.key,
        "at": iso(E),
    }


def test_subscribe_fail_ends_a_pending_subscription_without_metering(world: World) -> None:
    subscription = legacy_registered(world, "CUST002", alias="failed1")
    failed = sns_notification(sns_message("subscribe-fail", customer="CUST002"), at=A)
    _, [result] = world.deliver(failed)
    assert (result.outcome, result.final_metering) == (Outcome.APPLIED, False)
    after = world.stored(subscription)
    assert (after.started, after.ended) == (None, A)
    assert not after.is_active_at(A + timedelta(minutes=1))
    assert world.final_requests() == []


def test_raw_sns_delivery_is_timed_by_the_queue(world: World) -> None:
    subscription = legacy_registered(world, "CUST003", alias="raw1")
    response, [result] = world.deliver(json.dumps(sns_message("subscribe-success", customer="CUST003")))
    assert response == {"batchItemFailures": []}
    assert result.outcome is Outcome.APPLIED
    assert world.stored(subscription).started == datetime.fromtimestamp(1_730_000_000, tz=A.tzinfo)


def test_purchase_agreement_events_are_recorded(world: World) -> None:
    subscription = registered(world, "agree")
    licence = subscription.identity.license_arn or ""
    names = [
        f"Purchase Agreement {name} - {role}"
        for name in ("Created", "Amended", "Ended")
        for role in ("Manufacturer", "Proposer")
    ]
    events = [
        eventbridge(
            name, licence=licence, account="210987654321", at=A + timedelta(minutes=n), event_id=f"a{n}"
        )
        for n, name in enumerate(names)
    ]
    response, results = world.deliver(*events)
    assert response == {"batchItemFailures": []}
    assert [result.outcome for result in results] == [Outcome.RECORDED] * len(names)
    assert world.stored(subscription).started is None  # an agreement is not an activation
    logged = world.dynamodb.query(
        TableName="tenancy-test",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"LIFECYCLE#{license_key(licence)}"}},
    )["Items"]
    assert [item["name"]["S"] for item in logged] == names


def test_proposer_copies_of_licence_events_apply_once(world: World) -> None:
    subscription = registered(world, "both")
    licence = subscription.identity.license_arn or ""
    manufacturer = world.license_updated("210987654321", licence, A, event_id="m")
    proposer = eventbridge(
        "License Updated - Proposer", licence=licence, account="210987654321", at=A, event_id="p"
    )
    _, results = world.deliver(manufacturer, proposer)
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.UNCHANGED]
    assert world.stored(subscription).started == A


def test_unreadable_messages_fail_alone_and_unknown_ones_are_ignored(world: World) -> None:
    subscription = registered(world, "one")
    licence = subscription.identity.license_arn or ""
    unknown = eventbridge("Offer Released", licence=licence, account=None, at=A)
    no_licence = world.license_updated("210987654321", licence, A)
    del no_licence["detail"]["license"]
    batch_bodies: list[dict[str, Any] | str] = [
        "{not json",
        world.license_updated("210987654321", licence, A),
        unknown,
        no_licence,
        json.dumps({"hello": "world"}),
    ]
    batch = lifecycle_batch(*batch_bodies)
    response, results = world.lifecycle.handle_batch(batch)
    failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    ids = [record["messageId"] for record in batch["Records"]]
    assert failed == {ids[0], ids[3], ids[4]}
    assert sorted(r.outcome.value for r in results) == ["applied", "ignored"]
    assert world.stored(subscription).started == A


def test_without_a_meter_queue_both_handlers_fail_at_start_naming_the_setting(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final-metering queue is required: an end that is not metered within the hour is never billed,
    so a function deployed without it must not run at all (no log-only stand-in)."""
    monkeypatch.delenv("METER_QUEUE_URL")
    load_settings.cache_clear()
    world.lifecycle.lifecycle_service.cache_clear()
    world.register.registration_service.cache_clear()
    scheduled = {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
    with pytest.raises(ValidationError, match="METER_QUEUE_URL"):
        world.lifecycle.lambda_handler(scheduled, context("lifecycle"))
    with pytest.raises(ValidationError, match="METER_QUEUE_URL"):
        world.register.lambda_handler({"httpMethod": "GET", "path": "/signup"}, context("register"))


def test_a_subscription_the_meter_retired_stays_out_of_the_index(world: World) -> None:
    subscription = registered(world, "one")
    licence = subscription.identity.license_arn or ""
    world.deliver(world.license_updated("210987654321", licence, A), world.deprovisioned(licence, E))
    world.store.save_subscription(world.stored(subscription), metered=False)  # the meter's final step
    assert not in_index(world, subscription)
    world.deliver(world.license_updated("210987654321", licence, A, event_id="late-copy"))
    world.marketplace.set_entitlement(
        license_arn=licence, customer_aws_account_id="210987654321", dimension="licensed_agents", value=2
    )
    world.deliver(
        eventbridge("License Updated - Proposer", licence=licence, account="210987654321", at=A, event_id="q")
    )
    assert world.stored(subscription).entitlements.licensed_agents == 2
    assert not in_index(world, subscription)


def test_compare_and_set_refuses_a_stale_write(world: World) -> None:
    subscription = registered(world, "one")
    stale = world.store.read_subscription("acme", subscription.key)
    assert stale is not None
    fresh = world.store.read_subscription("acme", subscription.key)
    assert fresh is not None
    assert world.store.replace_subscription(subscription.model_copy(update={"started": A}), previous=fresh)
    assert not world.store.replace_subscription(subscription.model_copy(update={"ended": E}), previous=stale)
    assert (world.stored(subscription).started, world.stored(subscription).ended) == (A, None)
