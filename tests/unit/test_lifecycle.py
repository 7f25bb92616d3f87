"""Marketplace notifications -> internal lifecycle events, and the order-independent subscription state."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.adapters.marketplace_notifications import parse_lifecycle_message
from connect_metering.domain.instants import parse_iso
from connect_metering.domain.lifecycle import (
    DETAIL_TYPES,
    EVENTBRIDGE_SOURCE,
    SNS_ACTION_EFFECTS,
    Effect,
    EntitlementRecord,
    LifecycleEvent,
    LifecycleInputError,
    PendingLifecycle,
    Source,
    activate,
    end,
    legacy_key,
    license_key,
    pricing_for,
    refreshed_entitlements,
    summarize_entitlements,
)
from connect_metering.domain.tenancy import Entitlements, PricingModel, Subscription, build
from tests.conftest import SAMPLES
from tests.registration_support import eventbridge, sns_message, sns_notification

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
LICENCE = "arn:aws:license-manager::123456789012:license:l-abc"


def parse(body: object, *, sent_at_ms: int = 0) -> LifecycleEvent:
    text = body if isinstance(body, str) else json.dumps(body)
    return parse_lifecycle_message(text, message_id="sqs-1", sent_at_ms=sent_at_ms)


def pending(pricing: str = "usage") -> Subscription:
    return build(
        Subscription,
        company_alias="acme",
        identity={"customer_aws_account_id": "210987654321", "license_arn": LICENCE},
        pricing=pricing,
    )


def test_the_documented_eventbridge_sample_is_an_activation() -> None:
    body = (SAMPLES / "marketplace-license-updated.json").read_text()
    event = parse_lifecycle_message(body, message_id="m", sent_at_ms=0)
    assert event.effect is Effect.ACTIVATE
    assert event.source is Source.EVENTBRIDGE
    assert event.at == parse_iso("2024-08-30T21:36:03Z")
    assert (
        event.license_arn
        == "arn:aws:license-manager::123456789012:license:l-e52c0000000000000000000000000000"
    )
    assert event.subscription_key == license_key(event.license_arn)
    assert (event.customer_aws_account_id, event.product_code) == (
        "845735284135",
        "aw4fgf5exampleproductcode",
    )
    assert event.agreement_id == "agmt-4mwg0000000000000000000"
    assert event.event_id == "9f0c2f6e-0000-4000-8000-000000000001"


def test_the_documented_sns_sample_is_an_end_of_a_legacy_subscription() -> None:
    message = (SAMPLES / "marketplace-sns-subscription.json").read_text()
    envelope = {
        "Type": "Notification",
        "MessageId": "sns-9",
        "Message": message,
        "Timestamp": "2026-11-02T10:00:00.000Z",
    }
    event = parse_lifecycle_message(json.dumps(envelope), message_id="m", sent_at_ms=0)
    assert (event.effect, event.source, event.name) == (Effect.END, Source.SNS, "unsubscribe-pending")
    assert event.subscription_key == legacy_key("n0123EXAMPLEXXXXXXXXXXXX", "X01EXAMPLEX")
    assert event.at == parse_iso("2026-11-02T10:00:00Z")
    assert event.event_id == "sns-9"


@pytest.mark.parametrize("detail_type", DETAIL_TYPES)
def test_every_detail_type_maps_to_its_effect(detail_type: str) -> None:
    event = parse(eventbridge(detail_type, licence=LICENCE, account="210987654321", at=T0))
    expected = {
        "License Updated": Effect.ACTIVATE,
        "License Deprovisioned": Effect.END,
    }.get(detail_type.rsplit(" - ", 1)[0], Effect.RECORD)
    assert event.effect is expected


@pytest.mark.parametrize(("action", "effect"), sorted(SNS_ACTION_EFFECTS.items()))
def test_every_sns_action_maps_to_its_effect(action: str, effect: Effect) -> None:
    event = parse(sns_notification(sns_message(action, customer="C1"), at=T0))
    assert event.effect is effect
    assert event.at == T0


def test_raw_sns_messages_take_the_queue_time_and_unknown_ones_are_ignored() -> None:
    event = parse(sns_message("subscribe-success", customer="C1"), sent_at_ms=1_800_000_000_000)
    assert event.at == datetime.fromtimestamp(1_800_000_000, UTC)
    assert event.effect is Effect.ACTIVATE
    assert (
        parse(sns_notification(sns_message("free-trial-ending", customer="C1"), at=T0)).effect
        is Effect.IGNORE
    )
    other = eventbridge("Offer Released", licence=LICENCE, account=None, at=T0)
    assert parse(other).effect is Effect.IGNORE


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps(
            {
                "source": EVENTBRIDGE_SOURCE,
                "detail-type": "License Updated - Manufacturer",
                "time": "x",
                "detail": {"license": {"arn": LICENCE}},
            }
        ),
        json.dumps(
            {
                "source": EVENTBRIDGE_SOURCE,
                "detail-type": "License Deprovisioned - Manufacturer",
                "time": "2026-01-01T00:00:00Z",
                "detail": {},
            }
        ),
        json.dumps({"source": EVENTBRIDGE_SOURCE, "time": "2026-01-01T00:00:00Z"}),
        json.dumps({"Type": "Notification", "Message": "{broken", "Timestamp": "2026-01-01T00:00:00Z"}),
        json.dumps(
            {
                "Type": "Notification",
                "Message": json.dumps({"action": "subscribe-success"}),
                "Timestamp": "2026-01-01T00:00:00Z",
            }
        ),
        json.dumps({"action": 3}),
        json.dumps({"something": "else"}),
    ],
)
def test_unreadable_messages_are_refused(body: str) -> None:
    with pytest.raises(LifecycleInputError):
        parse(body)


# Transitions ----------------------------------------------------------------------------------------


def test_activation_keeps_the_earliest_instant_before_the_end() -> None:
    once = activate(pending(), T0)
    assert once.started == T0
    assert activate(once, T0 + timedelta(days=1)) == once  # a renewal does not move it
    assert activate(once, T0 - timedelta(hours=1)).started == T0 - timedelta(hours=1)
    ended = end(once, T0 + timedelta(hours=2))
    assert activate(ended, T0 + timedelta(hours=3)) == ended  # after the end: nothing


def test_an_end_at_or_before_the_activation_means_never_active() -> None:
    started = activate(pending(), T0)
    at_start = end(started, T0)
    assert (at_start.started, at_start.ended) == (None, T0)
    assert end(at_start, T0 + timedelta(hours=1)) == at_start  # the earliest end stays


instants = st.integers(min_value=0, max_value=20).map(lambda minutes: T0 + timedelta(minutes=minutes))
events = st.lists(st.tuples(st.sampled_from(["activate", "end"]), instants), max_size=8)


@settings(max_examples=200, deadline=None)
@given(events, st.randoms(use_true_random=False))
def test_the_state_depends_only_on_the_set_of_events(
    history: list[tuple[str, datetime]], rng: random.Random
) -> None:
    def replay(order: list[tuple[str, datetime]]) -> Subscription:
        state = pending()
        for kind, at in order:
            state = activate(state, at) if kind == "activate" else end(state, at)
        return state

    shuffled = list(history)
    rng.shuffle(shuffled)
    doubled = history + history  # every event delivered twice
    assert replay(history) == replay(shuffled) == replay(doubled)
    ends = [at for kind, at in history if kind == "end"]
    ended = min(ends) if ends else None
    valid = [at for kind, at in history if kind == "activate" and (ended is None or at < ended)]
    result = replay(history)
    assert (result.started, result.ended) == (min(valid) if valid else None, ended)


def test_pending_lifecycle_applies_like_the_events() -> None:
    kept = PendingLifecycle(activated=T0, ended=T0 + timedelta(hours=1))
    assert kept.apply_to(pending()) == end(activate(pending(), T0), T0 + timedelta(hours=1))
    assert PendingLifecycle().apply_to(pending()) == pending()


# Entitlements ---------------------------------------------------------------------------------------


def test_licensed_agents_sum_over_entitlements_and_the_latest_expiry_wins() -> None:
    records = [
        EntitlementRecord("licensed_agents", 10, T0 + timedelta(days=30)),
        EntitlementRecord("licensed_agents", 5, T0 + timedelta(days=60)),
        EntitlementRecord("licensed_agents", None, None),
        EntitlementRecord("other", 99, T0),
    ]
    assert summarize_entitlements(records) == Entitlements(
        licensed_agents=15, expires=T0 + timedelta(days=60)
    )
    assert summarize_entitlements([EntitlementRecord("other", 1, None)]) is None
    assert pricing_for(None) is PricingModel.USAGE
    assert pricing_for(Entitlements(licensed_agents=0)) is PricingModel.CONTRACT


def test_a_refresh_that_finds_nothing_keeps_a_contracts_expiry() -> None:
    contract = pending("contract").model_copy(
        update={"entitlements": Entitlements(licensed_agents=10, expires=T0 + timedelta(days=9))}
    )
    assert refreshed_entitlements(contract, None) == Entitlements(
        licensed_agents=0, expires=T0 + timedelta(days=9)
    )
    assert refreshed_entitlements(pending(), None) == Entitlements()
    fresh = Entitlements(licensed_agents=3)
    assert refreshed_entitlements(contract, fresh) == fresh


def test_events_name_a_licence_by_its_id_whatever_the_spelling() -> None:
    registered = "arn:aws:license-manager::123456789012:license/l-0a1b2c3d"
    for spelling in (
        "aws:license-manager:us-east-1:123456789012:l-0a1b2c3d",
        "arn:aws:license-manager:us-east-1:123456789012:license:l-0a1b2c3d",
        registered,
    ):
        event = parse(eventbridge("License Updated - Manufacturer", licence=spelling, account=None, at=T0))
        assert event.subscription_key == license_key(registered) == "license#l-0a1b2c3d"
        assert event.license_arn == spelling


def test_an_unreadable_licence_arn_sends_the_event_to_the_dead_letter_queue_naming_the_field() -> None:
    body = eventbridge("License Deprovisioned - Manufacturer", licence="arn:aws:s3:::x", account=None, at=T0)
    with pytest.raises(LifecycleInputError, match=r"detail\.license\.arn"):
        parse(body)
    recorded = parse(eventbridge("Purchase Agreement Created - Proposer", licence="x", account=None, at=T0))
    assert (recorded.effect, recorded.subscription_key) == (Effect.RECORD, None)


@pytest.mark.parametrize(
    "identity",
    [
        {"customer-identifier": " X01EXAMPLEX", "product-code": "n0123EXAMPLEXXXXXXXXXXXX"},
        {"CustomerIdentifier": " X01EXAMPLEX", "ProductCode": "n0123EXAMPLEXXXXXXXXXXXX"},
        {"CustomerIdentifier": "X01EXAMPLEX ", "product-code": " n0123EXAMPLEXXXXXXXXXXXX"},
    ],
)
def test_sns_messages_in_both_documented_key_spellings_with_blanks(identity: dict[str, str]) -> None:
    """The seller guide's SaaS page has shown both spellings, and its sample has a leading space."""
    message = {"action": "subscribe-success", **identity}
    event = parse(sns_notification(message, at=T0))
    assert event.effect is Effect.ACTIVATE
    assert event.subscription_key == legacy_key("n0123EXAMPLEXXXXXXXXXXXX", "X01EXAMPLEX")
    assert (event.customer_identifier, event.product_code) == ("X01EXAMPLEX", "n0123EXAMPLEXXXXXXXXXXXX")


