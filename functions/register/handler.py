"""Registration Lambda behind the public HTTP API: the AWS Marketplace registration POST and the sign-up pages.

    POST /register   form x-amzn-marketplace-token (+ x-amzn-marketplace-offer-type): resolve at once,
                     303 to /signup?id=<opaque registration id> with a browser-binding cookie
    GET  /signup     the sign-up form, or the success page once the registration is completed
    POST /signup     create the company; 303 back to /signup (success page), or the form again with
                     the reasons next to the fields (409 taken, 422 malformed); after
                     MAX_SIGNUP_ATTEMPTS refused attempts the registration is spent (429)

Thin: Powertools routes, reads the forms (``Form`` parameters, ``enable_validation``), logs, traces and
counts; ``RegistrationService`` decides. A form body is checked before the resolver parses it (16 KB,
20 fields, strict UTF-8: ``check_form_body``), and a field the resolver finds missing is answered with the
page the service gives for it, never the resolver's JSON. The registration
token is never logged: the event is not logged, botocore's debug logging (which prints request
bodies) and the resolver's (which prints a route's arguments) are held at WARNING, and only outcome names
reach a log line.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

import boto3
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Form
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from connect_metering.adapters.cognito_admins import CognitoAdministrators
from connect_metering.adapters.marketplace import MarketplaceCustomers, MarketplaceEntitlements
from connect_metering.adapters.meter_queue import SqsFinalMetering
from connect_metering.adapters.tenancy_lifecycle import DynamoLifecycleStore
from connect_metering.adapters.tenancy_registration import DynamoRegistrationStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.counted import count_by
from connect_metering.domain.registration import FREE_TRIAL, REGISTRATION_TTL, RegistrationState
from connect_metering.domain.tenancy import PricingModel
from connect_metering.observability import logger, metrics
from connect_metering.services.console import AdministratorInvitations, Mailer
from connect_metering.services.lifecycle import LifecycleService
from connect_metering.services.registration import (
    Completed,
    Problem,
    RegistrationProblem,
    RegistrationService,
)
from connect_metering.settings import RegistrationSettings, load_settings
from connect_metering.web.forms import BROWSER_COOKIE, cookie_value
from connect_metering.web.page_lambda import html, observed, page_resolver, resolve_page_event, see_other
from connect_metering.web.pages import CONSOLE_HOME, problem_page, security_headers, signup_page, success_page

if TYPE_CHECKING:
    from connect_metering.domain.registration import PendingRegistration

# Neither the resolver nor botocore logs what is typed (POST /register carries the token): page_resolver.
app = page_resolver()

MARKETPLACE_REGION = "us-east-1"
# API Gateway gives an integration 30 s; two quick attempts per Marketplace call fit well inside.
MARKETPLACE_CONFIG = Config(
    connect_timeout=2, read_timeout=4, retries={"mode": "standard", "max_attempts": 2}
)
RETRY_AFTER_SECONDS = "60"
REGISTER, SIGNUP = "/register", "/signup"
# A form field the resolver finds missing is answered as the service answered its empty value before the
# resolver read the forms: no token is an invalid token, no registration id an unknown registration.
MISSING_FIELD_PROBLEMS = {
    "x-amzn-marketplace-token": Problem.INVALID_TOKEN,
    "registration": Problem.REGISTRATION_UNKNOWN,
}


# The offline server delivers console invitations to its mailbox; deployed, Cognito mails them.
mailer: Mailer | None = None


def now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def registration_service() -> RegistrationService:
    """Built once per container: settings, clients and the store."""
    settings = load_settings(RegistrationSettings)
    dynamodb = boto3.client("dynamodb")
    tenancy = DynamoTenancyStore(settings.tenancy_table, dynamodb)
    entitlements = MarketplaceEntitlements(
        boto3.client("marketplace-entitlement", region_name=MARKETPLACE_REGION, config=MARKETPLACE_CONFIG),
        dimension=settings.policy.entitlement_dimension,
    )
    lifecycle = LifecycleService(
        subscriptions=tenancy,
        store=DynamoLifecycleStore(settings.tenancy_table, dynamodb),
        entitlements=entitlements,
        final_metering=SqsFinalMetering(settings.meter_queue_url, boto3.client("sqs")),
        clock=lambda: now(),
        default_product_code=settings.product_code,
    )
    return RegistrationService(
        customers=MarketplaceCustomers(
            boto3.client("meteringmarketplace", region_name=MARKETPLACE_REGION, config=MARKETPLACE_CONFIG)
        ),
        entitlements=entitlements,
        tenancy=tenancy,
        store=DynamoRegistrationStore(settings.tenancy_table, dynamodb),
        lifecycle=lifecycle,
        clock=lambda: now(),
    )


@lru_cache(maxsize=1)
def administrator_invitations() -> AdministratorInvitations | None:
    """The console's invitations, when the stack has a console (``CONSOLE_USER_POOL_ID``)."""
    settings = load_settings(RegistrationSettings)
    if not settings.console_user_pool_id:
        return None
    cognito: Any = boto3.client("cognito-idp")
    return AdministratorInvitations(
        CognitoAdministrators(user_pool_id=settings.console_user_pool_id, client=cognito), mailer
    )


