"""The simulate command's ground truth, and the check of the product's billing against it.

The truth is computed from what the generator emitted (``scenario``), without the product's session,
usage or metering code: each shift segment is one session [LOGIN, LOGOUT] (or [LOGIN, last heartbeat]
when the logout is missing; heartbeats are never more than 120 s apart and segments of one agent are
more than 16 minutes apart, so sessions are unambiguous under BILLING.md section 3), attributed by the
primary rule of section 4. ``check`` compares the replay's records and summary with it, per BILLING.md:

- usage: per (subscription, environment), the accepted minutes == floor(truth ms / 60 s) over the run;
- contract: per hour, the accepted `overage_agents` quantity == max(0, N(H) - L(H));
- one accepted record per active hour of every subscription (the contract primary's only), no other;
- events accepted, duplicates and quarantined per company (and unattributed), as generated;
- per environment, the replay summary's billable and unbilled milliseconds == the truth.

Two scenario choices keep the truth exact without modelling "known at the moment H is metered": the
cancelled company has nobody logged in for 20 minutes on either side of its cancellation and no outage
before it (an open session at the end instant is a section 9 corner, covered by the clause tests), and
the contract company gets no multi-hour outage (N(H) is counted as known when H is metered). An outage
only ever hides a suffix of an agent's events, so the usage known at any instant is a subset of the
final truth and the whole-run equality is exactly what BILLING.md section 5 promises.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_MINUTE, hour_floor, iso_ms, to_ms
from connect_metering.local.scenario import CompanyPlan, EnvPlan, Expected, Scenario, Session, SubPlan

GRACE_MS = 600_000  # BILLING.md section 8 default: the replay runs with the default policy


def primary_at(subscriptions: list[SubPlan], instant_ms: int) -> SubPlan | None:
    """BILLING.md section 4: the active subscription with the earliest start (ties: smaller identity)."""
    active = [sub for sub in subscriptions if sub.active_at(instant_ms)]
    return min(active, key=lambda sub: (sub.started_ms, sub.key), default=None)


def attribute(sessions: list[Session], subscriptions: list[SubPlan]) -> dict[tuple[str | None, str], int]:
    """Billable ms per (subscription key or None for unbilled, environment)."""
    totals: dict[tuple[str | None, str], int] = defaultdict(int)
    changes = sorted({sub.started_ms for sub in subscriptions} | {sub.ended_ms or 0 for sub in subscriptions})
    for session in sessions:
        cuts = [
            session.start_ms,
            *(c for c in changes if session.start_ms < c < session.end_ms),
            session.end_ms,
        ]
        for low, high in itertools.pairwise(cuts):
            payer = primary_at(subscriptions, low)
            totals[(payer.key if payer else None, session.environment)] += high - low
    return dict(totals)


def hourly_ms(sessions: list[Session]) -> dict[tuple[str, str, int], int]:
    """Billable ms per (company, environment, hour)."""
    totals: dict[tuple[str, str, int], int] = defaultdict(int)
    for session in sessions:
        hour = hour_floor(session.start_ms)
        while hour < session.end_ms:
            overlap = min(session.end_ms, hour + MS_PER_HOUR) - max(session.start_ms, hour)
            if overlap > 0:
                totals[(session.company, session.environment, hour)] += overlap
            hour += MS_PER_HOUR
    return dict(totals)


def metered_hours(sub: SubPlan, until_ms: int) -> list[int]:
    """Hours the subscription must have a record for by ``until_ms`` (BILLING.md section 6): every hour
    it is active at some instant, metered at H + 1 h + grace, or at its end for the final hours."""
    hours = []
    hour = hour_floor(sub.started_ms)
    while True:
        if sub.ended_ms is not None:
            if hour > hour_floor(sub.ended_ms - 1) or sub.ended_ms > until_ms:
                break
        elif hour + MS_PER_HOUR + GRACE_MS > until_ms:
            break
        hours.append(hour)
        hour += MS_PER_HOUR
    return hours


def contract_overage(
    sessions: list[Session], subscriptions: list[SubPlan], hours: list[int]
) -> dict[int, tuple[int, int, int]]:
    """Per hour: (N distinct agents with > 0 ms in H, L licensed, max(0, N - L))."""
    result = {}
    for hour in hours:
        agents = {
            s.agent_arn for s in sessions if min(s.end_ms, hour + MS_PER_HOUR) - max(s.start_ms, hour) > 0
        }
        licensed = sum(
            sub.licensed or 0
            for sub in subscriptions
            if sub.started_ms < hour + MS_PER_HOUR and (sub.ended_ms is None or sub.ended_ms > hour)
        )
        result[hour] = (len(agents), licensed, max(0, len(agents) - licensed))
    return result


# Checking -------------------------------------------------------------------------------------------


@dataclass
class CompanyResult:
    alias: str
    role: str
    environments: int
    billable_ms: int
    unbilled_ms: int
    billed: int
    expected: int
    unit: str
    records_by_status: dict[str, int]
    quarantined: int
    duplicates: int
    events_accepted: int
    problems: list[str]

    @property
    def matches(self) -> bool:
        return not self.problems


@dataclass
class EnvironmentResult:
    company: str
    name: str
    region: str
    account: str
    truth_ms: int
    unbilled_ms: int
    product_ms: int | None
    minutes_accepted: int
    minutes_expected: int


@dataclass
class Outcome:
    companies: list[CompanyResult]
    environments: list[EnvironmentResult]
    unattributed_expected: int
    unattributed_observed: int
    global_problems: list[str]
    hourly_truth: dict[tuple[str, str, int], int]
    hourly_billed: dict[tuple[str, str, int], int]
    contract_hours: list[tuple[str, int, int, int, int, int | None]] = field(default_factory=list)
    """(company, hour, N, L, expected overage, accepted overage or None)"""

    @property
    def matches(self) -> bool:
        return not self.global_problems and all(company.matches for company in self.companies)


ACCEPTED_STATUSES = ("Success", "DuplicateRecord")


def _accepted_records(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(identity, dimension, Timestamp) -> the accepted UsageRecord (a retry is the same stored record)."""
    accepted: dict[tuple[str, str, str], dict[str, Any]] = {}
    for result in records:
        if result.get("status") not in ACCEPTED_STATUSES:
            continue
        usage = result["usage_record"]
        identity = str(usage.get("LicenseArn") or usage.get("CustomerIdentifier") or "")
        accepted[(identity, str(usage["Dimension"]), str(usage["Timestamp"]))] = usage
    return accepted


