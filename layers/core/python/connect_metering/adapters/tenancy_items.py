"""The tenancy family's item shapes (companies' subscriptions, environments, claims), shared by the stores
whose transactions write them: the tenancy store, and sign-up in the registration store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connect_metering.adapters.tenancy_keys import (
    CLAIM_SK,
    ENVIRONMENT_PREFIX,
    INDEX_PARTITION_KEY,
    INDEX_SORT_KEY,
    INSTANCE_SK,
    PARTITION_KEY,
    SORT_KEY,
    buyer_sk,
    company_pk,
    environment_sk,
    index_shard,
    instance_pk,
    subscription_claim_pk,
    subscription_sk,
)
from connect_metering.adapters.tenancy_table import TenancyTable, item, optional_instant
from connect_metering.domain.instants import iso, parse_iso
from connect_metering.domain.tenancy import (
    Entitlements,
    Environment,
    EnvironmentVerification,
    InstanceArn,
    PricingModel,
    Subscription,
    SubscriptionIdentity,
)

# Environments ----------------------------------------------------------------------------------------


def _verification_attributes(environment: Environment) -> dict[str, Any]:
    verification = environment.verification
    if verification is None:
        return {}
    return {
        "verification_code": verification.code,
        "claimed_at": iso(verification.claimed_at),
        "verified_at": iso(verification.verified_at) if verification.verified_at else None,
    }


def verification_from(stored: Mapping[str, Any]) -> EnvironmentVerification | None:
    if "verification_code" not in stored:
        return None
    return EnvironmentVerification(
        code=str(stored["verification_code"]),
        claimed_at=parse_iso(str(stored["claimed_at"])),
        verified_at=optional_instant(stored.get("verified_at")),
    )


def environment_from(alias: str, stored: Mapping[str, Any]) -> Environment:
    """The environment of an ``ENV#<name>`` item of company ``alias``."""
    return Environment(
        company_alias=alias,
        name=stored["name"],
        instance_arn=InstanceArn.parse(stored["instance_arn"]),
        verification=verification_from(stored),
    )


def company_environments(table: TenancyTable, alias: str) -> list[Environment]:
    return [environment_from(alias, stored) for stored in table.query(company_pk(alias), ENVIRONMENT_PREFIX)]


def environment_puts(
    table: str, environment: Environment, *, replacing: str | None = None
) -> list[dict[str, Any]]:
    """The environment item and its instance lookup, each only if new (transaction actions); the lookup
    may instead replace company ``replacing``'s, when its unverified claim is being taken over."""
    alias, arn = environment.company_alias, environment.instance_arn.arn
    instance_put: dict[str, Any] = {
        "TableName": table,
        "Item": item(
            {
                PARTITION_KEY: instance_pk(arn),
                SORT_KEY: INSTANCE_SK,
                "company": alias,
                "name": environment.name,
                **_verification_attributes(environment),
            }
        ),
        "ConditionExpression": "attribute_not_exists(pk)",
    }
    if replacing is not None:
        instance_put["ConditionExpression"] = "attribute_not_exists(pk) OR company = :replaced"
        instance_put["ExpressionAttributeValues"] = item({":replaced": replacing})
    return [
        {
            "Put": {
                "TableName": table,
                "Item": item(
                    {
                        PARTITION_KEY: company_pk(alias),
                        SORT_KEY: environment_sk(environment.name),
                        "name": environment.name,
                        "instance_arn": arn,
                        **_verification_attributes(environment),
                    }
                ),
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        },
        {"Put": instance_put},
    ]


# Subscriptions and their claims ----------------------------------------------------------------------


def subscription_item(subscription: Subscription, *, metered: bool | None = None) -> dict[str, Any]:
    """The ``SUB#<key>`` item; in the active-subscriptions index once started, unless ``metered`` False."""
    identity = subscription.identity
    entitlements = subscription.entitlements
    in_index = subscription.started is not None and metered is not False
    return item(
        {
            PARTITION_KEY: company_pk(subscription.company_alias),
            SORT_KEY: subscription_sk(subscription.key),
            "company": subscription.company_alias,
            "key": subscription.key,
            "customer_aws_account_id": identity.customer_aws_account_id,
            "license_arn": identity.license_arn,
            "customer_identifier": identity.customer_identifier,
            "product_code": identity.product_code,
            "pricing": subscription.pricing.value,
            INDEX_SORT_KEY: iso(subscription.started) if subscription.started else None,
            "ended": iso(subscription.ended) if subscription.ended else None,
            "licensed_agents": entitlements.licensed_agents,
            "expires": iso(entitlements.expires) if entitlements.expires else None,
            INDEX_PARTITION_KEY: index_shard(subscription.key) if in_index else None,
        }
    )


def subscription_from(stored: Mapping[str, Any]) -> Subscription:
    licensed = stored.get("licensed_agents")
    return Subscription(
        company_alias=stored["company"],
        identity=SubscriptionIdentity(
            customer_aws_account_id=stored.get("customer_aws_account_id"),
            license_arn=stored.get("license_arn"),
            customer_identifier=stored.get("customer_identifier"),
            product_code=stored.get("product_code"),
        ),
        pricing=PricingModel(stored["pricing"]),
        started=optional_instant(stored.get(INDEX_SORT_KEY)),
        ended=optional_instant(stored.get("ended")),
        entitlements=Entitlements(
            licensed_agents=int(licensed) if licensed is not None else None,
            expires=optional_instant(stored.get("expires")),
        ),
    )


def subscription_claim(table: str, key: str, alias: str, *, stands_for: str | None = None) -> dict[str, Any]:
    """Claim subscription (or alias) ``key`` for company ``alias``, unless another company holds it."""
    return {
        "Put": {
            "TableName": table,
            "Item": item(
                {
                    PARTITION_KEY: subscription_claim_pk(key),
                    SORT_KEY: CLAIM_SK,
                    "company": alias,
                    "subscription": stands_for,
                }
            ),
            "ConditionExpression": "attribute_not_exists(pk) OR company = :company",
            "ExpressionAttributeValues": item({":company": alias}),
        }
    }


def alias_claims(table: str, subscription: Subscription, alias_keys: Sequence[str]) -> list[dict[str, Any]]:
    """Claims that send lookups of each alias key to the subscription (transaction actions)."""
    return [
        subscription_claim(table, alias_key, subscription.company_alias, stands_for=subscription.key)
        for alias_key in alias_keys
    ]


def buyer_marker(alias: str, account_id: str) -> dict[str, Any]:
    return item({PARTITION_KEY: company_pk(alias), SORT_KEY: buyer_sk(account_id)})
