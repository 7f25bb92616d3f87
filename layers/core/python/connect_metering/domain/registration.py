"""Registration: a Marketplace buyer -> a company. The rules that need no AWS and no clock.

A registration token is resolved the moment it arrives and is then forgotten: what the product keeps is
a *pending registration* under an opaque random id (single use, expires after ``REGISTRATION_TTL``, well
inside the token's own validity), bound to the browser that brought the token by a random cookie whose
hash is stored, and protected against cross-site posting by a CSRF token. The table stores only
SHA-256 digests of the id, the cookie and the token (the last one to refuse a token posted twice).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from connect_metering.domain.tenancy import (
    ALIAS_PATTERN,
    Entitlements,
    InstanceArn,
    PricingModel,
    Subscription,
    SubscriptionIdentity,
    TenancyError,
    check_buyer_instance,
    legacy_key,
)

# Marketplace does not say how long a registration token lives; the pending registration that replaces
# it must not outlive it, so it is kept short: the sign-up form takes a minute or two to fill in.
REGISTRATION_TTL = timedelta(minutes=30)
# A spent token's digest is kept for longer than any token can be valid, so replaying it is refused.
TOKEN_MEMORY = timedelta(hours=24)
MAX_TOKEN_LENGTH = 4096
# Sign-up submissions that reach the uniqueness checks (alias, account, instance) per pending registration.
# A buyer who mistypes an alias needs one or two more; five is generous for a person and leaves a prober
# five answers per registration token, each of which costs a Marketplace purchase flow to get.
MAX_SIGNUP_ATTEMPTS = 5
FREE_TRIAL = "free-trial"

FORM_FIELDS = ("company_alias", "company_name", "contact_email", "instance_arn")
MAX_LENGTHS = {"company_alias": 32, "company_name": 200, "contact_email": 254, "instance_arn": 200}
EMAIL_PATTERN = re.compile(
    r"[^@\s<>\"',;()\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def digest(secret: str) -> str:
    """SHA-256 hex of a secret (token, registration id, browser cookie): what the table keeps."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def same_secret(candidate: str | None, expected_digest: str) -> bool:
    return candidate is not None and hmac.compare_digest(digest(candidate), expected_digest)


class TokenAlreadyUsed(Exception):
    """The registration token was posted before (a replay, a reload after success, a second tab)."""


class RegistrationClosed(Exception):
    """The pending registration is no longer open: completed, expired, or not this browser's."""


class RegistrationState(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class ResolvedCustomer:
    """What ResolveCustomer said about the token's buyer."""

    product_code: str
    customer_aws_account_id: str | None = None
    license_arn: str | None = None
    customer_identifier: str | None = None

    def identity(self) -> SubscriptionIdentity:
        """Licence identity when Marketplace gave a licence ARN (never with the product code), else legacy."""
        if self.license_arn is not None and self.customer_aws_account_id is not None:
            return SubscriptionIdentity(
                customer_aws_account_id=self.customer_aws_account_id, license_arn=self.license_arn
            )
        return SubscriptionIdentity(
            customer_identifier=self.customer_identifier, product_code=self.product_code
        )

    def alias_keys(self) -> tuple[str, ...]:
        """Other keys the subscription is known by. A licence buyer for whom ResolveCustomer also gave a
        CustomerIdentifier still gets the legacy SNS notifications, which name it by that identifier and
        the product code only."""
        if self.identity().is_legacy or not self.customer_identifier:
            return ()
        return (legacy_key(self.product_code, self.customer_identifier),)


@dataclass(frozen=True, slots=True)
class PendingRegistration:
    """The server-side state of one sign-up, keyed by the digest of its id."""

    id_digest: str
    browser_digest: str
    csrf_token: str
    customer: ResolvedCustomer
    pricing: PricingModel
    entitlements: Entitlements
    entitlements_fetched: datetime
    expires: datetime
    offer_type: str | None = None
    state: RegistrationState = RegistrationState.OPEN
    company_alias: str | None = None
    outcome: str | None = None
    signup_attempts: int = 0

    @property
    def attempts_exhausted(self) -> bool:
        """Spent: every allowed sign-up attempt was used and none created the company."""
        return self.state is RegistrationState.OPEN and self.signup_attempts >= MAX_SIGNUP_ATTEMPTS

    def subscription_for(self, alias: str) -> Subscription:
        return Subscription(
            company_alias=alias,
            identity=self.customer.identity(),
            pricing=self.pricing,
            entitlements=self.entitlements,
        )

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires


@dataclass(frozen=True, slots=True)
class SignupForm:
    """The sign-up form as posted: every value kept (to render it back), errors by field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.errors

    def with_error(self, name: str, message: str) -> SignupForm:
        return SignupForm(self.values, {**self.errors, name: message})


def environment_name_for(instance: InstanceArn) -> str:
    """The name of the first environment given at sign-up: region and the start of the instance id."""
    return f"{instance.region}-{instance.instance_id[:8]}"


def _alias_error(alias: str) -> str | None:
    if not alias:
        return "Choose an alias."
    if ALIAS_PATTERN.fullmatch(alias) is None:
        return "Use 3 to 32 lower-case letters and digits, starting with a letter (for example acme2)."
    return None


def _company_name_error(name: str) -> str | None:
    return None if name else "Enter your company's name."


def _contact_email_error(email: str) -> str | None:
    return None if EMAIL_PATTERN.fullmatch(email) else "Enter an email address such as ops@example.com."


def _instance_arn_error(arn: str) -> str | None:
    """Optional: empty is fine (environments can be added later)."""
    if not arn:
        return None
    try:
        instance = InstanceArn.parse(arn)
    except TenancyError:
        return (
            "Enter an Amazon Connect instance ARN: arn:aws:connect:REGION:ACCOUNT:instance/ID "
            "(or leave it empty and add environments later)."
        )
    try:
        check_buyer_instance(instance)
    except TenancyError as error:
        return error.message
    return None


_FIELD_RULES: dict[str, Callable[[str], str | None]] = {
    "company_alias": _alias_error,
    "company_name": _company_name_error,
    "contact_email": _contact_email_error,
    "instance_arn": _instance_arn_error,
}
# The fields checked for control characters, in the order their errors are listed; the instance ARN's
# own rule already refuses them.
_NO_CONTROL_CHARACTERS = ("company_name", "contact_email", "company_alias")


def validate_signup(raw: dict[str, str]) -> SignupForm:
    """Check each field on its own; the reason goes next to the field. Values are trimmed, never changed
    otherwise, so the form is rendered back exactly as typed. A field gets the first rule it breaks: its
    length, then control characters, then its own rule; errors are listed in that order of rules."""
    values = {name: raw.get(name, "").strip() for name in FORM_FIELDS}
    errors: dict[str, str] = {}
    for name, limit in MAX_LENGTHS.items():
        if len(values[name]) > limit:
            errors[name] = f"Use at most {limit} characters (this has {len(values[name])})."
    for name in _NO_CONTROL_CHARACTERS:
        if name not in errors and _CONTROL.search(values[name]):
            errors[name] = "Remove the control characters."
    for name, rule in _FIELD_RULES.items():
        error = None if name in errors else rule(values[name])
        if error is not None:
            errors[name] = error
    return SignupForm(values, errors)
