"""The admin Lambda on moto: environments (any account and region, one account one company), licence
information with the agents logged in now, and the seat check."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from connect_metering.domain.agent_events import parse_agent_event
from connect_metering.domain.tenancy import Company, Environment, Subscription, build
from connect_metering.local.serve import http_api_event
from tests.factories import agent_event
from tests.integration.registration.conftest import T0, TENANCY, World
from tests.registration_support import PRODUCT_CODE, context, instance_arn, license_arn
from tests.registration_support import audit_items as trail

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

NOW = T0 + timedelta(hours=5, minutes=30)
PROD = instance_arn("111122223333", 1, "eu-west-2")
BUYERS = {
    "globex": "210987654321",
    "acme": "310987654321",
    "initech": "410987654321",
    "bravo": "510987654321",
}


OPERATOR = "arn:aws:sts::999988887777:assumed-role/SellerOperators/jane"


def call(
    world: World, method: str, path: str, body: Any = None, *, caller: str = OPERATOR
) -> tuple[int, Any]:
    raw = json.dumps(body).encode() if body is not None else b""
    event = http_api_event(
        method=method,
        path=path,
        query="",
        headers={"content-type": "application/json"},
        body=raw,
        source_ip="10.0.0.1",
    )
    # What API Gateway adds once it has checked the SigV4 signature (IAM authorization).
    event["requestContext"]["authorizer"] = {"iam": {"userArn": caller, "accountId": "999988887777"}}
    result = world.admin.lambda_handler(event, context("admin"))
    text = result.get("body") or ""
    return int(result["statusCode"]), json.loads(text) if text else None


def company(
    world: World,
    alias: str,
    *,
    pricing: str = "usage",
    licensed: int | None = None,
    expires: datetime | None = None,
    started: datetime | None = T0,
    ended: datetime | None = None,
    suffix: str | None = None,
) -> Subscription:
    world.store.create_company(Company(alias=alias, name=f"{alias.title()} Ltd"))
    subscription = build(
        Subscription,
        company_alias=alias,
        identity={"customer_aws_account_id": BUYERS[alias], "license_arn": license_arn(suffix or alias)},
        pricing=pricing,
        started=started,
        ended=ended,
        entitlements={"licensed_agents": licensed, "expires": expires},
    )
    world.store.add_subscription(subscription)
    return subscription


def logged_in(
    world: World, instance: str, agent: str, *, since: datetime, last: datetime, logout: bool = False
) -> None:
    """An agent that logged in at ``since`` and sent heartbeats every 2 minutes until ``last``."""
    moments = [since]
    while moments[-1] + timedelta(minutes=2) <= last:
        moments.append(moments[-1] + timedelta(minutes=2))
    details = [
        agent_event(
            event_id=f"{agent}-{n}",
            event_type="LOGIN" if n == 0 else "HEART_BEAT",
            at=at,
            agent=agent,
            instance_arn=instance,
        )
        for n, at in enumerate(moments)
    ]
    if logout:
        details.append(
            agent_event(
                event_id=f"{agent}-out",
                event_type="LOGOUT",
                at=last + timedelta(seconds=30),
                agent=agent,
                instance_arn=instance,
            )
        )
    events = [parse_agent_event(detail) for detail in details]
    by_hour: dict[int, list[Any]] = {}
    for event in events:
        by_hour.setdefault(event.ts_ms // 3_600_000, []).append(event)
    for group in by_hour.values():
        world.activity.add_events(group, late_at_ms=None)


def prove(world: World, arn: str) -> None:
    """What ingest does on the first event from the account carrying the environment's code."""
    environment = world.store.environment_for_instance(arn)
    assert environment is not None and environment.verification is not None
    proven = environment.verification.model_copy(update={"verified_at": world.clock.now()})
    assert world.store.verify_account(environment.model_copy(update={"verification": proven}))


def test_environments_are_added_listed_and_removed(world: World) -> None:
    company(world, "acme")
    other_region = instance_arn("444455556666", 2, "ap-southeast-2")
    assert (
        call(world, "POST", "/companies/acme/environments", {"name": "prod", "instance_arn": PROD})[0] == 201
    )
    status, added = call(
        world, "POST", "/companies/acme/environments", {"name": "apac", "instance_arn": other_region}
    )
    assert status == 201
    identity = ("name", "instance_arn", "account_id", "region")
    assert {key: added["environment"][key] for key in identity} == {
        "name": "apac",
        "instance_arn": other_region,
        "account_id": "444455556666",
        "region": "ap-southeast-2",
    }
    # Added through the admin API: the account claim waits for the account's own proof.
    assert added["environment"]["verified"] is False
    status, listed = call(world, "GET", "/companies/acme/environments")
    assert status == 200
    assert [e["name"] for e in listed["environments"]] == ["apac", "prod"]
    assert call(world, "DELETE", "/companies/acme/environments/prod") == (204, None)
    assert [e["name"] for e in call(world, "GET", "/companies/acme/environments")[1]["environments"]] == [
        "apac"
    ]
    assert world.store.environment_for_instance(PROD) is None


