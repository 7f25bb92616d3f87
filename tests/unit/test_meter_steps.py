"""A long catch-up proceeds in steps that each commit their progress, and one heavy company never holds
back the light ones (issue 14 section 1). The worker runs on in-memory ports that keep the write-ahead
rules of the DynamoDB stores: a record is stored before it is sent and never rewritten, a commit is
conditioned on the state's version, checkpoints are stored with the step that computed them."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from connect_metering.domain.activity import AgentHoursWindow, Checkpoint, HourWindow, StoredEvent
from connect_metering.domain.instants import MS_PER_HOUR, from_ms, parse_iso_ms
from connect_metering.domain.metering import (
    CompanyMeterState,
    CompanySnapshot,
    MeterCommit,
    MeteringRecord,
    MeterRequest,
    RecordStatus,
)
from connect_metering.domain.sessions import AgentEventPoint, BillableTimePolicy, EventKind
from connect_metering.domain.tenancy import Company, Environment, Subscription, build
from connect_metering.domain.usage import EnvironmentCheckpoint
from connect_metering.services.meter import STEP_HOURS, MeterReport, MeterWorker
from connect_metering.settings import BillingPolicy
from tests.replay_harness import LICENSE, instance

pytestmark = pytest.mark.unit

T0 = parse_iso_ms("2026-11-02T00:00:00Z")
LIGHT_SESSION = (
    (1, EventKind.LOGIN),
    (5, EventKind.HEART_BEAT),
    (9, EventKind.HEART_BEAT),
    (13, EventKind.LOGOUT),
)
WEEK = 168


class Crash(Exception):
    """The worker dies here (the process ends; what was committed stays)."""


@dataclass
class CompanyRows:
    company: Company
    subscriptions: list[Subscription]
    environments: list[Environment]
    state: str | None = None
    version: int = 0
    markers: dict[str, str] = field(default_factory=dict)  # record key -> JSON


class World:
    """The tenancy, activity and ledger stores, in memory, and a Marketplace that accepts every record
    once (an identical repeat gets the same answer; another quantity for the same hour is a duplicate)."""

    def __init__(self) -> None:
        self.companies: dict[str, CompanyRows] = {}
        self.events: dict[str, list[StoredEvent]] = {}
        self.checkpoints: dict[tuple[str, int], EnvironmentCheckpoint] = {}
        self.ledger: dict[str, MeteringRecord] = {}
        self.accepted: dict[str, MeteringRecord] = {}
        self.sent: list[MeteringRecord] = []
        self.commits: list[tuple[str, int, int | None]] = []  # company, checkpoints, checkpoint_through
        self.crash_at_commit: int | None = None
        self.hours_read = 0
        self.retried_records = 0

    # CompanyReader
    def load_company(self, alias: str) -> CompanySnapshot | None:
        rows = self.companies[alias]
        counts = {env.name: len(self.events.get(env.instance_arn.arn, [])) for env in rows.environments}
        return CompanySnapshot(
            rows.company,
            list(rows.subscriptions),
            list(rows.environments),
            rows.state,
            rows.version,
            list(rows.markers.values()),
            counts,
        )

    def save_subscription(self, subscription: Subscription, *, metered: bool | None = None) -> None:
        raise AssertionError("no subscription ends here")

    # ActivityReader
    def read_hours(self, instance_arn: str, first_hour_ms: int, last_hour_ms: int) -> HourWindow:
        self.hours_read += (last_hour_ms - first_hour_ms) // MS_PER_HOUR + 1
        events = [
            stored
            for stored in self.events.get(instance_arn, [])
            if first_hour_ms <= stored.point.ts_ms < last_hour_ms + MS_PER_HOUR
        ]
        checkpoints = {
            hour: checkpoint
            for (arn, hour), checkpoint in self.checkpoints.items()
            if arn == instance_arn and first_hour_ms <= hour <= last_hour_ms
        }
        return HourWindow(checkpoints, events)

    def read_agent_hours(self, instance_arn: str, first_hour_ms: int, last_hour_ms: int) -> AgentHoursWindow:
        window = self.read_hours(instance_arn, first_hour_ms, last_hour_ms)
        return AgentHoursWindow(
            window.checkpoints, [(stored.agent_arn, [stored.point]) for stored in window.events]
        )

    # MeterStore
    def commit(
        self,
        company: str,
        *,
        version: int,
        state: CompanyMeterState,
        new_records: Sequence[MeteringRecord],
        settled: Sequence[MeteringRecord] = (),
        checkpoints: Sequence[Checkpoint] = (),
    ) -> int:
        if self.crash_at_commit is not None:
            self.crash_at_commit -= 1
            if self.crash_at_commit < 0:
                self.crash_at_commit = None
                raise Crash
        rows = self.companies[company]
        assert rows.version == version, "a commit on a state someone else changed"
        for record in new_records:
            assert record.key not in self.ledger, "a stored record is never rewritten"
            self.ledger[record.key] = record
            rows.markers[record.key] = _text(record)
        for record in settled:
            self.ledger[record.key] = record
            rows.markers.pop(record.key, None)
        for checkpoint in checkpoints:
            self.checkpoints[(checkpoint.instance_arn, checkpoint.hour_ms)] = checkpoint.checkpoint
        rows.state, rows.version = state.to_json(), version + 1
        self.commits.append((company, len(checkpoints), state.checkpoint_through_ms))
        return version + 1

    def commit_together(self, commits: Sequence[MeterCommit]) -> list[int | Exception]:
        """Each company's commit in turn (a crash stops the process there, like a crash mid-group)."""
        return [
            self.commit(
                work.company,
                version=work.version,
                state=work.state,
                new_records=work.new_records,
                settled=work.settled,
                checkpoints=work.checkpoints,
            )
            for work in commits
        ]

    def settle(self, records: Sequence[MeteringRecord]) -> None:
        for record in records:
            self.ledger[record.key] = record
            self.companies[record.company].markers.pop(record.key, None)

    def mark_in_flight(self, records: Sequence[MeteringRecord]) -> None:
        for record in records:
            self.companies[record.company].markers[record.key] = _text(record)

    # Marketplace
    def send(self, records: Sequence[MeteringRecord]) -> list[MeteringRecord]:
        answered = []
        for record in records:
            assert record.usage_record == self.ledger[record.key].usage_record, "sent as stored"
            self.sent.append(record)
            first = self.accepted.setdefault(record.key, record)
            if first.usage_record != record.usage_record:
                answered.append(record.settled(RecordStatus.ACCEPTED, "DuplicateRecord"))
            else:
                answered.append(record.settled(RecordStatus.ACCEPTED, "Success", f"id-{record.key}"))
        return answered

    def add_company(self, alias: str, number: int, started_ms: int) -> str:
        arn = instance(number)
        subscription = build(
            Subscription,
            company_alias=alias,
            identity={"customer_aws_account_id": "111122223333", "license_arn": LICENSE.format(alias)},
            pricing="usage",
        ).model_copy(update={"started": from_ms(started_ms)})
        self.companies[alias] = CompanyRows(
            build(Company, alias=alias),
            [subscription],
            [build(Environment, company_alias=alias, name="prod", instance_arn=arn)],
        )
        return arn

    def accepted_minutes(self, alias: str) -> int:
        return sum(record.quantity for record in self.accepted.values() if record.company == alias)


