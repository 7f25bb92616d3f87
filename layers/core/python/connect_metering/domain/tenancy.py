"""Tenancy: companies, their subscriptions and environments, and the rules that bind them.

BILLING.md section 1 (parties) and section 4 (primary subscription). Pure: no boto3, no clock reads;
every instant is a parameter. Uniqueness across requests (alias, account, instance) is enforced by the
tenancy store with conditional writes; the rules that can be decided from values alone live here.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from connect_metering.domain.instants import to_ms

ModelT = TypeVar("ModelT", bound=BaseModel)


class TenancyError(ValueError):
    """A tenancy rule was broken. ``field`` names the input, ``rule`` the rule, ``message`` says why."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = rule
        self.message = message


class AliasTaken(TenancyError):
    def __init__(self, alias: str) -> None:
        super().__init__("company_alias", "alias_unique", f"the alias {alias!r} is already taken")


class AccountOwnedByAnotherCompany(TenancyError):
    def __init__(self, account_id: str) -> None:
        super().__init__(
            "aws_account_id",
            "one_account_one_company",
            f"AWS account {account_id} already belongs to another company",
        )


class PricingModelConflict(TenancyError):
    def __init__(self, existing: PricingModel, requested: PricingModel) -> None:
        super().__init__(
            "pricing",
            "one_pricing_model_per_company",
            f"the company is billed by {existing.value}; a {requested.value} subscription cannot be added",
        )


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


class PricingModel(StrEnum):
    USAGE = "usage"
    CONTRACT = "contract"


# Explicit ASCII classes, never \d or \w: on str patterns those also match non-ASCII digits and letters
# (fullwidth U+FF11, Arabic-Indic U+0663), which AWS identifiers never contain.
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9]{2,31}")
ACCOUNT_ID_PATTERN = re.compile(r"[0-9]{12}")
PARTITIONS = frozenset({"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"})
# Where the product's agent-event bus is: AWS Marketplace sells in the standard partition, and an
# EventBridge rule cannot target a bus of another partition, so a buyer's instance elsewhere (China,
# AWS GovCloud (US)) could never send it an event nor prove its account.
SELLER_PARTITION = "aws"
OTHER_PARTITION_MESSAGE = (
    "This Amazon Connect instance is in the {partition} partition; its events cannot reach this product, "
    "which runs in the standard AWS partition (arn:aws:...). Choose an instance in a standard AWS Region."
)


def check_buyer_instance(instance: InstanceArn, *, field: str = "instance_arn") -> InstanceArn:
    """A buyer's instance as the product can meter it: in the seller's partition."""
    if instance.partition != SELLER_PARTITION:
        raise TenancyError(
            field, "instance_arn_partition", OTHER_PARTITION_MESSAGE.format(partition=instance.partition)
        )
    return instance


REGION_PATTERN = re.compile(r"[a-z]{2}(-gov|-iso|-isob)?-[a-z]+-[0-9]{1,2}")
INSTANCE_ID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Every spelling AWS uses for one licence (BILLING.md section 1). ResolveCustomer and GetEntitlements
# answer with an ARN, global (``::ACCOUNT:license/l-...``, ``::ACCOUNT:license:l-...``) or regional
# (``:us-east-1:ACCOUNT:license:l-...``; botocore's meteringmarketplace LicenseArn pattern admits a region
# and either separator); some aws.agreement-marketplace events write ``aws:license-manager:REGION:ACCOUNT:
# l-...`` (no ``arn:``, no ``license`` segment). Only the licence id names the licence.
LICENSE_ID_PATTERN = r"l-[0-9a-zA-Z]+"
LICENSE_ARN_PATTERN = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:license-manager:[a-z0-9-]*:[0-9]{12}:license[:/]"
    r"|aws[a-zA-Z-]*:license-manager:[a-z0-9-]*:[0-9]{12}:)"
    rf"(?P<licence_id>{LICENSE_ID_PATTERN})"
)
ENVIRONMENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def validate_alias(alias: str) -> str:
    """BILLING.md section 1: lower-case letters and digits, 3-32 chars, starting with a letter."""
    if not isinstance(alias, str) or ALIAS_PATTERN.fullmatch(alias) is None:
        raise TenancyError(
            "company_alias",
            "alias_format",
            f"{alias!r} is not a valid alias: use 3-32 lower-case letters and digits, starting with a letter",
        )
    return alias


