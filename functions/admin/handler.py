"""Admin Lambda behind the IAM-authenticated HTTP API (the seller's operators and the seller's own app).

    GET    /companies/{alias}/environments           the company's environments
    POST   /companies/{alias}/environments           {"name", "instance_arn"}: add one (201)
    DELETE /companies/{alias}/environments/{name}    remove one (204)
    GET    /companies/{alias}/license                licence information
    POST   /seat-check                               {"instance_arn", "agent_arn"}: may the agent log in?

Errors are JSON ``{"error": rule, "field": field, "message": text}``: 404 unknown company or
environment, 409 a uniqueness rule (one account one company, instance or name taken), 422 malformed.
Environments are answered with ``verified`` (whether the account proved the claim; unverified ones are
not billed yet) and the ``forwarder_parameters`` the customer's forwarder stack needs.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from datetime import UTC, datetime
from enum import Enum
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.adapters.tenancy_table import DynamoTenancyStore
from connect_metering.domain.instants import iso
from connect_metering.domain.tenancy import UNVERIFIED_CLAIM_LIFETIME, Environment, TenancyError
from connect_metering.services.licence import LicenceService
from connect_metering.settings import METRICS_NAMESPACE, load_settings

logger = Logger()
metrics = Metrics(namespace=METRICS_NAMESPACE)
tracer = Tracer()
app = APIGatewayHttpResolver(debug=False)
# Page views and reads publish no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", "No application metrics to publish")

NOT_FOUND_RULES = frozenset({"company_exists", "environment_exists"})
CONFLICT_RULES = frozenset(
    {"one_account_one_company", "instance_unique", "environment_name_unique", "alias_unique"}
)
MAX_BODY_BYTES = 4096


def now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def licence_service() -> LicenceService:
    settings = load_settings().require("tenancy_table", "activity_table")
    dynamodb = boto3.client("dynamodb")
    return LicenceService(
        tenancy=DynamoTenancyStore(settings.tenancy_table, dynamodb),
        activity=DynamoActivityStore(settings.activity_table, dynamodb),
        clock=lambda: now(),
        silence_timeout_ms=settings.policy.silence_timeout * 1000,
        product_code=settings.product_code,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _json(status: int, document: Any) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(_plain(document), sort_keys=True),
        headers={"Cache-Control": "no-store"},
    )


def _environment(environment: Environment) -> dict[str, Any]:
    """The environment, its account claim's state and what its forwarder needs: the seller bus and, until
    the account has proven the claim, the verification code (shown only to the seller's operators)."""
    arn = environment.instance_arn
    verification = environment.verification
    return {
        "name": environment.name,
        "instance_arn": arn.arn,
        "account_id": arn.account_id,
        "region": arn.region,
        "verified": environment.is_verified,
        "verified_at": verification.verified_at if verification else None,
        "claim_expires": (
            verification.claimed_at + UNVERIFIED_CLAIM_LIFETIME
            if verification is not None and not environment.is_verified
            else None
        ),
        "forwarder_parameters": {
            "SellerEventBusArn": load_settings().agent_events_bus_arn,
            "VerificationCode": verification.code if verification else None,
        },
    }


def _body() -> dict[str, Any]:
    raw = app.current_event.decoded_body or ""
    if len(raw) > MAX_BODY_BYTES:
        raise TenancyError("body", "body_size", f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(raw)
    except json.JSONDecodeError:
        raise TenancyError("body", "json", "the body must be a JSON object") from None
    if not isinstance(document, dict):
        raise TenancyError("body", "json", "the body must be a JSON object")
    return document


@app.get("/companies/<alias>/environments")
def list_environments(alias: str) -> Response[str]:
    environments = licence_service().environments(alias)
    return _json(200, {"company": alias, "environments": [_environment(e) for e in environments]})


@app.post("/companies/<alias>/environments")
def add_environment(alias: str) -> Response[str]:
    body = _body()
    environment = licence_service().add_environment(alias, body.get("name"), body.get("instance_arn"))
    logger.info("environment added", extra={"company": alias, "environment": environment.name})
    return _json(201, {"company": alias, "environment": _environment(environment)})


@app.delete("/companies/<alias>/environments/<name>")
def remove_environment(alias: str, name: str) -> Response[str]:
    licence_service().remove_environment(alias, name)
    logger.info("environment removed", extra={"company": alias, "environment": name})
    return Response(status_code=204, body="", headers={"Cache-Control": "no-store"})


@app.get("/companies/<alias>/license")
def license_information(alias: str) -> Response[str]:
    return _json(200, asdict(licence_service().licence(alias)))


@app.post("/seat-check")
def seat_check() -> Response[str]:
    body = _body()
    instance_arn, agent_arn = body.get("instance_arn"), body.get("agent_arn")
    if not isinstance(instance_arn, str) or not isinstance(agent_arn, str):
        raise TenancyError("body", "required", "instance_arn and agent_arn are required strings")
    decision = licence_service().seat_check(instance_arn, agent_arn)
    logger.info(
        "seat check",
        extra={
            "company": decision.company_alias,
            "allowed": decision.allowed,
            "reason": decision.reason.value,
        },
    )
    return _json(200, asdict(decision))


def on_tenancy_error(error: TenancyError) -> Response[str]:
    if error.rule in NOT_FOUND_RULES:
        status = 404
    elif error.rule in CONFLICT_RULES:
        status = 409
    else:
        status = 422
    return _json(status, {"error": error.rule, "field": error.field, "message": error.message})


@app.not_found
def not_found(_: Exception) -> Response[str]:
    return _json(404, {"error": "not_found", "field": "path", "message": "no such admin route"})


app.exception_handler(TenancyError)(on_tenancy_error)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
