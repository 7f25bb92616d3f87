"""Admin Lambda behind the IAM-authenticated HTTP API (the seller's operators and the seller's own app).

    GET    /companies/{alias}/environments           the company's environments
    POST   /companies/{alias}/environments           {"name", "instance_arn"}: add one (201)
    DELETE /companies/{alias}/environments/{name}    remove one (204)
    GET    /companies/{alias}/license                licence information
    POST   /seat-check                               {"instance_arn", "agent_arn"}: may the agent log in?

Errors are JSON ``{"error": rule, "field": field, "message": text}``: 404 unknown company or
environment, 409 a uniqueness rule (one account one company, instance or name taken), 422 malformed.

Every change (adding or removing an environment, whatever its outcome) is audited: a structured log
line and an ``AUDIT#<alias>`` item in the tenancy table naming the caller's IAM principal ARN, the
route, the target and the outcome. The seat check is a question, not a change, and is not audited.
Environments are answered with ``verified`` (whether the account proved the claim; unverified ones are
not billed yet) and the ``forwarder_parameters`` the customer's forwarder stack needs.

Requests and answers are pydantic models checked by Powertools' OpenAPI validation (``enable_validation``):
the body is read as JSON (whatever its Content-Type, and at most 4 KB, before it is parsed), validated
into the route's request model, and every answer is validated against the route's response model, whose
serializers write exactly the JSON this API has always answered (keys sorted, instants as ``iso()``).
What validation refuses is answered with the domain's rule, as before validation moved here.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from functools import lru_cache
from http import HTTPStatus
from typing import Annotated, Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.adapters.audit_table import DynamoAuditLog
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.audit import AuditEntry
from connect_metering.domain.instants import iso
from connect_metering.domain.licence import LicenceStatus, SeatReason
from connect_metering.domain.tenancy import (
    UNVERIFIED_CLAIM_LIFETIME,
    Environment,
    PricingModel,
    TenancyError,
    validate_alias,
)
from connect_metering.observability import logger, metrics, tracer
from connect_metering.services.licence import LicenceService
from connect_metering.settings import AdminSettings, load_settings

# Page views and reads publish no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", "No application metrics to publish")

NOT_FOUND_RULES = frozenset({"company_exists", "environment_exists"})
CONFLICT_RULES = frozenset(
    {"one_account_one_company", "instance_unique", "environment_name_unique", "alias_unique"}
)
MAX_BODY_BYTES = 4096
JSON = "application/json"
NO_STORE = {"Cache-Control": "no-store"}


def now() -> datetime:
    return datetime.now(UTC)


# Wire models -------------------------------------------------------------------------------------
# The admin API's own shapes: what a caller sends and reads. The domain's objects stay free of them.

Instant = Annotated[datetime, PlainSerializer(iso, return_type=str)]
"""An instant as every answer of this API writes it: ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""


class NewEnvironment(BaseModel):
    """``POST /companies/{alias}/environments``. ``instance_arn`` comes first: the domain checks it before
    the name, and the first refused field is the one answered."""

    instance_arn: str
    name: str


class SeatCheckRequest(BaseModel):
    """``POST /seat-check``: may this agent of this instance log in now?"""

    instance_arn: str
    agent_arn: str


