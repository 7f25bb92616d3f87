"""Who bought the product: the subscriptions (the seller's set-up and the ``/dev/marketplace`` page of
``serve`` add, start and end them), the registration tokens Marketplace posts to the seller, and
ResolveCustomer, which turns a token back into the buyer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from connect_metering.domain.instants import from_ms, iso_ms, to_ms
from connect_metering.local.marketplace_sim.faults import DeterministicIds
from connect_metering.local.marketplace_sim.wire import (
    Buyer,
    Call,
    Json,
    MarketplaceError,
    Product,
    licence_id,
)

FINAL_METERING_WINDOW = timedelta(hours=1)


@dataclass
class Subscription:
    buyer: Buyer
    product_code: str
    started_ms: int | None  # None: bought, not active yet (its activation comes later)
    ended_ms: int | None = None
    agreement_id: str | None = None

    @property
    def key(self) -> str:
        if self.buyer.license_arn is not None:
            return f"licence:{licence_id(self.buyer.license_arn)}"
        return f"customer:{self.product_code}/{self.buyer.customer_identifier}"

    def inactive_reason(self, timestamp_ms: int, now_ms: int) -> str | None:
        """Why usage at ``timestamp_ms``, sent at ``now_ms``, is outside the subscription, if it is.

        Active from ``started`` until ``ended`` (half-open); records of the active time are still taken
        for one hour after the end (final metering)."""
        if self.started_ms is None:
            return "the subscription has not been activated"
        if now_ms < self.started_ms:
            return f"the subscription starts at {iso_ms(self.started_ms)}"
        if timestamp_ms < self.started_ms:
            return f"Timestamp {iso_ms(timestamp_ms)} is before the usage started ({iso_ms(self.started_ms)})"
        if self.ended_ms is None:
            return None
        if timestamp_ms >= self.ended_ms:
            return (
                f"Timestamp {iso_ms(timestamp_ms)} is after the subscription ended ({iso_ms(self.ended_ms)})"
            )
        final_window_ms = to_ms(from_ms(self.ended_ms) + FINAL_METERING_WINDOW)
        if now_ms > final_window_ms:
            return f"the subscription ended at {iso_ms(self.ended_ms)}, more than 1 hour ago"
        return None


def derived_agreement_id(subscription_key: str) -> str:
    digest = hashlib.sha256(subscription_key.encode()).hexdigest()
    return f"agmt-{digest[:25]}"


class SubscriptionBook:
    """The product's subscriptions by identity (a licence by its licence id, a legacy customer by
    product code and CustomerIdentifier)."""

    def __init__(self, product: Product) -> None:
        self.product = product
        self._subscriptions: dict[str, Subscription] = {}

    def add(self, subscription: Subscription) -> None:
        if subscription.key in self._subscriptions:
            raise ValueError(f"subscription {subscription.key} already exists")
        self._subscriptions[subscription.key] = subscription

    def find(
        self, license_arn: str | None, customer_identifier: str | None, product_code: str | None = None
    ) -> Subscription | None:
        if license_arn is not None:
            return self._subscriptions.get(f"licence:{licence_id(license_arn)}")
        if customer_identifier is not None:
            return self._subscriptions.get(
                f"customer:{product_code or self.product.code}/{customer_identifier}"
            )
        return None

    def known(
        self, license_arn: str | None, customer_identifier: str | None, product_code: str | None
    ) -> Subscription:
        subscription = self.find(license_arn, customer_identifier, product_code)
        if subscription is None:
            raise KeyError(f"no subscription for license_arn={license_arn} customer={customer_identifier}")
        return subscription

    def complete_buyer(self, buyer: Buyer) -> Buyer:
        """Fill identity fields Marketplace knows from the subscription (e.g. the account of a licence)."""
        subscription = self.find(buyer.license_arn, buyer.customer_identifier)
        known = subscription.buyer if subscription else Buyer()
        completed = Buyer(
            customer_aws_account_id=buyer.customer_aws_account_id or known.customer_aws_account_id,
            license_arn=buyer.license_arn or known.license_arn,
            customer_identifier=buyer.customer_identifier or known.customer_identifier,
        )
        has_licence = completed.license_arn is not None and completed.customer_aws_account_id is not None
        if not has_licence and completed.customer_identifier is None:
            raise ValueError("need customer_aws_account_id + license_arn, or customer_identifier")
        return completed


@dataclass(frozen=True)
class RegistrationToken:
    buyer: Buyer
    product_code: str
    expires_ms: int
    agreement_id: str | None = None


class Registration:
    """Registration tokens as Marketplace issues them, and ResolveCustomer."""

    def __init__(self, book: SubscriptionBook, ids: DeterministicIds) -> None:
        self._book = book
        self._ids = ids
        self._tokens: dict[str, RegistrationToken] = {}

    def issue(self, requested: Buyer, expires_ms: int) -> str:
        buyer = self._book.complete_buyer(requested)
        subscription = self._book.find(buyer.license_arn, buyer.customer_identifier)
        product_code = subscription.product_code if subscription else self._book.product.code
        agreement = subscription.agreement_id if subscription else None
        token = self._ids.token()
        self._tokens[token] = RegistrationToken(buyer, product_code, expires_ms, agreement)
        return token

    def resolve_customer(self, call: Call) -> Json:
        token = call.body.get("RegistrationToken")
        issued = self._tokens.get(token) if isinstance(token, str) else None
        if issued is None:
            raise MarketplaceError(
                "InvalidTokenException", "RegistrationToken was not issued by AWS Marketplace"
            )
        if to_ms(call.now) >= issued.expires_ms:
            raise MarketplaceError(
                "ExpiredTokenException", f"RegistrationToken expired at {iso_ms(issued.expires_ms)}"
            )
        answer: Json = {"ProductCode": issued.product_code}
        # New-style products get no CustomerIdentifier at all (AWS: "not populated").
        optional = {
            "CustomerIdentifier": issued.buyer.customer_identifier,
            "CustomerAWSAccountId": issued.buyer.customer_aws_account_id,
            "LicenseArn": issued.buyer.license_arn,
        }
        answer.update({name: value for name, value in optional.items() if value is not None})
        if issued.agreement_id is not None:
            answer["Metadata"] = {"AgreementId": issued.agreement_id}
        return answer
