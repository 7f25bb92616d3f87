"""Registration use case: a registration token from AWS Marketplace -> a company (or the buyer's own).

``begin`` runs on the browser POST from Marketplace: the token is resolved at once (ResolveCustomer),
the buyer's entitlements are read (GetEntitlements, all pages), the token is remembered as spent (by
digest) and forgotten. Then, by who the buyer is:
- a subscription already registered: the registration lands on its company (nothing is duplicated);
- a new subscription of an account that is already a company's buyer account (renewal, second
  product): it is attached to that company, unless the pricing models differ;
- an account that belongs to another company only through an environment: refused if that company
  proved the account its own; an unverified claim never blocks the buyer, who signs up and takes the
  account over (the other company's unverified environments there are removed);
- anyone else: an open pending registration, filled in by the sign-up form.

``complete`` runs on the sign-up form: it checks the browser binding and the CSRF token, validates the
fields, and creates everything in one transaction. Changes Marketplace announced before the buyer
finished (an activation, an end) are applied right after.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from connect_metering.domain.lifecycle import pricing_for
from connect_metering.domain.registration import (
    FREE_TRIAL,
    MAX_SIGNUP_ATTEMPTS,
    MAX_TOKEN_LENGTH,
    REGISTRATION_TTL,
    TOKEN_MEMORY,
    PendingRegistration,
    RegistrationClosed,
    RegistrationState,
    ResolvedCustomer,
    SignupForm,
    TokenAlreadyUsed,
    digest,
    environment_name_for,
    new_secret,
    same_secret,
    validate_signup,
)
from connect_metering.domain.tenancy import (
    AccountClaim,
    AccountOwnedByAnotherCompany,
    AliasTaken,
    Company,
    Entitlements,
    Environment,
    EnvironmentVerification,
    InstanceArn,
    PricingModelConflict,
    Subscription,
    SubscriptionHeldByAnotherCompany,
    TenancyError,
)
from connect_metering.services.ports import (
    ExpiredRegistrationToken,
    InvalidRegistrationToken,
    MarketplaceUnavailable,
)


class CustomerResolver(Protocol):
    def resolve(self, token: str) -> ResolvedCustomer: ...


class EntitlementSource(Protocol):
    def entitlements_for(
        self, *, product_code: str, license_arn: str | None = None, customer_identifier: str | None = None
    ) -> Entitlements | None: ...


class PendingApplier(Protocol):
    def apply_pending(
        self,
        alias: str,
        subscription_key: str,
        *,
        entitlements_known_at: datetime,
        product_code: str | None,
        alias_keys: Sequence[str] = (),
    ) -> Subscription | None: ...


class TenancyRecords(Protocol):
    """What registration reads and attaches of the tenancy (the tenancy store)."""

    def owner_of_subscription(self, subscription_key: str) -> str | None: ...

    def account_claim(self, account_id: str) -> AccountClaim | None: ...

    def is_buyer_account(self, alias: str, account_id: str) -> bool: ...

    def add_subscription(self, subscription: Subscription, *, alias_keys: Sequence[str] = ()) -> None: ...

    def mark_buyer_account(self, alias: str, account_id: str) -> None: ...

    def get_company(self, alias: str) -> Company | None: ...

    def list_environments(self, alias: str) -> list[Environment]: ...


class RegistrationStore(Protocol):
    """Tokens, pending registrations, and sign-up (which creates the company in one transaction)."""

    def claim_token(self, token_digest: str, *, until: datetime) -> None: ...

    def put_registration(self, registration: PendingRegistration) -> None: ...

    def get_registration(self, id_digest: str) -> PendingRegistration | None: ...

    def reserve_signup_attempt(self, id_digest: str, *, limit: int) -> bool: ...

    def complete_registration(
        self,
        registration: PendingRegistration,
        *,
        browser_digest: str,
        company: Company,
        contact_email: str,
        environment: Environment | None,
        now: datetime,
    ) -> Subscription: ...


class Problem(StrEnum):
    """Why a registration step cannot go on; the page says what happened and what to do."""

    INVALID_TOKEN = "invalid_token"  # noqa: S105 (a problem name, not a secret)
    EXPIRED_TOKEN = "expired_token"  # noqa: S105 (a problem name, not a secret)
    TOKEN_REUSED = "token_reused"  # noqa: S105 (a problem name, not a secret)
    MARKETPLACE_UNAVAILABLE = "marketplace_unavailable"
    ACCOUNT_OWNED = "account_owned"
    PRICING_CONFLICT = "pricing_conflict"
    SUBSCRIPTION_TAKEN = "subscription_taken"
    REGISTRATION_UNKNOWN = "registration_unknown"
    REGISTRATION_EXPIRED = "registration_expired"
    WRONG_BROWSER = "wrong_browser"
    CSRF = "csrf"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"


class RegistrationProblem(Exception):
    def __init__(self, problem: Problem, detail: str = "") -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.detail = detail


ALIAS_TAKEN_MESSAGE = "This alias is already taken. Choose another one."
BUYER_ACCOUNT_OWNED_MESSAGE = (
    "Your AWS account already belongs to another company registered with us. Each AWS account "
    "belongs to one company; contact us if this is yours."
)
INSTANCE_REFUSED_MESSAGE = (
    "This Amazon Connect instance cannot be added to your company. Check the ARN, or leave the field "
    "empty to finish sign-up and contact us about this instance."
)


class Landing(StrEnum):
    SIGNUP = "signup"
    RETURNING = "returning"
    ATTACHED = "attached"
    CREATED = "created"


@dataclass(frozen=True, slots=True)
class Begun:
    """Where the browser goes next: the registration id (for the URL) and the browser secret (cookie)."""

    registration_id: str
    browser_secret: str
    landing: Landing
    company_alias: str | None = None
    pending_error: str | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    company_alias: str
    pending_applied: bool = False
    pending_error: str | None = None


@dataclass(frozen=True, slots=True)
class FormRejected:
    form: SignupForm
    status: int


def _token_is_plausible(token: str) -> bool:
    return 0 < len(token) <= MAX_TOKEN_LENGTH and token.isprintable() and not token.isspace()


class RegistrationService:
    def __init__(
        self,
        *,
        customers: CustomerResolver,
        entitlements: EntitlementSource,
        tenancy: TenancyRecords,
        store: RegistrationStore,
        lifecycle: PendingApplier,
        clock: Callable[[], datetime],
    ) -> None:
        self._customers = customers
        self._entitlements = entitlements
        self._tenancy = tenancy
        self._store = store
        self._lifecycle = lifecycle
        self._clock = clock

    # POST /register ------------------------------------------------------------------------------

    def begin(self, token: str, *, offer_type: str | None = None) -> Begun:
        if not _token_is_plausible(token):
            raise RegistrationProblem(Problem.INVALID_TOKEN)
        try:
            customer = self._customers.resolve(token)
            found = self._entitlements.entitlements_for(
                product_code=customer.product_code,
                license_arn=customer.license_arn,
                customer_identifier=None if customer.license_arn else customer.customer_identifier,
            )
        except InvalidRegistrationToken:
            raise RegistrationProblem(Problem.INVALID_TOKEN) from None
        except ExpiredRegistrationToken:
            raise RegistrationProblem(Problem.EXPIRED_TOKEN) from None
        except MarketplaceUnavailable as error:
            raise RegistrationProblem(Problem.MARKETPLACE_UNAVAILABLE, error.code) from None
        now = self._clock()
        try:
            self._store.claim_token(digest(token), until=now + TOKEN_MEMORY)
        except TokenAlreadyUsed:
            raise RegistrationProblem(Problem.TOKEN_REUSED) from None
        registration_id, browser_secret = new_secret(), new_secret()
        registration = PendingRegistration(
            id_digest=digest(registration_id),
            browser_digest=digest(browser_secret),
            csrf_token=new_secret(),
            customer=customer,
            pricing=pricing_for(found),
            entitlements=found or Entitlements(),
            entitlements_fetched=now,
            expires=now + REGISTRATION_TTL,
            offer_type=FREE_TRIAL if offer_type == FREE_TRIAL else None,
        )
        landing, alias, pending_error = self._land(registration)
        if alias is not None:
            registration = replace(
                registration, state=RegistrationState.COMPLETED, company_alias=alias, outcome=landing.value
            )
        self._store.put_registration(registration)
        return Begun(registration_id, browser_secret, landing, alias, pending_error)

    def _land(self, registration: PendingRegistration) -> tuple[Landing, str | None, str | None]:
        customer = registration.customer
        key = customer.identity().key
        owner = self._tenancy.owner_of_subscription(key)
        if owner is not None:
            return Landing.RETURNING, owner, None
        account = customer.customer_aws_account_id
        claim = self._tenancy.account_claim(account) if account else None
        if account is None or claim is None:
            return Landing.SIGNUP, None, None
        account_owner = claim.company
        if not self._tenancy.is_buyer_account(account_owner, account):
            if not claim.is_verified:
                return Landing.SIGNUP, None, None  # the buyer's proof beats an unproven claim
            raise RegistrationProblem(Problem.ACCOUNT_OWNED)
        try:
            self._tenancy.add_subscription(
                registration.subscription_for(account_owner), alias_keys=customer.alias_keys()
            )
        except PricingModelConflict as conflict:
            raise RegistrationProblem(Problem.PRICING_CONFLICT, conflict.message) from None
        except SubscriptionHeldByAnotherCompany:
            raise RegistrationProblem(Problem.SUBSCRIPTION_TAKEN) from None
        except AccountOwnedByAnotherCompany:
            raise RegistrationProblem(Problem.ACCOUNT_OWNED) from None
        self._tenancy.mark_buyer_account(account_owner, account)
        try:
            self._lifecycle.apply_pending(
                account_owner,
                key,
                entitlements_known_at=registration.entitlements_fetched,
                product_code=customer.product_code,
                alias_keys=customer.alias_keys(),
            )
        except Exception as error:  # attached already; the kept change is reported for a redrive
            return Landing.ATTACHED, account_owner, type(error).__name__
        return Landing.ATTACHED, account_owner, None

    # GET /signup ---------------------------------------------------------------------------------

    def show(self, registration_id: str | None, browser_secret: str | None) -> PendingRegistration:
        """The registration behind a sign-up URL, for this browser only."""
        registration = self._registration(registration_id)
        if not same_secret(browser_secret, registration.browser_digest):
            raise RegistrationProblem(Problem.WRONG_BROWSER)
        if registration.is_expired(self._clock()):
            raise RegistrationProblem(Problem.REGISTRATION_EXPIRED)
        if registration.attempts_exhausted:
            raise RegistrationProblem(Problem.ATTEMPTS_EXHAUSTED)
        return registration

    def company(self, alias: str) -> Company | None:
        return self._tenancy.get_company(alias)

    def environments(self, alias: str) -> list[Environment]:
        """The company's environments with their verification state (the success page lists them)."""
        return sorted(self._tenancy.list_environments(alias), key=lambda environment: environment.name)

    # POST /signup --------------------------------------------------------------------------------

    def complete(
        self,
        registration_id: str | None,
        browser_secret: str | None,
        csrf_token: str | None,
        fields: Mapping[str, str],
    ) -> Completed | FormRejected:
        registration = self.show(registration_id, browser_secret)
        if csrf_token is None or not same_secret(csrf_token, digest(registration.csrf_token)):
            raise RegistrationProblem(Problem.CSRF)
        if registration.state is RegistrationState.COMPLETED and registration.company_alias:
            return Completed(registration.company_alias)  # a second click on "Create": same result
        form = validate_signup(dict(fields))
        if not form.valid:
            return FormRejected(form, 422)
        values = form.values
        company = Company(alias=values["company_alias"], name=values["company_name"])
        environment = self._environment_named(company, values["instance_arn"])
        if not self._store.reserve_signup_attempt(registration.id_digest, limit=MAX_SIGNUP_ATTEMPTS):
            return self._after_race(registration_id, browser_secret)
        created = self._create(registration, form, company, environment, registration_id, browser_secret)
        if not isinstance(created, Subscription):
            return created
        return self._apply_pending(registration, company.alias, created)

    def _environment_named(self, company: Company, instance_arn: str) -> Environment | None:
        """The environment the sign-up form names (optional), claimed now and not yet verified."""
        if not instance_arn:
            return None
        instance = InstanceArn.parse(instance_arn)
        return Environment(
            company_alias=company.alias,
            name=environment_name_for(instance),
            instance_arn=instance,
            verification=EnvironmentVerification.new(claimed_at=self._clock()),
        )

    def _create(
        self,
        registration: PendingRegistration,
        form: SignupForm,
        company: Company,
        environment: Environment | None,
        registration_id: str | None,
        browser_secret: str | None,
    ) -> Subscription | Completed | FormRejected:
        """The company, its subscription (and environment) stored; or why not, as the page to show."""
        try:
            return self._store.complete_registration(
                registration,
                browser_digest=registration.browser_digest,
                company=company,
                contact_email=form.values["contact_email"],
                environment=environment,
                now=self._clock(),
            )
        except AliasTaken:
            # Specific on purpose: aliases are public (invoices, support) and the buyer must pick another.
            return self._refused(registration, form.with_error("company_alias", ALIAS_TAKEN_MESSAGE))
        except AccountOwnedByAnotherCompany:
            # The buyer's own account, named by Marketplace rather than typed: nothing to probe here.
            return self._refused(registration, form.with_error("form", BUYER_ACCOUNT_OWNED_MESSAGE))
        except SubscriptionHeldByAnotherCompany:
            raise RegistrationProblem(Problem.SUBSCRIPTION_TAKEN) from None
        except TenancyError as error:
            if error.field != "instance_arn":
                raise
            # One message whether the instance or its account is taken: no oracle for who uses what.
            return self._refused(registration, form.with_error("instance_arn", INSTANCE_REFUSED_MESSAGE))
        except RegistrationClosed:
            return self._after_race(registration_id, browser_secret)

    def _apply_pending(
        self, registration: PendingRegistration, alias: str, subscription: Subscription
    ) -> Completed:
        """Lifecycle changes Marketplace sent before sign-up completed, applied to the new subscription."""
        try:
            applied = self._lifecycle.apply_pending(
                alias,
                subscription.key,
                entitlements_known_at=registration.entitlements_fetched,
                product_code=registration.customer.product_code,
                alias_keys=registration.customer.alias_keys(),
            )
        except Exception as error:  # the company exists; the kept change is reported for a redrive
            return Completed(alias, pending_error=type(error).__name__)
        return Completed(alias, pending_applied=applied is not None)

    @staticmethod
    def _refused(registration: PendingRegistration, form: SignupForm) -> FormRejected:
        """A uniqueness rule refused the sign-up; the attempt that was counted may have been the last."""
        if registration.signup_attempts + 1 >= MAX_SIGNUP_ATTEMPTS:
            raise RegistrationProblem(Problem.ATTEMPTS_EXHAUSTED)
        return FormRejected(form, 409)

    def _after_race(self, registration_id: str | None, browser_secret: str | None) -> Completed:
        """The registration was consumed meanwhile (a double submit) or has just expired."""
        registration = self.show(registration_id, browser_secret)
        if registration.state is RegistrationState.COMPLETED and registration.company_alias:
            return Completed(registration.company_alias)
        raise RegistrationProblem(Problem.REGISTRATION_EXPIRED)

    def _registration(self, registration_id: str | None) -> PendingRegistration:
        if not registration_id or len(registration_id) > 128:
            raise RegistrationProblem(Problem.REGISTRATION_UNKNOWN)
        registration = self._store.get_registration(digest(registration_id))
        if registration is None:
            raise RegistrationProblem(Problem.REGISTRATION_UNKNOWN)
        return registration
