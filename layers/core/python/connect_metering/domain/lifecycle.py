"""Subscription lifecycle: AWS Marketplace notifications -> one internal event model -> subscription state.

Two sources say the same things in different shapes: EventBridge events of ``aws.agreement-marketplace``
on the default bus, and the legacy SNS messages (``action``). Both become a ``LifecycleEvent`` with an
``Effect``:

    License Updated - Manufacturer|Proposer     subscribe-success       ACTIVATE (+ entitlements refresh)
    License Deprovisioned - Manufacturer|...    unsubscribe-pending     END (+ final metering)
                                                unsubscribe-success     END (no-op after the pending one)
                                                subscribe-fail          END (never activated: nothing billed)
                                                entitlement-updated     REFRESH_ENTITLEMENTS
    Purchase Agreement Created|Amended|Ended    -                       RECORD (kept in the event log)

Order tolerance. Marketplace and SQS deliver at least once and in any order, so the state a set of
events leaves is a function of the set, never of the arrival order:

    ended   = the earliest END instant
    started = the earliest ACTIVATE instant strictly before ``ended`` (None if there is none)

``activate`` and ``end`` below compute exactly that incrementally (each is idempotent and they commute),
which is what ``tests/unit/test_lifecycle.py`` checks with Hypothesis. Pure: no boto3, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from connect_metering.domain.instants import InstantError, from_ms, parse_iso
from connect_metering.domain.tenancy import (
    Entitlements,
    PricingModel,
    Subscription,
    TenancyError,
    trimmed,
)
from connect_metering.domain.tenancy import legacy_key as legacy_key  # re-exported: events carry keys
from connect_metering.domain.tenancy import license_key as license_key

EVENTBRIDGE_SOURCE = "aws.agreement-marketplace"
ENTITLEMENT_DIMENSION = "licensed_agents"
# Marketplace keeps a bounded body in the audit log; a notification is far smaller than this.
MAX_LOGGED_BODY = 16_384


class LifecycleInputError(ValueError):
    """A message that is not a Marketplace notification this product can read (it goes to the DLQ)."""


class Effect(StrEnum):
    ACTIVATE = "activate"
    END = "end"
    REFRESH_ENTITLEMENTS = "refresh_entitlements"
    RECORD = "record"
    IGNORE = "ignore"


class Source(StrEnum):
    EVENTBRIDGE = "eventbridge"
    SNS = "sns"


_DETAIL_TYPE_EFFECTS = {
    "License Updated": Effect.ACTIVATE,
    "License Deprovisioned": Effect.END,
    "Purchase Agreement Created": Effect.RECORD,
    "Purchase Agreement Amended": Effect.RECORD,
    "Purchase Agreement Ended": Effect.RECORD,
}
_ROLES = ("Manufacturer", "Proposer")
DETAIL_TYPES = tuple(f"{name} - {role}" for name in _DETAIL_TYPE_EFFECTS for role in _ROLES)

SNS_ACTION_EFFECTS = {
    "subscribe-success": Effect.ACTIVATE,
    "subscribe-fail": Effect.END,
    "unsubscribe-pending": Effect.END,
    "unsubscribe-success": Effect.END,
    "entitlement-updated": Effect.REFRESH_ENTITLEMENTS,
}


# The legacy SNS message's identity keys: the SaaS page of the seller guide has written both spellings.
SNS_CUSTOMER_KEYS = ("customer-identifier", "CustomerIdentifier")
SNS_PRODUCT_KEYS = ("product-code", "ProductCode")


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """One Marketplace notification, whatever its source, reduced to what the product acts on."""

    event_id: str
    source: Source
    name: str
    at: datetime
    effect: Effect
    subscription_key: str | None = None
    license_arn: str | None = None
    customer_aws_account_id: str | None = None
    customer_identifier: str | None = None
    product_code: str | None = None
    agreement_id: str | None = None
    body: str = ""

    @property
    def log_key(self) -> str:
        """Where the event is kept in the audit log: its subscription, else its agreement."""
        if self.subscription_key is not None:
            return self.subscription_key
        return f"agreement#{self.agreement_id or 'unknown'}"


def _dig(document: Mapping[str, Any], *path: str) -> str | None:
    """The trimmed string at ``path``; None if absent, not a string or blank."""
    value: Any = document
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return trimmed(value)


def _first(document: Mapping[str, Any], names: Iterable[str]) -> str | None:
    return next((found for name in names if (found := _dig(document, name)) is not None), None)


def _instant(value: object, field: str) -> datetime:
    try:
        return parse_iso(value if isinstance(value, str) else "", field=field)
    except InstantError as error:
        raise LifecycleInputError(str(error)) from None


def _from_eventbridge(envelope: Mapping[str, Any], body: str) -> LifecycleEvent:
    detail_type = envelope.get("detail-type")
    detail = envelope.get("detail")
    if not isinstance(detail_type, str) or not isinstance(detail, Mapping):
        raise LifecycleInputError("EventBridge event without detail-type or detail")
    name, _, role = detail_type.rpartition(" - ")
    effect = _DETAIL_TYPE_EFFECTS.get(name, Effect.IGNORE) if role in _ROLES else Effect.IGNORE
    license_arn = _dig(detail, "license", "arn")
    acts = effect in (Effect.ACTIVATE, Effect.END)
    if acts and license_arn is None:
        raise LifecycleInputError(f"{detail_type} without detail.license.arn")
    subscription_key = None
    if license_arn is not None:
        try:
            subscription_key = license_key(license_arn)
        except TenancyError as error:
            if acts:
                raise LifecycleInputError(f"{detail_type}: detail.license.arn: {error.message}") from None
    return LifecycleEvent(
        event_id=str(envelope.get("id") or ""),
        source=Source.EVENTBRIDGE,
        name=detail_type,
        at=_instant(envelope.get("time"), "time"),
        effect=effect,
        subscription_key=subscription_key,
        license_arn=license_arn,
        customer_aws_account_id=_dig(detail, "acceptor", "accountId"),
        product_code=_dig(detail, "product", "code"),
        agreement_id=_dig(detail, "agreement", "id"),
        body=body[:MAX_LOGGED_BODY],
    )


def _from_sns(message: Mapping[str, Any], *, event_id: str, at: datetime, body: str) -> LifecycleEvent:
    action = trimmed(message.get("action"))
    if action is None:
        raise LifecycleInputError("SNS message without an action")
    effect = SNS_ACTION_EFFECTS.get(action, Effect.IGNORE)
    customer = _first(message, SNS_CUSTOMER_KEYS)
    product_code = _first(message, SNS_PRODUCT_KEYS)
    if effect is not Effect.IGNORE and (customer is None or product_code is None):
        raise LifecycleInputError(
            f"{action} without customer-identifier (or CustomerIdentifier) and product-code (or ProductCode)"
        )
    return LifecycleEvent(
        event_id=event_id,
        source=Source.SNS,
        name=action,
        at=at,
        effect=effect,
        subscription_key=legacy_key(product_code, customer) if customer and product_code else None,
        customer_identifier=customer,
        customer_aws_account_id=_first(message, ("customer-aws-account-id", "CustomerAWSAccountId")),
        product_code=product_code,
        body=body[:MAX_LOGGED_BODY],
    )


def parse_lifecycle_message(body: str, *, message_id: str, sent_at_ms: int) -> LifecycleEvent:
    """An SQS record body -> its event. Accepted shapes: an EventBridge event of
    ``aws.agreement-marketplace``; an SNS notification (``Type`` Notification, ``Message`` = the legacy
    JSON); the legacy JSON itself (raw message delivery, timed by the SQS sent timestamp)."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LifecycleInputError("the message body is not JSON") from None
    if not isinstance(document, dict):
        raise LifecycleInputError("the message body is not a JSON object")
    if document.get("source") == EVENTBRIDGE_SOURCE:
        return _from_eventbridge(document, body)
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        try:
            message = json.loads(document["Message"])
        except json.JSONDecodeError:
            raise LifecycleInputError("the SNS Message is not JSON") from None
        if not isinstance(message, dict):
            raise LifecycleInputError("the SNS Message is not a JSON object")
        return _from_sns(
            message,
            event_id=str(document.get("MessageId") or message_id),
            at=_instant(document.get("Timestamp"), "Timestamp"),
            body=document["Message"],
        )
    if "action" in document:
        return _from_sns(document, event_id=message_id, at=from_ms(sent_at_ms), body=body)
    raise LifecycleInputError("neither an aws.agreement-marketplace event nor a Marketplace SNS message")