def validate_account_id(account_id: str, *, field: str = "aws_account_id") -> str:
    if not isinstance(account_id, str) or ACCOUNT_ID_PATTERN.fullmatch(account_id) is None:
        raise TenancyError(field, "account_id_format", f"{account_id!r} is not a 12-digit AWS account id")
    return account_id


def licence_id(license_arn: object, *, field: str = "license_arn") -> str:
    """The licence id (``l-...``) of any spelling AWS uses for a licence, surrounding blanks ignored: the
    one thing licence identities are compared by (BILLING.md section 1)."""
    found = LICENSE_ARN_PATTERN.fullmatch(license_arn.strip()) if isinstance(license_arn, str) else None
    if found is None:
        raise TenancyError(
            field,
            "license_arn_format",
            f"{license_arn!r} is not a License Manager licence ARN: expected "
            "arn:aws:license-manager::ACCOUNT:license/l-..., arn:aws:license-manager:REGION:ACCOUNT:"
            "license:l-... or aws:license-manager:REGION:ACCOUNT:l-...",
        )
    return found.group("licence_id")


def same_licence(one: str, other: str) -> bool:
    """Whether two licence ARNs, however spelled, name the same licence."""
    return licence_id(one) == licence_id(other)


def trimmed(value: object) -> str | None:
    """A Marketplace identifier without surrounding blanks (AWS's own SNS sample has " X01EXAMPLEX");
    None when it is not a string or nothing is left."""
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _check_license_arn(value: str | None) -> str | None:
    if value is not None:
        licence_id(value)
    return value


def license_key(license_arn: str) -> str:
    """The subscription key of a licence, the same for every spelling of its ARN."""
    return f"license#{licence_id(license_arn)}"


def legacy_key(product_code: str, customer_identifier: str) -> str:
    """The subscription key of a legacy buyer (CustomerIdentifier is unique per product)."""
    return f"customer#{product_code.strip()}#{customer_identifier.strip()}"


Alias = Annotated[str, AfterValidator(validate_alias)]


class InstanceArn(BaseModel):
    """An Amazon Connect instance ARN: arn:PARTITION:connect:REGION:ACCOUNT:instance/INSTANCE_ID."""

    model_config = ConfigDict(frozen=True)

    partition: str
    region: str
    account_id: str
    instance_id: str

    @classmethod
    def parse(cls, arn: str, *, field: str = "instance_arn") -> Self:
        if not isinstance(arn, str):
            raise TenancyError(
                field, "instance_arn_format", f"expected an ARN string, got {type(arn).__name__}"
            )
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "connect":
            raise TenancyError(
                field,
                "instance_arn_format",
                f"{arn!r} is not an Amazon Connect instance ARN (arn:aws:connect:REGION:ACCOUNT:instance/ID)",
            )
        _, partition, _, region, account_id, resource = parts
        if partition not in PARTITIONS:
            raise TenancyError(field, "instance_arn_partition", f"unknown partition {partition!r} in {arn!r}")
        if REGION_PATTERN.fullmatch(region) is None:
            raise TenancyError(field, "instance_arn_region", f"{region!r} in {arn!r} is not an AWS region")
        if ACCOUNT_ID_PATTERN.fullmatch(account_id) is None:
            raise TenancyError(
                field, "instance_arn_account", f"{account_id!r} in {arn!r} is not a 12-digit AWS account id"
            )
        kind, _, instance_id = resource.partition("/")
        if kind != "instance" or INSTANCE_ID_PATTERN.fullmatch(instance_id) is None:
            raise TenancyError(
                field,
                "instance_arn_resource",
                f"{resource!r} in {arn!r} is not instance/<instance id> (a lower-case UUID)",
            )
        return cls(partition=partition, region=region, account_id=account_id, instance_id=instance_id)

    @property
    def arn(self) -> str:
        return f"arn:{self.partition}:connect:{self.region}:{self.account_id}:instance/{self.instance_id}"

    def __str__(self) -> str:
        return self.arn


