"""The replay's output: the tally of what ingest and the lifecycle handler did, the summary read back
from the embedded tables (events, billable and unbilled time per environment, records by status), and
the files records.jsonl and summary.json."""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from connect_metering.adapters.marketplace_meter import SendResult
from connect_metering.adapters.meter_store import DynamoMeterStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.attribution import attribute, primary_segments
from connect_metering.domain.instants import MS_PER_HOUR, hour_floor, iso_ms
from connect_metering.domain.metering import UNCONFIRMED, MeteringRecord, RecordStatus
from connect_metering.domain.sessions import BillableTimePolicy
from connect_metering.domain.tenancy import Subscription
from connect_metering.local.marketplace_sim import MarketplaceSimulator
from connect_metering.local.output_files import publish, text
from connect_metering.local.replay_input import Delivery, Registry

UNATTRIBUTED = "(unattributed)"
# The first unreadable items are listed in summary.json with their position; all are counted.
UNREADABLE_LISTED = 100


@dataclass
class Tally:
    lifecycle: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    late: Counter[str] = field(default_factory=Counter)
    quarantined: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    unreadable: list[dict[str, str]] = field(default_factory=list)
    unreadable_count: int = 0

    def note_unreadable(self, delivery: Delivery) -> None:
        """An item of the recording that is not text (not UTF-8, not base64, not JSON): never delivered,
        counted as quarantined ``unparseable`` (BILLING.md section 2 rule 1) with where it was."""
        self.quarantined[UNATTRIBUTED]["unparseable"] += 1
        self.unreadable_count += 1
        if len(self.unreadable) < UNREADABLE_LISTED:
            self.unreadable.append({"at": delivery.where, "reason": delivery.unreadable or ""})


class StoredState(Protocol):
    """What the summary reads of a finished replay's engine (embedded AWS, or the core engine's stores)."""

    @property
    def dynamodb(self) -> Any: ...
    @property
    def tenancy(self) -> DynamoTenancyStore: ...
    @property
    def activity(self) -> Any: ...
    @property
    def marketplace(self) -> MarketplaceSimulator: ...


@dataclass
class ReplayRun:
    """What a finished replay hands to its summary."""

    aws: StoredState
    registry: Registry
    tally: Tally
    results: list[SendResult]
    earliest_event_ms: int = sys.maxsize


def summarize(run: ReplayRun, until_ms: int) -> dict[str, Any]:
    """summary.json: per company and environment, what was ingested, billed and sent."""
    aws, registry, tally = run.aws, run.registry, run.tally
    store = DynamoMeterStore(
        tenancy_table="connect-metering-tenancy",
        ledger_table="connect-metering-ledger",
        activity_table="connect-metering-activity",
        client=aws.dynamodb,
    )
    policy = BillableTimePolicy(registry.policy.billable_time)
    timeout = registry.policy.silence_timeout * 1000
    companies: dict[str, Any] = {}
    for entry in registry.companies:
        snapshot = aws.tenancy.load_company(entry.alias)
        subs = [sub for sub in (snapshot.subscriptions if snapshot else []) if sub.started]
        records = [record for sub in subs for record in store.records_of(sub.key)]
        environments: dict[str, Any] = {}
        hourly: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for env in entry.environments:
            billed, unbilled, by_hour = _billable(run, env.instance_arn, subs, until_ms, policy, timeout)
            for hour, ms in by_hour.items():
                hourly[hour][0] += ms
            env_records = [record for record in records if env.name in record.allocations]
            environments[env.name] = {
                "billable_ms": billed + unbilled,
                "unbilled_ms": unbilled,
                "minutes_accepted": sum(
                    record.allocations[env.name] for record in env_records if _confirmed(record)
                ),
                "minutes_unconfirmed": sum(
                    record.allocations[env.name] for record in env_records if _unconfirmed(record)
                ),
                "records_by_status": dict(Counter(_status(record) for record in env_records)),
            }
        accepted = [record for record in records if _confirmed(record)]
        unconfirmed = [record for record in records if _unconfirmed(record)]
        for record in accepted:
            column = 1 if record.dimension == registry.policy.usage_dimension else 2
            hourly[record.hour_ms][column] += record.quantity
        companies[entry.alias] = {
            "name": entry.name,
            "events_accepted": tally.accepted[entry.alias],
            "duplicates": tally.duplicates[entry.alias],
            "late": tally.late[entry.alias],
            "quarantined": dict(tally.quarantined.get(entry.alias, {})),
            "records_by_status": dict(Counter(_status(record) for record in records)),
            "minutes_accepted": sum(
                r.quantity for r in accepted if r.dimension == registry.policy.usage_dimension
            ),
            "minutes_unconfirmed": sum(
                r.quantity for r in unconfirmed if r.dimension == registry.policy.usage_dimension
            ),
            "overage_agent_hours_accepted": sum(
                r.quantity for r in accepted if r.dimension == registry.policy.overage_dimension
            ),
            "environments": environments,
            "hourly": _hourly(hourly),
        }
    unattributed = dict(tally.quarantined.get(UNATTRIBUTED, {}))
    return {
        "until": iso_ms(until_ms),
        "companies": companies,
        "quarantined_unattributed": unattributed,
        "records_sent": len(run.results),
        "lifecycle_notifications": dict(tally.lifecycle),
        "marketplace_calls": aws.marketplace.counter("BatchMeterUsage").calls,
        "unreadable_input": {"count": tally.unreadable_count, "first": tally.unreadable},
    }


