"""Console changes go to the admin API's audit trail (``AUDIT#<alias>`` in the tenancy table): who (the
administrator's Cognito subject, never an email), what, and how it ended; under the session's company."""

from __future__ import annotations

from typing import Any

import pytest

from connect_metering.adapters.cognito_admins import COMPANY_ATTRIBUTE
from connect_metering.domain.console import sign_in_name
from tests.integration.console.conftest import TENANCY, ConsoleWorld
from tests.registration_support import audit_items as trail

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]

EMAIL = "ops@acme.test"
NEW_ARN = "arn:aws:connect:us-west-2:111111111111:instance/aaaaaaaa-0000-0000-0000-000000000009"


def audit_items(world: ConsoleWorld, alias: str) -> list[dict[str, Any]]:
    return trail(world.dynamodb, TENANCY, alias)


def subject_of(world: ConsoleWorld, alias: str, email: str) -> str:
    user = world.cognito.admin_get_user(
        UserPoolId=world.pool.user_pool_id, Username=sign_in_name(alias, email)
    )
    attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert attributes[COMPANY_ATTRIBUTE] == alias
    return str(attributes["sub"])


def test_console_changes_are_audited_by_subject_not_email(console: ConsoleWorld) -> None:
    browser, csrf = console.signed_in("acme", EMAIL)
    me = subject_of(console, "acme", EMAIL)
    assert (
        browser.post(
            "/console/environments", {"name": "west", "instance_arn": NEW_ARN, "csrf_token": csrf}
        ).status
        == 201
    )
    assert (
        browser.post(
            "/console/environments", {"name": "again", "instance_arn": NEW_ARN, "csrf_token": csrf}
        ).status
        == 409
    )
    assert browser.post("/console/environments/remove", {"name": "west", "csrf_token": csrf}).status == 200
    assert browser.post("/console/users", {"email": "second@acme.test", "csrf_token": csrf}).status == 201
    second = subject_of(console, "acme", "second@acme.test")
    assert (
        browser.post("/console/users/remove", {"email": "second@acme.test", "csrf_token": csrf}).status == 200
    )
    assert (
        browser.post("/console/users/remove", {"email": "ghost@acme.test", "csrf_token": csrf}).status == 404
    )
    # Reads change nothing and are not audited.
    for path in ("/console/licence", "/console/environments", "/console/usage", "/console/users"):
        browser.get(path)

    items = audit_items(console, "acme")
    assert {item["caller"] for item in items} == {f"console:{me}"}
    assert {item["company"] for item in items} == {"acme"}
    assert sorted((item["outcome"], item["target"], int(item["status"])) for item in items) == sorted(
        [
            ("added", f"environment west ({NEW_ARN})", 201),
            ("instance_unique", f"environment again ({NEW_ARN})", 409),
            ("removed", "environment west", 200),
            ("invited", f"administrator console:{second}", 201),
            ("removed", f"administrator console:{second}", 200),
            ("refused", "administrator (not found or yourself)", 404),
        ]
    )
    assert all(item["route"].startswith("POST /console/") for item in items)
    # No email anywhere in the trail: administrators are named by subject.
    assert not any("@" in str(value) for item in items for value in item.values())
    assert audit_items(console, "globex") == []