# State transitions ----------------------------------------------------------------------------------


def activate(subscription: Subscription, at: datetime) -> Subscription:
    """ACTIVATE at ``at``: keep the earliest activation that precedes the end (if any)."""
    if subscription.ended is not None and at >= subscription.ended:
        return subscription
    if subscription.started is not None and subscription.started <= at:
        return subscription
    return subscription.model_copy(update={"started": at})


def end(subscription: Subscription, at: datetime) -> Subscription:
    """END at ``at``: keep the earliest end; an activation at or after it never happened."""
    if subscription.ended is not None and subscription.ended <= at:
        return subscription
    started = subscription.started
    return subscription.model_copy(
        update={"ended": at, "started": started if started is not None and started < at else None}
    )


def with_entitlements(subscription: Subscription, entitlements: Entitlements) -> Subscription:
    if subscription.entitlements == entitlements:
        return subscription
    return subscription.model_copy(update={"entitlements": entitlements})


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    """A subscription as read, with what a compare-and-set needs to know nothing changed since."""

    subscription: Subscription
    metered: bool
    compared: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PendingLifecycle:
    """What arrived for a subscription before its buyer finished sign-up, merged as the events would be."""

    activated: datetime | None = None
    ended: datetime | None = None
    entitlements_changed: datetime | None = None

    def merged_with(self, other: PendingLifecycle | None) -> PendingLifecycle:
        """What both sets of kept events say together (the same subscription under two of its keys): the
        earliest activation, the earliest end, the latest licence change."""
        if other is None:
            return self

        def pick(
            one: datetime | None, two: datetime | None, choose: Callable[..., datetime]
        ) -> datetime | None:
            present = [instant for instant in (one, two) if instant is not None]
            return choose(present) if present else None

        return PendingLifecycle(
            activated=pick(self.activated, other.activated, min),
            ended=pick(self.ended, other.ended, min),
            entitlements_changed=pick(self.entitlements_changed, other.entitlements_changed, max),
        )

    def apply_to(self, subscription: Subscription) -> Subscription:
        result = subscription
        if self.activated is not None:
            result = activate(result, self.activated)
        if self.ended is not None:
            result = end(result, self.ended)
        return result


