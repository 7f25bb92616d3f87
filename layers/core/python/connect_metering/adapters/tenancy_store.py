"""The tenancy store: companies, their subscriptions and environments, and the claims that keep them
unique, on the tenancy table (keys in tenancy_keys, account claims in tenancy_claims).

A licence subscription's key is its licence id (``license#l-...``), so every spelling of its ARN finds
the same items; the item keeps the LicenseArn as ResolveCustomer gave it. Uniqueness rules hold under
concurrent requests because every claim is a conditional write, and every multi-item change is one
TransactWriteItems.

Lifecycle changes of a subscription (``replace_subscription``) are compare-and-set on the fields they read
(started, ended, entitlements, index membership), so concurrent notifications, a sign-up applying a kept
activation and the meter retiring a subscription can interleave without losing an update.

The sparse GSI ``active-subscriptions`` (``meter_shard``, ``started``) holds exactly the activated
subscriptions that still need hourly records, so the hourly job lists them with a few paginated queries
(one per shard) and never scans. A subscription leaves it once its final metering is done.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from connect_metering.adapters.tenancy_claims import AccountClaims, verified_if
from connect_metering.adapters.tenancy_items import (
    alias_claims,
    buyer_marker,
    company_environments,
    environment_from,
    environment_puts,
    subscription_claim,
    subscription_from,
    subscription_item,
)
from connect_metering.adapters.tenancy_keys import (
    ACTIVE_SUBSCRIPTIONS_INDEX,
    CLAIM_SK,
    COMPANY_SK,
    ENVIRONMENT_PREFIX,
    INDEX_PARTITION_KEY,
    INDEX_SORT_KEY,
    INSTANCE_SK,
    PARTITION_KEY,
    SORT_KEY,
    SUBSCRIPTION_PREFIX,
    buyer_sk,
    company_pk,
    environment_sk,
    index_shards,
    instance_pk,
    subscription_claim_pk,
    subscription_sk,
)
from connect_metering.adapters.tenancy_meter_state import meter_items
from connect_metering.adapters.tenancy_table import (
    TenancyTable,
    cancellation_codes,
    condition_failed,
    item,
    key,
    plain,
    transaction_cancelled,
)
from connect_metering.domain.instants import iso
from connect_metering.domain.lifecycle import StoredSubscription
from connect_metering.domain.metering import CompanySnapshot
from connect_metering.domain.tenancy import (
    AccountClaim,
    AccountOwnedByAnotherCompany,
    AliasTaken,
    Company,
    CompanyNotFound,
    Environment,
    EnvironmentNameTaken,
    EnvironmentNotFound,
    InstanceAlreadyRegistered,
    InstanceArn,
    PricingModel,
    PricingModelConflict,
    Subscription,
    SubscriptionHeldByAnotherCompany,
    SubscriptionNotFound,
    TenancyError,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# The attributes a lifecycle change reads; a write succeeds only if none changed since the read.
COMPARED_ATTRIBUTES = (INDEX_SORT_KEY, "ended", "licensed_agents", "expires", INDEX_PARTITION_KEY)
CONDITION_FAILED = "ConditionalCheckFailed"


class DynamoTenancyStore:
    """The tenancy port on one DynamoDB table; the client is injected."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = TenancyTable(table_name, client)
        self._claims = AccountClaims(self._table)

    # Companies -------------------------------------------------------------------------------------

    def create_company(self, company: Company) -> None:
        """Claim the alias; a second company with the same alias fails atomically (AliasTaken)."""
        try:
            self._table.client.put_item(
                TableName=self._table.name,
                Item=item(
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
            if condition_failed(error):
                raise AliasTaken(company.alias) from None
            raise

    def get_company(self, alias: str) -> Company | None:
        stored = self._table.get(company_pk(alias), COMPANY_SK)
        return Company(alias=stored["alias"], name=stored.get("name", "")) if stored else None

    def company_pricing(self, alias: str) -> PricingModel | None:
        stored = self._table.get(company_pk(alias), COMPANY_SK)
        if stored is None:
            raise CompanyNotFound(alias)
        return PricingModel(stored["pricing"]) if "pricing" in stored else None

    def company_contact(self, alias: str) -> str | None:
        stored = self._table.get(company_pk(alias), COMPANY_SK)
        return str(stored["contact_email"]) if stored and "contact_email" in stored else None

    def load_company(self, alias: str) -> CompanySnapshot | None:
        """The company, its subscriptions, its environments and its meter state: ONE query (the metering
        worker's read of a company)."""
        items = list(self._table.query(company_pk(alias)))
        company_item = next((stored for stored in items if stored[SORT_KEY] == COMPANY_SK), None)
        if company_item is None:
            return None
        meter = meter_items(items)
        return CompanySnapshot(
            company=Company(alias=company_item["alias"], name=company_item.get("name", "")),
            subscriptions=[
                subscription_from(stored)
                for stored in items
                if stored[SORT_KEY].startswith(SUBSCRIPTION_PREFIX)
            ],
            environments=[
                environment_from(alias, stored)
                for stored in items
                if stored[SORT_KEY].startswith(ENVIRONMENT_PREFIX)
            ],
            meter_state=meter.state,
            meter_version=meter.version,
            activity_counts=meter.activity_counts,
            pending_records=meter.pending_records,
        )

    # Accounts ----------------------------------------------------------------------------------------

    def owner_of_account(self, account_id: str) -> str | None:
        return self._claims.owner_of_account(account_id)

    def account_claim(self, account_id: str) -> AccountClaim | None:
        return self._claims.account_claim(account_id)

    def verify_account(self, environment: Environment) -> bool:
        """The account proved the environment's claim (see ``AccountClaims.verify_account``)."""
        return self._claims.verify_account(environment)

    def is_buyer_account(self, alias: str, account_id: str) -> bool:
        """Whether the account bought a subscription of the company (not merely holds an environment)."""
        if self._table.get(company_pk(alias), buyer_sk(account_id)) is not None:
            return True
        return any(
            subscription.identity.customer_aws_account_id == account_id
            for subscription in self.list_subscriptions(alias)
        )

    def mark_buyer_account(self, alias: str, account_id: str) -> None:
        self._table.client.put_item(TableName=self._table.name, Item=buyer_marker(alias, account_id))

    # Subscriptions ---------------------------------------------------------------------------------

    def owner_of_subscription(self, subscription_key: str) -> str | None:
        found = self.subscription_of(subscription_key)
        return found[0] if found else None

    def subscription_of(self, key: str) -> tuple[str, str] | None:
        """(company, subscription key) of a subscription key or of an alias key (a licence buyer's legacy
        CustomerIdentifier); None when nobody holds it."""
        stored = self._table.get(subscription_claim_pk(key), CLAIM_SK)
        if stored is None:
            return None
        return str(stored["company"]), str(stored.get("subscription", key))

    def add_subscription(self, subscription: Subscription, *, alias_keys: Sequence[str] = ()) -> None:
        """Attach a subscription to its company in one transaction: the pricing model, the subscription
        claim, the buyer account claim and the claims of its alias keys either all hold or nothing is
        written."""
        alias = subscription.company_alias
        account = subscription.identity.customer_aws_account_id
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table.name,
                    "Key": key(company_pk(alias), COMPANY_SK),
                    "UpdateExpression": "SET pricing = :pricing",
                    "ConditionExpression": "attribute_exists(pk) AND "
                    "(attribute_not_exists(pricing) OR pricing = :pricing)",
                    "ExpressionAttributeValues": item({":pricing": subscription.pricing.value}),
                }
            },
            subscription_claim(self._table.name, subscription.key, alias),
            {
                "Put": {
                    "TableName": self._table.name,
                    "Item": subscription_item(subscription),
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            },
        ]
        if account is not None:
            # ResolveCustomer named this account as the buyer's: the claim is proven, and a proven
            # claim is decided without the clock (it neither expires nor waits for another's expiry).
            claim = self._claims.plan(
                account,
                alias,
                now=subscription.started or datetime.min.replace(tzinfo=UTC),
                proven=True,
                refused=AccountOwnedByAnotherCompany(account),
            )
            actions += claim.actions
            released, _ = self._claims.released_instance_deletes(claim, keep=None)
            actions += released
        actions += alias_claims(self._table.name, subscription, alias_keys)
        try:
            self._table.transact(actions)
        except ClientError as error:
            if not transaction_cancelled(error):
                raise
            self._raise_subscription_refusal(
                subscription,
                alias_keys,
                cancellation_codes(error),
                first_alias=len(actions) - len(alias_keys),
            )
            raise

    def _raise_subscription_refusal(
        self, subscription: Subscription, alias_keys: Sequence[str], codes: list[str], *, first_alias: int
    ) -> None:
        """The rule ``add_subscription``'s cancelled transaction broke (returns when none is known)."""
        for alias_key, code in zip(alias_keys, codes[first_alias:], strict=False):
            if code == CONDITION_FAILED:
                raise SubscriptionHeldByAnotherCompany(alias_key) from None
        if codes[0] == CONDITION_FAILED:
            existing = self.company_pricing(subscription.company_alias)  # raises CompanyNotFound when absent
            raise PricingModelConflict(existing or subscription.pricing, subscription.pricing) from None
        if codes[1] == CONDITION_FAILED:
            raise SubscriptionHeldByAnotherCompany(subscription.key) from None
        if codes[2] == CONDITION_FAILED:
            raise TenancyError(
                "subscription", "subscription_unique", f"{subscription.key} is already registered"
            ) from None
        account = subscription.identity.customer_aws_account_id
        if account is not None and CONDITION_FAILED in codes[3:first_alias]:
            raise AccountOwnedByAnotherCompany(account) from None

    def save_subscription(self, subscription: Subscription, *, metered: bool | None = None) -> None:
        """Rewrite an existing subscription (activation, end, entitlements). ``metered`` False takes it out
        of the active-subscriptions index (after its final metering); by default an activated
        subscription is in the index."""
        try:
            self._table.client.put_item(
                TableName=self._table.name,
                Item=subscription_item(subscription, metered=metered),
                ConditionExpression="attribute_exists(sk)",
            )
        except ClientError as error:
            if condition_failed(error):
                raise SubscriptionNotFound(subscription.key) from None
            raise

    def read_subscription(self, alias: str, key: str) -> StoredSubscription | None:
        """The subscription with what a compare-and-set (``replace_subscription``) compares."""
        response = self._table.client.get_item(
            TableName=self._table.name, Key=_subscription_key(alias, key), ConsistentRead=True
        )
        raw = response.get("Item")
        if not raw:
            return None
        return StoredSubscription(
            subscription=subscription_from(plain(raw)),
            metered=INDEX_PARTITION_KEY in raw,
            compared={name: raw[name] for name in COMPARED_ATTRIBUTES if name in raw},
        )

    def replace_subscription(self, new: Subscription, *, previous: StoredSubscription) -> bool:
        """Write ``new`` if the stored subscription is still ``previous``; False if it changed meanwhile.

        Index membership is kept as the meter left it: a subscription it retired after final metering
        stays out of the active-subscriptions index; one activated here goes in."""
        retired = previous.subscription.started is not None and not previous.metered
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        conditions = ["attribute_exists(sk)"]
        for position, name in enumerate(COMPARED_ATTRIBUTES):
            names[f"#c{position}"] = name
            if name in previous.compared:
                values[f":c{position}"] = previous.compared[name]
                conditions.append(f"#c{position} = :c{position}")
            else:
                conditions.append(f"attribute_not_exists(#c{position})")
        request: dict[str, Any] = {
            "TableName": self._table.name,
            "Item": subscription_item(new, metered=False if retired else None),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
        }
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            self._table.client.put_item(**request)
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def get_subscription(self, alias: str, key: str) -> Subscription | None:
        stored = self._table.get(company_pk(alias), subscription_sk(key))
        return subscription_from(stored) if stored else None

    def list_subscriptions(self, alias: str) -> list[Subscription]:
        return [
            subscription_from(stored) for stored in self._table.query(company_pk(alias), SUBSCRIPTION_PREFIX)
        ]

    def list_metered_subscriptions(
        self, *, active_from: datetime, active_before: datetime, page_size: int | None = None
    ) -> Iterator[Subscription]:
        """Activated, not yet retired subscriptions that may be active somewhere in [active_from,
        active_before): started before the end and not ended by the start. One paginated query per shard."""
        for shard in index_shards():
            paginator = self._table.client.get_paginator("query")
            pages = paginator.paginate(
                TableName=self._table.name,
                IndexName=ACTIVE_SUBSCRIPTIONS_INDEX,
                KeyConditionExpression="meter_shard = :shard AND started < :before",
                FilterExpression="attribute_not_exists(ended) OR ended > :from",
                ExpressionAttributeValues=item(
                    {":shard": shard, ":before": iso(active_before), ":from": iso(active_from)}
                ),
                PaginationConfig={"PageSize": page_size} if page_size else {},
            )
            for page in pages:
                for raw in page.get("Items", []):
                    yield subscription_from(plain(raw))

    # Environments ----------------------------------------------------------------------------------

    def add_environment(self, environment: Environment) -> Environment:
        """Add an environment atomically: the company exists, the name and the instance are new, and its
        AWS account is unclaimed, already this company's, or held by another company's unverified claim
        that no longer blocks it (one account, one company; see ``decide_claim``). An environment with a
        verification claims its account unverified, unless the account is already proven this
        company's: then it is verified at once. Returns the environment as stored."""
        alias = environment.company_alias
        arn = environment.instance_arn.arn
        verification = environment.verification
        claim = self._claims.plan(
            environment.account_id,
            alias,
            now=verification.claimed_at if verification else datetime.min.replace(tzinfo=UTC),
            proven=verification is None,
            refused=AccountOwnedByAnotherCompany(environment.account_id),
        )
        environment = verified_if(environment, claim.verified)
        released, released_failures = self._claims.released_instance_deletes(claim, keep=arn)
        actions: list[dict[str, Any]] = [
            {
                "ConditionCheck": {
                    "TableName": self._table.name,
                    "Key": key(company_pk(alias), COMPANY_SK),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            *environment_puts(self._table.name, environment, replacing=claim.released_instances.get(arn)),
            *claim.actions,
            *released,
        ]
        failures = [
            CompanyNotFound(alias),
            EnvironmentNameTaken(environment.name),
            InstanceAlreadyRegistered(arn),
            *claim.failures,
            *released_failures,
        ]
        self._transact_or_raise(actions, failures)
        return environment

    def _transact_or_raise(self, actions: list[dict[str, Any]], failures: Sequence[Exception]) -> None:
        """Run the transaction; when it is cancelled, raise the failure of its first failed condition."""
        try:
            self._table.transact(actions)
        except ClientError as error:
            if not transaction_cancelled(error):
                raise
            for code, failure in zip(cancellation_codes(error), failures, strict=False):
                if code == CONDITION_FAILED:
                    raise failure from None
            raise

    def remove_environment(self, alias: str, name: str) -> None:
        """Remove an environment. A verified account claim stays: an account that held company A's
        environment can never hold company B's (BILLING.md section 1), so one company can never bill
        another's usage. An unverified claim leaves with the company's last environment in that account:
        nothing proved it, and keeping it would let a company hold anyone's account by adding and
        removing an instance."""
        stored = self._table.get(company_pk(alias), environment_sk(name))
        if stored is None:
            raise EnvironmentNotFound(name)
        arn = str(stored["instance_arn"])
        removal: list[dict[str, Any]] = [
            {"Delete": {"TableName": self._table.name, "Key": key(company_pk(alias), environment_sk(name))}},
            {
                "Delete": {
                    "TableName": self._table.name,
                    "Key": key(instance_pk(arn), INSTANCE_SK),
                    "ConditionExpression": "company = :company",
                    "ExpressionAttributeValues": item({":company": alias}),
                }
            },
        ]
        release = self._claims.unverified_release(alias, name, InstanceArn.parse(arn).account_id)
        try:
            self._table.transact([*removal, *release])
        except ClientError as error:
            codes = cancellation_codes(error)
            claim_changed = release and codes[2:] == [CONDITION_FAILED] and set(codes[:2]) == {"None"}
            if not transaction_cancelled(error) or not claim_changed:
                raise
            # Verified or taken meanwhile: the claim is no longer this company's to release.
            self._table.transact(removal)

    def list_environments(self, alias: str) -> list[Environment]:
        return company_environments(self._table, alias)

    def environment_for_instance(self, instance_arn: str) -> Environment | None:
        stored = self._table.get(instance_pk(instance_arn), INSTANCE_SK)
        if stored is None:
            return None
        return environment_from(str(stored["company"]), {**stored, "instance_arn": instance_arn})


def _subscription_key(alias: str, subscription_key: str) -> dict[str, Any]:
    return key(company_pk(alias), subscription_sk(subscription_key))
