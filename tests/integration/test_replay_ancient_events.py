"""Issue 10 through `connect-metering replay`: a registered company sends events dated in year 999 and
in 1969 from its own account for its own instance, arriving now. No other company's bill moves by a
minute, no hour is skipped, and the replay finishes (its summary never reads back to year 999)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.replay_harness import LICENSE, ReplayResult, agent_event, envelope, instance, replay, session

pytestmark = pytest.mark.integration

D = datetime(2026, 11, 2, tzinfo=UTC)
VICTIM_ACCOUNT = "111122223333"
ATTACKER_ACCOUNT = "444455556666"
VICTIM = instance(1, VICTIM_ACCOUNT)
ATTACKER = instance(2, ATTACKER_ACCOUNT)


def company(alias: str, account: str, instance_arn: str) -> dict[str, Any]:
    return {
        "alias": alias,
        "subscriptions": [
            {
                "customer_aws_account_id": account,
                "license_arn": LICENSE.format(alias),
                "pricing": "usage",
                "started": "2026-11-02T08:00:00Z",
            }
        ],
        "environments": [{"name": "prod", "instance_arn": instance_arn}],
    }


def ancient(event_id: str, timestamp: str, arrived: datetime) -> dict[str, Any]:
    detail = agent_event(ATTACKER, "mallory", event_id, "LOGIN", arrived)
    detail["EventTimestamp"] = timestamp
    return envelope(detail, arrived=arrived, account=ATTACKER_ACCOUNT)


def run(tmp_path: Path) -> tuple[ReplayResult, float]:
    victim_events = [
        envelope(event, arrived=datetime.fromisoformat(event["EventTimestamp"].replace("Z", "+00:00")))
        for event in session(VICTIM, "alice", D.replace(hour=8, minute=5), D.replace(hour=10, minute=35))
    ]
    attack = [
        ancient("attack-999", "0999-06-01T00:00:00Z", D.replace(hour=8, minute=30)),
        ancient("attack-1969", "1969-07-20T20:17:00Z", D.replace(hour=9, minute=20)),
    ]
    events = sorted(victim_events + attack, key=lambda line: str(line["time"]))
    registry = {
        "product_code": "prod1",
        "companies": [
            company("victim", VICTIM_ACCOUNT, VICTIM),
            company("attacker", ATTACKER_ACCOUNT, ATTACKER),
        ],
    }
    started = time.monotonic()
    result = replay(tmp_path, registry, events, until=D.replace(hour=13, minute=30))
    return result, time.monotonic() - started


def test_ancient_events_do_not_move_another_companys_bill_or_hang_the_replay(tmp_path: Path) -> None:
    result, seconds = run(tmp_path)
    assert result.accepted_by_hour(license_suffix="l-victim") == {
        "2026-11-02T08:00:00.000Z": 55,
        "2026-11-02T09:00:00.000Z": 60,
        "2026-11-02T10:00:00.000Z": 35,
        "2026-11-02T11:00:00.000Z": 0,
        "2026-11-02T12:00:00.000Z": 0,
    }
    assert result.accepted_by_hour(license_suffix="l-attacker") == {
        f"2026-11-02T{hour:02d}:00:00.000Z": 0 for hour in range(8, 13)
    }
    assert result.statuses() == {"Success": 10}
    assert result.summary["companies"]["victim"]["minutes_accepted"] == 150
    assert result.summary["companies"]["victim"]["environments"]["prod"]["billable_ms"] == 150 * 60_000
    assert seconds < 60


def test_ancient_events_are_quarantined_too_old(tmp_path: Path) -> None:
    """BILLING.md section 2 rule 5 (the ingest side of issue 10: ``too_old``)."""
    result, _ = run(tmp_path)
    attacker = result.summary["companies"]["attacker"]
    assert attacker["quarantined"] == {"too_old": 2}
    assert attacker["events_accepted"] == 0


def test_raw_ancient_lines_arrive_at_the_replay_clock_and_are_quarantined(tmp_path: Path) -> None:
    """Raw agent events (no envelope) arrive at their EventTimestamp, or at the clock when that is already
    later: an E.jsonl line dated year 999 after lines of 08:30 arrives at 08:30, and is too old then."""
    victim_lines = session(VICTIM, "alice", D.replace(hour=8, minute=5), D.replace(hour=10, minute=35))
    attack = [
        agent_event(ATTACKER, "mallory", "raw-999", "LOGIN", D.replace(hour=8, minute=30)),
        agent_event(ATTACKER, "mallory", "raw-1969", "HEART_BEAT", D.replace(hour=8, minute=31)),
    ]
    attack[0]["EventTimestamp"] = "0999-06-01T00:00:00Z"
    attack[1]["EventTimestamp"] = "1969-07-20T20:17:00Z"
    events = victim_lines[:14] + attack + victim_lines[14:]
    registry = {
        "product_code": "prod1",
        "companies": [
            company("victim", VICTIM_ACCOUNT, VICTIM),
            company("attacker", ATTACKER_ACCOUNT, ATTACKER),
        ],
    }
    result = replay(tmp_path, registry, events, until=D.replace(hour=11, minute=30))
    assert result.summary["companies"]["attacker"]["quarantined"] == {"too_old": 2}
    assert result.accepted_by_hour(license_suffix="l-victim") == {
        "2026-11-02T08:00:00.000Z": 55,
        "2026-11-02T09:00:00.000Z": 60,
        "2026-11-02T10:00:00.000Z": 35,
    }


def test_a_raw_line_behind_the_clock_is_a_late_arrival_billed_in_the_next_hour(tmp_path: Path) -> None:
    """A raw line whose EventTimestamp is before the clock arrives at the clock: after its hour was
    metered it is late, and its minutes are billed in the next metered hour, never lost."""
    early = session(VICTIM, "alice", D.replace(hour=8, minute=10), D.replace(hour=8, minute=40))
    later = session(VICTIM, "bob", D.replace(hour=9, minute=15), D.replace(hour=9, minute=30))
    registry = {"product_code": "prod1", "companies": [company("victim", VICTIM_ACCOUNT, VICTIM)]}
    # bob's lines move the clock past 09:10 (hour 8 metered) before alice's lines come.
    result = replay(tmp_path, registry, later + early, until=D.replace(hour=11, minute=10))
    assert result.accepted_by_hour(license_suffix="l-victim") == {
        "2026-11-02T08:00:00.000Z": 0,
        "2026-11-02T09:00:00.000Z": 15 + 30,
        "2026-11-02T10:00:00.000Z": 0,
    }
    assert result.summary["companies"]["victim"]["late"] == len(early)
