"""The tenancy table, extended for registration and the subscription lifecycle (same table, more items):

    COMPANY#<alias>            SUB#<key>        a subscription, rewritten only by compare-and-set here
    LIFECYCLE#<key>            #PENDING         notifications that arrived before the buyer signed up
                                                (``parked_at``: when the first one was kept)
    LIFECYCLE#PARKED           <parked_at>#<key> a subscription with kept notifications and no company yet;
                                                removed once they are applied. One small partition, read
                                                by a key-range query for the ones parked too long
    LIFECYCLE#<key>            EVENT#<at>#<id>  every Marketplace notification (audit; duplicates once)
    REGISTRATION#<sha256(id)>  #REGISTRATION    a pending registration (TTL ``expires_at``; counts its
                                                sign-up attempts in ``signup_attempts``)
    TOKEN#<sha256(token)>      #USED            a registration token already posted (TTL ``expires_at``)
    COMPANY#<alias>            BUYER#<account>  the account bought a subscription of the company

Lifecycle changes are compare-and-set on the fields they read (started, ended, entitlements, index
membership), so concurrent notifications, a sign-up applying a kept activation and the meter retiring
a subscription can interleave without losing an update. Sign-up is one TransactWriteItems: the
registration is consumed, the alias, the subscription, the buyer account and the first environment are
claimed, or nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from connect_metering.adapters.tenancy_table import (
    COMPANY_SK,
    INDEX_PARTITION_KEY,
    INDEX_SORT_KEY,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
    DynamoTenancyStore,
    company_pk,
    environment_puts,
    verified_if,
)
from connect_metering.domain.instants import iso, parse_iso, to_ms
from connect_metering.domain.lifecycle import Effect, LifecycleEvent, PendingLifecycle, StoredSubscription
from connect_metering.domain.registration import (
    PendingRegistration,
    RegistrationClosed,
    RegistrationState,
    ResolvedCustomer,
    TokenAlreadyUsed,
)
from connect_metering.domain.tenancy import (
    AccountOwnedByAnotherCompany,
    AliasTaken,
    Company,
    Entitlements,
    Environment,
    EnvironmentNameTaken,
    InstanceAlreadyRegistered,
    PricingModel,
    Subscription,
    SubscriptionHeldByAnotherCompany,
    TenancyError,
)

PENDING_SK = "#PENDING"
PARKED_PK = "LIFECYCLE#PARKED"
REGISTRATION_SK = "#REGISTRATION"
TOKEN_SK = "#USED"  # noqa: S105 (a sort key, not a secret)
# Marks an AWS account as a buyer of the company (legacy identities do not carry the account).
BUYER_SK_PREFIX = "BUYER#"
# The attributes a lifecycle change reads; a write succeeds only if none changed since the read.
COMPARED_ATTRIBUTES = (INDEX_SORT_KEY, "ended", "licensed_agents", "expires", INDEX_PARTITION_KEY)
# Field kept per effect, and the comparison under which a new instant replaces the stored one.
_PENDING_FIELDS = {
    Effect.ACTIVATE: (("activated", ">"), ("entitlements_changed", "<")),
    Effect.END: (("ended", ">"),),
    Effect.REFRESH_ENTITLEMENTS: (("entitlements_changed", "<"),),
}

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items() if value is not None}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _epoch_seconds(moment: datetime) -> int:
    return to_ms(moment) // 1000


def _failed(error: ClientError) -> list[bool]:
    reasons = error.response.get("CancellationReasons", [])
    return [reason.get("Code") == "ConditionalCheckFailed" for reason in reasons]


class TenancyLifecycleStore(DynamoTenancyStore):
    """DynamoTenancyStore plus the items of registration and the subscription lifecycle."""

    # Subscriptions: compare-and-set --------------------------------------------------------------

    def read_subscription(self, alias: str, key: str) -> StoredSubscription | None:
        response = self._client.get_item(
            TableName=self._table,
            Key=_item({PARTITION_KEY: company_pk(alias), SORT_KEY: f"SUB#{key}"}),
            ConsistentRead=True,
        )
        raw = response.get("Item")
        if not raw:
            return None
        return StoredSubscription(
            subscription=self._subscription_from(_plain(raw)),
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
            "TableName": self._table,
            "Item": self._subscription_item(new, metered=False if retired else None),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
        }
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            self._client.put_item(**request)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # Lifecycle: audit log and notifications kept until sign-up ----------------------------------

    def log_event(self, event: LifecycleEvent, *, recorded_at: datetime) -> bool:
        """Keep the notification; False when this very event (same instant and id) was kept before."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_item(
                    {
                        PARTITION_KEY: f"LIFECYCLE#{event.log_key}",
                        SORT_KEY: f"EVENT#{iso(event.at)}#{event.event_id}",
                        "name": event.name,
                        "source": event.source.value,
                        "effect": event.effect.value,
                        "at": iso(event.at),
                        "product_code": event.product_code,
                        "agreement_id": event.agreement_id,
                        "recorded_at": iso(recorded_at),
                        "body": event.body,
                    }
                ),
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def keep_pending(self, event: LifecycleEvent, *, parked_at: datetime) -> None:
        """Merge an event for a subscription nobody has signed up for yet: the earliest activation, the
        earliest end, the latest licence change (License Updated is one too). Each is one conditional
        update, so the result does not depend on the order or the number of deliveries. The subscription
        is marked parked from the first keeping (``parked_at``) until ``resolve_parked``."""
        if event.subscription_key is None:
            return
        self._mark_parked(event.subscription_key, parked_at)
        for name, keep_if in _PENDING_FIELDS.get(event.effect, ()):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=_item({PARTITION_KEY: f"LIFECYCLE#{event.subscription_key}", SORT_KEY: PENDING_SK}),
                    UpdateExpression="SET #field = :at",
                    ConditionExpression=f"attribute_not_exists(#field) OR #field {keep_if} :at",
                    ExpressionAttributeNames={"#field": name},
                    ExpressionAttributeValues=_item({":at": iso(event.at)}),
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    def _mark_parked(self, subscription_key: str, parked_at: datetime) -> None:
        answer = self._client.update_item(
            TableName=self._table,
            Key=_item({PARTITION_KEY: f"LIFECYCLE#{subscription_key}", SORT_KEY: PENDING_SK}),
            UpdateExpression="SET parked_at = if_not_exists(parked_at, :now)",
            ExpressionAttributeValues=_item({":now": iso(parked_at)}),
            ReturnValues="ALL_NEW",
        )
        first_parked = _plain(answer["Attributes"])
        if first_parked.get("resolved"):
            return  # its company exists already: a late copy, applied by the caller
        self._client.put_item(
            TableName=self._table,
            Item=_item(
                {
                    PARTITION_KEY: PARKED_PK,
                    SORT_KEY: f"{first_parked['parked_at']}#{subscription_key}",
                    "subscription": subscription_key,
                    "parked_at": first_parked["parked_at"],
                }
            ),
        )

    def resolve_parked(self, subscription_key: str) -> None:
        """The subscription's kept notifications have a company now: it is no longer parked."""
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=_item({PARTITION_KEY: f"LIFECYCLE#{subscription_key}", SORT_KEY: PENDING_SK}),
                UpdateExpression="SET resolved = :yes",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=_item({":yes": True}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return  # nothing was ever kept for it
            raise
        parked_at = _plain(answer["Attributes"]).get("parked_at")
        if parked_at is not None:
            self._client.delete_item(
                TableName=self._table,
                Key=_item({PARTITION_KEY: PARKED_PK, SORT_KEY: f"{parked_at}#{subscription_key}"}),
            )

    def parked_since(self, before: datetime) -> list[tuple[str, datetime]]:
        """(subscription key, parked at) of every subscription still parked that was parked before
        ``before``, oldest first: a key-range query of the parked partition, never a scan. A marker whose
        subscription was resolved meanwhile (a keeping racing the sign-up) is removed, not reported."""
        found: list[tuple[str, datetime]] = []
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk < :before",
            ExpressionAttributeValues=_item({":pk": PARKED_PK, ":before": iso(before)}),
            ConsistentRead=True,
        ):
            for raw in page.get("Items", []):
                marker = _plain(raw)
                key = str(marker["subscription"])
                pending = self._get(f"LIFECYCLE#{key}", PENDING_SK)
                if pending is not None and pending.get("resolved"):
                    self._client.delete_item(
                        TableName=self._table,
                        Key=_item({PARTITION_KEY: PARKED_PK, SORT_KEY: str(marker[SORT_KEY])}),
                    )
                    continue
                found.append((key, parse_iso(str(marker["parked_at"]))))
        return found

    def pending_lifecycle(self, subscription_key: str) -> PendingLifecycle | None:
        item = self._get(f"LIFECYCLE#{subscription_key}", PENDING_SK)
        if item is None:
            return None

        def instant(name: str) -> datetime | None:
            value = item.get(name)
            return parse_iso(value) if isinstance(value, str) else None

        return PendingLifecycle(
            activated=instant("activated"),
            ended=instant("ended"),
            entitlements_changed=instant("entitlements_changed"),
        )

    # Registrations -------------------------------------------------------------------------------

    def claim_token(self, token_digest: str, *, until: datetime) -> None:
        """Remember a registration token (by digest) as used; TokenAlreadyUsed if it was."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_item(
                    {
                        PARTITION_KEY: f"TOKEN#{token_digest}",
                        SORT_KEY: TOKEN_SK,
                        TTL_ATTRIBUTE: _epoch_seconds(until),
                    }
                ),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise TokenAlreadyUsed from None
            raise

    def put_registration(self, registration: PendingRegistration) -> None:
        self._client.put_item(
            TableName=self._table,
            Item=self._registration_item(registration),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def get_registration(self, id_digest: str) -> PendingRegistration | None:
        item = self._get(f"REGISTRATION#{id_digest}", REGISTRATION_SK)
        if item is None:
            return None
        licensed = item.get("licensed_agents")
        entitlement_expires = item.get("entitlement_expires")
        return PendingRegistration(
            id_digest=id_digest,
            browser_digest=str(item["browser"]),
            csrf_token=str(item["csrf"]),
            customer=ResolvedCustomer(
                product_code=str(item["product_code"]),
                customer_aws_account_id=item.get("customer_aws_account_id"),
                license_arn=item.get("license_arn"),
                customer_identifier=item.get("customer_identifier"),
            ),
            pricing=PricingModel(item["pricing"]),
            entitlements=Entitlements(
                licensed_agents=int(licensed) if licensed is not None else None,
                expires=parse_iso(entitlement_expires) if entitlement_expires else None,
            ),
            entitlements_fetched=parse_iso(str(item["entitlements_fetched"])),
            expires=parse_iso(str(item["expires"])),
            offer_type=item.get("offer_type"),
            state=RegistrationState(item["state"]),
            company_alias=item.get("company"),
            outcome=item.get("outcome"),
            signup_attempts=int(item.get("signup_attempts", 0)),
        )

    def reserve_signup_attempt(self, id_digest: str, *, limit: int) -> bool:
        """Count one more sign-up attempt on an open registration, atomically, unless ``limit`` attempts
        were counted already (False then: the registration is spent, or no longer open). Counted before
        the sign-up transaction runs, so concurrent submissions cannot get more than ``limit`` answers."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_item({PARTITION_KEY: f"REGISTRATION#{id_digest}", SORT_KEY: REGISTRATION_SK}),
                UpdateExpression="ADD signup_attempts :one",
                ConditionExpression=(
                    "#state = :open AND (attribute_not_exists(signup_attempts) OR signup_attempts < :limit)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=_item(
                    {":one": 1, ":open": RegistrationState.OPEN.value, ":limit": limit}
                ),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def complete_registration(
        self,
        registration: PendingRegistration,
        *,
        browser_digest: str,
        company: Company,
        contact_email: str,
        environment: Environment | None,
        now: datetime,
    ) -> Subscription:
        """Sign-up in one transaction: consume the registration (open, this browser, not expired), create
        the company with its pricing model, claim and store the subscription, claim the buyer account,
        and add the first environment (claiming its account). Raises the rule that failed.

        The buyer account is proven (ResolveCustomer named it), so it takes over another company's
        unverified claim, removing that company's environments there; the environment's own account,
        when it is another one, is claimed unverified (``plan_account_claim``)."""
        alias = company.alias
        subscription = registration.subscription_for(alias)
        buyer_account = registration.customer.customer_aws_account_id
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _item(
                        {PARTITION_KEY: f"REGISTRATION#{registration.id_digest}", SORT_KEY: REGISTRATION_SK}
                    ),
                    "UpdateExpression": "SET #state = :completed, company = :alias, outcome = :outcome",
                    "ConditionExpression": "#state = :open AND browser = :browser AND expires_at > :now",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": _item(
                        {
                            ":completed": RegistrationState.COMPLETED.value,
                            ":open": RegistrationState.OPEN.value,
                            ":alias": alias,
                            ":outcome": "created",
                            ":browser": browser_digest,
                            ":now": _epoch_seconds(now),
                        }
                    ),
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _item(
                        {
                            PARTITION_KEY: company_pk(alias),
                            SORT_KEY: COMPANY_SK,
                            "alias": alias,
                            "name": company.name,
                            "pricing": subscription.pricing.value,
                            "contact_email": contact_email,
                            "created": iso(now),
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
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
        failures: list[Exception] = [
            RegistrationClosed(),
            AliasTaken(alias),
            SubscriptionHeldByAnotherCompany(subscription.key),
            SubscriptionHeldByAnotherCompany(subscription.key),
        ]
        alias_keys = registration.customer.alias_keys()
        actions += self.alias_claims(subscription, alias_keys)
        failures += [SubscriptionHeldByAnotherCompany(key) for key in alias_keys]
        claims = []
        if buyer_account is not None:
            buyer_claim = self.plan_account_claim(
                buyer_account,
                alias,
                now=now,
                proven=True,
                refused=AccountOwnedByAnotherCompany(buyer_account),
            )
            claims.append(buyer_claim)
            actions += [
                *buyer_claim.actions,
                {"Put": {"TableName": self._table, "Item": self._buyer_marker(alias, buyer_account)}},
            ]
            failures += [*buyer_claim.failures, RegistrationClosed()]
        arn = environment.instance_arn.arn if environment is not None else None
        if environment is not None:
            environment_claim = None
            if environment.account_id == buyer_account:
                environment = verified_if(environment, verified=True)
            else:
                environment_claim = self.plan_account_claim(
                    environment.account_id,
                    alias,
                    now=now,
                    proven=environment.verification is None,
                    refused=TenancyError(
                        "instance_arn",
                        "one_account_one_company",
                        f"AWS account {environment.account_id} already belongs to another company",
                    ),
                )
                claims.append(environment_claim)
                environment = verified_if(environment, environment_claim.verified)
            replaced = next((c.released_instances[arn] for c in claims if arn in c.released_instances), None)
            actions += environment_puts(self._table, environment, replacing=replaced)
            failures += [EnvironmentNameTaken(environment.name), InstanceAlreadyRegistered(arn or "")]
            if environment_claim is not None:
                actions += environment_claim.actions
                failures += environment_claim.failures
        for claim in claims:
            released, released_failures = self.released_instance_deletes(claim, keep=arn)
            actions += released
            failures += released_failures
        try:
            self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            for failed, failure in zip(_failed(error), failures, strict=False):
                if failed:
                    raise failure from None
            raise
        return subscription

    def complete_registration_for(
        self, registration: PendingRegistration, *, alias: str, outcome: str
    ) -> None:
        """Record, on a registration created already completed (returning buyer), where it landed."""
        self._client.update_item(
            TableName=self._table,
            Key=_item({PARTITION_KEY: f"REGISTRATION#{registration.id_digest}", SORT_KEY: REGISTRATION_SK}),
            UpdateExpression="SET #state = :completed, company = :alias, outcome = :outcome",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=_item(
                {":completed": RegistrationState.COMPLETED.value, ":alias": alias, ":outcome": outcome}
            ),
        )

    def is_buyer_account(self, alias: str, account_id: str) -> bool:
        """Whether the account bought a subscription of the company (not merely holds an environment)."""
        if self._get(company_pk(alias), f"{BUYER_SK_PREFIX}{account_id}") is not None:
            return True
        return any(
            subscription.identity.customer_aws_account_id == account_id
            for subscription in self.list_subscriptions(alias)
        )

    def mark_buyer_account(self, alias: str, account_id: str) -> None:
        self._client.put_item(TableName=self._table, Item=self._buyer_marker(alias, account_id))

    def _buyer_marker(self, alias: str, account_id: str) -> dict[str, Any]:
        return _item({PARTITION_KEY: company_pk(alias), SORT_KEY: f"{BUYER_SK_PREFIX}{account_id}"})

    def company_contact(self, alias: str) -> str | None:
        item = self._get(company_pk(alias), COMPANY_SK)
        return str(item["contact_email"]) if item and "contact_email" in item else None

    @staticmethod
    def _registration_item(registration: PendingRegistration) -> dict[str, Any]:
        customer = registration.customer
        entitlements = registration.entitlements
        return _item(
            {
                PARTITION_KEY: f"REGISTRATION#{registration.id_digest}",
                SORT_KEY: REGISTRATION_SK,
                "state": registration.state.value,
                "browser": registration.browser_digest,
                "csrf": registration.csrf_token,
                "product_code": customer.product_code,
                "customer_aws_account_id": customer.customer_aws_account_id,
                "license_arn": customer.license_arn,
                "customer_identifier": customer.customer_identifier,
                "pricing": registration.pricing.value,
                "licensed_agents": entitlements.licensed_agents,
                "entitlement_expires": iso(entitlements.expires) if entitlements.expires else None,
                "entitlements_fetched": iso(registration.entitlements_fetched),
                "expires": iso(registration.expires),
                TTL_ATTRIBUTE: _epoch_seconds(registration.expires),
                "offer_type": registration.offer_type,
                "company": registration.company_alias,
                "outcome": registration.outcome,
            }
        )
