"""The local runtime's embedded AWS keeps DynamoDB transactions all-or-nothing with its faster rollback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connect_metering.domain.tenancy import Company, Subscription, SubscriptionHeldByAnotherCompany, build
from connect_metering.local.embedded import EmbeddedAws
from tests.conftest import environment_restored

pytestmark = pytest.mark.integration


def subscription(alias: str, suffix: str, account: str) -> Subscription:
    return build(
        Subscription,
        company_alias=alias,
        identity={
            "customer_aws_account_id": account,
            "license_arn": f"arn:aws:license-manager::123456789012:license:l-{suffix}",
        },
        pricing="usage",
    )


def test_a_cancelled_transaction_writes_nothing() -> None:
    with (
        environment_restored(),
        EmbeddedAws(product_code="p", start=datetime(2026, 11, 2, tzinfo=UTC)) as aws,
    ):
        aws.tenancy.create_company(Company(alias="alpha"))
        aws.tenancy.create_company(Company(alias="bravo"))
        aws.tenancy.add_subscription(subscription("alpha", "one", "111111111111"))
        # bravo's first write (its pricing) would succeed; the subscription claim fails the whole
        with pytest.raises(SubscriptionHeldByAnotherCompany):
            aws.tenancy.add_subscription(subscription("bravo", "one", "222222222222"))
        assert aws.tenancy.company_pricing("bravo") is None
        assert aws.tenancy.owner_of_account("222222222222") is None
        assert aws.tenancy.list_subscriptions("bravo") == []
        # and a later valid transaction still works
        aws.tenancy.add_subscription(subscription("bravo", "two", "222222222222"))
        assert [sub.key for sub in aws.tenancy.list_subscriptions("bravo")] == [
            subscription("bravo", "two", "222222222222").key
        ]