def test_kept_events_under_two_keys_merge_as_the_events_would() -> None:
    one = PendingLifecycle(activated=T0 + timedelta(hours=1), entitlements_changed=T0)
    two = PendingLifecycle(
        activated=T0, ended=T0 + timedelta(days=1), entitlements_changed=T0 + timedelta(hours=2)
    )
    merged = one.merged_with(two)
    assert merged == PendingLifecycle(
        activated=T0, ended=T0 + timedelta(days=1), entitlements_changed=T0 + timedelta(hours=2)
    )
    assert merged == two.merged_with(one)
    assert one.merged_with(None) == one


# Reading the notifications (Powertools parser at the edge, the domain's pydantic models inside) ------


def test_the_first_spelling_that_holds_an_identifier_wins_and_is_trimmed() -> None:
    message = {"action": "subscribe-success", "customer-identifier": "  ", "CustomerIdentifier": " C2 "}
    event = parse({**message, "ProductCode": " prod-1 "})
    assert (event.customer_identifier, event.product_code) == ("C2", "prod-1")
    assert event.subscription_key == legacy_key("prod-1", "C2")


def test_an_sns_notification_with_every_field_aws_sends_is_read() -> None:
    notification = json.loads((SAMPLES.parent / "aws" / "sns-notification.json").read_text())
    notification["Message"] = json.dumps(sns_message("unsubscribe-success", customer="C3"))
    event = parse(notification)
    assert (event.name, event.customer_identifier, event.event_id) == (
        "unsubscribe-success",
        "C3",
        notification["MessageId"],
    )
    assert event.at == parse_iso("2012-05-02T00:54:06.655Z")


def test_an_instant_without_an_offset_is_refused_by_name() -> None:
    body = eventbridge("License Updated - Manufacturer", licence=LICENCE, account=None, at=T0)
    with pytest.raises(LifecycleInputError, match="time"):
        parse({**body, "time": "2026-11-02T09:00:00"})
    with pytest.raises(LifecycleInputError, match="Timestamp"):
        parse({**sns_notification(sns_message("subscribe-success", customer="C1"), at=T0), "Timestamp": 1})


def test_parts_of_the_detail_that_are_not_objects_read_as_absent() -> None:
    body = eventbridge("Purchase Agreement Created - Proposer", licence=LICENCE, account=None, at=T0)
    recorded = parse({**body, "detail": {**body["detail"], "license": "not an object", "agreement": []}})
    assert (recorded.effect, recorded.license_arn, recorded.agreement_id) == (Effect.RECORD, None, None)
    with pytest.raises(LifecycleInputError, match=r"detail\.license\.arn"):
        parse({**body, "detail-type": "License Updated - Proposer", "detail": {"license": 7}})
