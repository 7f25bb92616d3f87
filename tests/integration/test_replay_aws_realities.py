"""Issue 9 through `connect-metering replay`: what AWS really sends and answers, one test per item.

Renamed Offline statuses (BILLING.md section 3), licence ARNs in every spelling and lifecycle lines in
E.jsonl (section 1), calls refused as a whole (section 6, F.json ``revoked``), and the first record's
Timestamp (section 5). The runtime SDK and the event-source concurrency are checked on the synthesized
stack (tests/infra/test_dependencies_layer.py, tests/infra/test_concurrency.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connect_metering.domain.instants import iso
from tests.replay_harness import ACCOUNT, instance, replay, session, usage_company

pytestmark = pytest.mark.integration

D = datetime(2026, 11, 2, tzinfo=UTC)
PRODUCT = "prod1"


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return D + timedelta(hours=hour, minutes=minute, seconds=second)


def registry(*companies: dict[str, Any]) -> dict[str, Any]:
    return {"product_code": PRODUCT, "companies": list(companies)}


def status_event(
    agent: str, event_id: str, event_type: str, moment: datetime, status: str, since: datetime
) -> dict[str, Any]:
    """An agent event as Connect sends it: the current status with its StartTimestamp."""
    arn = instance()
    return {
        "AWSAccountId": ACCOUNT,
        "AgentARN": f"{arn}/agent/{agent}",
        "EventId": event_id,
        "EventType": event_type,
        "EventTimestamp": iso(moment),
        "InstanceARN": arn,
        "CurrentAgentSnapshot": {
            "AgentStatus": {
                "ARN": f"{arn}/agent-state/s-{status}",
                "Name": status,
                "StartTimestamp": iso(since),
            }
        },
        "Version": "2017-10-01",
    }


def sent(result: Any) -> list[tuple[str, int, str]]:
    """Every record result, in send order, as (Timestamp, Quantity, status)."""
    return [
        (r["usage_record"]["Timestamp"], r["usage_record"]["Quantity"], r["status"]) for r in result.records
    ]


def billed(result: Any, license_arn: str | None = None) -> int:
    return sum(
        record["usage_record"]["Quantity"]
        for record in result.sent("Success")
        if license_arn is None or record["usage_record"].get("LicenseArn") == license_arn
    )


# --- 1. a renamed Offline status -------------------------------------------------------------------------


def test_a_renamed_offline_status_after_logout_bills_only_the_shift(tmp_path: Path) -> None:
    start, logout = at(8, 0), at(8, 37)
    events = [status_event("a1", "login", "LOGIN", start, "Available", start)]
    events += [
        status_event("a1", f"hb-{n}", "HEART_BEAT", start + timedelta(minutes=2 * n), "Available", start)
        for n in range(1, 19)
    ]
    events.append(status_event("a1", "logout", "LOGOUT", logout, "Available", start))
    # Connect keeps sending heartbeats for an hour after the logout, in the Offline status renamed by
    # the customer; its StartTimestamp is the logout.
    events += [
        status_event("a1", f"off-{n}", "HEART_BEAT", logout + timedelta(minutes=2 * n), "Signed out", logout)
        for n in range(1, 31)
    ]
    result = replay(tmp_path, registry(usage_company()), events, until=at(11, 10))
    assert billed(result) == 37  # 93 before the rule: the heartbeats reopened a session
    assert result.summary["companies"]["acme"]["environments"]["prod"]["billable_ms"] == 37 * 60_000


# --- 2. licence ARNs in every spelling, lifecycle lines in E.jsonl --------------------------------------

LICENCE_ID = "l-e52c0000000000000000000000000001"
RESOLVED_ARN = f"arn:aws:license-manager::123456789012:license/{LICENCE_ID}"  # as ResolveCustomer returns it


def marketplace_event(detail_type: str, license_arn: str, moment: datetime) -> dict[str, Any]:
    """The seller guide's License Updated / Deprovisioned event, with the licence spelled as AWS does."""
    return {
        "version": "0",
        "id": f"{detail_type}-{moment:%H%M}",
        "detail-type": f"{detail_type} - Manufacturer",
        "source": "aws.agreement-marketplace",
        "account": "123456789012",
        "time": iso(moment),
        "region": "us-east-1",
        "resources": ["arn:aws:aws-marketplace::aws:agreement:agmt-4mwg0000000000000000001"],
        "detail": {
            "requestId": "3d4c0000-0000-4000-8000-000000000002",
            "catalog": "AWSMarketplace",
            "agreement": {"id": "agmt-4mwg0000000000000000001"},
            "product": {"code": PRODUCT, "id": "prod-qtwveexample"},
            "license": {"arn": license_arn},
            "acceptor": {"accountId": ACCOUNT},
        },
    }