def _invite_first_administrator(alias: str, contact_email: str) -> None:
    """The contact email becomes the company's first console administrator. The company is registered
    whatever happens here: a failure is logged and counted, and the seller can invite by hand."""
    invitations = administrator_invitations()
    if invitations is None:
        return
    try:
        invitations.invite_first_admin(alias, contact_email)
    except Exception as error:
        logger.error("console invitation failed", extra={"company": alias, "error": type(error).__name__})
        metrics.add_metric(name="ConsoleInvitationFailures", unit=MetricUnit.Count, value=1)


def _html(status: int, body: str, **extra_headers: str) -> Response[str]:
    return html(status, body, {**security_headers(), **extra_headers})


def _see_other(location: str, cookies: list[Cookie] | None = None) -> Response[str]:
    return see_other(location, security_headers(), cookies)


def _browser() -> str | None:
    return cookie_value(app.current_event.cookies, BROWSER_COOKIE)


def _count(name: str, dimension: str, value: str) -> None:
    count_by(name, dimension, {value: 1})


@app.post(REGISTER)
def register(
    token: Annotated[str, Form(alias="x-amzn-marketplace-token")],
    offer_type: Annotated[str | None, Form(alias="x-amzn-marketplace-offer-type")] = None,
) -> Response[str]:
    begun = registration_service().begin(token, offer_type=offer_type)
    if begun.pending_error:
        logger.error(
            "kept lifecycle changes not applied on attach",
            extra={"company": begun.company_alias, "error": begun.pending_error},
        )
    _count("Registrations", "Landing", begun.landing.value)
    logger.info(
        "registration token resolved", extra={"landing": begun.landing.value, "company": begun.company_alias}
    )
    cookie = Cookie(
        name=BROWSER_COOKIE,
        value=begun.browser_secret,
        path="/signup",
        # Always: the public entry is HTTPS only, and x-forwarded-proto is not something to trust.
        secure=True,
        http_only=True,
        max_age=int(REGISTRATION_TTL.total_seconds()),
        same_site=SameSite.LAX_MODE,
    )
    return _see_other(f"/signup?id={begun.registration_id}", [cookie])


def _success(registration: PendingRegistration) -> Response[str]:
    alias = registration.company_alias or ""
    company = registration_service().company(alias)
    settings = load_settings(RegistrationSettings)
    return _html(
        200,
        success_page(
            alias=alias,
            company_name=company.name if company else "",
            landing=registration.outcome or "created",
            agent_events_bus_arn=settings.agent_events_bus_arn,
            forwarder_template_url=settings.forwarder_template_url,
            environments=registration_service().environments(alias),
            console_url=CONSOLE_HOME if settings.console_user_pool_id else "",
        ),
    )


