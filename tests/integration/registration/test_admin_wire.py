"""The admin API's wire format under Powertools' OpenAPI validation: answers byte for byte as they have
always been written (sorted keys, default separators, instants as ``iso()``), the 4 KB limit checked
before the body is parsed, what the request models refuse answered with the domain's rules (and audited
for a change), and the OpenAPI document naming the models."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from connect_metering.local.serve import http_api_event
from tests.integration.registration.conftest import BUS_ARN, T0, World
from tests.integration.registration.test_admin_handler import (
    NOW,
    OPERATOR,
    PROD,
    audit_items,
    build_environment,
    company,
    logged_in,
)
from tests.registration_support import PRODUCT_CODE, context, instance_arn

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

OTHER = instance_arn("444455556666", 7)


def send(
    world: World, method: str, path: str, raw: bytes, content_type: str = "application/json"
) -> dict[str, Any]:
    """The Lambda's raw answer to a request whose body is exactly ``raw``."""
    event = http_api_event(
        method=method,
        path=path,
        query="",
        headers={"content-type": content_type},
        body=raw,
        source_ip="10.0.0.1",
    )
    event["requestContext"]["authorizer"] = {"iam": {"userArn": OPERATOR, "accountId": "999988887777"}}
    answer: dict[str, Any] = world.admin.lambda_handler(event, context("admin"))
    return answer


def refusal(answer: dict[str, Any]) -> tuple[int, str, str]:
    document = json.loads(answer["body"])
    return int(answer["statusCode"]), document["error"], document["field"]