def unstarted_company(**identity: str) -> dict[str, Any]:
    company = usage_company()
    company["subscriptions"] = [{**identity, "pricing": "usage", "started": None}]
    return company


def test_a_license_updated_event_in_the_event_spelling_activates_and_bills(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = [
        marketplace_event(
            "License Updated", f"aws:license-manager:us-east-1:123456789012:{LICENCE_ID}", at(8, 0)
        ),
        *session(instance(), "a1", at(8, 5), at(8, 35)),
        # Deprovisioned in the regional API spelling: final metering at 09:30 for hours 8 and 9.
        marketplace_event(
            "License Deprovisioned",
            f"arn:aws:license-manager:us-east-1:123456789012:license:{LICENCE_ID}",
            at(9, 30),
        ),
    ]
    company = unstarted_company(customer_aws_account_id=ACCOUNT, license_arn=RESOLVED_ARN)
    result = replay(tmp_path, registry(company), events, until=at(12))
    assert sent(result) == [
        ("2026-11-02T08:00:00.000Z", 30, "Success"),
        ("2026-11-02T09:00:00.000Z", 0, "Success"),
    ]
    # Sent with the LicenseArn exactly as ResolveCustomer returned it, whatever the events' spelling.
    assert {r["usage_record"]["LicenseArn"] for r in result.records} == {RESOLVED_ARN}
    # Hour 8 metered at 09:10; hour 9 by the final metering at the Deprovisioned event's arrival.
    assert [r["sent_at"] for r in result.records] == ["2026-11-02T09:10:00.000Z", "2026-11-02T09:30:00.000Z"]
    assert result.summary["lifecycle_notifications"] == {"activate:applied": 1, "end:applied": 1}


def test_a_subscription_never_activated_is_never_metered(tmp_path: Path) -> None:
    company = unstarted_company(customer_aws_account_id=ACCOUNT, license_arn=RESOLVED_ARN)
    result = replay(tmp_path, registry(company), session(instance(), "a1", at(8, 5), at(8, 35)), until=at(12))
    assert result.records == []
    assert result.summary["companies"]["acme"]["environments"]["prod"]["unbilled_ms"] == 30 * 60_000


def sns_notification(message: dict[str, str], moment: datetime) -> dict[str, Any]:
    """The SNS envelope Marketplace's legacy topics deliver (not raw delivery)."""
    return {
        "Type": "Notification",
        "MessageId": f"sns-{moment:%H%M}",
        "TopicArn": "arn:aws:sns:us-east-1:287250355862:aws-mp-subscription-notification-prod1",
        "Message": json.dumps(message),
        "Timestamp": iso(moment),
    }


def test_legacy_sns_lines_with_either_key_spelling_and_padded_ids_activate_and_end(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = [
        sns_notification(
            {"action": "subscribe-success", "CustomerIdentifier": " X01EXAMPLEX", "ProductCode": PRODUCT},
            at(8, 0),
        ),
        *session(instance(), "a1", at(8, 10), at(8, 40)),
        sns_notification(
            {"action": "unsubscribe-pending", "customer-identifier": " X01EXAMPLEX", "product-code": PRODUCT},
            at(9, 15),
        ),
    ]
    company = unstarted_company(customer_identifier="X01EXAMPLEX")
    result = replay(tmp_path, registry(company), events, until=at(12))
    assert sent(result) == [
        ("2026-11-02T08:00:00.000Z", 30, "Success"),
        ("2026-11-02T09:00:00.000Z", 0, "Success"),
    ]
    assert {r["usage_record"]["CustomerIdentifier"] for r in result.records} == {"X01EXAMPLEX"}


# --- 4. a call refused as a whole strands nobody else --------------------------------------------------


def _licence(alias: str) -> str:
    return f"arn:aws:license-manager::123456789012:license/l-{alias}0000000000000000000000000000"


def company_on(alias: str, number: int, account: str) -> dict[str, Any]:
    company = usage_company(alias, environments=[("prod", instance(number, account))])
    company["subscriptions"] = [
        {
            "customer_aws_account_id": account,
            "license_arn": _licence(alias),
            "pricing": "usage",
            "started": iso(at(8)),
        }
    ]
    return company


def test_a_revoked_licence_refuses_its_calls_without_holding_back_the_others(tmp_path: Path) -> None:
    accounts = {"aaa": "111111111111", "bbb": "222222222222", "ccc": "333333333333"}
    companies = [
        company_on(alias, n, account) for n, (alias, account) in enumerate(accounts.items(), start=1)
    ]
    events = [
        event
        for n, account in enumerate(accounts.values(), start=1)
        for event in session(instance(n, account), "a1", at(8, 10), at(8, 40))
    ]
    faults = {"seed": 1, "revoked": [{"license_arn": _licence("aaa"), "at": iso(at(8, 30))}]}
    result = replay(tmp_path, registry(*companies), events, until=at(11, 10), faults=faults)
    by_licence: dict[str, list[tuple[str, str]]] = {}
    for record in result.records:
        usage = record["usage_record"]
        by_licence.setdefault(usage["LicenseArn"], []).append((usage["Timestamp"], record["status"]))
    for alias in ("bbb", "ccc"):  # every hour of the others lands in the run that sends it, once
        assert by_licence[_licence(alias)] == [
            ("2026-11-02T08:00:00.000Z", "Success"),
            ("2026-11-02T09:00:00.000Z", "Success"),
            ("2026-11-02T10:00:00.000Z", "Success"),
        ]
        assert result.summary["companies"][alias]["minutes_accepted"] == 30
    refused = by_licence[_licence("aaa")]
    assert refused and {status for _, status in refused} == {"Error:InvalidLicenseException"}
    assert result.summary["companies"]["aaa"]["records_by_status"] == {"pending": 3}
    # Each hourly run: one refused call of all three, then halves until the culprit is alone.
    assert result.summary["marketplace_calls"] <= 3 * 5


def test_an_api_wide_refusal_is_not_split_and_the_records_land_after_it(tmp_path: Path) -> None:
    faults = {
        "seed": 1,
        "outages": [{"start": iso(at(9)), "end": iso(at(10)), "error": "DisabledApiException"}],
    }
    events = session(instance(), "a1", at(8, 10), at(8, 40))
    result = replay(tmp_path, registry(usage_company()), events, until=at(11, 10), faults=faults)
    assert [(r["usage_record"]["Timestamp"], r["status"]) for r in result.records] == [
        ("2026-11-02T08:00:00.000Z", "Error:DisabledApiException"),
        ("2026-11-02T08:00:00.000Z", "Success"),
        ("2026-11-02T09:00:00.000Z", "Success"),
        ("2026-11-02T10:00:00.000Z", "Success"),
    ]
    assert result.summary["companies"]["acme"]["minutes_accepted"] == 30


# --- 5. the first record of a subscription that starts inside an hour ----------------------------------


def test_the_first_record_is_stamped_when_the_subscription_started(tmp_path: Path) -> None:
    company = usage_company()
    company["subscriptions"][0]["started"] = "2026-11-02T08:30:00Z"
    events = session(instance(), "a1", at(8, 10), at(9, 20))
    result = replay(tmp_path, registry(company), events, until=at(10, 10))
    assert sent(result) == [
        ("2026-11-02T08:30:00.000Z", 30, "Success"),  # only the minutes from the start are the subscription's
        ("2026-11-02T09:00:00.000Z", 20, "Success"),
    ]
