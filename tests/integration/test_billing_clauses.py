"""BILLING.md sections 4-7, one clause per test, through `connect-metering replay` (the real handlers on
embedded AWS and the Marketplace simulator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.replay_harness import LICENSE, envelope, instance, replay, session, usage_company

pytestmark = pytest.mark.integration

D = datetime(2026, 11, 2, tzinfo=UTC)


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return D + timedelta(hours=hour, minutes=minute, seconds=second)


def subscription(licence: str, started: str, *, pricing: str = "usage", **extra: object) -> dict[str, object]:
    """A registry subscription of account 111122223333 (R.json format)."""
    return {
        "customer_aws_account_id": "111122223333",
        "license_arn": LICENSE.format(licence),
        "pricing": pricing,
        "started": started,
        **extra,
    }


def registry(*companies: dict[str, object], **policy: object) -> dict[str, object]:
    document: dict[str, object] = {"product_code": "prod1", "companies": list(companies)}
    if policy:
        document["policy"] = policy
    return document


def test_one_record_per_active_hour_even_when_zero(tmp_path: Path) -> None:
    result = replay(tmp_path, registry(usage_company()), [], until=at(12))
    # active from 08:00: hours 8, 9, 10 are due by 12:00 (hour 10 at 11:10); hour 11 at 12:10 is not
    assert [r["usage_record"]["Timestamp"] for r in result.records] == [
        "2026-11-02T08:00:00.000Z",
        "2026-11-02T09:00:00.000Z",
        "2026-11-02T10:00:00.000Z",
    ]
    for record in result.records:
        assert record["usage_record"]["Quantity"] == 0
        assert "UsageAllocations" not in record["usage_record"]
        assert record["status"] == "Success"
    assert [r["sent_at"] for r in result.records] == [
        "2026-11-02T09:10:00.000Z",
        "2026-11-02T10:10:00.000Z",
        "2026-11-02T11:10:00.000Z",
    ]


def test_fractions_of_a_minute_carry_to_later_hours(tmp_path: Path) -> None:
    # 08:30:30 -> 09:30:00: 29.5 min in hour 8, 30 min in hour 9 -> 29, then floor(59.5) - 29 = 30
    events = session(instance(), "a1", at(8, 30, 30), at(9, 30))
    result = replay(tmp_path, registry(usage_company()), events, until=at(11, 10))
    assert result.accepted_by_hour() == {
        "2026-11-02T08:00:00.000Z": 29,
        "2026-11-02T09:00:00.000Z": 30,
        "2026-11-02T10:00:00.000Z": 0,
    }


def test_allocations_per_environment_sum_to_the_quantity(tmp_path: Path) -> None:
    company = usage_company(
        environments=[("eu", instance(2, "222233334444", "eu-west-1")), ("us", instance(1))]
    )
    events = [
        *session(instance(1), "a1", at(8, 0), at(8, 20)),
        *session(instance(2, "222233334444", "eu-west-1"), "b1", at(8, 10), at(8, 15)),
    ]
    result = replay(tmp_path, registry(company), events, until=at(9, 10))
    [record] = result.records
    usage = record["usage_record"]
    assert usage["Quantity"] == 25
    assert usage["UsageAllocations"] == [
        {"AllocatedUsageQuantity": 5, "Tags": [{"Key": "environment", "Value": "eu"}]},
        {"AllocatedUsageQuantity": 20, "Tags": [{"Key": "environment", "Value": "us"}]},
    ]
    assert result.summary["companies"]["acme"]["environments"]["us"]["minutes_accepted"] == 20


def test_an_environment_without_minutes_gets_no_allocation(tmp_path: Path) -> None:
    company = usage_company(
        environments=[("eu", instance(2, "222233334444", "eu-west-1")), ("us", instance(1))]
    )
    result = replay(tmp_path, registry(company), session(instance(1), "a1", at(8), at(8, 7)), until=at(9, 10))
    [record] = result.records
    assert [a["Tags"][0]["Value"] for a in record["usage_record"]["UsageAllocations"]] == ["us"]


def test_usage_that_arrives_late_is_billed_in_the_next_metered_hour(tmp_path: Path) -> None:
    late = [envelope(event, arrived=at(10, 30)) for event in session(instance(), "a1", at(8, 0), at(8, 10))]
    on_time = session(instance(), "a2", at(9, 0), at(9, 5))
    result = replay(tmp_path, registry(usage_company()), [*on_time, *late], until=at(11, 10))
    assert result.accepted_by_hour() == {
        "2026-11-02T08:00:00.000Z": 0,
        "2026-11-02T09:00:00.000Z": 5,
        "2026-11-02T10:00:00.000Z": 10,
    }
    assert result.summary["companies"]["acme"]["late"] == len(late)


def test_an_event_arriving_exactly_at_the_metering_instant_waits_for_the_next_hour(tmp_path: Path) -> None:
    events = [envelope(event, arrived=at(9, 10)) for event in session(instance(), "a1", at(8, 0), at(8, 4))]
    result = replay(tmp_path, registry(usage_company()), events, until=at(10, 10))
    assert result.accepted_by_hour() == {"2026-11-02T08:00:00.000Z": 0, "2026-11-02T09:00:00.000Z": 4}


def test_a_session_into_the_grace_minutes_counts_for_the_metered_hour(tmp_path: Path) -> None:
    # heartbeats keep the session open across 09:00; the 09:02 event arrived before 09:10
    result = replay(
        tmp_path, registry(usage_company()), session(instance(), "a1", at(8, 50), at(9, 2)), until=at(9, 10)
    )
    assert result.accepted_by_hour() == {"2026-11-02T08:00:00.000Z": 10}


def test_no_active_subscription_means_unbilled(tmp_path: Path) -> None:
    company = usage_company(subscriptions=[subscription("x", "2026-11-02T09:00:00Z")])
    result = replay(
        tmp_path, registry(company), session(instance(), "a1", at(8, 30), at(9, 15)), until=at(10, 10)
    )
    assert result.accepted_by_hour() == {"2026-11-02T09:00:00.000Z": 15}
    environment = result.summary["companies"]["acme"]["environments"]["prod"]
    assert environment["unbilled_ms"] == 30 * 60_000
    assert environment["billable_ms"] == 45 * 60_000


def test_usage_follows_the_oldest_active_subscription(tmp_path: Path) -> None:
    company = usage_company(
        subscriptions=[
            subscription("young", "2026-11-02T08:00:00Z"),
            subscription("old", "2026-11-01T08:00:00Z"),
        ]
    )
    result = replay(tmp_path, registry(company), session(instance(), "a1", at(8), at(8, 20)), until=at(9, 10))
    assert result.accepted_by_hour(license_suffix="old")["2026-11-02T08:00:00.000Z"] == 20
    assert result.accepted_by_hour(license_suffix="young") == {"2026-11-02T08:00:00.000Z": 0}


def test_a_tie_on_started_goes_to_the_smaller_licence(tmp_path: Path) -> None:
    company = usage_company(
        subscriptions=[
            subscription("bbb", "2026-11-02T08:00:00Z"),
            subscription("aaa", "2026-11-02T08:00:00Z"),
        ]
    )
    result = replay(tmp_path, registry(company), session(instance(), "a1", at(8), at(8, 12)), until=at(9, 10))
    assert result.accepted_by_hour(license_suffix="aaa") == {"2026-11-02T08:00:00.000Z": 12}
    assert result.accepted_by_hour(license_suffix="bbb") == {"2026-11-02T08:00:00.000Z": 0}


def test_an_outage_past_the_acceptance_window_moves_minutes_into_the_next_accepted_record(
    tmp_path: Path,
) -> None:
    events = session(instance(), "a1", at(8, 0), at(8, 30))
    outage = {
        "seed": 1,
        "outages": [
            {"start": "2026-11-02T09:00:00Z", "end": "2026-11-02T15:00:00Z", "error": "ThrottlingException"}
        ],
    }
    result = replay(tmp_path, registry(usage_company()), events, until=at(16, 10), faults=outage)
    accepted = result.accepted_by_hour()
    # hour 8's record never got through before it was 6 h old: its 30 minutes went into a later record
    assert "2026-11-02T08:00:00.000Z" not in accepted
    assert sum(accepted.values()) == 30
    assert result.summary["companies"]["acme"]["records_by_status"]["expired"] >= 1
    assert {r["status"] for r in result.records} >= {"Success", "Error:ThrottlingException"}


def test_retries_resend_the_stored_record_unchanged(tmp_path: Path) -> None:
    events = session(instance(), "a1", at(8, 0), at(8, 30))
    faults = {
        "seed": 3,
        "outages": [
            {
                "start": "2026-11-02T09:00:00Z",
                "end": "2026-11-02T10:30:00Z",
                "error": "InternalServiceErrorException",
            }
        ],
    }
    result = replay(tmp_path, registry(usage_company()), events, until=at(11, 10), faults=faults)
    hour8 = [r for r in result.records if r["usage_record"]["Timestamp"] == "2026-11-02T08:00:00.000Z"]
    assert {r["status"] for r in hour8} == {"Error:InternalServiceErrorException", "Success"}
    assert len({str(r["usage_record"]) for r in hour8}) == 1
    assert sum(result.accepted_by_hour().values()) == 30


def test_at_most_25_records_per_call(tmp_path: Path) -> None:
    companies = [
        usage_company(f"co{n:03d}", environments=[("e", instance(n, f"3333444455{n:02d}"))])
        for n in range(30)
    ]
    for n, company in enumerate(companies):
        company["subscriptions"][0]["customer_aws_account_id"] = f"3333444455{n:02d}"
    result = replay(tmp_path, registry(*companies), [], until=at(9, 10))
    assert len(result.records) == 30
    # the 30 companies' records share calls: ceil(30 / 25) = 2
    assert result.summary["marketplace_calls"] == 2


def test_contract_overage_is_billed_to_the_primary(tmp_path: Path) -> None:
    company = usage_company(
        "bigco",
        subscriptions=[
            subscription(
                "c1", "2026-11-02T07:30:00Z", pricing="contract", entitlements={"licensed_agents": 1}
            ),
            subscription(
                "c2", "2026-11-02T07:45:00Z", pricing="contract", entitlements={"licensed_agents": 1}
            ),
        ],
    )
    events = [event for n in range(4) for event in session(instance(), f"agent{n}", at(8, n), at(8, 30))]
    result = replay(tmp_path, registry(company), events, until=at(9, 10))
    # hour 7: nobody active at 07:00, c1 from 07:30 pays (a record for its first hour); hour 8: c1 again
    hour7, record = result.records
    assert hour7["usage_record"]["LicenseArn"].endswith("c1")
    assert hour7["usage_record"]["Quantity"] == 0
    assert record["usage_record"]["Dimension"] == "overage_agents"
    assert record["usage_record"]["LicenseArn"].endswith("c1")
    assert record["usage_record"]["Quantity"] == 4 - 2
    assert "UsageAllocations" not in record["usage_record"]


def test_an_expired_contract_is_not_active(tmp_path: Path) -> None:
    company = usage_company(
        "bigco",
        subscriptions=[
            subscription(
                "c1",
                "2026-11-02T08:00:00Z",
                pricing="contract",
                entitlements={"licensed_agents": 5},
                expires="2026-11-02T09:00:00Z",
            ),
        ],
    )
    result = replay(tmp_path, registry(company), [], until=at(11, 10))
    assert [r["usage_record"]["Timestamp"] for r in result.records] == ["2026-11-02T08:00:00.000Z"]


def test_final_metering_when_a_subscription_ends(tmp_path: Path) -> None:
    company = usage_company(
        subscriptions=[subscription("end", "2026-11-02T08:00:00Z", ended="2026-11-02T10:20:00Z")]
    )
    events = [
        *session(instance(), "a1", at(9, 30), at(9, 40)),
        *session(instance(), "a1", at(10, 0), at(10, 15)),
    ]
    # usage after the end is not the subscription's
    events += session(instance(), "a2", at(10, 25), at(10, 50))
    result = replay(tmp_path, registry(company), events, until=at(13))
    stamps = [
        (r["usage_record"]["Timestamp"], r["usage_record"]["Quantity"], r["sent_at"]) for r in result.records
    ]
    assert stamps == [
        ("2026-11-02T08:00:00.000Z", 0, "2026-11-02T09:10:00.000Z"),
        ("2026-11-02T09:00:00.000Z", 10, "2026-11-02T10:10:00.000Z"),
        # the hour containing the end is metered at the end, with the usage known then
        ("2026-11-02T10:00:00.000Z", 15, "2026-11-02T10:20:00.000Z"),
    ]
    environment = result.summary["companies"]["acme"]["environments"]["prod"]
    assert environment["unbilled_ms"] == 25 * 60_000


def test_final_metering_covers_every_unmetered_hour_up_to_the_end(tmp_path: Path) -> None:
    company = usage_company(
        subscriptions=[subscription("end", "2026-11-02T08:00:00Z", ended="2026-11-02T09:05:00Z")]
    )
    events = session(instance(), "a1", at(8, 50), at(9, 3))
    result = replay(tmp_path, registry(company), events, until=at(12))
    # at 09:05 hour 8 (due 09:10) and hour 9 are both unmetered: both are sent at the end
    assert [
        (r["usage_record"]["Timestamp"], r["usage_record"]["Quantity"], r["sent_at"]) for r in result.records
    ] == [
        ("2026-11-02T08:00:00.000Z", 10, "2026-11-02T09:05:00.000Z"),
        ("2026-11-02T09:00:00.000Z", 3, "2026-11-02T09:05:00.000Z"),
    ]