def _allocations(usage: dict[str, Any]) -> dict[str, int]:
    result: dict[str, int] = {}
    for allocation in usage.get("UsageAllocations") or []:
        names = [tag.get("Value") for tag in allocation.get("Tags", []) if tag.get("Key") == "environment"]
        for name in names:
            result[str(name)] = result.get(str(name), 0) + int(allocation["AllocatedUsageQuantity"])
    return result


def parse_hour(stamp: str) -> int:
    return hour_floor(to_ms(datetime.fromisoformat(stamp.replace("Z", "+00:00"))))


def _short(key: str) -> str:
    return key if len(key) <= 24 else f"…{key[-12:]}"


AcceptedRecords = dict[tuple[str, str, str], dict[str, Any]]


@dataclass
class _Sinks:
    """What the check gathers across companies for the report."""

    hourly_billed: defaultdict[tuple[str, str, int], int] = field(default_factory=lambda: defaultdict(int))
    contract_hours: list[tuple[str, int, int, int, int, int | None]] = field(default_factory=list)
    environments: list[EnvironmentResult] = field(default_factory=list)


@dataclass
class _CompanyCheck:
    """One company's billing against its truth; every difference is a problem, named with how much."""

    plan: CompanyPlan
    sessions: list[Session]
    accepted: AcceptedRecords
    until_ms: int
    reported: dict[str, Any]
    sinks: _Sinks
    problems: list[str] = field(default_factory=list)
    billed_total: int = 0
    expected_total: int = 0
    accepted_by_env: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.truth = attribute(self.sessions, self.plan.subscriptions)
        self.contract = self.plan.subscriptions[0].pricing == "contract"

    def run(self, expected: Expected) -> CompanyResult:
        for sub in self.plan.subscriptions:
            self._check_subscription(sub)
        for env in self.plan.environments:
            self._check_environment(env)
        self._check_counts(expected)
        if not self.reported:
            self.problems.append("missing from the replay summary")
        return self._result()

    # Per subscription -----------------------------------------------------------------------------

    def _check_subscription(self, sub: SubPlan) -> None:
        hours = metered_hours(sub, self.until_ms)
        if self.contract:  # only the primary at instant H sends H's overage record (section 9)
            hours = [hour for hour in hours if primary_at(self.plan.subscriptions, hour) is sub]
        dimension = "overage_agents" if self.contract else "agent_minutes"
        self._check_hours(sub, dimension, hours)
        if self.contract:
            self._check_overage(sub, dimension, hours)
        else:
            self._check_minutes(sub, dimension)

    def _check_hours(self, sub: SubPlan, dimension: str, hours: list[int]) -> None:
        got_hours = sorted(
            parse_hour(stamp)
            for identity, dim, stamp in self.accepted
            if identity == sub.key and dim == dimension
        )
        if got_hours != hours:
            missing = sorted(set(hours) - set(got_hours))
            extra = sorted(set(got_hours) - set(hours))
            self.problems.append(
                f"{_short(sub.key)}: records for {len(got_hours)} hours, expected {len(hours)}"
                + (f"; missing {', '.join(iso_ms(h)[:13] for h in missing[:6])}" if missing else "")
                + (f"; unexpected {', '.join(iso_ms(h)[:13] for h in extra[:6])}" if extra else "")
            )
        foreign = [
            stamp for identity, dim, stamp in self.accepted if identity == sub.key and dim != dimension
        ]
        if foreign:
            self.problems.append(f"{_short(sub.key)}: {len(foreign)} records on another dimension")

    def _check_overage(self, sub: SubPlan, dimension: str, hours: list[int]) -> None:
        overage = contract_overage(self.sessions, self.plan.subscriptions, hours)
        for hour, (agents, licensed, want) in overage.items():
            usage = self.accepted.get((sub.key, dimension, iso_ms(hour)))
            got = int(usage["Quantity"]) if usage else 0
            self.sinks.contract_hours.append(
                (self.plan.alias, hour, agents, licensed, want, got if usage else None)
            )
            self.billed_total += got
            self.expected_total += want
            if usage is not None and got != want:
                self.problems.append(
                    f"{_short(sub.key)} hour {iso_ms(hour)[:13]}: overage {got}, expected "
                    f"max(0, N {agents} - L {licensed}) = {want} (off by {got - want:+d})"
                )

    def _check_minutes(self, sub: SubPlan, dimension: str) -> None:
        by_env = self._allocated_by_env(sub, dimension)
        unknown_envs = set(by_env) - {env.name for env in self.plan.environments}
        if unknown_envs:
            self.problems.append(
                f"{_short(sub.key)}: allocations to unknown environments {sorted(unknown_envs)}"
            )
        for env in self.plan.environments:
            truth_ms = self.truth.get((sub.key, env.name), 0)
            want = truth_ms // MS_PER_MINUTE
            got = by_env.get(env.name, 0)
            self.billed_total += got
            self.expected_total += want
            self.accepted_by_env[env.name] += got
            if got != want:
                self.problems.append(
                    f"{_short(sub.key)} / {env.name}: billed {got} min, truth floor("
                    f"{truth_ms} ms / 60 s) = {want} min (off by {got - want:+d})"
                )

    def _allocated_by_env(self, sub: SubPlan, dimension: str) -> Counter[str]:
        """The subscription's accepted minutes per environment tag (and per hour, for the chart)."""
        by_env: Counter[str] = Counter()
        for (identity, dim, stamp), usage in self.accepted.items():
            if identity != sub.key or dim != dimension:
                continue
            allocations = _allocations(usage)
            if sum(allocations.values()) != int(usage["Quantity"]):
                self.problems.append(
                    f"{_short(sub.key)} {stamp[:13]}: Quantity {usage['Quantity']} != allocations "
                    f"{sum(allocations.values())}"
                )
            for name, minutes in allocations.items():
                by_env[name] += minutes
                self.sinks.hourly_billed[(self.plan.alias, name, parse_hour(stamp))] += minutes
        return by_env

    # Per environment and per company --------------------------------------------------------------

    def _check_environment(self, env: EnvPlan) -> None:
        total = sum(ms for (_, name), ms in self.truth.items() if name == env.name)
        unbilled = self.truth.get((None, env.name), 0)
        env_report = self.reported.get("environments", {}).get(env.name, {})
        product_ms = env_report.get("billable_ms")
        if product_ms is not None and product_ms != total:
            self.problems.append(
                f"{env.name}: replay summary billable_ms {product_ms}, truth {total} (off by {product_ms - total:+d})"
            )
        product_unbilled = env_report.get("unbilled_ms")
        if product_unbilled is not None and product_unbilled != unbilled:
            self.problems.append(
                f"{env.name}: replay summary unbilled_ms {product_unbilled}, truth {unbilled} "
                f"(off by {product_unbilled - unbilled:+d})"
            )
        expected_minutes = sum(
            ms // MS_PER_MINUTE
            for (key, name), ms in self.truth.items()
            if name == env.name and key is not None
        )
        self.sinks.environments.append(
            EnvironmentResult(
                company=self.plan.alias,
                name=env.name,
                region=env.region,
                account=env.account,
                truth_ms=total,
                unbilled_ms=unbilled,
                product_ms=product_ms,
                minutes_accepted=self.accepted_by_env.get(env.name, 0),
                minutes_expected=0 if self.contract else expected_minutes,
            )
        )

    def _check_counts(self, expected: Expected) -> None:
        alias = self.plan.alias
        counted = {
            "events accepted": (self.reported.get("events_accepted"), expected.accepted[alias]),
            "duplicates": (self.reported.get("duplicates"), expected.duplicates[alias]),
            "quarantined": (self._quarantined(), expected.quarantined[alias]),
        }
        for what, (got_count, want_count) in counted.items():
            if got_count != want_count:
                self.problems.append(f"{what}: {got_count}, generated {want_count}")

    def _quarantined(self) -> int:
        return sum((self.reported.get("quarantined") or {}).values())

    def _result(self) -> CompanyResult:
        return CompanyResult(
            alias=self.plan.alias,
            role=self.plan.role,
            environments=len(self.plan.environments),
            billable_ms=sum(self.truth.values()),
            unbilled_ms=sum(ms for (key, _), ms in self.truth.items() if key is None),
            billed=self.billed_total,
            expected=self.expected_total,
            unit="overage agent-hours" if self.contract else "minutes",
            records_by_status=dict(self.reported.get("records_by_status") or {}),
            quarantined=self._quarantined(),
            duplicates=int(self.reported.get("duplicates") or 0),
            events_accepted=int(self.reported.get("events_accepted") or 0),
            problems=self.problems,
        )