def _text(record: MeteringRecord) -> str:
    return json.dumps(record.to_json())


def shifts(world: World, arn: str, agents: int, days: int, rng: random.Random) -> int:
    """Each agent works a short shift every day (LOGIN, a heartbeat 4 minutes in, LOGOUT) at an hour
    of its own, so that every hour of the week has agents; returns the billable minutes."""
    events: list[StoredEvent] = []
    minutes = 0
    for agent in range(agents):
        agent_arn = f"{arn}/agent/a{agent:05d}"
        hour = agent % 24
        for day in range(days):
            start = T0 + day * 24 * MS_PER_HOUR + hour * MS_PER_HOUR + rng.randrange(0, 40) * 60_000
            length = rng.randrange(5, 9) * 60_000
            for offset, kind in (
                (0, EventKind.LOGIN),
                (240_000, EventKind.HEART_BEAT),
                (length, EventKind.LOGOUT),
            ):
                point = AgentEventPoint(start + offset, kind, f"e-{agent}-{day}-{int(kind)}", offline=False)
                events.append(StoredEvent(agent_arn, point))
            minutes += length // 60_000
    world.events[arn] = sorted(events, key=lambda stored: stored.point)
    return minutes


def worker(world: World) -> MeterWorker:
    return MeterWorker(
        companies=world,
        activity=world,
        store=world,
        marketplace=world,
        policy=BillingPolicy(),
        # the worker was down all week: it runs at 01:10 on the eighth day
        now_ms=lambda: T0 + (WEEK + 1) * MS_PER_HOUR + 600_000,
    )


def run(
    world: World, request: MeterRequest, remaining_ms: Callable[[], int] | None
) -> MeterReport | Exception:
    return worker(world).run_batch([request], remaining_ms=remaining_ms)[0]


def hourly(alias: str) -> MeterRequest:
    return MeterRequest(company=alias, kind="hourly", through_ms=T0 + (WEEK - 1) * MS_PER_HOUR)


