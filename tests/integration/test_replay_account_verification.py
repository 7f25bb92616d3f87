"""Replay: the minutes of an environment whose account claim is not yet proven are kept, and billed
exactly once, in the first record after an event carrying its verification code proves it (BILLING.md
section 5's carry: T is cumulative, B was 0)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connect_metering.domain.tenancy import verification_resource
from tests.replay_harness import envelope, instance, replay, session, usage_company

pytestmark = pytest.mark.integration

D = datetime(2026, 11, 2, tzinfo=UTC)
CODE = "c0de-verification_code1"  # 23 URL-safe characters, as the forwarder parameter allows
# Not the buyer's account: nothing but the forwarder's code can prove it acme's.
INSTANCE = instance(1, account="444455556666")


def at(hour: int, minute: int = 0) -> datetime:
    return D + timedelta(hours=hour, minutes=minute)


def forwarded(details: list[dict[str, Any]], resources: list[str]) -> list[dict[str, Any]]:
    lines = []
    for detail in details:
        line = envelope(detail, datetime.fromisoformat(detail["EventTimestamp"]) + timedelta(seconds=1))
        line["resources"] = resources
        lines.append(line)
    return lines


def company(verification_code: str | None) -> dict[str, Any]:
    acme = usage_company(environments=[("prod", INSTANCE)])
    if verification_code is not None:
        acme["environments"][0]["verification_code"] = verification_code
    return acme


def quantities(records: list[dict[str, Any]]) -> dict[str, int]:
    return {
        record["usage_record"]["Timestamp"]: record["usage_record"]["Quantity"]
        for record in records
        if record["status"] == "Success"
    }


def test_minutes_before_verification_are_billed_once_after_it(tmp_path: Path) -> None:
    before = forwarded(session(INSTANCE, "a1", at(8, 5), at(8, 50)), resources=[])  # 45 min, no code
    after = forwarded(session(INSTANCE, "a1", at(10, 10), at(10, 30)), [verification_resource(CODE)])
    result = replay(
        tmp_path, {"product_code": "prod1", "companies": [company(CODE)]}, before + after, until=at(13, 10)
    )
    billed = quantities(result.records)
    # Unproven through hour 09: hourly records of 0. Proven at 10:10: hour 10 carries all 65 minutes.
    assert billed == {
        "2026-11-02T08:00:00.000Z": 0,
        "2026-11-02T09:00:00.000Z": 0,
        "2026-11-02T10:00:00.000Z": 65,
        "2026-11-02T11:00:00.000Z": 0,
        "2026-11-02T12:00:00.000Z": 0,
    }
    assert sum(billed.values()) == 65  # exactly once

    # The same events for a trusted (registry) environment bill each hour as it comes: same total.
    (tmp_path / "control").mkdir()
    control = replay(
        tmp_path / "control",
        {"product_code": "prod1", "companies": [company(None)]},
        before + after,
        until=at(13, 10),
    )
    assert sum(quantities(control.records).values()) == 65
    assert quantities(control.records)["2026-11-02T08:00:00.000Z"] == 45


def test_events_without_the_code_are_never_billed(tmp_path: Path) -> None:
    events = forwarded(session(INSTANCE, "a1", at(8, 5), at(8, 50)), resources=[])
    events += forwarded(
        session(INSTANCE, "a1", at(10, 10), at(10, 30)), [verification_resource("another-environments-code")]
    )
    result = replay(
        tmp_path, {"product_code": "prod1", "companies": [company(CODE)]}, events, until=at(13, 10)
    )
    assert sum(quantities(result.records).values()) == 0
    assert len(quantities(result.records)) == 5  # the hourly records are still sent, with 0