# Entitlements ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntitlementRecord:
    """One GetEntitlements entry, as far as this product reads it."""

    dimension: str
    integer_value: int | None
    expiration: datetime | None


def summarize_entitlements(
    records: Iterable[EntitlementRecord], *, dimension: str = ENTITLEMENT_DIMENSION
) -> Entitlements | None:
    """Licensed agents = the sum of IntegerValue over the ``dimension`` entitlements, expiry = the latest
    ExpirationDate among them; None when the buyer has no such entitlement (a usage subscription)."""
    matching = [record for record in records if record.dimension == dimension]
    if not matching:
        return None
    expirations = [record.expiration for record in matching if record.expiration is not None]
    return Entitlements(
        licensed_agents=sum(record.integer_value or 0 for record in matching),
        expires=max(expirations) if expirations else None,
    )


def pricing_for(entitlements: Entitlements | None) -> PricingModel:
    """A buyer with a licensed-agents entitlement holds a contract; anyone else pays per use."""
    return PricingModel.CONTRACT if entitlements is not None else PricingModel.USAGE


def refreshed_entitlements(subscription: Subscription, fetched: Entitlements | None) -> Entitlements:
    """The entitlements to store after a refresh. A contract whose entitlement disappeared keeps its known
    expiry with 0 licensed agents (its end comes with License Deprovisioned); a usage subscription keeps
    whatever Marketplace says, usually nothing."""
    if fetched is not None:
        return fetched
    if subscription.pricing is PricingModel.CONTRACT:
        return Entitlements(licensed_agents=0, expires=subscription.entitlements.expires)
    return Entitlements()
