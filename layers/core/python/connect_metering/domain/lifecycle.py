"""Subscription lifecycle: AWS Marketplace notifications -> one internal event model -> subscription state.

Two sources say the same things in different shapes: EventBridge events of ``aws.agreement-marketplace``
on the default bus, and the legacy SNS messages (``action``). Their contents are the pydantic models
below (``AgreementDetail``, ``LegacySubscriptionMessage``; the envelopes around them are read at the
edge, ``adapters/marketplace_notifications.py``, with the Powertools parser), and both become a
``LifecycleEvent`` with an ``Effect``:

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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

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
SNS_ACCOUNT_KEYS = ("customer-aws-account-id", "CustomerAWSAccountId")


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


# What the notifications carry, as pydantic models. Lenient on purpose: an identifier that is absent,
# not a string or blank reads as None (AWS's own samples carry padded identifiers), and a part of the
# detail that is not an object reads as empty; whether the event can still be acted on is decided
# below, with the field named.
Identifier = Annotated[str | None, BeforeValidator(trimmed)]


def _object_or_empty(value: object) -> object:
    return value if isinstance(value, Mapping) else {}


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class LicenseRef(_Part):
    arn: Identifier = None


class AcceptorRef(_Part):
    account_id: Identifier = Field(default=None, alias="accountId")


class ProductRef(_Part):
    code: Identifier = None


class AgreementRef(_Part):
    id: Identifier = None


class AgreementDetail(_Part):
    """The ``detail`` of an ``aws.agreement-marketplace`` event, as far as the product reads it."""

    license: Annotated[LicenseRef, BeforeValidator(_object_or_empty)] = LicenseRef()
    acceptor: Annotated[AcceptorRef, BeforeValidator(_object_or_empty)] = AcceptorRef()
    product: Annotated[ProductRef, BeforeValidator(_object_or_empty)] = ProductRef()
    agreement: Annotated[AgreementRef, BeforeValidator(_object_or_empty)] = AgreementRef()


class LegacySubscriptionMessage(_Part):
    """The legacy SNS message. Each identity field accepts every spelling AWS has written, the first
    spelling holding a non-blank value winning."""

    action: Identifier = None
    customer_identifier: Identifier = None
    product_code: Identifier = None
    customer_aws_account_id: Identifier = None

    @model_validator(mode="before")
    @classmethod
    def _any_spelling(cls, data: object) -> object:
        if not isinstance(data, Mapping):
            raise ValueError("the legacy message is not a JSON object")
        spellings = {
            "customer_identifier": SNS_CUSTOMER_KEYS,
            "product_code": SNS_PRODUCT_KEYS,
            "customer_aws_account_id": SNS_ACCOUNT_KEYS,
        }
        picked = {
            field: next((data[key] for key in keys if trimmed(data.get(key)) is not None), None)
            for field, keys in spellings.items()
        }
        return {"action": data.get("action"), **picked}


def marketplace_event(
    *, event_id: str, detail_type: str, at: datetime, detail: AgreementDetail, body: str
) -> LifecycleEvent:
    """An ``aws.agreement-marketplace`` event -> its lifecycle event; the licence is matched by its id
    whatever the spelling, and an event that acts on a subscription must name a readable licence."""
    name, _, role = detail_type.rpartition(" - ")
    effect = _DETAIL_TYPE_EFFECTS.get(name, Effect.IGNORE) if role in _ROLES else Effect.IGNORE
    license_arn = detail.license.arn
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
        event_id=event_id,
        source=Source.EVENTBRIDGE,
        name=detail_type,
        at=at,
        effect=effect,
        subscription_key=subscription_key,
        license_arn=license_arn,
        customer_aws_account_id=detail.acceptor.account_id,
        product_code=detail.product.code,
        agreement_id=detail.agreement.id,
        body=body[:MAX_LOGGED_BODY],
    )


def legacy_event(
    message: LegacySubscriptionMessage, *, event_id: str, at: datetime, body: str
) -> LifecycleEvent:
    """A legacy SNS message -> its lifecycle event; one that acts must name its customer and product."""
    action = message.action
    if action is None:
        raise LifecycleInputError("SNS message without an action")
    effect = SNS_ACTION_EFFECTS.get(action, Effect.IGNORE)
    customer, product_code = message.customer_identifier, message.product_code
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
        customer_aws_account_id=message.customer_aws_account_id,
        product_code=product_code,
        body=body[:MAX_LOGGED_BODY],
    )


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