def test_answers_are_the_same_bytes_as_before_validation(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(world.admin, "now", lambda: NOW)
    company(world, "acme", pricing="contract", licensed=2, expires=T0 + timedelta(days=90))
    world.store.add_environment(build_environment("acme", "verified", PROD))
    logged_in(world, PROD, "a1", since=NOW - timedelta(hours=1), last=NOW - timedelta(minutes=1))

    added = send(
        world,
        "POST",
        "/companies/acme/environments",
        b'{"name": "apac", "instance_arn": "' + OTHER.encode() + b'"}',
    )
    code = json.loads(added["body"])["environment"]["forwarder_parameters"]["VerificationCode"]
    unverified = (
        '{"account_id": "444455556666", "claim_expires": "2026-11-09T14:30:00.000Z", "forwarder_parameters": '
        f'{{"SellerEventBusArn": "{BUS_ARN}", "VerificationCode": "{code}"}}, "instance_arn": "{OTHER}", '
        '"name": "apac", "region": "us-east-1", "verified": false, "verified_at": null}'
    )
    verified = (
        '{"account_id": "111122223333", "claim_expires": null, "forwarder_parameters": '
        f'{{"SellerEventBusArn": "{BUS_ARN}", "VerificationCode": null}}, "instance_arn": "{PROD}", '
        '"name": "verified", "region": "eu-west-2", "verified": true, "verified_at": null}'
    )
    assert (added["statusCode"], added["body"]) == (
        201,
        f'{{"company": "acme", "environment": {unverified}}}',
    )
    assert added["headers"] == {"Content-Type": "application/json", "Cache-Control": "no-store"}

    listed = send(world, "GET", "/companies/acme/environments", b"")
    assert listed["body"] == f'{{"company": "acme", "environments": [{unverified}, {verified}]}}'

    licence = send(world, "GET", "/companies/acme/license", b"")
    licence_arn = "arn:aws:license-manager::123456789012:license:l-acme"
    assert licence["body"] == (
        '{"active_agents": 1, "company_alias": "acme", "company_name": "Acme Ltd", '
        f'"customer_aws_account_id": "310987654321", "license_arn": "{licence_arn}", "licensed_agents": 2, '
        f'"pricing": "contract", "product_code": "{PRODUCT_CODE}", "renews_or_expires": "2027-01-31T09:00:00.000Z", '
        '"status": "active", "subscriptions": [{"active": true, "customer_aws_account_id": "310987654321", '
        f'"ended": null, "expires": "2027-01-31T09:00:00.000Z", "key": "license#l-acme", "license_arn": "{licence_arn}", '
        '"licensed_agents": 2, "pricing": "contract", "product_code": null, "started": "2026-11-02T09:00:00.000Z"}]}'
    )

    seat = send(
        world,
        "POST",
        "/seat-check",
        json.dumps({"instance_arn": PROD, "agent_arn": f"{PROD}/agent/a1"}).encode(),
    )
    assert seat["body"] == (
        '{"active_agents": 1, "allowed": true, "company_alias": "acme", "flagged": false, "licensed_agents": 2, '
        '"message": "1 of 2 licensed agents", "reason": "within_licence"}'
    )

    refused = send(world, "POST", "/companies/acme/environments", b'{"name": "x", "instance_arn": 42}')
    assert (refused["statusCode"], refused["body"]) == (
        422,
        '{"error": "instance_arn_format", "field": "instance_arn", "message": "instance_arn must be a string"}',
    )
    assert refused["headers"] == {"Content-Type": "application/json", "Cache-Control": "no-store"}
    removed = send(world, "DELETE", "/companies/acme/environments/apac", b"")
    assert (removed["statusCode"], removed["body"], removed["headers"]) == (
        204,
        "",
        {"Cache-Control": "no-store"},
    )
    nowhere = send(world, "GET", "/nowhere", b"")
    assert (nowhere["statusCode"], nowhere["body"]) == (
        404,
        '{"error": "not_found", "field": "path", "message": "no such admin route"}',
    )


def test_an_oversized_body_is_refused_before_it_is_parsed(world: World) -> None:
    company(world, "acme")
    # Not JSON either: the size speaks first, so the body was never parsed.
    oversized = b"{" + b"x" * 4096
    assert refusal(send(world, "POST", "/companies/acme/environments", oversized)) == (
        422,
        "body_size",
        "body",
    )
    assert refusal(send(world, "POST", "/seat-check", oversized)) == (422, "body_size", "body")
    padded = json.dumps({"name": "prod", "instance_arn": PROD, "pad": "x" * 4000}).encode()
    assert refusal(send(world, "POST", "/companies/acme/environments", padded)) == (422, "body_size", "body")
    assert [
        (item["outcome"], int(item["status"]), item["target"]) for item in audit_items(world, "acme")
    ] == [("body_size", 422, "environment ? (?)")] * 2
    exactly = json.dumps({"name": "prod", "instance_arn": PROD, "pad": ""}).encode()
    exactly = exactly[:-1] + b" " * (4096 - len(exactly)) + b"}"
    assert send(world, "POST", "/companies/acme/environments", exactly)["statusCode"] == 201


@pytest.mark.parametrize(
    ("path", "raw", "expected"),
    [
        ("/companies/acme/environments", b"", (422, "json", "body")),
        ("/companies/acme/environments", b"null", (422, "json", "body")),
        # Validation alone would take the first item of an array as the body; the API wants an object.
        (
            "/companies/acme/environments",
            b'[{"name": "x", "instance_arn": "' + PROD.encode() + b'"}]',
            (422, "json", "body"),
        ),
        ("/companies/acme/environments", b"{}", (422, "instance_arn_format", "instance_arn")),
        (
            "/companies/acme/environments",
            b'{"name": "x", "instance_arn": ["a"]}',
            (422, "instance_arn_format", "instance_arn"),
        ),
        (
            "/companies/acme/environments",
            b'{"instance_arn": "' + PROD.encode() + b'"}',
            (422, "string_type", "name"),
        ),
        (
            "/companies/acme/environments",
            b'{"name": 5, "instance_arn": "' + PROD.encode() + b'"}',
            (422, "string_type", "name"),
        ),
        (
            "/companies/acme/environments",
            b'{"name": "bad name!", "instance_arn": "' + PROD.encode() + b'"}',
            (422, "environment_name_format", "environment_name"),
        ),
        # The domain checks the alias before the name, and the instance ARN before both.
        (
            "/companies/ACME/environments",
            b'{"name": 5, "instance_arn": "' + PROD.encode() + b'"}',
            (422, "alias_format", "company_alias"),
        ),
        ("/companies/ACME/environments", b'{"name": 5}', (422, "instance_arn_format", "instance_arn")),
        ("/seat-check", b"", (422, "json", "body")),
        ("/seat-check", b'{"instance_arn": "' + PROD.encode() + b'"}', (422, "required", "body")),
        ("/seat-check", b'{"instance_arn": 1, "agent_arn": 2}', (422, "required", "body")),
        ("/seat-check", b"nope", (422, "json", "body")),
    ],
)
def test_what_the_models_refuse_is_answered_with_the_domain_rule(
    world: World, path: str, raw: bytes, expected: tuple[int, str, str]
) -> None:
    company(world, "acme")
    assert refusal(send(world, "POST", path, raw)) == expected


def test_a_body_is_read_as_json_whatever_its_content_type(world: World) -> None:
    company(world, "acme")
    body = json.dumps({"name": "prod", "instance_arn": PROD}).encode()
    assert send(world, "POST", "/companies/acme/environments", body, "text/plain")["statusCode"] == 201
    form = b"name=other&instance_arn=" + OTHER.encode()
    assert refusal(
        send(world, "POST", "/companies/acme/environments", form, "application/x-www-form-urlencoded")
    ) == (
        422,
        "json",
        "body",
    )


def test_a_change_refused_by_validation_or_crashing_is_audited(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    company(world, "acme")
    assert (
        send(world, "POST", "/companies/acme/environments", b'{"name": "n", "instance_arn": 42}')[
            "statusCode"
        ]
        == 422
    )
    [refused] = audit_items(world, "acme")
    assert (refused["outcome"], int(refused["status"]), refused["target"], refused["caller"]) == (
        "instance_arn_format",
        422,
        "environment n (?)",
        OPERATOR,
    )

    def broken(*_: object) -> None:
        raise RuntimeError("store down")

    monkeypatch.setattr(world.admin.licence_service(), "remove_environment", broken)
    with pytest.raises(RuntimeError):
        send(world, "DELETE", "/companies/acme/environments/prod", b"")
    crashed = next(item for item in audit_items(world, "acme") if item["outcome"] == "error")
    assert (int(crashed["status"]), crashed["target"]) == (500, "environment prod")


def test_the_openapi_document_names_the_request_and_response_models(world: World) -> None:
    document = json.loads(world.admin.app.get_openapi_json_schema())
    schemas = document["components"]["schemas"]
    for model in (
        "NewEnvironment",
        "SeatCheckRequest",
        "EnvironmentList",
        "EnvironmentAdded",
        "LicenceView",
        "SeatCheckAnswer",
        "ApiError",
    ):
        assert model in schemas, model
    assert set(schemas["NewEnvironment"]["required"]) == {"name", "instance_arn"}
    assert schemas["ForwarderParameters"]["properties"].keys() == {"SellerEventBusArn", "VerificationCode"}
    add = document["paths"]["/companies/{alias}/environments"]["post"]
    assert {"404", "409", "422"} <= add["responses"].keys()