def instance_arn_of_agent(agent_arn: str) -> str | None:
    """The instance ARN an agent ARN belongs to (``<instance arn>/agent/<id>``), or None if malformed."""
    instance, separator, agent_id = agent_arn.rpartition("/agent/")
    if not separator or not agent_id or "/" in agent_id:
        return None
    return instance


class Company(BaseModel):
    """The seller's customer. The alias is immutable once created (the model is frozen)."""

    model_config = ConfigDict(frozen=True)

    alias: Alias
    name: str = Field(default="", max_length=200)

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        return value.strip()


class SubscriptionIdentity(BaseModel):
    """Who AWS Marketplace bills. Current API: CustomerAWSAccountId + LicenseArn; legacy: CustomerIdentifier
    (+ the product code). A UsageRecord never carries both LicenseArn and ProductCode (BILLING.md 1)."""

    model_config = ConfigDict(frozen=True)

    customer_aws_account_id: str | None = None
    license_arn: str | None = None
    customer_identifier: str | None = None
    product_code: str | None = None

    @field_validator(
        "customer_aws_account_id", "license_arn", "customer_identifier", "product_code", mode="before"
    )
    @classmethod
    def _trim(cls, value: object) -> object:
        return trimmed(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_identity(self) -> Self:
        if self.license_arn is not None or self.customer_aws_account_id is not None:
            if self.license_arn is None or self.customer_aws_account_id is None:
                raise TenancyError(
                    "license_arn",
                    "identity_complete",
                    "the current identity needs both customer_aws_account_id and license_arn",
                )
            validate_account_id(self.customer_aws_account_id, field="customer_aws_account_id")
            _check_license_arn(self.license_arn)
        elif not self.customer_identifier:
            raise TenancyError(
                "customer_identifier",
                "identity_required",
                "a subscription needs customer_aws_account_id + license_arn, or a legacy customer_identifier",
            )
        return self

    @property
    def is_legacy(self) -> bool:
        return self.license_arn is None

    @cached_property  # frozen: computed once (the metering core asks for it per billed piece)
    def key(self) -> str:
        """Stable, unique key of the subscription: its licence id (one licence, however AWS spells its ARN),
        else the legacy customer identifier with the product code."""
        if self.license_arn is not None:
            return license_key(self.license_arn)
        return legacy_key(self.product_code or "", self.customer_identifier or "")

    @property
    def tie_breaker(self) -> str:
        """BILLING.md section 9: ties on ``started`` compare LicenseArn if present, else CustomerIdentifier."""
        return self.license_arn if self.license_arn is not None else (self.customer_identifier or "")

    def usage_record_identity(self) -> dict[str, str]:
        """The identity fields of a BatchMeterUsage UsageRecord."""
        if self.license_arn is not None and self.customer_aws_account_id is not None:
            return {"CustomerAWSAccountId": self.customer_aws_account_id, "LicenseArn": self.license_arn}
        return {"CustomerIdentifier": self.customer_identifier or ""}


class Entitlements(BaseModel):
    """Contract entitlements from GetEntitlements (BILLING.md section 7)."""

    model_config = ConfigDict(frozen=True)

    licensed_agents: int | None = Field(default=None, ge=0)
    expires: datetime | None = None


class Subscription(BaseModel):
    """One AWS Marketplace purchase held by a company; active over [started, ended)."""

    model_config = ConfigDict(frozen=True)

    company_alias: Alias
    identity: SubscriptionIdentity
    pricing: PricingModel
    started: datetime | None = None
    ended: datetime | None = None
    entitlements: Entitlements = Entitlements()

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        for name in ("started", "ended"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise TenancyError(name, "utc_instant", f"{name} must be a timezone-aware UTC instant")
        if self.started is not None and self.ended is not None and self.ended < self.started:
            raise TenancyError("ended", "ended_after_started", "a subscription cannot end before it starts")
        return self

    @property
    def key(self) -> str:
        return self.identity.key

    @property
    def is_pending(self) -> bool:
        """Registered but not yet activated by subscribe-success / License Updated."""
        return self.started is None

    def is_active_at(self, instant: datetime) -> bool:
        """Active from ``started`` until ``ended`` (half-open); an expired contract is not active."""
        if self.started is None or instant < self.started:
            return False
        if self.ended is not None and instant >= self.ended:
            return False
        expires = self.entitlements.expires
        return not (self.pricing is PricingModel.CONTRACT and expires is not None and instant >= expires)

    def active_until(self) -> datetime | None:
        """The instant the subscription stops being active (end or contract expiry), None if open-ended."""
        limits = [self.ended]
        if self.pricing is PricingModel.CONTRACT:
            limits.append(self.entitlements.expires)
        present = [limit for limit in limits if limit is not None]
        return min(present) if present else None

    def primary_order(self) -> tuple[int, str]:
        """Sort key for choosing the primary: earliest ``started``, then the identity tie breaker."""
        if self.started is None:
            raise TenancyError("started", "activated", "a pending subscription has no primary order")
        return (to_ms(self.started), self.identity.tie_breaker)


# An account claim nobody proved stops blocking anyone this long after it was made.
UNVERIFIED_CLAIM_LIFETIME = timedelta(days=7)
# The forwarder attaches the code to each event's ``resources`` in this form: EventBridge Pipes accepts
# only ARN-shaped resources, and the cross-account rule forwards them unchanged.
VERIFICATION_RESOURCE_PREFIX = "arn:aws:connect-metering:::verification/"
VERIFICATION_CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,64}")
# Pipes takes at most 10 resources per event; more than that is not a forwarder's envelope.
MAX_RESOURCES_READ = 10


def new_verification_code() -> str:
    """128 random bits, URL-safe: pasted by the customer as a CloudFormation parameter."""
    return secrets.token_urlsafe(16)


def verification_resource(code: str) -> str:
    return f"{VERIFICATION_RESOURCE_PREFIX}{code}"


def carries_code(resources: Iterable[str], code: str) -> bool:
    """Whether an envelope's ``resources`` carry ``code``; every candidate is compared in constant time,
    so the answer's timing says nothing about how much of a guess was right."""
    expected = verification_resource(code).encode()
    found = False
    for number, resource in enumerate(resources):
        if number >= MAX_RESOURCES_READ:
            break
        found |= hmac.compare_digest(resource.encode(), expected)
    return found


class EnvironmentVerification(BaseModel):
    """An environment whose account claim must be proven: the code its forwarder sends, when the claim
    was made (it expires ``UNVERIFIED_CLAIM_LIFETIME`` later) and when the account proved it, if yet."""

    model_config = ConfigDict(frozen=True)

    code: str
    claimed_at: datetime
    verified_at: datetime | None = None

    @field_validator("code")
    @classmethod
    def _valid_code(cls, value: str) -> str:
        if VERIFICATION_CODE_PATTERN.fullmatch(value) is None:
            raise TenancyError("verification_code", "verification_code_format", "malformed verification code")
        return value

    @classmethod
    def new(cls, claimed_at: datetime) -> Self:
        return cls(code=new_verification_code(), claimed_at=claimed_at)


class AccountClaim(BaseModel):
    """Which company an AWS account belongs to (BILLING.md section 1). ``unverified_until`` is set while
    nobody proved the claim: the buyer account ResolveCustomer named, or an agent event from the account
    carrying the environment's verification code, proves it; until then it blocks other companies only
    until that instant, and never a company that proves the account its own."""

    model_config = ConfigDict(frozen=True)

    company: str
    unverified_until: datetime | None = None

    @property
    def is_verified(self) -> bool:
        return self.unverified_until is None

    def blocks(self, alias: str, *, now: datetime, proven: bool) -> bool:
        """Whether this claim keeps company ``alias`` from claiming the account at ``now``; ``proven``
        when ``alias`` has shown the account is its own."""
        if self.company == alias:
            return False
        if self.unverified_until is None:
            return True
        return not proven and now < self.unverified_until


class ClaimDecision(StrEnum):
    """What claiming an account does, given the claim stored now (see ``decide_claim``)."""

    NEW = "new"  # nobody held it
    KEEP = "keep"  # already this company's, nothing to change
    VERIFY = "verify"  # this company's, unverified, now proven
    RENEW = "renew"  # this company's, unverified and expired: a fresh unverified claim
    TAKE_OVER = "take_over"  # another company's unverified claim that no longer blocks this one
    REFUSED = "refused"  # another company's claim that still blocks (one account, one company)


def decide_claim(existing: AccountClaim | None, alias: str, *, now: datetime, proven: bool) -> ClaimDecision:
    if existing is None:
        return ClaimDecision.NEW
    if existing.company != alias:
        return (
            ClaimDecision.REFUSED
            if existing.blocks(alias, now=now, proven=proven)
            else ClaimDecision.TAKE_OVER
        )
    if existing.is_verified:
        return ClaimDecision.KEEP
    if proven:
        return ClaimDecision.VERIFY
    return ClaimDecision.RENEW if now >= existing.unverified_until else ClaimDecision.KEEP  # type: ignore[operator]


class Environment(BaseModel):
    """One Amazon Connect instance owned by one company (any account, any region).

    ``verification`` is None for an environment that needs no proof (the seller's own registry, and
    those registered before verification existed); else its account claim is proven only once an agent
    event carrying its code arrives from the account, and it is metered from then on."""

    model_config = ConfigDict(frozen=True)

    company_alias: Alias
    name: str
    instance_arn: InstanceArn
    verification: EnvironmentVerification | None = None

    @property
    def is_verified(self) -> bool:
        return self.verification is None or self.verification.verified_at is not None

    @field_validator("instance_arn", mode="before")
    @classmethod
    def _parse_arn(cls, value: object) -> object:
        return InstanceArn.parse(value) if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if ENVIRONMENT_NAME_PATTERN.fullmatch(value) is None:
            raise TenancyError(
                "environment_name",
                "environment_name_format",
                f"{value!r} is not a valid environment name: 1-64 letters, digits, '.', '_' or '-'",
            )
        return value

    @property
    def account_id(self) -> str:
        return self.instance_arn.account_id


def build(model: type[ModelT], **fields: object) -> ModelT:
    """Validate ``fields`` into ``model``; any failure is a TenancyError naming the field and the rule."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, TenancyError):
            raise cause from None
        field = ".".join(str(part) for part in first["loc"]) or model.__name__
        raise TenancyError(field, first["type"], f"{first['msg']} (got {first.get('input')!r})") from None


def ensure_pricing_compatible(existing: Iterable[Subscription], requested: PricingModel) -> None:
    """BILLING.md section 1: a company's subscriptions share one pricing model."""
    for subscription in existing:
        if subscription.pricing is not requested:
            raise PricingModelConflict(subscription.pricing, requested)


def primary_subscription(subscriptions: Iterable[Subscription], instant: datetime) -> Subscription | None:
    """BILLING.md section 4: the active subscription with the earliest ``started`` (ties: smaller identity)."""
    active = [subscription for subscription in subscriptions if subscription.is_active_at(instant)]
    return min(active, key=Subscription.primary_order) if active else None