def test_environment_rules_are_answered_with_the_right_status(world: World) -> None:
    company(world, "acme")
    company(world, "bravo")
    call(world, "POST", "/companies/acme/environments", {"name": "prod", "instance_arn": PROD})
    cases = [
        (
            "/companies/bravo/environments",
            {"name": "x", "instance_arn": instance_arn("111122223333", 9)},
            409,
            "one_account_one_company",
        ),
        ("/companies/acme/environments", {"name": "again", "instance_arn": PROD}, 409, "instance_unique"),
        (
            "/companies/acme/environments",
            {"name": "prod", "instance_arn": instance_arn("111122223333", 3)},
            409,
            "environment_name_unique",
        ),
        (
            "/companies/acme/environments",
            {"name": "bad", "instance_arn": "arn:aws:connect:us-east-1:1:x"},
            422,
            "instance_arn_account",
        ),
        (
            "/companies/acme/environments",
            {"name": "bad name!", "instance_arn": instance_arn("111122223333", 4)},
            422,
            "environment_name_format",
        ),
        ("/companies/acme/environments", {"name": "n", "instance_arn": 42}, 422, "instance_arn_format"),
        (
            "/companies/nobody/environments",
            {"name": "x", "instance_arn": instance_arn("999988887777", 5)},
            404,
            "company_exists",
        ),
    ]
    for path, body, status, rule in cases:
        answer = call(world, "POST", path, body)
        assert (answer[0], answer[1]["error"]) == (status, rule), body
    # removing the environment never frees its account, once proven, for another company (an
    # unverified claim leaves with its last environment: test_account_claims)
    prove(world, PROD)
    call(world, "DELETE", "/companies/acme/environments/prod")
    answer = call(world, "POST", "/companies/bravo/environments", {"name": "x", "instance_arn": PROD})
    assert (answer[0], answer[1]["error"]) == (409, "one_account_one_company")
    assert call(world, "DELETE", "/companies/acme/environments/prod")[0] == 404
    assert call(world, "GET", "/companies/nobody/environments")[0] == 404
    assert call(world, "GET", "/companies/nobody/license")[0] == 404
    assert call(world, "POST", "/companies/acme/environments", "not an object")[0] == 422
    assert call(world, "GET", "/nowhere")[0] == 404


