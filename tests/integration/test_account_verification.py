"""The ingest handler verifies an environment's account claim from the first accepted event that carries
the environment's verification code in the envelope's ``resources`` (moto DynamoDB, real handler)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from connect_metering import observability
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.tenancy import (
    AccountClaim,
    Company,
    Environment,
    EnvironmentVerification,
    build,
    new_verification_code,
    verification_resource,
)
from connect_metering.settings import load_settings
from functions.ingest import handler
from tests.factories import SAMPLE_ACCOUNT, SAMPLE_INSTANCE, agent_event, envelope, sqs_event

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

pytestmark = pytest.mark.integration

H = datetime(2026, 11, 2, 9, tzinfo=UTC)
OTHER_ACCOUNT = "999988887777"
OTHER_INSTANCE = f"arn:aws:connect:eu-west-1:{OTHER_ACCOUNT}:instance/bbbbbbbb-bbbb-cccc-dddd-222222222222"


@pytest.fixture
def code(ingest_tables: None, dynamodb: DynamoDBClient, tenancy: DynamoTenancyStore) -> Iterator[str]:
    """Acme's unverified environment on the sample instance; Initech's verified one in another account."""
    verification = EnvironmentVerification.new(claimed_at=H - timedelta(hours=1))
    tenancy.create_company(Company(alias="acme"))
    tenancy.add_environment(
        build(
            Environment,
            company_alias="acme",
            name="prod",
            instance_arn=SAMPLE_INSTANCE,
            verification=verification,
        )
    )
    tenancy.create_company(Company(alias="initech"))
    tenancy.add_environment(
        build(Environment, company_alias="initech", name="eu", instance_arn=OTHER_INSTANCE)
    )
    yield verification.code
    observability.metrics.clear_metrics()
    handler.ingest_service.cache_clear()
    load_settings.cache_clear()


def forwarded(
    number: int, *, resources: list[str], instance: str = SAMPLE_INSTANCE, account: str | None = None
) -> dict[str, Any]:
    at = H + timedelta(minutes=number)
    body = envelope(
        agent_event(event_id=f"e-{number}", at=at, instance_arn=instance, account=account),
        arrived=at + timedelta(seconds=1),
        account=account,
    )
    body["resources"] = resources
    return body


def acme_state(tenancy: DynamoTenancyStore) -> tuple[bool, bool, AccountClaim | None]:
    looked_up = tenancy.environment_for_instance(SAMPLE_INSTANCE)
    [listed] = tenancy.list_environments("acme")
    assert looked_up is not None
    return looked_up.is_verified, listed.is_verified, tenancy.account_claim(SAMPLE_ACCOUNT)


def test_an_accepted_event_with_the_right_code_verifies_the_claim(
    code: str, tenancy: DynamoTenancyStore
) -> None:
    assert acme_state(tenancy)[:2] == (False, False)
    response, results = handler.handle_batch(
        sqs_event([forwarded(1, resources=[verification_resource(code)])])
    )
    assert response == {"batchItemFailures": []}
    assert [r.outcome.value for r in results] == ["accepted"]
    looked_up, listed, claim = acme_state(tenancy)
    assert looked_up and listed
    assert claim == AccountClaim(company="acme")
    [environment] = tenancy.list_environments("acme")
    assert environment.verification is not None
    assert environment.verification.verified_at == H + timedelta(minutes=1, seconds=1)  # its arrival
    assert environment.verification.code == code


def test_no_code_or_a_wrong_code_verifies_nothing(code: str, tenancy: DynamoTenancyStore) -> None:
    wrong = verification_resource(new_verification_code())
    response, results = handler.handle_batch(
        sqs_event(
            [
                forwarded(1, resources=[]),
                forwarded(2, resources=[wrong]),
                forwarded(3, resources=[code]),  # the bare code is not the forwarder's resource
                forwarded(4, resources=[verification_resource(code)[:-1]]),
            ]
        )
    )
    assert response == {"batchItemFailures": []}
    assert [r.outcome.value for r in results] == ["accepted"] * 4  # stored, to be billed once verified
    looked_up, listed, claim = acme_state(tenancy)
    assert not looked_up and not listed
    assert claim is not None and not claim.is_verified


def test_the_right_code_from_another_account_verifies_nothing(code: str, tenancy: DynamoTenancyStore) -> None:
    resources = [verification_resource(code)]
    # The other account names acme's instance: quarantined (account_mismatch), never verifying.
    spoofed = forwarded(1, resources=resources, account=OTHER_ACCOUNT)
    # The other account sends its own instance's events with acme's code: accepted for initech only.
    own = forwarded(2, resources=resources, instance=OTHER_INSTANCE)
    response, results = handler.handle_batch(sqs_event([spoofed, own]))
    assert response == {"batchItemFailures": []}
    assert [(r.outcome.value, r.company) for r in results] == [
        ("quarantined", "acme"),
        ("accepted", "initech"),
    ]
    looked_up, listed, claim = acme_state(tenancy)
    assert not looked_up and not listed
    assert claim is not None and not claim.is_verified
