"""The DynamoDB tenancy store on moto: uniqueness under concurrency, the active-subscriptions index, and
the meter-state counters read with the company."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from connect_metering.adapters.tenancy_meter_state import DynamoMeterStateStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.metering import CompanySnapshot
from connect_metering.domain.tenancy import (
    AccountOwnedByAnotherCompany,
    AliasTaken,
    Company,
    CompanyNotFound,
    Entitlements,
    Environment,
    EnvironmentNameTaken,
    EnvironmentNotFound,
    EnvironmentVerification,
    InstanceAlreadyRegistered,
    PricingModelConflict,
    Subscription,
    SubscriptionHeldByAnotherCompany,
    TenancyError,
    build,
)
from tests.integration.conftest import TENANCY_TABLE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def instance(account: str, n: int) -> str:
    return f"arn:aws:connect:us-west-2:{account}:instance/aaaaaaaa-bbbb-cccc-dddd-{n:012d}"


def environment(alias: str, name: str, account: str, n: int) -> Environment:
    return build(Environment, company_alias=alias, name=name, instance_arn=instance(account, n))


def subscription(
    alias: str, suffix: str, *, account: str = "210987654321", pricing: str = "usage", **extra: Any
) -> Subscription:
    return build(
        Subscription,
        company_alias=alias,
        identity={
            "customer_aws_account_id": account,
            "license_arn": f"arn:aws:license-manager::123456789012:license:l-{suffix}",
        },
        pricing=pricing,
        **extra,
    )


def run_concurrently(count: int, action: Any) -> tuple[list[int], list[Exception]]:
    """Start ``count`` threads at once behind a barrier; return who won and what the others raised."""
    barrier = threading.Barrier(count)
    wins: list[int] = []
    failures: list[Exception] = []

    def attempt(index: int) -> None:
        barrier.wait()
        try:
            action(index)
            wins.append(index)
        except TenancyError as error:
            failures.append(error)

    threads = [threading.Thread(target=attempt, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wins, failures


def test_company_round_trip_and_alias_taken(tenancy: DynamoTenancyStore) -> None:
    tenancy.create_company(Company(alias="acme", name="Acme"))
    assert tenancy.get_company("acme") == Company(alias="acme", name="Acme")
    assert tenancy.get_company("other") is None
    with pytest.raises(AliasTaken) as caught:
        tenancy.create_company(Company(alias="acme", name="Someone else"))
    assert caught.value.field == "company_alias"
    assert tenancy.get_company("acme") == Company(alias="acme", name="Acme")


def test_concurrent_claims_of_one_alias_have_exactly_one_winner(tenancy: DynamoTenancyStore) -> None:
    wins, failures = run_concurrently(
        12, lambda i: tenancy.create_company(Company(alias="acme", name=f"n{i}"))
    )
    assert len(wins) == 1
    assert len(failures) == 11
    assert all(isinstance(failure, AliasTaken) for failure in failures)
    company = tenancy.get_company("acme")
    assert company is not None
    assert company.name == f"n{wins[0]}"


@pytest.mark.usefixtures("serializable_transactions")
def test_concurrent_claims_of_one_account_by_two_companies(tenancy: DynamoTenancyStore) -> None:
    for alias in ("alpha", "bravo"):
        tenancy.create_company(Company(alias=alias))

    def claim(index: int) -> None:
        alias = "alpha" if index % 2 else "bravo"
        tenancy.add_environment(environment(alias, f"env{index}", "111122223333", index))

    wins, failures = run_concurrently(10, claim)
    owner = tenancy.owner_of_account("111122223333")
    assert owner in {"alpha", "bravo"}
    # every winner belongs to the one owner; every loser was refused by the one-account rule
    assert {("alpha" if index % 2 else "bravo") for index in wins} == {owner}
    assert all(isinstance(failure, AccountOwnedByAnotherCompany) for failure in failures)
    assert len(tenancy.list_environments(owner or "")) == len(wins)


@pytest.mark.usefixtures("serializable_transactions")
def test_concurrent_takeovers_of_an_expired_unverified_claim_have_one_winner(
    tenancy: DynamoTenancyStore,
) -> None:
    for alias in ("globex", "alpha", "bravo", "charlie"):
        tenancy.create_company(Company(alias=alias))
    squatted = build(
        Environment,
        company_alias="globex",
        name="squat",
        instance_arn=instance("111122223333", 99),
        verification=EnvironmentVerification.new(claimed_at=T0),
    )
    tenancy.add_environment(squatted)
    later = T0 + timedelta(days=8)
    companies = ("alpha", "bravo", "charlie")

    def claim(index: int) -> None:
        tenancy.add_environment(
            build(
                Environment,
                company_alias=companies[index % 3],
                name=f"env{index}",
                instance_arn=instance("111122223333", index),
                verification=EnvironmentVerification.new(claimed_at=later),
            )
        )

    wins, failures = run_concurrently(9, claim)
    claim_now = tenancy.account_claim("111122223333")
    assert claim_now is not None and claim_now.company in companies
    assert claim_now.unverified_until == later + timedelta(days=7)
    assert {companies[index % 3] for index in wins} == {claim_now.company}
    assert all(isinstance(failure, AccountOwnedByAnotherCompany) for failure in failures)
    assert tenancy.list_environments("globex") == []
    assert tenancy.environment_for_instance(squatted.instance_arn.arn) is None
    assert len(tenancy.list_environments(claim_now.company)) == len(wins)


def test_environment_rules(tenancy: DynamoTenancyStore) -> None:
    tenancy.create_company(Company(alias="alpha"))
    tenancy.create_company(Company(alias="bravo"))
    prod = environment("alpha", "prod", "111122223333", 1)
    tenancy.add_environment(prod)
    # a second environment in the same account, another region: same company is fine
    tenancy.add_environment(
        build(
            Environment,
            company_alias="alpha",
            name="prod-eu",
            instance_arn="arn:aws:connect:eu-central-1:111122223333:instance/aaaaaaaa-bbbb-cccc-dddd-000000000009",
        )
    )
    with pytest.raises(EnvironmentNameTaken):
        tenancy.add_environment(environment("alpha", "prod", "111122223333", 2))
    with pytest.raises(InstanceAlreadyRegistered):
        tenancy.add_environment(environment("alpha", "again", "111122223333", 1))
    with pytest.raises(AccountOwnedByAnotherCompany):
        tenancy.add_environment(environment("bravo", "prod", "111122223333", 3))
    with pytest.raises(CompanyNotFound):
        tenancy.add_environment(environment("nobody", "prod", "444455556666", 4))

    assert tenancy.environment_for_instance(instance("111122223333", 1)) == prod
    assert {env.name for env in tenancy.list_environments("alpha")} == {"prod", "prod-eu"}

    tenancy.remove_environment("alpha", "prod")
    assert tenancy.environment_for_instance(instance("111122223333", 1)) is None
    with pytest.raises(EnvironmentNotFound):
        tenancy.remove_environment("alpha", "prod")
    # the account stays alpha's: removing an environment never frees it for another company
    with pytest.raises(AccountOwnedByAnotherCompany):
        tenancy.add_environment(environment("bravo", "prod", "111122223333", 1))


def test_subscriptions_share_one_pricing_model(tenancy: DynamoTenancyStore) -> None:
    tenancy.create_company(Company(alias="acme"))
    tenancy.add_subscription(subscription("acme", "one"))
    tenancy.add_subscription(subscription("acme", "two"))
    with pytest.raises(PricingModelConflict) as caught:
        tenancy.add_subscription(subscription("acme", "three", pricing="contract"))
    assert caught.value.rule == "one_pricing_model_per_company"
    assert [sub.key for sub in tenancy.list_subscriptions("acme")] == sorted(
        [subscription("acme", "one").key, subscription("acme", "two").key]
    )
    assert tenancy.company_pricing("acme") is not None


def test_subscription_and_buyer_account_belong_to_one_company(tenancy: DynamoTenancyStore) -> None:
    tenancy.create_company(Company(alias="alpha"))
    tenancy.create_company(Company(alias="bravo"))
    tenancy.add_subscription(subscription("alpha", "one", account="210987654321"))
    with pytest.raises(SubscriptionHeldByAnotherCompany):
        tenancy.add_subscription(subscription("bravo", "one", account="210987654321"))
    with pytest.raises(AccountOwnedByAnotherCompany):
        tenancy.add_subscription(subscription("bravo", "two", account="210987654321"))
    # nothing of the refused transactions was written
    assert tenancy.list_subscriptions("bravo") == []
    assert tenancy.company_pricing("bravo") is None
    with pytest.raises(CompanyNotFound):
        tenancy.add_subscription(subscription("nobody", "three", account="999988887777"))


def test_active_subscription_index_lists_by_hour_without_scanning(
    tenancy: DynamoTenancyStore, dynamodb: DynamoDBClient
) -> None:
    tenancy.create_company(Company(alias="acme"))
    hour = T0
    cases = {
        "pending": {},
        "before": {"started": hour - timedelta(days=1)},
        "inside": {"started": hour + timedelta(minutes=30)},
        "later": {"started": hour + timedelta(hours=1)},
        "endedbefore": {"started": hour - timedelta(days=1), "ended": hour},
        "endedinside": {"started": hour - timedelta(days=1), "ended": hour + timedelta(minutes=1)},
        "contract": {"started": hour - timedelta(days=1)},
    }
    for name, times in cases.items():
        pricing = "contract" if name == "contract" else "usage"
        if pricing == "contract":
            tenancy.create_company(Company(alias="bigco"))
            sub = subscription(
                "bigco",
                name,
                account="333344445555",
                pricing=pricing,
                entitlements=Entitlements(licensed_agents=5),
            )
            tenancy.add_subscription(sub.model_copy(update={"started": None}))
            tenancy.save_subscription(sub.model_copy(update=times))
            continue
        sub = subscription("acme", name)
        tenancy.add_subscription(sub)
        if times:
            tenancy.save_subscription(sub.model_copy(update=times))

    operations: Counter[str] = Counter()
    dynamodb.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: operations.update([model.name])
    )
    listed = tenancy.list_metered_subscriptions(active_from=hour, active_before=hour + timedelta(hours=1))
    names = sorted(sub.key.rsplit("l-", 1)[1] for sub in listed)
    assert names == ["before", "contract", "endedinside", "inside"]
    assert operations["Scan"] == 0
    assert operations["Query"] >= 1

    retired = subscription("acme", "endedinside").model_copy(
        update={"started": hour - timedelta(days=1), "ended": hour + timedelta(minutes=1)}
    )
    tenancy.save_subscription(retired, metered=False)
    listed = tenancy.list_metered_subscriptions(active_from=hour, active_before=hour + timedelta(hours=1))
    assert "endedinside" not in {sub.key.rsplit("l-", 1)[1] for sub in listed}
    stored = tenancy.get_subscription("acme", retired.key)
    assert stored == retired


def test_index_paginates_every_page(tenancy: DynamoTenancyStore) -> None:
    tenancy.create_company(Company(alias="acme"))
    for index in range(60):
        sub = subscription("acme", f"s{index:05d}", started=T0 - timedelta(hours=index % 48))
        tenancy.add_subscription(sub)
    listed = list(
        tenancy.list_metered_subscriptions(active_from=T0, active_before=T0 + timedelta(hours=1), page_size=7)
    )
    assert len(listed) == 60
    assert len({sub.key for sub in listed}) == 60


def test_ingest_counters_are_read_with_the_company(
    tenancy: DynamoTenancyStore, dynamodb: DynamoDBClient
) -> None:
    """The meter-state store's counters add up per environment and come back in the company's one read."""
    meter_state = DynamoMeterStateStore(TENANCY_TABLE, dynamodb)
    tenancy.create_company(Company(alias="acme"))
    assert tenancy.load_company("acme") == CompanySnapshot(
        company=Company(alias="acme"),
        subscriptions=[],
        environments=[],
        meter_state=None,
        meter_version=0,
        pending_records=[],
        activity_counts={},
    )
    meter_state.count_activity("acme", "prod", 3)
    meter_state.count_activity("acme", "prod", 2)
    meter_state.count_activity("acme", "test", 1)
    snapshot = tenancy.load_company("acme")
    assert snapshot is not None
    assert snapshot.activity_counts == {"prod": 5, "test": 1}
    stored = dynamodb.get_item(
        TableName=TENANCY_TABLE, Key={"pk": {"S": "COMPANY#acme"}, "sk": {"S": "ACT#prod"}}
    )
    assert stored["Item"] == {
        "pk": {"S": "COMPANY#acme"},
        "sk": {"S": "ACT#prod"},
        "environment": {"S": "prod"},
        "events": {"N": "5"},
    }
    assert tenancy.load_company("nobody") is None