def _unconfirmed(record: MeteringRecord) -> bool:
    """Kept as accepted when it left the acceptance window with its answer lost to a crash (docs/billing.md
    section 6: moving its minutes could bill them twice), but AWS never confirmed it: reported apart, so
    a reader never takes these minutes for billed ones."""
    return record.status is RecordStatus.ACCEPTED and record.result == UNCONFIRMED


def _confirmed(record: MeteringRecord) -> bool:
    return record.status is RecordStatus.ACCEPTED and record.result != UNCONFIRMED


def _status(record: MeteringRecord) -> str:
    return "unconfirmed" if _unconfirmed(record) else record.status.value


def _hourly(hourly: dict[int, list[int]]) -> dict[str, dict[str, int]]:
    """Per hour (ISO) with anything in it: the billable ms attributed to a subscription that the events
    put in the hour, and the minutes and overage agents accepted in the records of the hour (a record
    may carry minutes of earlier hours: late events, or minutes moved out of an expired record)."""
    return {
        iso_ms(hour): {
            "billable_ms": billable,
            "minutes_accepted": minutes,
            "overage_agents_accepted": overage,
        }
        for hour, (billable, minutes, overage) in sorted(hourly.items())
        if billable or minutes or overage
    }


def _split_by_hour(pieces: list[tuple[int, int]]) -> dict[int, list[tuple[int, int]]]:
    by_hour: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for low, high in pieces:
        while low < high:
            hour = hour_floor(low)
            upto = min(high, hour + MS_PER_HOUR)
            by_hour[hour].append((low, upto))
            low = upto
    return by_hour


def _billable(
    run: ReplayRun,
    instance_arn: str,
    subs: list[Subscription],
    until_ms: int,
    policy: BillableTimePolicy,
    timeout: int,
) -> tuple[int, int, dict[int, int]]:
    """Billable ms of an environment over the whole run, from the stored events with the whole-set
    session core, split into attributed and unbilled (no active subscription); and the attributed ms
    per hour in which they happened."""
    from connect_metering.domain.sessions import billable_intervals

    if run.earliest_event_ms == sys.maxsize:
        return 0, 0, {}
    agent_hours = run.aws.activity.read_agent_events(
        instance_arn, hour_floor(run.earliest_event_ms), hour_floor(until_ms) + 48 * MS_PER_HOUR
    )
    by_agent: dict[str, list[Any]] = defaultdict(list)
    for agent_arn, points in agent_hours:
        by_agent[agent_arn] += points
    pieces = [
        piece
        for points in by_agent.values()
        for piece in billable_intervals(points, policy=policy, silence_timeout_ms=timeout)
        if piece[1] > piece[0]
    ]
    if not pieces:
        return 0, 0, {}
    segments = primary_segments(subs, min(p[0] for p in pieces), max(p[1] for p in pieces) + 1)
    totals = attribute(pieces, segments)
    unbilled = totals.pop(None, 0)
    by_hour = {}
    for hour, hour_pieces in _split_by_hour(pieces).items():
        attributed = attribute(hour_pieces, segments)
        attributed.pop(None, None)
        by_hour[hour] = sum(attributed.values())
    return sum(totals.values()), unbilled, by_hour


# Outputs of earlier runs in the same folder that a replay does not write itself: removed when a new
# set is published, so they never describe other records than the ones beside them.
EARLIER_OUTPUTS = ("report.html", "report.png", "report.svg", "truth.json")


def write_outputs(out: Path, results: list[SendResult], summary: dict[str, Any]) -> None:
    """records.jsonl (every record result, in send order) and summary.json, published together."""

    def records(handle: IO[str]) -> None:
        for result in results:
            handle.write(
                json.dumps(
                    {
                        "usage_record": dict(result.record.usage_record),
                        "status": result.status,
                        "sent_at": iso_ms(result.sent_at_ms),
                    },
                    sort_keys=True,
                )
                + "\n"
            )

    files = {
        "records.jsonl": records,
        "summary.json": text(json.dumps(summary, indent=2, sort_keys=True) + "\n"),
    }
    publish(out, files, stale=EARLIER_OUTPUTS)
