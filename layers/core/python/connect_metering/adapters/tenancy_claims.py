"""Account claims (``ACCOUNT#<account id>`` / ``#CLAIM``): which company owns an AWS account.

An environment added at sign-up or by the admin API carries a verification code (``verification_code``,
``claimed_at``, ``verified_at`` on both its items) and claims its account *unverified*: the claim blocks
other companies for ``UNVERIFIED_CLAIM_LIFETIME`` only (checked when read, no TTL: the item stays as the
record of who claimed), and never a buyer whose own account it is. A claim is written after reading it,
conditioned on being unchanged since, so a takeover (which also removes the loser's unverified
environments in that account) is decided by the pure ``decide_claim`` and stays atomic.

``AccountClaims`` plans claims as transaction actions for the transactions that need one (adding a
subscription or an environment in the tenancy store, sign-up in the registration store), and verifies
or releases claims on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from connect_metering.adapters.tenancy_items import company_environments
from connect_metering.adapters.tenancy_keys import (
    CLAIM_SK,
    INSTANCE_SK,
    PARTITION_KEY,
    SORT_KEY,
    account_pk,
    company_pk,
    environment_sk,
    instance_pk,
)
from connect_metering.adapters.tenancy_table import (
    TenancyTable,
    item,
    key,
    optional_instant,
    transaction_cancelled,
)
from connect_metering.domain.instants import iso
from connect_metering.domain.tenancy import (
    UNVERIFIED_CLAIM_LIFETIME,
    AccountClaim,
    ClaimDecision,
    Environment,
    decide_claim,
)


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


def _as_read(existing: AccountClaim | None, alias: str, *, proven: bool) -> dict[str, Any]:
    """The condition that the claim is still as read (a concurrent change fails the transaction)."""
    if existing is None:
        # A concurrent first claim by the same company is no conflict (its other environment); an
        # unproven claim must not overwrite one proven meanwhile.
        same = "company = :alias" if proven else "company = :alias AND attribute_exists(unverified_until)"
        return {
            "ConditionExpression": f"attribute_not_exists(pk) OR ({same})",
            "ExpressionAttributeValues": item({":alias": alias}),
        }
    unchanged = "company = :held"
    values: dict[str, Any] = {":held": existing.company}
    if existing.unverified_until is None:
        unchanged += " AND attribute_not_exists(unverified_until)"
    else:
        unchanged += " AND unverified_until = :held_until"
        values[":held_until"] = iso(existing.unverified_until)
    return {"ConditionExpression": unchanged, "ExpressionAttributeValues": item(values)}


class AccountClaims:
    """The account claims of one tenancy table."""

    def __init__(self, table: TenancyTable) -> None:
        self._table = table

    def account_claim(self, account_id: str) -> AccountClaim | None:
        stored = self._table.get(account_pk(account_id), CLAIM_SK)
        if stored is None:
            return None
        return AccountClaim(
            company=str(stored["company"]), unverified_until=optional_instant(stored.get("unverified_until"))
        )

    def owner_of_account(self, account_id: str) -> str | None:
        stored = self._table.get(account_pk(account_id), CLAIM_SK)
        return str(stored["company"]) if stored else None

    def plan(
        self, account_id: str, alias: str, *, now: datetime, proven: bool, refused: Exception
    ) -> ClaimPlan:
        """Read the account's claim and plan the write that claims it for ``alias`` (``proven``: by a
        buyer account or a trusted environment; else unverified from ``now``). Every action is
        conditioned on the claim being as read, so a concurrent change fails the transaction with
        ``refused`` instead of being overwritten."""
        existing = self.account_claim(account_id)
        decision = decide_claim(existing, alias, now=now, proven=proven)
        plan = ClaimPlan(decision, verified=proven or (existing is not None and existing.is_verified))
        plan.actions.append(self._claim_action(plan, account_id, alias, existing, now=now, proven=proven))
        plan.failures.append(refused)
        if decision is ClaimDecision.VERIFY:
            self._verify_environments(plan, alias, account_id, refused)
        if decision is ClaimDecision.TAKE_OVER and existing is not None:
            self._release_environments(plan, existing.company, account_id, refused)
        return plan

    def _claim_action(
        self,
        plan: ClaimPlan,
        account_id: str,
        alias: str,
        existing: AccountClaim | None,
        *,
        now: datetime,
        proven: bool,
    ) -> dict[str, Any]:
        """The claim item's action for the plan's decision (``plan.verified`` adjusted to it)."""
        claim_key = key(account_pk(account_id), CLAIM_SK)
        as_read = _as_read(existing, alias, proven=proven)
        if plan.decision is ClaimDecision.REFUSED:
            # Fails inside the transaction (not before it), so the other rules keep reporting first.
            plan.verified = False
            return {
                "ConditionCheck": {
                    "TableName": self._table.name,
                    "Key": claim_key,
                    "ConditionExpression": "attribute_not_exists(pk) OR company = :company",
                    "ExpressionAttributeValues": item({":company": alias}),
                }
            }
        if plan.decision is ClaimDecision.KEEP:
            return {"ConditionCheck": {"TableName": self._table.name, "Key": claim_key, **as_read}}
        if plan.decision is ClaimDecision.VERIFY:
            return {
                "Update": {
                    "TableName": self._table.name,
                    "Key": claim_key,
                    "UpdateExpression": "REMOVE unverified_until",
                    **as_read,
                }
            }
        # NEW, RENEW, TAKE_OVER: the claim as this company's, written afresh
        plan.verified = proven
        unverified_until = None if proven else iso(now + UNVERIFIED_CLAIM_LIFETIME)
        return {
            "Put": {
                "TableName": self._table.name,
                "Item": item(
                    {
                        PARTITION_KEY: account_pk(account_id),
                        SORT_KEY: CLAIM_SK,
                        "company": alias,
                        "unverified_until": unverified_until,
                    }
                ),
                **as_read,
            }
        }

    def _verify_environments(self, plan: ClaimPlan, alias: str, account_id: str, refused: Exception) -> None:
        """The account is proven the company's (it bought a subscription): its environments there are
        verified too, as of their claim (nothing of theirs was billed before; the carry bills it now)."""
        for environment in company_environments(self._table, alias):
            if environment.account_id != account_id or environment.is_verified:
                continue
            for environment_key in (
                key(company_pk(alias), environment_sk(environment.name)),
                key(instance_pk(environment.instance_arn.arn), INSTANCE_SK),
            ):
                plan.actions.append(
                    {
                        "Update": {
                            "TableName": self._table.name,
                            "Key": environment_key,
                            "UpdateExpression": "SET verified_at = if_not_exists(verified_at, claimed_at)",
                            "ConditionExpression": "attribute_exists(claimed_at)",
                        }
                    }
                )
                plan.failures.append(refused)

    def _release_environments(self, plan: ClaimPlan, loser: str, account_id: str, refused: Exception) -> None:
        """Remove the previous holder's environments in the account: they were never proven, and an
        instance billed to a company that does not own it is what the claim rules exist to prevent."""
        for environment in company_environments(self._table, loser):
            if environment.account_id != account_id:
                continue
            arn = environment.instance_arn.arn
            plan.released_instances[arn] = loser
            plan.actions.append(
                {
                    "Delete": {
                        "TableName": self._table.name,
                        "Key": key(company_pk(loser), environment_sk(environment.name)),
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
                        "TableName": self._table.name,
                        "Key": key(instance_pk(arn), INSTANCE_SK),
                        "ConditionExpression": "company = :loser",
                        "ExpressionAttributeValues": item({":loser": loser}),
                    }
                }
            )
        return actions, [plan.failures[0]] * len(actions)

    def unverified_release(self, alias: str, removed: str, account_id: str) -> list[dict[str, Any]]:
        """The delete of the company's unverified claim on the account when environment ``removed`` is
        its last there (nothing proved the claim; keeping it would let a company hold anyone's account
        by adding and removing an instance); none otherwise."""
        claim = self.account_claim(account_id)
        if claim is None or claim.company != alias or claim.unverified_until is None:
            return []
        if any(
            environment.account_id == account_id and environment.name != removed
            for environment in company_environments(self._table, alias)
        ):
            return []
        return [
            {
                "Delete": {
                    "TableName": self._table.name,
                    "Key": key(account_pk(account_id), CLAIM_SK),
                    "ConditionExpression": "company = :company AND unverified_until = :until",
                    "ExpressionAttributeValues": item(
                        {":company": alias, ":until": iso(claim.unverified_until)}
                    ),
                }
            }
        ]

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
                    "TableName": self._table.name,
                    "Key": key(account_pk(account_id), CLAIM_SK),
                    "UpdateExpression": "REMOVE unverified_until",
                    "ConditionExpression": "company = :company",
                    "ExpressionAttributeValues": item({":company": alias}),
                }
            }
        ]
        # The proving environment first, so the bound below never leaves it out.
        others = sorted(
            company_environments(self._table, alias), key=lambda other: other.name != environment.name
        )
        for other in others:
            if other.account_id != account_id or other.is_verified:
                continue
            for environment_key in (
                key(company_pk(alias), environment_sk(other.name)),
                key(instance_pk(other.instance_arn.arn), INSTANCE_SK),
            ):
                actions.append(
                    {
                        "Update": {
                            "TableName": self._table.name,
                            "Key": environment_key,
                            "UpdateExpression": "SET verified_at = if_not_exists(verified_at, :at)",
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": item({":at": at}),
                        }
                    }
                )
        try:
            # A company with dozens of environments in one account is beyond this bound; the claim and
            # the first of them are verified, and each further one by its own forwarder's next event.
            self._table.transact(actions[:99])
        except ClientError as error:
            if transaction_cancelled(error):
                return False
            raise
        return True
