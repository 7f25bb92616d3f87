"""Runs `connect-metering replay` in-process on registries and events built by the tests (through the one
builder of agent events, `connect_metering.local.traffic`)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connect_metering.local import traffic
from connect_metering.local.replay import Replay, load_faults, load_registry, read_events
from tests.conftest import environment_restored

LICENSE = "arn:aws:license-manager::123456789012:license:l-{}"
ACCOUNT = "111122223333"


def instance(number: int = 1, account: str = ACCOUNT, region: str = "us-east-1") -> str:
    return f"arn:aws:connect:{region}:{account}:instance/aaaaaaaa-0000-4000-8000-{number:012d}"


def agent_event(
    instance_arn: str, agent: str, event_id: str, event_type: str, at: datetime, status: str = "Available"
) -> dict[str, Any]:
    return traffic.billing_agent_event(
        instance_arn=instance_arn,
        agent_id=agent,
        event_id=event_id,
        event_type=event_type,
        at=at,
        status=status,
    )


def session(
    instance_arn: str, agent: str, start: datetime, end: datetime, *, logout: bool = True, step_s: int = 120
) -> list[dict[str, Any]]:
    """LOGIN at start, HEART_BEATs every step, LOGOUT at end: billable [start, end] exactly."""
    events = [agent_event(instance_arn, agent, f"{agent}-{start:%H%M%S}-0", "LOGIN", start)]
    moment, number = start, 0
    while moment + timedelta(seconds=step_s) < end:
        moment += timedelta(seconds=step_s)
        number += 1
        events.append(
            agent_event(instance_arn, agent, f"{agent}-{start:%H%M%S}-{number}", "HEART_BEAT", moment)
        )
    last_type = "LOGOUT" if logout else "HEART_BEAT"
    events.append(agent_event(instance_arn, agent, f"{agent}-{start:%H%M%S}-end", last_type, end))
    return events


def envelope(detail: dict[str, Any], arrived: datetime, account: str | None = None) -> dict[str, Any]:
    return traffic.eventbridge_envelope(
        detail, arrived=arrived, account=account, envelope_id=f"env-{detail['EventId']}"
    )


@dataclass
class ReplayResult:
    records: list[dict[str, Any]]
    summary: dict[str, Any]

    def sent(self, status: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records if status is None or r["status"] == status]

    def accepted_by_hour(
        self, dimension: str = "agent_minutes", license_suffix: str | None = None
    ) -> dict[str, int]:
        """Hour -> accepted Quantity (Success and DuplicateRecord count as accepted)."""
        result: dict[str, int] = {}
        for record in self.records:
            usage = record["usage_record"]
            if record["status"] not in ("Success",) or usage["Dimension"] != dimension:
                continue
            if license_suffix and not str(usage.get("LicenseArn", "")).endswith(license_suffix):
                continue
            result[usage["Timestamp"]] = usage["Quantity"]
        return dict(sorted(result.items()))

    def statuses(self) -> Counter[str]:
        return Counter(record["status"] for record in self.records)


ENGINES = ("handlers", "core")


def same_outcome(reference: Path, core: Path, summaries: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The core engine's records.jsonl and summary.json are the handlers engine's: every record (identity,
    dimension, Timestamp, quantity, allocations, status, and when it was sent), in send order, and every
    figure of the summary."""
    reference_records = (reference / "records.jsonl").read_text().splitlines()
    core_records = (core / "records.jsonl").read_text().splitlines()
    assert core_records == reference_records
    assert summaries[1] == summaries[0]
    assert json.loads((core / "summary.json").read_text()) == json.loads(
        (reference / "summary.json").read_text()
    )


def replay(
    tmp_path: Path,
    registry: dict[str, Any],
    events: list[dict[str, Any]],
    until: datetime,
    faults: dict[str, Any] | None = None,
    engines: tuple[str, ...] = ENGINES,
) -> ReplayResult:
    """Replays with each of ``engines`` (by default the handlers engine, the reference, whose result is
    returned, then the core engine), and with two asserts both give the same records and summary. The
    first engine's output folder is ``tmp_path / "out"``."""
    registry_file = tmp_path / "registry.json"
    events_file = tmp_path / "events.jsonl"
    registry_file.write_text(json.dumps(registry))
    events_file.write_text("".join(json.dumps(event) + "\n" for event in events))
    faults_file = None
    if faults is not None:
        faults_file = tmp_path / "faults.json"
        faults_file.write_text(json.dumps(faults))
    summaries = []
    for engine in engines:
        with environment_restored():
            summaries.append(
                Replay(load_registry(registry_file), load_faults(faults_file), tmp_path / engine, engine).run(
                    read_events(events_file), int(until.timestamp() * 1000)
                )
            )
    out = tmp_path / "out"
    (tmp_path / engines[0]).rename(out)
    if len(engines) == 2:
        same_outcome(out, tmp_path / engines[1], (summaries[0], summaries[1]))
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return ReplayResult(records, summaries[0])


def usage_company(
    alias: str = "acme",
    *,
    subscriptions: list[dict[str, Any]] | None = None,
    environments: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "alias": alias,
        "subscriptions": subscriptions
        or [
            {
                "customer_aws_account_id": ACCOUNT,
                "license_arn": LICENSE.format(alias + "1"),
                "pricing": "usage",
                "started": "2026-11-02T08:00:00Z",
            }
        ],
        "environments": [
            {"name": name, "instance_arn": arn} for name, arn in (environments or [("prod", instance())])
        ],
    }
