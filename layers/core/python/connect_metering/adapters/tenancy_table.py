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
    ACCOUNT#<account id>     #CLAIM          which company owns an AWS account (buyer or environment);
                                             ``unverified_until`` while nobody proved it (see below)
    INSTANCE#<instance arn>  #ENV            instance -> (company, environment), the ingest lookup

An environment added at sign-up or by the admin API carries a verification code (``verification_code``,
``claimed_at``, ``verified_at`` on both its items) and claims its account *unverified*: the claim blocks
other companies for ``UNVERIFIED_CLAIM_LIFETIME`` only (checked when read, no TTL: the item stays as the
record of who claimed), and never a buyer whose own account it is. A claim is written after reading it,
conditioned on being unchanged since, so a takeover (which also removes the loser's unverified
environments in that account) is decided by the pure ``decide_claim`` and stays atomic.

The sparse GSI ``active-subscriptions`` (``meter_shard``, ``started``) holds exactly the activated
subscriptions that still need hourly records, so the hourly job lists them with a few paginated queries
(one per shard) and never scans. A subscription leaves it once its final metering is done.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from connect_metering.adapters.table_schema import Index, create_table
from connect_metering.domain.instants import iso, parse_iso
from connect_metering.domain.metering import CompanySnapshot
from connect_metering.domain.tenancy import (
    UNVERIFIED_CLAIM_LIFETIME,
    AccountClaim,
    AccountOwnedByAnotherCompany,
    AliasTaken,
    ClaimDecision,
    Company,
    CompanyNotFound,
    Entitlements,
    Environment,
    EnvironmentNameTaken,
    EnvironmentNotFound,
    EnvironmentVerification,
    InstanceAlreadyRegistered,
    InstanceArn,
    PricingModel,
    PricingModelConflict,
    Subscription,
    SubscriptionHeldByAnotherCompany,
    SubscriptionIdentity,
    SubscriptionNotFound,
    TenancyError,
    decide_claim,
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


def _verification_attributes(environment: Environment) -> dict[str, Any]:
    verification = environment.verification
    if verification is None:
        return {}
    return {
        "verification_code": verification.code,
        "claimed_at": iso(verification.claimed_at),
        "verified_at": iso(verification.verified_at) if verification.verified_at else None,
    }


def _verification_from(item: Mapping[str, Any]) -> EnvironmentVerification | None:
    if "verification_code" not in item:
        return None
    return EnvironmentVerification(
        code=str(item["verification_code"]),
        claimed_at=parse_iso(str(item["claimed_at"])),
        verified_at=_optional_instant(item.get("verified_at")),
    )


def environment_puts(
    table: str, environment: Environment, *, replacing: str | None = None
) -> list[dict[str, Any]]:
    """The environment item and its instance lookup, each only if new (transaction actions); the lookup
    may instead replace company ``replacing``'s, when its unverified claim is being taken over."""
    alias, arn = environment.company_alias, environment.instance_arn.arn
    instance_put: dict[str, Any] = {
        "TableName": table,
        "Item": _item(
            {
                PARTITION_KEY: f"INSTANCE#{arn}",
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
        instance_put["ExpressionAttributeValues"] = _item({":replaced": replacing})
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
                        **_verification_attributes(environment),
                    }
                ),
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        },
        {"Put": instance_put},
    ]


@dataclass
class ClaimPlan:
    """How one account claim is written (transaction actions, each with the error its failure means)
    and what it changes: ``verified`` when the account is proven the claimant's afterwards, and the
    instances of the previous holder's environments it removes (instance ARN -> that company)."""

    decision: ClaimDecision
    actions: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    verified: bool = False
    released_instances: dict[str, str] = field(default_factory=dict)