def test_licence_information_counts_the_agents_logged_in_now(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(world.admin, "now", lambda: NOW)
    expires = T0 + timedelta(days=90)
    subscription = company(world, "globex", pricing="contract", licensed=2, expires=expires)
    world.store.add_environment(build_environment("globex", "prod", PROD))
    logged_in(world, PROD, "a1", since=NOW - timedelta(hours=3), last=NOW - timedelta(minutes=1))
    logged_in(world, PROD, "a2", since=NOW - timedelta(minutes=20), last=NOW - timedelta(minutes=2))
    logged_in(
        world, PROD, "gone", since=NOW - timedelta(minutes=50), last=NOW - timedelta(minutes=9)
    )  # silent
    logged_in(
        world, PROD, "out", since=NOW - timedelta(minutes=30), last=NOW - timedelta(minutes=3), logout=True
    )
    status, info = call(world, "GET", "/companies/globex/license")
    assert status == 200
    assert {key: info[key] for key in info if key != "subscriptions"} == {
        "company_alias": "globex",
        "company_name": "Globex Ltd",
        "pricing": "contract",
        "customer_aws_account_id": "210987654321",
        "product_code": PRODUCT_CODE,
        "license_arn": subscription.identity.license_arn,
        "licensed_agents": 2,
        "active_agents": 2,
        "renews_or_expires": "2027-01-31T09:00:00.000Z",
        "status": "active",
    }
    logged_in(world, PROD, "a3", since=NOW - timedelta(minutes=4), last=NOW)
    assert call(world, "GET", "/companies/globex/license")[1]["status"] == "over-licensed"
    # lowering the licence never deletes anything: the company is reported over-licensed
    assert [e["name"] for e in call(world, "GET", "/companies/globex/environments")[1]["environments"]] == [
        "prod"
    ]


def build_environment(alias: str, name: str, arn: str) -> Environment:
    return build(Environment, company_alias=alias, name=name, instance_arn=arn)


def test_the_seat_check(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": NOW}
    monkeypatch.setattr(world.admin, "now", lambda: clock["now"])
    expires = NOW + timedelta(days=1)
    company(world, "globex", pricing="contract", licensed=1, expires=expires)
    world.store.add_environment(build_environment("globex", "prod", PROD))
    logged_in(world, PROD, "a1", since=NOW - timedelta(minutes=10), last=NOW - timedelta(minutes=1))

    def check(instance: str, agent: str) -> dict[str, Any]:
        status, decision = call(
            world, "POST", "/seat-check", {"instance_arn": instance, "agent_arn": f"{instance}/agent/{agent}"}
        )
        assert status == 200
        return dict(decision)

    within = check(PROD, "a1")
    assert (within["allowed"], within["reason"], within["flagged"], within["active_agents"]) == (
        True,
        "within_licence",
        False,
        1,
    )
    over = check(PROD, "a2")
    assert (
        over["allowed"],
        over["reason"],
        over["flagged"],
        over["active_agents"],
        over["licensed_agents"],
    ) == (True, "over_licence", True, 2, 1)
    unknown = check(instance_arn("999988887777", 1), "x")
    assert (unknown["allowed"], unknown["reason"]) == (False, "unknown_environment")
    answer = call(
        world,
        "POST",
        "/seat-check",
        {"instance_arn": PROD, "agent_arn": f"{instance_arn('111122223333', 2)}/agent/a"},
    )
    assert (answer[0], answer[1]["error"]) == (422, "agent_of_instance")
    assert call(world, "POST", "/seat-check", {"instance_arn": PROD})[0] == 422

    clock["now"] = expires + timedelta(minutes=1)
    expired = check(PROD, "a1")
    assert (expired["allowed"], expired["reason"]) == (False, "expired")

    company(world, "acme", started=None)
    acme_prod = instance_arn("310987654321", 1)
    world.store.add_environment(build_environment("acme", "prod", acme_prod))
    assert check(acme_prod, "b1")["reason"] == "pending"
    company(world, "initech", started=T0, ended=T0 + timedelta(hours=1))
    initech_prod = instance_arn("410987654321", 1)
    world.store.add_environment(build_environment("initech", "prod", initech_prod))
    assert check(initech_prod, "c1")["reason"] == "ended"
    status, info = call(world, "GET", "/companies/initech/license")
    assert (status, info["status"], info["active_agents"]) == (200, "ended", 0)


def audit_items(world: World, alias: str) -> list[dict[str, Any]]:
    return trail(world.dynamodb, TENANCY, alias)


def test_every_change_is_audited_with_the_caller(world: World, caplog: pytest.LogCaptureFixture) -> None:
    company(world, "acme")
    app_role = "arn:aws:sts::999988887777:assumed-role/SellerApp/i-0abc"
    assert (
        call(world, "POST", "/companies/acme/environments", {"name": "prod", "instance_arn": PROD})[0] == 201
    )
    duplicate = {"name": "prod", "instance_arn": PROD}
    assert call(world, "POST", "/companies/acme/environments", duplicate, caller=app_role)[0] == 409
    assert call(world, "POST", "/companies/acme/environments", "not an object")[0] == 422
    assert call(world, "DELETE", "/companies/acme/environments/prod")[0] == 204
    assert call(world, "DELETE", "/companies/acme/environments/nothing")[0] == 404
    # reads and the seat check change nothing and are not audited
    call(world, "GET", "/companies/acme/environments")
    call(world, "POST", "/seat-check", {"instance_arn": PROD, "agent_arn": f"{PROD}/agent/a1"})

    # The test clock stands still, so the items share one instant; their outcomes identify them.
    items = {item["outcome"]: item for item in audit_items(world, "acme")}
    assert {outcome: (item["caller"], int(item["status"])) for outcome, item in items.items()} == {
        "added": (OPERATOR, 201),
        "environment_name_unique": (app_role, 409),
        "json": (OPERATOR, 422),
        "removed": (OPERATOR, 204),
        "environment_exists": (OPERATOR, 404),
    }
    assert items["added"]["route"] == "POST /companies/acme/environments"
    assert items["removed"]["route"] == "DELETE /companies/acme/environments/prod"
    assert items["added"]["target"] == f"environment prod ({PROD})"
    assert items["removed"]["target"] == "environment prod"
    items_list = list(items.values())
    assert all(item["sk"].startswith(item["at"] + "#") and item["request_id"] for item in items_list)
    assert all("not an object" not in json.dumps(item) for item in items_list)  # never a request body
    logged = "".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert "admin change" in logged and app_role in logged and OPERATOR in logged


def test_a_change_under_a_malformed_alias_is_audited_under_one_shared_key(world: World) -> None:
    weird = "ACME%20" + "x" * 50
    assert call(world, "DELETE", f"/companies/{weird}/environments/prod")[0] in (404, 422)
    [item] = audit_items(world, "-")
    assert item["caller"] == OPERATOR and item["company"].startswith("ACME")