class ForwarderParameters(BaseModel):
    """The parameters of the customer's forwarder stack, named as the stack names them."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    seller_event_bus_arn: str = Field(alias="SellerEventBusArn")
    verification_code: str | None = Field(alias="VerificationCode")


class EnvironmentView(BaseModel):
    """An environment, its account claim's state and what its forwarder needs: the seller bus and, until
    the account has proven the claim, the verification code (shown only to the seller's operators)."""

    name: str
    instance_arn: str
    account_id: str
    region: str
    verified: bool
    verified_at: Instant | None
    claim_expires: Instant | None
    forwarder_parameters: ForwarderParameters

    @classmethod
    def of(cls, environment: Environment, seller_event_bus_arn: str) -> EnvironmentView:
        arn = environment.instance_arn
        verification = environment.verification
        return cls(
            name=environment.name,
            instance_arn=arn.arn,
            account_id=arn.account_id,
            region=arn.region,
            verified=environment.is_verified,
            verified_at=verification.verified_at if verification else None,
            claim_expires=(
                verification.claimed_at + UNVERIFIED_CLAIM_LIFETIME
                if verification is not None and not environment.is_verified
                else None
            ),
            forwarder_parameters=ForwarderParameters(
                seller_event_bus_arn=seller_event_bus_arn,
                verification_code=verification.code if verification else None,
            ),
        )


class EnvironmentList(BaseModel):
    company: str
    environments: list[EnvironmentView]


class EnvironmentAdded(BaseModel):
    company: str
    environment: EnvironmentView


class SubscriptionView(BaseModel):
    """One of the company's subscriptions (``domain.licence.SubscriptionSummary``)."""

    model_config = ConfigDict(from_attributes=True)

    key: str
    customer_aws_account_id: str | None
    license_arn: str | None
    product_code: str | None
    pricing: PricingModel
    started: Instant | None
    ended: Instant | None
    licensed_agents: int | None
    expires: Instant | None
    active: bool


class LicenceView(BaseModel):
    """Licence information of a company (``domain.licence.LicenceInfo``)."""

    model_config = ConfigDict(from_attributes=True)

    company_alias: str
    company_name: str
    pricing: PricingModel | None
    customer_aws_account_id: str | None
    product_code: str | None
    license_arn: str | None
    licensed_agents: int | None
    active_agents: int
    renews_or_expires: Instant | None
    status: LicenceStatus
    subscriptions: list[SubscriptionView]


class SeatCheckAnswer(BaseModel):
    """The seat check's decision (``domain.licence.SeatDecision``)."""

    model_config = ConfigDict(from_attributes=True)

    allowed: bool
    reason: SeatReason
    flagged: bool
    message: str
    company_alias: str | None
    licensed_agents: int | None
    active_agents: int | None


class ApiError(BaseModel):
    """Every refusal: the rule (``company_exists``, ``instance_arn_format``, ``json``...), the input it
    concerns and why."""

    error: str
    field: str
    message: str


def _error_response(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {JSON: {"model": ApiError}}}


MALFORMED: dict[int, OpenAPIResponse] = {422: _error_response("malformed: the body, a field or the alias")}
UNKNOWN: dict[int, OpenAPIResponse] = {404: _error_response("unknown company or environment")}
CONFLICT: dict[int, OpenAPIResponse] = {
    409: _error_response("a uniqueness rule: instance or name taken, account of another company")
}


# Body, serialization -----------------------------------------------------------------------------


def _read_body(text: str) -> dict[str, Any]:
    """The JSON body, refused before it is parsed when over the limit. Powertools' validation reads every
    body through this (``json_body_deserializer``), so an oversized body never reaches a model."""
    if len(text) > MAX_BODY_BYTES:
        raise TenancyError("body", "body_size", f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise TenancyError("body", "json", "the body must be a JSON object") from None
    # Only an object: validation would otherwise take the first item of a JSON array as the body.
    if not isinstance(document, dict):
        raise TenancyError("body", "json", "the body must be a JSON object")
    return document


def _to_json(document: Any) -> str:
    """The answers' JSON, byte for byte as this API has always written it: sorted keys, default separators."""
    return json.dumps(document, sort_keys=True)


app = APIGatewayHttpResolver(
    debug=False,
    enable_validation=True,
    serializer=_to_json,
    json_body_deserializer=_read_body,
    # An answer that fails its own model is the seller's bug: raised like any other (API Gateway answers
    # 500), never answered as the caller's 422.
    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
)


def _answer(status: int, body: BaseModel | dict[str, Any]) -> Response[Any]:
    return Response(status_code=status, content_type=JSON, body=body, headers=dict(NO_STORE))


# Services ----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def licence_service() -> LicenceService:
    settings = load_settings(AdminSettings)
    dynamodb = boto3.client("dynamodb")
    return LicenceService(
        tenancy=DynamoTenancyStore(settings.tenancy_table, dynamodb),
        activity=DynamoActivityStore(settings.activity_table, dynamodb),
        clock=lambda: now(),
        silence_timeout_ms=settings.policy.silence_timeout * 1000,
        product_code=settings.product_code,
    )


@lru_cache(maxsize=1)
def audit_log() -> DynamoAuditLog:
    settings = load_settings(AdminSettings)
    return DynamoAuditLog(settings.tenancy_table, boto3.client("dynamodb"))


def _environment_view(environment: Environment) -> EnvironmentView:
    return EnvironmentView.of(environment, load_settings(AdminSettings).agent_events_bus_arn)


# Audit -------------------------------------------------------------------------------------------


def _caller() -> str:
    """The IAM principal API Gateway authenticated (SigV4); the route requires IAM, so it is always set
    when deployed."""
    authorizer = app.current_event.request_context.authorizer
    iam = authorizer.iam if authorizer else None
    return (iam.user_arn if iam else None) or "unknown"


def _audit(alias: str, target: str, outcome: str, status: int) -> None:
    """Log and store who changed what. The log line comes first and always; a failed store is logged as
    an error (with the whole record) rather than failing a change that has already been made."""
    context = app.current_event.request_context
    entry = AuditEntry(
        company_alias=alias,
        at=now(),
        request_id=context.request_id,
        caller=_caller(),
        route=context.route_key or f"{app.current_event.http_method} {app.current_event.path}",
        target=target,
        outcome=outcome,
        status=status,
    )
    audit_log().keep(entry, logger, "admin change")


def _environment_target(name: object, instance_arn: object) -> str:
    return f"environment {name if isinstance(name, str) else '?'} ({instance_arn if isinstance(instance_arn, str) else '?'})"


def _submitted_environment() -> str:
    """The target a POST names, read from the raw body: a refused body may not fit the model (or not
    parse at all, or be over the limit: then it is not read)."""
    try:
        body = app.current_event.json_body
    except Exception:
        return _environment_target(None, None)
    if not isinstance(body, dict):
        return _environment_target(None, None)
    return _environment_target(body.get("name"), body.get("instance_arn"))


def _change_in_progress() -> tuple[str, str] | None:
    """(company alias, target) of the change the current request asks for, or None for a read. Read from
    the route's raw arguments, so it is known even when validation refused the request."""
    route = app.context.get("_route")
    arguments = app.context.get("_route_args") or {}
    if route is None or "alias" not in arguments:
        return None
    if route.func is add_environment:
        return str(arguments["alias"]), _submitted_environment()
    if route.func is remove_environment:
        return str(arguments["alias"]), f"environment {arguments.get('name')}"
    return None


# Routes ------------------------------------------------------------------------------------------


@app.get("/companies/<alias>/environments", responses=UNKNOWN)
def list_environments(alias: str) -> Response[EnvironmentList]:
    environments = licence_service().environments(alias)
    return _answer(
        200, EnvironmentList(company=alias, environments=[_environment_view(e) for e in environments])
    )


@app.post("/companies/<alias>/environments", responses={**MALFORMED, **UNKNOWN, **CONFLICT})
def add_environment(alias: str, request: Annotated[NewEnvironment, Body()]) -> Response[EnvironmentAdded]:
    environment = licence_service().add_environment(alias, request.name, request.instance_arn)
    _audit(alias, _environment_target(environment.name, environment.instance_arn.arn), "added", 201)
    return _answer(201, EnvironmentAdded(company=alias, environment=_environment_view(environment)))


@app.delete("/companies/<alias>/environments/<name>", responses=UNKNOWN)
def remove_environment(alias: str, name: str) -> Response[str]:
    licence_service().remove_environment(alias, name)
    _audit(alias, f"environment {name}", "removed", 204)
    return Response(status_code=204, body="", headers=dict(NO_STORE))


@app.get("/companies/<alias>/license", responses=UNKNOWN)
def license_information(alias: str) -> Response[LicenceView]:
    return _answer(200, LicenceView.model_validate(licence_service().licence(alias)))


@app.post("/seat-check", responses=MALFORMED)
def seat_check(request: Annotated[SeatCheckRequest, Body()]) -> Response[SeatCheckAnswer]:
    decision = licence_service().seat_check(request.instance_arn, request.agent_arn)
    logger.info(
        "seat check",
        extra={
            "company": decision.company_alias,
            "allowed": decision.allowed,
            "reason": decision.reason.value,
        },
    )
    return _answer(200, SeatCheckAnswer.model_validate(decision))


# Refusals ----------------------------------------------------------------------------------------


def _status(error: TenancyError) -> int:
    if error.rule in NOT_FOUND_RULES:
        return 404
    if error.rule in CONFLICT_RULES:
        return 409
    return 422


def on_tenancy_error(error: TenancyError) -> Response[Any]:
    """Every refusal, whether the domain, the body reader or validation refused; a refused change is
    audited with the rule that refused it."""
    status = _status(error)
    change = _change_in_progress()
    if change is not None:
        _audit(*change, error.rule, status)
    return _answer(status, ApiError(error=error.rule, field=error.field, message=error.message).model_dump())


def domain_rule(error: RequestValidationError) -> TenancyError:
    """The domain's rule for what the request models refused, as clients got it before validation moved
    here: a missing or non-object body is ``json``; a seat check without both ARNs as strings is
    ``required``; an instance ARN that is not a string is ``instance_arn_format``; and a name that is not
    a string is the domain's type error, after the company alias (which the domain checks first)."""
    refused = [str(problem["loc"][1]) for problem in error.errors() if len(problem["loc"]) > 1]
    route = app.context.get("_route")
    if not refused:
        return TenancyError("body", "json", "the body must be a JSON object")
    if route is not None and route.func is seat_check:
        return TenancyError("body", "required", "instance_arn and agent_arn are required strings")
    if "instance_arn" in refused:
        return TenancyError("instance_arn", "instance_arn_format", "instance_arn must be a string")
    try:
        validate_alias(str((app.context.get("_route_args") or {}).get("alias")))
    except TenancyError as malformed_alias:
        return malformed_alias
    name = app.current_event.json_body.get("name")
    return TenancyError("name", "string_type", f"Input should be a valid string (got {name!r})")


def on_validation_error(error: RequestValidationError) -> Response[Any]:
    return on_tenancy_error(domain_rule(error))


def on_unexpected_error(error: Exception) -> Response[Any]:
    """A change that crashed is audited as ``error`` (500) too; the error goes on to Lambda as before."""
    change = _change_in_progress()
    if change is not None:
        _audit(*change, "error", 500)
    raise error


@app.not_found
def not_found(_: Exception) -> Response[Any]:
    return _answer(404, {"error": "not_found", "field": "path", "message": "no such admin route"})


app.exception_handler(TenancyError)(on_tenancy_error)
app.exception_handler(RequestValidationError)(on_validation_error)
app.exception_handler(Exception)(on_unexpected_error)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(_as_json(event), context)


def _as_json(event: dict[str, Any]) -> dict[str, Any]:
    """Every body of this API is JSON, whatever Content-Type says (as it was before validation): the
    validator would otherwise parse a form-encoded body as a form, or refuse other types with 415."""
    headers = {
        name: value for name, value in (event.get("headers") or {}).items() if name.lower() != "content-type"
    }
    return {**event, "headers": {**headers, "content-type": JSON}}
