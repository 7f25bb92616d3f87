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
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from enum import Enum
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.adapters.audit_table import DynamoAuditLog
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.audit import AuditEntry
from connect_metering.domain.instants import iso
from connect_metering.domain.tenancy import UNVERIFIED_CLAIM_LIFETIME, Environment, TenancyError
from connect_metering.observability import logger, metrics, tracer
from connect_metering.services.licence import LicenceService
from connect_metering.settings import AdminSettings, load_settings

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
    logger.info("admin change", extra={"audit": entry.fields()})
    try:
        audit_log().record(entry)
    except Exception as error:
        logger.error("audit item not stored", extra={"audit": entry.fields(), "error": type(error).__name__})


@contextmanager
def _audited(alias: str, target: str) -> Iterator[None]:
    """Audit a change that fails, with the rule that refused it (or ``error``), and re-raise."""
    try:
        yield
    except TenancyError as error:
        _audit(alias, target, error.rule, _status(error))
        raise
    except Exception:
        _audit(alias, target, "error", 500)
        raise


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
            "SellerEventBusArn": load_settings(AdminSettings).agent_events_bus_arn,
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


def _environment_target(name: object, instance_arn: object) -> str:
    return f"environment {name if isinstance(name, str) else '?'} ({instance_arn if isinstance(instance_arn, str) else '?'})"


@app.post("/companies/<alias>/environments")
def add_environment(alias: str) -> Response[str]:
    with _audited(alias, _environment_target(None, None)):
        body = _body()
    with _audited(alias, _environment_target(body.get("name"), body.get("instance_arn"))):
        environment = licence_service().add_environment(alias, body.get("name"), body.get("instance_arn"))
    _audit(alias, _environment_target(environment.name, environment.instance_arn.arn), "added", 201)
    return _json(201, {"company": alias, "environment": _environment(environment)})


@app.delete("/companies/<alias>/environments/<name>")
def remove_environment(alias: str, name: str) -> Response[str]:
    target = f"environment {name}"
    with _audited(alias, target):
        licence_service().remove_environment(alias, name)
    _audit(alias, target, "removed", 204)
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


def _status(error: TenancyError) -> int:
    if error.rule in NOT_FOUND_RULES:
        return 404
    if error.rule in CONFLICT_RULES:
        return 409
    return 422


def on_tenancy_error(error: TenancyError) -> Response[str]:
    return _json(_status(error), {"error": error.rule, "field": error.field, "message": error.message})


@app.not_found
def not_found(_: Exception) -> Response[str]:
    return _json(404, {"error": "not_found", "field": "path", "message": "no such admin route"})


app.exception_handler(TenancyError)(on_tenancy_error)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