def verified_if(environment: Environment, verified: bool) -> Environment:
    """The environment as stored when its account is (``verified``) already proven its company's."""
    verification = environment.verification
    if not verified or verification is None or verification.verified_at is not None:
        return environment
    proven = verification.model_copy(update={"verified_at": verification.claimed_at})
    return environment.model_copy(update={"verification": proven})


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

    def account_claim(self, account_id: str) -> AccountClaim | None:
        item = self._get(f"ACCOUNT#{account_id}", CLAIM_SK)
        if item is None:
            return None
        return AccountClaim(
            company=str(item["company"]), unverified_until=_optional_instant(item.get("unverified_until"))
        )

    def plan_account_claim(
        self, account_id: str, alias: str, *, now: datetime, proven: bool, refused: Exception
    ) -> ClaimPlan:
        """Read the account's claim and plan the write that claims it for ``alias`` (``proven``: by a
        buyer account or a trusted environment; else unverified from ``now``). Every action is
        conditioned on the claim being as read, so a concurrent change fails the transaction with
        ``refused`` instead of being overwritten."""
        pk = f"ACCOUNT#{account_id}"
        key = _item({PARTITION_KEY: pk, SORT_KEY: CLAIM_SK})
        existing = self.account_claim(account_id)
        decision = decide_claim(existing, alias, now=now, proven=proven)
        if existing is None:
            # A concurrent first claim by the same company is no conflict (its other environment); an
            # unproven claim must not overwrite one proven meanwhile.
            same = "company = :alias" if proven else "company = :alias AND attribute_exists(unverified_until)"
            as_read: dict[str, Any] = {
                "ConditionExpression": f"attribute_not_exists(pk) OR ({same})",
                "ExpressionAttributeValues": _item({":alias": alias}),
            }
        else:
            unchanged = "company = :held"
            values: dict[str, Any] = {":held": existing.company}
            if existing.unverified_until is None:
                unchanged += " AND attribute_not_exists(unverified_until)"
            else:
                unchanged += " AND unverified_until = :held_until"
                values[":held_until"] = iso(existing.unverified_until)
            as_read = {"ConditionExpression": unchanged, "ExpressionAttributeValues": _item(values)}
        unverified_until = None if proven else iso(now + UNVERIFIED_CLAIM_LIFETIME)
        plan = ClaimPlan(decision, verified=proven or (existing is not None and existing.is_verified))
        if decision is ClaimDecision.REFUSED:
            # Fails inside the transaction (not before it), so the other rules keep reporting first.
            action: dict[str, Any] = {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": key,
                    "ConditionExpression": "attribute_not_exists(pk) OR company = :company",
                    "ExpressionAttributeValues": _item({":company": alias}),
                }
            }
            plan.verified = False
        elif decision is ClaimDecision.KEEP:
            action = {"ConditionCheck": {"TableName": self._table, "Key": key, **as_read}}
        elif decision is ClaimDecision.VERIFY:
            action = {
                "Update": {
                    "TableName": self._table,
                    "Key": key,
                    "UpdateExpression": "REMOVE unverified_until",
                    **as_read,
                }
            }
        else:  # NEW, RENEW, TAKE_OVER: the claim as this company's, written afresh
            plan.verified = proven
            action = {
                "Put": {
                    "TableName": self._table,
                    "Item": _item(
                        {
                            PARTITION_KEY: pk,
                            SORT_KEY: CLAIM_SK,
                            "company": alias,
                            "unverified_until": unverified_until,
                        }
                    ),
                    **as_read,
                }
            }
        plan.actions.append(action)
        plan.failures.append(refused)
        if decision is ClaimDecision.VERIFY:
            self._verify_environments(plan, alias, account_id, refused)
        if decision is ClaimDecision.TAKE_OVER and existing is not None:
            self._release_environments(plan, existing.company, account_id, refused)
        return plan

    def _verify_environments(self, plan: ClaimPlan, alias: str, account_id: str, refused: Exception) -> None:
        """The account is proven the company's (it bought a subscription): its environments there are
        verified too, as of their claim (nothing of theirs was billed before; the carry bills it now)."""
        for environment in self.list_environments(alias):
            if environment.account_id != account_id or environment.is_verified:
                continue
            for key in (
                {PARTITION_KEY: company_pk(alias), SORT_KEY: f"ENV#{environment.name}"},
                {PARTITION_KEY: f"INSTANCE#{environment.instance_arn.arn}", SORT_KEY: INSTANCE_SK},
            ):
                plan.actions.append(
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _item(key),
                            "UpdateExpression": "SET verified_at = if_not_exists(verified_at, claimed_at)",
                            "ConditionExpression": "attribute_exists(claimed_at)",
                        }
                    }
                )
                plan.failures.append(refused)

    def _release_environments(self, plan: ClaimPlan, loser: str, account_id: str, refused: Exception) -> None:
        """Remove the previous holder's environments in the account: they were never proven, and an
        instance billed to a company that does not own it is what the claim rules exist to prevent."""
        for environment in self.list_environments(loser):
            if environment.account_id != account_id:
                continue
            arn = environment.instance_arn.arn
            plan.released_instances[arn] = loser
            plan.actions.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": _item({PARTITION_KEY: company_pk(loser), SORT_KEY: f"ENV#{environment.name}"}),
                        "ConditionExpression": "attribute_not_exists(verified_at)",
                    }
                }
            )
            plan.failures.append(refused)

    def released_instance_deletes(
        self, plan: ClaimPlan, keep: str | None
    ) -> tuple[list[dict[str, Any]], list[Exception]]:
        """Deletes of the released instances' lookups, except ``keep`` (an instance the claimant is
        registering itself: its lookup is replaced in place, one action per item and transaction)."""
        actions: list[dict[str, Any]] = []
        for arn, loser in plan.released_instances.items():
            if arn == keep:
                continue
            actions.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": _item({PARTITION_KEY: f"INSTANCE#{arn}", SORT_KEY: INSTANCE_SK}),
                        "ConditionExpression": "company = :loser",
                        "ExpressionAttributeValues": _item({":loser": loser}),
                    }
                }
            )
        return actions, [plan.failures[0]] * len(actions)

    def verify_account(self, environment: Environment) -> bool:
        """The account proved the environment's claim: the claim becomes verified and so do the company's
        environments in that account. False when the claim is no longer this company's."""
        alias, account_id = environment.company_alias, environment.account_id
        verified_at = environment.verification.verified_at if environment.verification else None
        at = iso(verified_at) if verified_at else None
        if at is None:
            raise ValueError("verify_account needs the instant the environment was verified")
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _item({PARTITION_KEY: f"ACCOUNT#{account_id}", SORT_KEY: CLAIM_SK}),
                    "UpdateExpression": "REMOVE unverified_until",
                    "ConditionExpression": "company = :company",
                    "ExpressionAttributeValues": _item({":company": alias}),
                }
            }
        ]
        # The proving environment first, so the bound below never leaves it out.
        others = sorted(self.list_environments(alias), key=lambda other: other.name != environment.name)
        for other in others:
            if other.account_id != account_id or other.is_verified:
                continue
            for key in (
                {PARTITION_KEY: company_pk(alias), SORT_KEY: f"ENV#{other.name}"},
                {PARTITION_KEY: f"INSTANCE#{other.instance_arn.arn}", SORT_KEY: INSTANCE_SK},
            ):
                actions.append(
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _item(key),
                            "UpdateExpression": "SET verified_at = if_not_exists(verified_at, :at)",
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": _item({":at": at}),
                        }
                    }
                )
        try:
            # A company with dozens of environments in one account is beyond this bound; the claim and
            # the first of them are verified, and each further one by its own forwarder's next event.
            self._client.transact_write_items(TransactItems=actions[:99])  # type: ignore[arg-type]
        except ClientError as error:
            if error.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise
        return True

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
        claim: ClaimPlan | None = None
        if identity.customer_aws_account_id is not None:
            # ResolveCustomer named this account as the buyer's: the claim is proven, and a proven
            # claim is decided without the clock (it neither expires nor waits for another's expiry).
            claim = self.plan_account_claim(
                identity.customer_aws_account_id,
                alias,
                now=subscription.started or datetime.min.replace(tzinfo=UTC),
                proven=True,
                refused=AccountOwnedByAnotherCompany(identity.customer_aws_account_id),
            )
            actions += claim.actions
            released, _ = self.released_instance_deletes(claim, keep=None)
            actions += released
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
            if (
                identity.customer_aws_account_id is not None
                and "ConditionalCheckFailed" in codes[3:first_alias]
            ):
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
                    verification=_verification_from(item),
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

    def add_environment(self, environment: Environment) -> Environment:
        """Add an environment atomically: the company exists, the name and the instance are new, and its
        AWS account is unclaimed, already this company's, or held by another company's unverified claim
        that no longer blocks it (one account, one company; see ``decide_claim``). An environment with a
        verification claims its account unverified, unless the account is already proven this
        company's: then it is verified at once. Returns the environment as stored."""
        alias = environment.company_alias
        arn = environment.instance_arn.arn
        verification = environment.verification
        claim = self.plan_account_claim(
            environment.account_id,
            alias,
            now=verification.claimed_at if verification else datetime.min.replace(tzinfo=UTC),
            proven=verification is None,
            refused=AccountOwnedByAnotherCompany(environment.account_id),
        )
        environment = verified_if(environment, claim.verified)
        released, released_failures = self.released_instance_deletes(claim, keep=arn)
        actions: list[dict[str, Any]] = [
            {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": _item({PARTITION_KEY: company_pk(alias), SORT_KEY: COMPANY_SK}),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            *environment_puts(self._table, environment, replacing=claim.released_instances.get(arn)),
            *claim.actions,
            *released,
        ]
        try:
            self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            failures: Sequence[Exception] = (
                CompanyNotFound(alias),
                EnvironmentNameTaken(environment.name),
                InstanceAlreadyRegistered(arn),
                *claim.failures,
                *released_failures,
            )
            for code, failure in zip(_cancellation_codes(error), failures, strict=False):
                if code == "ConditionalCheckFailed":
                    raise failure from None
            raise
        return environment

    def remove_environment(self, alias: str, name: str) -> None:
        """Remove an environment. A verified account claim stays: an account that held company A's
        environment can never hold company B's (BILLING.md section 1), so one company can never bill
        another's usage. An unverified claim leaves with the company's last environment in that account:
        nothing proved it, and keeping it would let a company hold anyone's account by adding and
        removing an instance."""
        item = self._get(company_pk(alias), f"ENV#{name}")
        if item is None:
            raise EnvironmentNotFound(name)
        arn = str(item["instance_arn"])
        removal: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": _item({PARTITION_KEY: company_pk(alias), SORT_KEY: f"ENV#{name}"}),
                }
            },
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": _item({PARTITION_KEY: f"INSTANCE#{arn}", SORT_KEY: INSTANCE_SK}),
                    "ConditionExpression": "company = :company",
                    "ExpressionAttributeValues": _item({":company": alias}),
                }
            },
        ]
        release = self._unverified_claim_release(alias, name, InstanceArn.parse(arn).account_id)
        actions = [*removal, *release]
        try:
            self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except ClientError as error:
            codes = _cancellation_codes(error)
            claim_changed = release and codes[2:] == ["ConditionalCheckFailed"] and set(codes[:2]) == {"None"}
            if error.response["Error"]["Code"] != "TransactionCanceledException" or not claim_changed:
                raise
            # Verified or taken meanwhile: the claim is no longer this company's to release.
            self._client.transact_write_items(TransactItems=removal)  # type: ignore[arg-type]

    def _unverified_claim_release(self, alias: str, removed: str, account_id: str) -> list[dict[str, Any]]:
        claim = self.account_claim(account_id)
        if claim is None or claim.company != alias or claim.unverified_until is None:
            return []
        if any(
            environment.account_id == account_id and environment.name != removed
            for environment in self.list_environments(alias)
        ):
            return []
        return [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": _item({PARTITION_KEY: f"ACCOUNT#{account_id}", SORT_KEY: CLAIM_SK}),
                    "ConditionExpression": "company = :company AND unverified_until = :until",
                    "ExpressionAttributeValues": _item(
                        {":company": alias, ":until": iso(claim.unverified_until)}
                    ),
                }
            }
        ]

    def list_environments(self, alias: str) -> list[Environment]:
        return [
            Environment(
                company_alias=alias,
                name=item["name"],
                instance_arn=InstanceArn.parse(item["instance_arn"]),
                verification=_verification_from(item),
            )
            for item in self._query_company(alias, "ENV#")
        ]

    def environment_for_instance(self, instance_arn: str) -> Environment | None:
        item = self._get(f"INSTANCE#{instance_arn}", INSTANCE_SK)
        if item is None:
            return None
        return Environment(
            company_alias=item["company"],
            name=item["name"],
            instance_arn=InstanceArn.parse(instance_arn),
            verification=_verification_from(item),
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