def _record_problems(
    scenario: Scenario, records: list[dict[str, Any]], accepted: AcceptedRecords
) -> list[str]:
    """Records for nobody the scenario knows, and record results other than accepted."""
    statuses = Counter(str(record.get("status")) for record in records)
    known_identities = {sub.key for plan in scenario.plans for sub in plan.subscriptions}
    problems = [
        f"record for an unknown identity {identity!r} at {stamp}"
        for identity, _, stamp in accepted
        if identity not in known_identities
    ]
    if statuses and set(statuses) - set(ACCEPTED_STATUSES):
        others = {status: n for status, n in statuses.items() if status not in ACCEPTED_STATUSES}
        problems.append(f"record results other than accepted (no faults were injected): {others}")
    return problems


def check(scenario: Scenario, records: list[dict[str, Any]], summary: dict[str, Any]) -> Outcome:
    """The replay's records and summary against the scenario's ground truth."""
    accepted = _accepted_records(records)
    global_problems = _record_problems(scenario, records, accepted)
    sinks = _Sinks()
    product = summary.get("companies", {})
    companies = [
        _CompanyCheck(
            plan=plan,
            sessions=[s for s in scenario.sessions if s.company == plan.alias],
            accepted=accepted,
            until_ms=scenario.until_ms,
            reported=product.get(plan.alias, {}),
            sinks=sinks,
        ).run(scenario.expected)
        for plan in scenario.plans
    ]
    unattributed = sum((summary.get("quarantined_unattributed") or {}).values())
    if unattributed != scenario.expected.unattributed:
        global_problems.append(
            f"unattributed quarantined events: {unattributed}, generated {scenario.expected.unattributed}"
        )
    return Outcome(
        companies=companies,
        environments=sinks.environments,
        unattributed_expected=scenario.expected.unattributed,
        unattributed_observed=unattributed,
        global_problems=global_problems,
        hourly_truth=hourly_ms(scenario.sessions),
        hourly_billed=dict(sinks.hourly_billed),
        contract_hours=sinks.contract_hours,
    )
