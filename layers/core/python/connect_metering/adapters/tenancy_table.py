"""DynamoDB tenancy store: companies, subscriptions, environments and the claims that keep them unique.

One table, ``pk``/``sk`` keys. A licence subscription's key is its licence id (``license#l-...``), so
every spelling of its ARN finds the same items; the item keeps the LicenseArn as ResolveCustomer gave it. Uniqueness rules hold under concurrent requests because every claim is a
conditional write, and every multi-item change is one TransactWriteItems:

    COMPANY#<alias>          #COMPANY        the company; ``pricing`` fixed by its first subscription
    COMPANY#<alias>          #METER          the metering worker's state for the company (versioned JSON)
    COMPANY#<alias>          PENDING#<hour>… a ledger record not yet settled with AWS Marketplace
    COMPANY#<alias>          ACT#<env>       how many agent events ingest stored for the environment
    COMPANY#<alias>          SUB#<key>       a subscription (GSI attributes while it must be metered)
    COMPANY#<alias>          ENV#<name>      an environment
    SUBSCRIPTION#<key>       #CLAIM          which company holds a Marketplace subscription (and, for an
                                             alias key, ``subscription`` = the key it stands for)
    ACCOUNT#<account id>     #CLAIM          which company owns an AWS account (buyer or environment)
    INSTANCE#<instance arn>  #ENV            instance -> (company, environment), the ingest lookup

The sparse GSI ``active-subscriptions`` (``meter_shard``, ``started``) holds exactly the activated
subscriptions that still need hourly records, so the hourly job lists them with a few paginated queries
(one per shard) and never scans. A subscription leaves it once its final metering is done.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from connect_metering.adapters.table_schema import Index, create_table
from connect_metering.domain.instants import iso, parse_iso
from connect_metering.domain.tenancy import (
    AccountOwnedByAnotherCompany,
    AliasTaken,
    Company,
    Entitlements,
    Environment,
    InstanceArn,
    PricingModel,
    PricingModelConflict,
    Subscription,
    SubscriptionIdentity,
    TenancyError,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION_KEY = "pk"
SORT_KEY = "sk"
ACTIVE_SUBSCRIPTIONS_INDEX = "active-subscriptions"
INDEX_PARTITION_KEY = "meter_shard"
INDEX_SORT_KEY = "started"
# Spreads the index over a few partitions so 10,000s of subscriptions never make one hot key.
INDEX_SHARDS = 4
# DynamoDB TTL attribute (epoch seconds) of items that expire: pending registrations, spent tokens.
TTL_ATTRIBUTE = "expires_at"

COMPANY_SK = "#COMPANY"
# The metering worker's per-company state (JSON, versioned), beside the company so one query reads both.
METER_SK = "#METER"
# A marker per ledger record still pending (oldest hour first), so the same query finds what to resend.
PENDING_PREFIX = "PENDING#"
# Per environment, a counter of the agent events ingest stored (it only grows): when it has not moved
# since the meter last read an idle environment, the meter need not read that environment again.
ACTIVITY_PREFIX = "ACT#"
CLAIM_SK = "#CLAIM"
INSTANCE_SK = "#ENV"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class CompanySnapshot:
    company: Company
    subscriptions: list[Subscription]
    environments: list[Environment]
    meter_state: str | None
    meter_version: int
    pending_records: list[str]
    activity_counts: dict[str, int]


class CompanyNotFound(TenancyError):
    def __init__(self, alias: str) -> None:
        super().__init__("company_alias", "company_exists", f"no company has the alias {alias!r}")


class SubscriptionHeldByAnotherCompany(TenancyError):
    def __init__(self, key: str) -> None:
        super().__init__(
            "subscription", "one_subscription_one_company", f"subscription {key} belongs to another company"
        )


class SubscriptionNotFound(TenancyError):
    def __init__(self, key: str) -> None:
        super().__init__("subscription", "subscription_exists", f"no subscription {key}")


class EnvironmentNameTaken(TenancyError):
    def __init__(self, name: str) -> None:
        super().__init__("environment_name", "environment_name_unique", f"the company already has {name!r}")


class InstanceAlreadyRegistered(TenancyError):
    def __init__(self, arn: str) -> None:
        super().__init__("instance_arn", "instance_unique", f"{arn} is already a registered environment")


class EnvironmentNotFound(TenancyError):
    def __init__(self, name: str) -> None:
        super().__init__("environment_name", "environment_exists", f"no environment {name!r}")


def company_pk(alias: str) -> str:
    return f"COMPANY#{alias}"


def index_shard(subscription_key: str) -> str:
    return f"shard#{zlib.crc32(subscription_key.encode()) % INDEX_SHARDS}"


def _item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items() if value is not None}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _optional_instant(value: object) -> datetime | None:
    return parse_iso(value) if isinstance(value, str) else None


def environment_puts(table: str, environment: Environment) -> list[dict[str, Any]]:
    """The environment item and its instance lookup, each only if new (transaction actions)."""
    alias, arn = environment.company_alias, environment.instance_arn.arn
    return [
        {
            "Put": {
                "TableName": table,
                "Item": _item(
                    {
                        PARTITION_KEY: company_pk(alias),
                        SORT_KEY: f"ENV#{environment.name}",
                        "name": environment.name,
                        "instance_arn": arn,
                    }
                ),
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        },
        {
            "Put": {
                "TableName": table,
                "Item": _item(
                    {
                        PARTITION_KEY: f"INSTANCE#{arn}",
                        SORT_KEY: INSTANCE_SK,
                        "company": alias,
                        "name": environment.name,
                    }
                ),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
    ]


def _cancellation_codes(error: ClientError) -> list[str]:
    reasons = error.response.get("CancellationReasons", [])
    return [str(reason.get("Code", "None")) for reason in reasons]


class DynamoTenancyStore:
    """The tenancy port on one DynamoDB table; the client is injected."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = table_name
        self._client = client

    # Companies -------------------------------------------------------------------------------------

    def create_company(self, company: Company) -> None:
        """Claim the alias; a second company with the same alias fails atomically (AliasTaken)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_item(
                    {
                        PARTITION_KEY: company_pk(company.alias),
                        SORT_KEY: COMPANY_SK,
                        "alias": company.alias,
                        "name": company.name,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise AliasTaken(company.alias) from None
            raise

    def get_company(self, alias: str) -> Company | None:
        item = self._get(company_pk(alias), COMPANY_SK)
        return Company(alias=item["alias"], name=item.get("name", "")) if item else None

    def company_pricing(self, alias: str) -> PricingModel | None:
        item = self._get(company_pk(alias), COMPANY_SK)
        if item is None:
            raise CompanyNotFound(alias)
        return PricingModel(item["pricing"]) if "pricing" in item else None

    def owner_of_account(self, account_id: str) -> str | None:
        item = self._get(f"ACCOUNT#{account_id}", CLAIM_SK)
        return str(item["company"]) if item else None

    def owner_of_subscription(self, subscription_key: str) -> str | None:
        found = self.subscription_of(subscription_key)
        return found[0] if found else None

    def subscription_of(self, key: str) -> tuple[str, str] | None:
        """(company, subscription key) of a subscription key or of an alias key (a licence buyer's legacy
        CustomerIdentifier); None when nobody holds it."""
        item = self._get(f"SUBSCRIPTION#{key}", CLAIM_SK)
        if item is None:
            return None
        return str(item["company"]), str(item.get("subscription", key))

    # Subscriptions ---------------------------------------------------------------------------------

    def add_subscription(self, subscription: Subscription, *, alias_keys: Sequence[str] = ()) -> None:
        """Attach a subscription to its company in one transaction: the pricing model, the subscription
        claim, the buyer account claim and the claims of its alias keys either all hold or nothing is
        written."""
        alias = subscription.company_alias
        identity = subscription.identity
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _item({PARTITION_KEY: company_pk(alias), SORT_KEY: COMPANY_SK}),
                    "UpdateExpression": "SET pricing = :pricing",
                    "ConditionExpression": "attribute_exists(pk) AND "
                    "(attribute_not_exists(pricing) OR pricing = :pricing)",
                    "ExpressionAttributeValues": _item({":pricing": subscription.pricing.value}),
                }
            },
            self._claim(f"SUBSCRIPTION#{subscription.key}", alias),
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._subscription_item(subscription),
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            },
        ]
        if identity.customer_aws_account_id is not None:
            actions.append(self._claim(f"ACCOUNT#{identity.customer_aws_account_id}", alias))
        actions += self.alias_claims(subscription, alias_keys)
        try:
            self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except ClientError as error:
            codes = _cancellation_codes(error)
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            first_alias = len(actions) - len(alias_keys)
            for alias_key, code in zip(alias_keys, codes[first_alias:], strict=False):
                if code == "ConditionalCheckFailed":
                    raise SubscriptionHeldByAnotherCompany(alias_key) from None
            if codes[0] == "ConditionalCheckFailed":
                existing = self.company_pricing(alias)  # raises CompanyNotFound when absent
                raise PricingModelConflict(existing or subscription.pricing, subscription.pricing) from None
            if codes[1] == "ConditionalCheckFailed":
                raise SubscriptionHeldByAnotherCompany(subscription.key) from None
            if codes[2] == "ConditionalCheckFailed":
                raise TenancyError(
                    "subscription", "subscription_unique", f"{subscription.key} is already registered"
                ) from None
            if identity.customer_aws_account_id is not None and codes[3] == "ConditionalCheckFailed":
                raise AccountOwnedByAnotherCompany(identity.customer_aws_account_id or "") from None
            raise

    def save_subscription(self, subscription: Subscription, *, metered: bool | None = None) -> None:
        """Rewrite an existing subscription (activation, end, entitlements). ``metered`` False takes it out
        of the active-subscriptions index (after its final metering); by default an activated
        subscription is in the index."""
        item = self._subscription_item(subscription, metered=metered)
        try:
            self._client.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_exists(sk)"
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise SubscriptionNotFound(subscription.key) from None
            raise

    def get_subscription(self, alias: str, key: str) -> Subscription | None:
        item = self._get(company_pk(alias), f"SUB#{key}")
        return self._subscription_from(item) if item else None

    def list_subscriptions(self, alias: str) -> list[Subscription]:
        return [self._subscription_from(item) for item in self._query_company(alias, "SUB#")]

    def list_metered_subscriptions(
        self, *, active_from: datetime, active_before: datetime, page_size: int | None = None
    ) -> Iterator[Subscription]:
        """Activated, not yet retired subscriptions that may be active somewhere in [active_from,
        active_before): started before the end and not ended by the start. One paginated query per shard."""
        for shard in range(INDEX_SHARDS):
            paginator = self._client.get_paginator("query")
            pages = paginator.paginate(
                TableName=self._table,
                IndexName=ACTIVE_SUBSCRIPTIONS_INDEX,
                KeyConditionExpression="meter_shard = :shard AND started < :before",
                FilterExpression="attribute_not_exists(ended) OR ended > :from",
                ExpressionAttributeValues=_item(
                    {":shard": f"shard#{shard}", ":before": iso(active_before), ":from": iso(active_from)}
                ),
                PaginationConfig={"PageSize": page_size} if page_size else {},
            )
            for page in pages:
                for item in page.get("Items", []):
                    yield self._subscription_from(_plain(item))

    def load_company(self, alias: str) -> CompanySnapshot | None:
        """The company, its subscriptions, its environments and its meter state: ONE query (the metering
        worker's read of a company)."""
        items = list(self._query_company(alias, ""))
        company_item = next((item for item in items if item[SORT_KEY] == COMPANY_SK), None)
        if company_item is None:
            return None
        meter_item = next((item for item in items if item[SORT_KEY] == METER_SK), None)
        return CompanySnapshot(
            company=Company(alias=company_item["alias"], name=company_item.get("name", "")),
            subscriptions=[
                self._subscription_from(item) for item in items if item[SORT_KEY].startswith("SUB#")
            ],
            environments=[
                Environment(
                    company_alias=alias,
                    name=item["name"],
                    instance_arn=InstanceArn.parse(item["instance_arn"]),
                )
                for item in items
                if item[SORT_KEY].startswith("ENV#")
            ],
            meter_state=str(meter_item["state"]) if meter_item else None,
            meter_version=int(meter_item["version"]) if meter_item else 0,
            activity_counts={
                str(item["environment"]): int(item["events"])
                for item in items
                if item[SORT_KEY].startswith(ACTIVITY_PREFIX)
            },
            pending_records=[
                str(item["record"]) for item in items if item[SORT_KEY].startswith(PENDING_PREFIX)
            ],
        )

    def count_activity(self, alias: str, environment: str, events: int) -> None:
        """Ingest's signal to the meter: ``events`` more were stored (or retried) for the environment."""
        self._client.update_item(
            TableName=self._table,
            Key=_item({PARTITION_KEY: company_pk(alias), SORT_KEY: f"{ACTIVITY_PREFIX}{environment}"}),
            UpdateExpression="ADD events :events SET environment = :environment",
            ExpressionAttributeValues=_item({":events": events, ":environment": environment}),
        )

    # Environments ----------------------------------------------------------------------------------

    def add_environment(self, environment: Environment) -> None:
        """Add an environment atomically: the company exists, the name and the instance are new, and its
        AWS account is unclaimed or already this company's (one account, one company)."""
        alias = environment.company_alias
        arn = environment.instance_arn.arn
        actions: list[dict[str, Any]] = [
            {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": _item({PARTITION_KEY: company_pk(alias), SORT_KEY: COMPANY_SK}),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            *environment_puts(self._table, environment),
            self._claim(f"ACCOUNT#{environment.account_id}", alias),
        ]
        try:
            self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            failures: Sequence[TenancyError] = (
                CompanyNotFound(alias),
                EnvironmentNameTaken(environment.name),
                InstanceAlreadyRegistered(arn),
                AccountOwnedByAnotherCompany(environment.account_id),
            )
            for code, failure in zip(_cancellation_codes(error), failures, strict=False):
                if code == "ConditionalCheckFailed":
                    raise failure from None
            raise

    def remove_environment(self, alias: str, name: str) -> None:
        """Remove an environment. The account claim stays: an account that held company A's environment
        can never hold company B's (BILLING.md section 1), so one company can never bill another's usage."""
        item = self._get(company_pk(alias), f"ENV#{name}")
        if item is None:
            raise EnvironmentNotFound(name)
        self._client.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": _item({PARTITION_KEY: company_pk(alias), SORT_KEY: f"ENV#{name}"}),
                    }
                },
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": _item(
                            {PARTITION_KEY: f"INSTANCE#{item['instance_arn']}", SORT_KEY: INSTANCE_SK}
                        ),
                        "ConditionExpression": "company = :company",
                        "ExpressionAttributeValues": _item({":company": alias}),
                    }
                },
            ]
        )

    def list_environments(self, alias: str) -> list[Environment]:
        return [
            Environment(
                company_alias=alias, name=item["name"], instance_arn=InstanceArn.parse(item["instance_arn"])
            )
            for item in self._query_company(alias, "ENV#")
        ]

    def environment_for_instance(self, instance_arn: str) -> Environment | None:
        item = self._get(f"INSTANCE#{instance_arn}", INSTANCE_SK)
        if item is None:
            return None
        return Environment(
            company_alias=item["company"], name=item["name"], instance_arn=InstanceArn.parse(instance_arn)
        )

    # Item shapes -----------------------------------------------------------------------------------

    def _claim(self, pk: str, alias: str, *, stands_for: str | None = None) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": _item(
                    {PARTITION_KEY: pk, SORT_KEY: CLAIM_SK, "company": alias, "subscription": stands_for}
                ),
                "ConditionExpression": "attribute_not_exists(pk) OR company = :company",
                "ExpressionAttributeValues": _item({":company": alias}),
            }
        }

    def alias_claims(self, subscription: Subscription, alias_keys: Sequence[str]) -> list[dict[str, Any]]:
        """Claims that send lookups of each alias key to the subscription (transaction actions)."""
        return [
            self._claim(f"SUBSCRIPTION#{key}", subscription.company_alias, stands_for=subscription.key)
            for key in alias_keys
        ]

    def _subscription_item(
        self, subscription: Subscription, *, metered: bool | None = None
    ) -> dict[str, Any]:
        identity = subscription.identity
        entitlements = subscription.entitlements
        in_index = subscription.started is not None and metered is not False
        return _item(
            {
                PARTITION_KEY: company_pk(subscription.company_alias),
                SORT_KEY: f"SUB#{subscription.key}",
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

    @staticmethod
    def _subscription_from(item: Mapping[str, Any]) -> Subscription:
        licensed = item.get("licensed_agents")
        return Subscription(
            company_alias=item["company"],
            identity=SubscriptionIdentity(
                customer_aws_account_id=item.get("customer_aws_account_id"),
                license_arn=item.get("license_arn"),
                customer_identifier=item.get("customer_identifier"),
                product_code=item.get("product_code"),
            ),
            pricing=PricingModel(item["pricing"]),
            started=_optional_instant(item.get(INDEX_SORT_KEY)),
            ended=_optional_instant(item.get("ended")),
            entitlements=Entitlements(
                licensed_agents=int(licensed) if licensed is not None else None,
                expires=_optional_instant(item.get("expires")),
            ),
        )

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table, Key=_item({PARTITION_KEY: pk, SORT_KEY: sk}), ConsistentRead=True
        )
        item = response.get("Item")
        return _plain(item) if item else None

    def _query_company(self, alias: str, prefix: str) -> Iterator[dict[str, Any]]:
        """The company partition's items whose sort key starts with ``prefix`` (all of them for "")."""
        condition = "pk = :pk AND begins_with(sk, :prefix)" if prefix else "pk = :pk"
        values = {":pk": company_pk(alias), ":prefix": prefix} if prefix else {":pk": company_pk(alias)}
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=_item(values),
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                yield _plain(item)


def create_tenancy_table(client: DynamoDBClient, table_name: str) -> None:
    """Create the table with the same keys, index and TTL as infra/constructs/tenancy_store.py (local
    runtime and tests; in AWS the CDK stack owns the table)."""
    create_table(
        client,
        table_name,
        index=Index(ACTIVE_SUBSCRIPTIONS_INDEX, INDEX_PARTITION_KEY, INDEX_SORT_KEY),
        ttl_attribute=TTL_ATTRIBUTE,
    )
