"""The registration store: pending registrations and spent registration tokens on the tenancy table.

    REGISTRATION#<sha256(id)>  #REGISTRATION  a pending registration (TTL ``expires_at``; counts its
                                              sign-up attempts in ``signup_attempts``)
    TOKEN#<sha256(token)>      #USED          a registration token already posted (TTL ``expires_at``)

Sign-up is one TransactWriteItems that consumes the registration and writes the tenancy items it creates:
the alias, the subscription, the buyer account and the first environment are claimed, or nothing is
written. It lives here, the store of the family it serves, with the tenancy family's item shapes
(tenancy_items) and account claims (tenancy_claims) to build the rest of the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from connect_metering.adapters.tenancy_claims import AccountClaims, ClaimPlan, verified_if
from connect_metering.adapters.tenancy_items import (
    alias_claims,
    buyer_marker,
    environment_puts,
    subscription_claim,
    subscription_item,
)
from connect_metering.adapters.tenancy_keys import (
    COMPANY_SK,
    PARTITION_KEY,
    REGISTRATION_SK,
    SORT_KEY,
    TOKEN_SK,
    TTL_ATTRIBUTE,
    company_pk,
    registration_pk,
    token_pk,
)
from connect_metering.adapters.tenancy_table import (
    TenancyTable,
    cancellation_codes,
    condition_failed,
    epoch_seconds,
    item,
    key,
    transaction_cancelled,
)
from connect_metering.domain.instants import iso, parse_iso
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

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass
class _Transaction:
    """Transaction actions, each with the error its failed condition means."""

    actions: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    def add(self, actions: list[dict[str, Any]], failures: list[Exception]) -> None:
        self.actions += actions
        self.failures += failures


def _registration_item(registration: PendingRegistration) -> dict[str, Any]:
    customer = registration.customer
    entitlements = registration.entitlements
    return item(
        {
            PARTITION_KEY: registration_pk(registration.id_digest),
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
            TTL_ATTRIBUTE: epoch_seconds(registration.expires),
            "offer_type": registration.offer_type,
            "company": registration.company_alias,
            "outcome": registration.outcome,
        }
    )


def _registration_from(id_digest: str, stored: dict[str, Any]) -> PendingRegistration:
    licensed = stored.get("licensed_agents")
    entitlement_expires = stored.get("entitlement_expires")
    return PendingRegistration(
        id_digest=id_digest,
        browser_digest=str(stored["browser"]),
        csrf_token=str(stored["csrf"]),
        customer=ResolvedCustomer(
            product_code=str(stored["product_code"]),
            customer_aws_account_id=stored.get("customer_aws_account_id"),
            license_arn=stored.get("license_arn"),
            customer_identifier=stored.get("customer_identifier"),
        ),
        pricing=PricingModel(stored["pricing"]),
        entitlements=Entitlements(
            licensed_agents=int(licensed) if licensed is not None else None,
            expires=parse_iso(entitlement_expires) if entitlement_expires else None,
        ),
        entitlements_fetched=parse_iso(str(stored["entitlements_fetched"])),
        expires=parse_iso(str(stored["expires"])),
        offer_type=stored.get("offer_type"),
        state=RegistrationState(stored["state"]),
        company_alias=stored.get("company"),
        outcome=stored.get("outcome"),
        signup_attempts=int(stored.get("signup_attempts", 0)),
    )


class DynamoRegistrationStore:
    """The registration port on the tenancy table; the client is injected."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = TenancyTable(table_name, client)
        self._claims = AccountClaims(self._table)

    def claim_token(self, token_digest: str, *, until: datetime) -> None:
        """Remember a registration token (by digest) as used; TokenAlreadyUsed if it was."""
        try:
            self._table.client.put_item(
                TableName=self._table.name,
                Item=item(
                    {
                        PARTITION_KEY: token_pk(token_digest),
                        SORT_KEY: TOKEN_SK,
                        TTL_ATTRIBUTE: epoch_seconds(until),
                    }
                ),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if condition_failed(error):
                raise TokenAlreadyUsed from None
            raise

    def put_registration(self, registration: PendingRegistration) -> None:
        self._table.client.put_item(
            TableName=self._table.name,
            Item=_registration_item(registration),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def get_registration(self, id_digest: str) -> PendingRegistration | None:
        stored = self._table.get(registration_pk(id_digest), REGISTRATION_SK)
        return _registration_from(id_digest, stored) if stored is not None else None

    def reserve_signup_attempt(self, id_digest: str, *, limit: int) -> bool:
        """Count one more sign-up attempt on an open registration, atomically, unless ``limit`` attempts
        were counted already (False then: the registration is spent, or no longer open). Counted before
        the sign-up transaction runs, so concurrent submissions cannot get more than ``limit`` answers."""
        try:
            self._table.client.update_item(
                TableName=self._table.name,
                Key=key(registration_pk(id_digest), REGISTRATION_SK),
                UpdateExpression="ADD signup_attempts :one",
                ConditionExpression=(
                    "#state = :open AND (attribute_not_exists(signup_attempts) OR signup_attempts < :limit)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=item(
                    {":one": 1, ":open": RegistrationState.OPEN.value, ":limit": limit}
                ),
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    # Sign-up -------------------------------------------------------------------------------------------

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
        when it is another one, is claimed unverified (``AccountClaims.plan``)."""
        alias = company.alias
        subscription = registration.subscription_for(alias)
        signup = _Transaction()
        signup.add(
            [
                self._consume(registration, browser_digest, alias, now),
                self._company_put(company, subscription, contact_email, now),
                subscription_claim(self._table.name, subscription.key, alias),
                {
                    "Put": {
                        "TableName": self._table.name,
                        "Item": subscription_item(subscription),
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                },
            ],
            [
                RegistrationClosed(),
                AliasTaken(alias),
                SubscriptionHeldByAnotherCompany(subscription.key),
                SubscriptionHeldByAnotherCompany(subscription.key),
            ],
        )
        alias_keys = registration.customer.alias_keys()
        signup.add(
            alias_claims(self._table.name, subscription, alias_keys),
            [SubscriptionHeldByAnotherCompany(alias_key) for alias_key in alias_keys],
        )
        buyer_account = registration.customer.customer_aws_account_id
        claims = [self._claim_buyer(signup, alias, buyer_account, now)] if buyer_account is not None else []
        arn = environment.instance_arn.arn if environment is not None else None
        if environment is not None:
            claims += self._add_environment(signup, environment, claims, buyer_account=buyer_account, now=now)
        for claim in claims:
            signup.add(*self._claims.released_instance_deletes(claim, keep=arn))
        self._transact(signup)
        return subscription

    def _consume(
        self, registration: PendingRegistration, browser_digest: str, alias: str, now: datetime
    ) -> dict[str, Any]:
        """The registration, completed: only while open, bound to this browser, and not expired."""
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": key(registration_pk(registration.id_digest), REGISTRATION_SK),
                "UpdateExpression": "SET #state = :completed, company = :alias, outcome = :outcome",
                "ConditionExpression": "#state = :open AND browser = :browser AND expires_at > :now",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": item(
                    {
                        ":completed": RegistrationState.COMPLETED.value,
                        ":open": RegistrationState.OPEN.value,
                        ":alias": alias,
                        ":outcome": "created",
                        ":browser": browser_digest,
                        ":now": epoch_seconds(now),
                    }
                ),
            }
        }

    def _company_put(
        self, company: Company, subscription: Subscription, contact_email: str, now: datetime
    ) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table.name,
                "Item": item(
                    {
                        PARTITION_KEY: company_pk(company.alias),
                        SORT_KEY: COMPANY_SK,
                        "alias": company.alias,
                        "name": company.name,
                        "pricing": subscription.pricing.value,
                        "contact_email": contact_email,
                        "created": iso(now),
                    }
                ),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _claim_buyer(self, signup: _Transaction, alias: str, buyer_account: str, now: datetime) -> ClaimPlan:
        """Claim the buyer account (proven) and mark it the company's buyer."""
        claim = self._claims.plan(
            buyer_account, alias, now=now, proven=True, refused=AccountOwnedByAnotherCompany(buyer_account)
        )
        signup.add(
            [
                *claim.actions,
                {"Put": {"TableName": self._table.name, "Item": buyer_marker(alias, buyer_account)}},
            ],
            [*claim.failures, RegistrationClosed()],
        )
        return claim

    def _add_environment(
        self,
        signup: _Transaction,
        environment: Environment,
        claims: list[ClaimPlan],
        *,
        buyer_account: str | None,
        now: datetime,
    ) -> list[ClaimPlan]:
        """The first environment's items and, in another account than the buyer's, its account claim
        (returned, so its released instances are deleted too)."""
        alias, arn = environment.company_alias, environment.instance_arn.arn
        environment_claim = None
        if environment.account_id == buyer_account:
            environment = verified_if(environment, verified=True)
        else:
            environment_claim = self._claims.plan(
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
            claims = [*claims, environment_claim]
            environment = verified_if(environment, environment_claim.verified)
        replaced = next((c.released_instances[arn] for c in claims if arn in c.released_instances), None)
        signup.add(
            environment_puts(self._table.name, environment, replacing=replaced),
            [EnvironmentNameTaken(environment.name), InstanceAlreadyRegistered(arn)],
        )
        if environment_claim is None:
            return []
        signup.add(environment_claim.actions, environment_claim.failures)
        return [environment_claim]

    def _transact(self, signup: _Transaction) -> None:
        try:
            self._table.transact(signup.actions)
        except ClientError as error:
            if not transaction_cancelled(error):
                raise
            for code, failure in zip(cancellation_codes(error), signup.failures, strict=False):
                if code == "ConditionalCheckFailed":
                    raise failure from None
            raise