def test_a_2000_agent_week_is_caught_up_in_committed_steps_and_a_crash_between_them_loses_nothing() -> None:
    world = World()
    arn = world.add_company("big", 1, T0)
    minutes = shifts(world, arn, agents=2000, days=7, rng=random.Random(14))
    no_time_left = lambda: 0  # noqa: E731 - each invocation's budget allows its first step only

    reports: list[MeterReport | Exception] = []
    while not reports or isinstance(reports[-1], Exception) or reports[-1].hours_left:
        if len(reports) == 3:
            world.crash_at_commit = 5  # the fourth invocation dies inside its step
        reports.append(run(world, hourly("big"), no_time_left))
        assert len(reports) < 20

    steps = [report for report in reports if isinstance(report, MeterReport)]
    assert len(steps) >= WEEK // STEP_HOURS  # several invocations, one step each
    assert all(report.steps == 1 for report in steps)
    assert isinstance(reports[3], Crash)
    # Each step ends with a commit that stores its checkpoints and moves checkpoint_through forward.
    step_ends = [through for _, stored, through in world.commits if stored and through is not None]
    assert step_ends == sorted(step_ends) and len(set(step_ends)) == len(step_ends)
    assert step_ends[-1] == T0 + WEEK * MS_PER_HOUR
    # One record per hour, every hour, each sent as stored, none accepted twice. The records the dead
    # invocation stored but never sent were older than 6 h at the next one: expired, never sent, their
    # minutes moved into the next record (BILLING.md section 6); every minute is billed exactly once.
    hours = sorted(record.hour_ms for record in world.ledger.values())
    assert hours == [T0 + hour * MS_PER_HOUR for hour in range(WEEK)]
    expired = {key for key, record in world.ledger.items() if record.status is RecordStatus.EXPIRED}
    assert len(expired) == 5 and not expired & world.accepted.keys()
    assert len(world.accepted) == WEEK - 5
    assert Counter(record.result for record in world.accepted.values())["DuplicateRecord"] == 0
    assert world.accepted_minutes("big") == minutes
    assert not world.companies["big"].markers


def test_a_crash_between_steps_of_one_invocation_resumes_from_the_last_committed_step() -> None:
    world = World()
    arn = world.add_company("big", 1, T0)
    minutes = shifts(world, arn, agents=50, days=7, rng=random.Random(3))
    world.crash_at_commit = 2 * STEP_HOURS + 10  # dies in the third step, two steps committed
    assert isinstance(run(world, hourly("big"), None), Crash)
    committed = CompanyMeterState.from_json(world.companies["big"].state)
    assert committed.checkpoint_through_ms is not None
    assert committed.checkpoint_through_ms >= T0 + 2 * (STEP_HOURS - 1) * MS_PER_HOUR
    read_before = world.hours_read
    report = run(world, hourly("big"), None)
    assert isinstance(report, MeterReport) and report.hours_left == 0
    # The rerun read on from the committed checkpoint, not from the start of the week.
    assert world.hours_read - read_before <= WEEK - (committed.checkpoint_through_ms - T0) // MS_PER_HOUR + 8
    assert len(world.ledger) == WEEK
    # What the dead run stored but never sent expired at the rerun (older than 6 h): never sent, its
    # minutes in the next record; nothing was sent twice and every minute is billed exactly once.
    assert all(count == 1 for count in Counter(record.key for record in world.sent).values())
    assert world.accepted_minutes("big") == minutes


def test_one_heavy_company_does_not_keep_the_light_ones_from_their_first_invocation() -> None:
    world = World()
    heavy = world.add_company("heavy", 1, T0)
    shifts(world, heavy, agents=200, days=7, rng=random.Random(5))
    light = [f"light{number}" for number in range(5)]
    last_hour = T0 + (WEEK - 1) * MS_PER_HOUR
    for number, alias in enumerate(light, start=2):
        arn = world.add_company(alias, number, last_hour)  # subscribed during the last hour
        # metered every hour so far: its checkpoint at the hour is stored, nothing else to read
        world.companies[alias].state = CompanyMeterState(checkpoint_through_ms=last_hour).to_json()
        world.checkpoints[(arn, last_hour)] = EnvironmentCheckpoint.empty(
            last_hour, policy=BillableTimePolicy("logged_in"), silence_timeout_ms=360_000
        )
        world.events[arn] = [  # 12 minutes: LOGIN, heartbeats every 4 minutes, LOGOUT
            StoredEvent(
                f"{arn}/agent/x", AgentEventPoint(last_hour + minute * 60_000, kind, f"e{minute}", False)
            )
            for minute, kind in LIGHT_SESSION
        ]

    # The invocation's time: 100 s, each hour read costing 1 s; 60 s are kept for the send.
    def remaining_ms() -> int:
        return 100_000 - 1_000 * world.hours_read

    meter = worker(world)
    outcomes = meter.run_batch(
        [hourly("heavy"), *(hourly(alias) for alias in light)], remaining_ms=remaining_ms
    )

    reports = {report.company: report for report in outcomes if isinstance(report, MeterReport)}
    assert len(reports) == 6
    for alias in light:  # metered, sent and accepted in the first invocation
        assert reports[alias].hours_left == 0
        assert [record.quantity for record in reports[alias].records_settled] == [12]
    assert reports["heavy"].steps >= 1 and reports["heavy"].hours_left > 0
    assert reports["heavy"].records_settled  # its first step's records went out too
    # The next invocations continue the heavy company where its committed steps left it.
    while reports["heavy"].hours_left:
        world.hours_read = 0
        (report,) = meter.run_batch([hourly("heavy")], remaining_ms=remaining_ms)
        assert isinstance(report, MeterReport) and report.steps >= 1
        reports["heavy"] = report
    assert len([record for record in world.ledger.values() if record.company == "heavy"]) == WEEK