@app.get(SIGNUP)
def signup() -> Response[str]:
    registration_id = app.current_event.get_query_string_value("id", "") or ""
    registration = registration_service().show(registration_id, _browser())
    if registration.state is RegistrationState.COMPLETED:
        return _success(registration)
    return _html(
        200,
        signup_page(
            registration_id=registration_id,
            csrf_token=registration.csrf_token,
            buyer=registration.customer,
            contract=registration.pricing is PricingModel.CONTRACT,
            free_trial=registration.offer_type == FREE_TRIAL,
        ),
    )


@app.post(SIGNUP)
def complete_signup(
    registration_id: Annotated[str, Form(alias="registration")],
    csrf_token: Annotated[str | None, Form()] = None,
    company_alias: Annotated[str, Form()] = "",
    company_name: Annotated[str, Form()] = "",
    contact_email: Annotated[str, Form()] = "",
    instance_arn: Annotated[str, Form()] = "",
) -> Response[str]:
    fields = {
        "company_alias": company_alias,
        "company_name": company_name,
        "contact_email": contact_email,
        "instance_arn": instance_arn,
    }
    service = registration_service()
    result = service.complete(registration_id, _browser(), csrf_token, fields)
    if isinstance(result, Completed):
        if result.pending_error:
            logger.error(
                "kept lifecycle changes not applied at sign-up",
                extra={"company": result.company_alias, "error": result.pending_error},
            )
            metrics.add_metric(name="PendingLifecycleFailures", unit=MetricUnit.Count, value=1)
        logger.info("company registered", extra={"company": result.company_alias})
        _invite_first_administrator(result.company_alias, contact_email)
        return _see_other(f"/signup?id={registration_id}")
    rejected = sorted(result.form.errors)
    logger.info("sign-up refused", extra={"status": result.status, "fields": rejected})
    registration = service.show(registration_id, _browser())
    return _html(
        result.status,
        signup_page(
            registration_id=registration_id,
            csrf_token=registration.csrf_token,
            buyer=registration.customer,
            form=result.form,
            contract=registration.pricing is PricingModel.CONTRACT,
            free_trial=registration.offer_type == FREE_TRIAL,
        ),
    )


def on_problem(problem: RegistrationProblem) -> Response[str]:
    _count("RegistrationProblems", "Problem", problem.problem.value)
    logger.warning("registration refused", extra={"problem": problem.problem.value, "detail": problem.detail})
    status, page = problem_page(problem.problem.value)
    if problem.problem is Problem.MARKETPLACE_UNAVAILABLE:
        return _html(status, page, **{"Retry-After": RETRY_AFTER_SECONDS})
    return _html(status, page)


def on_invalid_form(error: RequestValidationError) -> Response[str]:
    """A missing field (the only error ``str`` fields of a checked body can give): the service's page for
    it; anything else the bad-request page, never the resolver's JSON."""
    for field in error.errors():
        location = tuple(field.get("loc", ()))
        problem = MISSING_FIELD_PROBLEMS.get(str(location[-1])) if location[:1] == ("body",) else None
        if problem is not None and field.get("type") == "missing":
            return on_problem(RegistrationProblem(problem))
    logger.warning("form refused", extra={"errors": [(e.get("loc"), e.get("type")) for e in error.errors()]})
    return _html(*problem_page("bad_request"))


@app.not_found
def not_found(_: Exception) -> Response[str]:
    return _html(*problem_page("not_found"))


def on_error(error: Exception) -> Response[str]:
    # The type and the frames only: an exception message could quote input, and input may be the token.
    frames = "".join(traceback.format_tb(error.__traceback__))
    logger.error("registration step failed", extra={"error": type(error).__name__, "frames": frames})
    return _html(*problem_page("internal"))


app.exception_handler(RegistrationProblem)(on_problem)
app.exception_handler(RequestValidationError)(on_invalid_form)
app.exception_handler(Exception)(on_error)


@observed
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    registration_service()  # first, outside the resolver: a missing setting (METER_QUEUE_URL) fails loudly
    return resolve_page_event(
        app,
        event,
        context,
        reads_form=lambda request: request.http_method == "POST" and request.path in (REGISTER, SIGNUP),
        too_large=lambda: _html(*problem_page("too_large")),
        malformed=lambda: _html(*problem_page("bad_request")),
    )
