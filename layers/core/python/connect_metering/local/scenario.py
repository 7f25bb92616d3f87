"""The simulate command's scenario: companies, their subscriptions and environments, and every line of
E.jsonl, deterministic by seed, with what the product must count (accepted, duplicates, quarantined).

The generator plans every agent's shifts (lunch logouts, breaks and status changes inside a shift,
HEART_BEATs every 120 s, Offline heartbeats after a logout, some logouts missing), delivers them as
EventBridge envelopes with a few seconds of delay, and adds what the real world adds: duplicate
deliveries (the identical envelope twice), forwarder outages (an environment's events held for 70 min to
3 h and released at once, so some arrive after their hour was metered), a few events a few minutes late,
forged events (a copy of a real event sent from another account, first) and malformed lines. Companies
play roles in this order: two subscriptions (the second starts later, usage follows the older), a
contract over its licence, a cancellation mid-day (final metering), a legacy CustomerIdentifier, then
plain usage companies (every other one subscribing after its agents started).

Each generated shift segment is recorded as a ``Session`` [LOGIN, LOGOUT] (or [LOGIN, last heartbeat]
when the logout is missing): the input of the ground truth (``ground_truth``).
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_MINUTE, from_ms, iso_ms, to_ms
from connect_metering.local.traffic import Shift, eventbridge_envelope, shift_events

# The simulated day starts on a Monday morning, UTC.
WINDOW_START = datetime(2026, 11, 2, 6, tzinfo=UTC)
SETTLE_MS = 3 * MS_PER_HOUR  # --until = the last arrival + 3 h: every record is metered and answered
SEGMENT_GAP_MS = 16 * MS_PER_MINUTE  # > 10 min of Offline heartbeats + the 360 s silence timeout

ALIASES = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "soylent")
REGIONS = (
    "us-east-1",
    "eu-west-2",
    "ap-southeast-2",
    "eu-central-1",
    "ca-central-1",
    "us-west-2",
    "ap-northeast-1",
    "af-south-1",
)
ROLES = ("two subscriptions", "contract over licence", "cancelled mid-day", "legacy identity")
LICENSE_OWNER = "294406891311"  # the Marketplace licence ARNs' account
STRAY_ACCOUNT = "999988887777"  # sends forged events when there is no other company


# The plan -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvPlan:
    company: str
    name: str
    instance_arn: str
    account: str
    region: str


@dataclass(frozen=True)
class SubPlan:
    """One subscription; ``key`` is its identity as a UsageRecord names it (LicenseArn or
    CustomerIdentifier), which is also the tie-breaker of BILLING.md section 9."""

    company: str
    key: str
    pricing: str
    started_ms: int
    ended_ms: int | None
    licensed: int | None
    registry: dict[str, Any]

    def active_at(self, instant_ms: int) -> bool:
        return self.started_ms <= instant_ms and (self.ended_ms is None or instant_ms < self.ended_ms)


@dataclass
class CompanyPlan:
    alias: str
    role: str
    environments: list[EnvPlan]
    subscriptions: list[SubPlan]
    agents: list[tuple[str, EnvPlan]] = field(default_factory=list)
    cancelled_at_ms: int | None = None


@dataclass(frozen=True)
class Session:
    company: str
    environment: str
    agent_arn: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Line:
    """One line of E.jsonl: ``order_ms`` places it in the file (arrival order), ``body`` is the line."""

    order_ms: int
    sequence: int
    body: str


@dataclass
class Expected:
    """What the product must count, as generated (BILLING.md section 2)."""

    accepted: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    unattributed: int = 0
    late_lines: int = 0


@dataclass
class Scenario:
    companies: int
    agents: int
    hours: int
    seed: int
    window_start_ms: int
    window_end_ms: int
    plans: list[CompanyPlan]
    sessions: list[Session]
    lines: list[Line]
    expected: Expected

    @property
    def last_arrival_ms(self) -> int:
        return max(line.order_ms for line in self.lines)

    @property
    def until_ms(self) -> int:
        ends = [sub.ended_ms for plan in self.plans for sub in plan.subscriptions if sub.ended_ms]
        return max([self.last_arrival_ms, *ends]) + SETTLE_MS

    def registry(self) -> dict[str, Any]:
        return {
            "product_code": "connectmetering",
            "companies": [
                {
                    "alias": plan.alias,
                    "name": f"{plan.alias.capitalize()} ({plan.role})",
                    "subscriptions": [sub.registry for sub in plan.subscriptions],
                    "environments": [
                        {"name": env.name, "instance_arn": env.instance_arn} for env in plan.environments
                    ],
                }
                for plan in self.plans
            ],
        }


# Generation -----------------------------------------------------------------------------------------


def _uuid(rng: random.Random) -> str:
    digits = f"{rng.getrandbits(128):032x}"
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-8{digits[17:20]}-{digits[20:]}"


def _alias(index: int) -> str:
    word = ALIASES[index % len(ALIASES)]
    return word if index < len(ALIASES) else f"{word}{index // len(ALIASES)}"


def _role(index: int) -> str:
    if index < len(ROLES):
        return ROLES[index]
    return "usage" if index % 2 == 0 else "subscribes mid-window"


def _environments(index: int, alias: str, role: str, rng: random.Random) -> list[EnvPlan]:
    first, second = f"{210000000000 + index * 100 + 1}", f"{210000000000 + index * 100 + 2}"
    if role == ROLES[0]:
        layout = [(first, REGIONS[0]), (first, REGIONS[1]), (second, REGIONS[2])]
    else:
        layout = [(first, REGIONS[index % len(REGIONS)])]
        if index % 2 == 1:
            layout.append((second if index % 3 == 0 else first, REGIONS[(index + 3) % len(REGIONS)]))
    environments = []
    for account, region in layout:
        instance_id = _uuid(rng)
        environments.append(
            EnvPlan(
                company=alias,
                name=f"{region}-{instance_id[:8]}",
                instance_arn=f"arn:aws:connect:{region}:{account}:instance/{instance_id}",
                account=account,
                region=region,
            )
        )
    return environments


def _subscription(
    alias: str,
    rng: random.Random,
    *,
    buyer: str,
    started_ms: int,
    ended_ms: int | None = None,
    pricing: str = "usage",
    licensed: int | None = None,
    expires_ms: int | None = None,
    legacy: bool = False,
) -> SubPlan:
    entry: dict[str, Any] = {"pricing": pricing, "started": iso_ms(started_ms)}
    if legacy:
        key = f"c{rng.getrandbits(44):011x}"
        entry["customer_identifier"] = key
    else:
        key = f"arn:aws:license-manager::{LICENSE_OWNER}:license:l-{rng.getrandbits(128):032x}"
        entry["customer_aws_account_id"] = buyer
        entry["license_arn"] = key
    if ended_ms is not None:
        entry["ended"] = iso_ms(ended_ms)
    if licensed is not None:
        entry["entitlements"] = {"licensed_agents": licensed}
    if expires_ms is not None:
        entry["expires"] = iso_ms(expires_ms)
    return SubPlan(alias, key, pricing, started_ms, ended_ms, licensed, entry)


def licensed_agents(agents: int) -> int:
    """The contract company's licence: a quarter (at least one) below its agents."""
    return agents - max(1, agents // 4)


def cancellation_ms(window_start_ms: int, hours: int) -> int:
    """Mid-day: half-way through the window (at most 6 h in), off the hour."""
    half = min(hours * MS_PER_HOUR // 2, 6 * MS_PER_HOUR)
    return window_start_ms + half + 23 * MS_PER_MINUTE + 17_250


def _plan_companies(
    scenario_companies: int, agents: int, hours: int, rng: random.Random
) -> list[CompanyPlan]:
    start = to_ms(WINDOW_START)
    plans = []
    for index in range(scenario_companies):
        alias, role = _alias(index), _role(index)
        environments = _environments(index, alias, role, rng)
        buyer = environments[0].account
        early = start - 30 * MS_PER_MINUTE
        subscriptions: list[SubPlan]
        cancelled = None
        if role == ROLES[0]:
            later = start + max(MS_PER_HOUR, hours * MS_PER_HOUR // 3) + 7 * MS_PER_MINUTE + 13_000
            subscriptions = [
                _subscription(alias, rng, buyer=buyer, started_ms=early),
                _subscription(alias, rng, buyer=buyer, started_ms=later),
            ]
        elif role == ROLES[1]:
            # on a whole hour: the primary at instant H exists for every hour it meters (section 9)
            subscriptions = [
                _subscription(
                    alias,
                    rng,
                    buyer=buyer,
                    started_ms=start - MS_PER_HOUR,
                    pricing="contract",
                    licensed=licensed_agents(agents),
                    expires_ms=start + 365 * 24 * MS_PER_HOUR,
                )
            ]
        elif role == ROLES[2]:
            cancelled = cancellation_ms(start, hours)
            subscriptions = [_subscription(alias, rng, buyer=buyer, started_ms=early, ended_ms=cancelled)]
        elif role == ROLES[3]:
            subscriptions = [_subscription(alias, rng, buyer=buyer, started_ms=early, legacy=True)]
        elif role == "usage":
            subscriptions = [_subscription(alias, rng, buyer=buyer, started_ms=early)]
        else:  # subscribes mid-window: its agents' earlier time is unbilled
            late_start = start + MS_PER_HOUR + 40 * MS_PER_MINUTE + 500
            subscriptions = [_subscription(alias, rng, buyer=buyer, started_ms=late_start)]
        plan = CompanyPlan(alias, role, environments, subscriptions, cancelled_at_ms=cancelled)
        plan.agents = [(_uuid(rng), environments[number % len(environments)]) for number in range(agents)]
        plans.append(plan)
    return plans


def _segments(
    rng: random.Random, window_start_ms: int, window_end_ms: int, quiet: tuple[int, int] | None
) -> list[tuple[int, int, bool]]:
    """One agent's logged-in segments (start, end, logout sent): one shift a day, often split by a lunch
    logout; cut around ``quiet`` (nobody logged in there)."""
    segments: list[tuple[int, int, bool]] = []
    day = window_start_ms
    while day < window_end_ms:
        available = min(24 * MS_PER_HOUR, window_end_ms - day)
        offset = int(rng.uniform(0, min(3 * MS_PER_HOUR, 0.3 * available)))
        room = available - offset - 15 * MS_PER_MINUTE
        length = int(rng.uniform(0.5, 0.85) * min(8 * MS_PER_HOUR, room))
        day_start = day
        day += 24 * MS_PER_HOUR
        if length < 20 * MS_PER_MINUTE:
            continue
        begin = day_start + offset
        pieces = [(begin, begin + length)]
        if length >= 4 * MS_PER_HOUR and rng.random() < 0.6:
            lunch = begin + int(length * rng.uniform(0.4, 0.6))
            back = lunch + int(rng.uniform(30, 45) * MS_PER_MINUTE)
            pieces = [(begin, lunch), (back, min(begin + length + (back - lunch), window_end_ms))]
        for piece_start, piece_end in pieces:
            for cut_start, cut_end in _cut(piece_start, piece_end, quiet, rng):
                if cut_end - cut_start >= 5 * MS_PER_MINUTE:
                    segments.append((cut_start, cut_end, rng.random() >= 0.1))
    return segments


def _cut(start: int, end: int, quiet: tuple[int, int] | None, rng: random.Random) -> list[tuple[int, int]]:
    if quiet is None or end <= quiet[0] or start >= quiet[1]:
        return [(start, end)]
    pieces = []
    if start < quiet[0]:
        pieces.append((start, quiet[0] - int(rng.uniform(0, 10) * MS_PER_MINUTE)))
    if end > quiet[1]:
        pieces.append((quiet[1] + int(rng.uniform(0, 10) * MS_PER_MINUTE), end))
    return pieces


def _ms(event: dict[str, Any]) -> int:
    moment = datetime.fromisoformat(str(event["EventTimestamp"]).replace("Z", "+00:00"))
    return to_ms(moment)


def _body(event: dict[str, Any], arrival_ms: int, account: str | None = None) -> str:
    envelope = eventbridge_envelope(event, arrived=from_ms(arrival_ms), account=account)
    return json.dumps(envelope, separators=(",", ":"))


@dataclass
class _Emitted:
    event: dict[str, Any]
    ts_ms: int
    arrival_ms: int
    company: str


class Generator:
    """Plans the companies and emits every line of E.jsonl together with the ground truth."""

    def __init__(self, companies: int, agents: int, hours: int, seed: int) -> None:
        self.companies, self.agents, self.hours, self.seed = companies, agents, hours, seed
        self.rng = random.Random(seed)
        self.start_ms = to_ms(WINDOW_START)
        self.end_ms = self.start_ms + hours * MS_PER_HOUR
        self.sessions: list[Session] = []
        self.lines: list[Line] = []
        self.expected = Expected()
        self._sequence = 0

    def _line(self, order_ms: int, body: str) -> None:
        self._sequence += 1
        self.lines.append(Line(order_ms, self._sequence, body))

    def run(self, progress: Callable[[int], None] | None = None) -> Scenario:
        plans = _plan_companies(self.companies, self.agents, self.hours, self.rng)
        emitted: list[_Emitted] = []
        for number, plan in enumerate(plans):
            emitted.extend(self._company_traffic(plan))
            if progress is not None:
                progress(number + 1)
        on_time = [item for item in emitted if item.arrival_ms - item.ts_ms < 10_000]
        for item in emitted:
            body = _body(item.event, item.arrival_ms)
            self._line(item.arrival_ms, body)
            self.expected.accepted[item.company] += 1
            if item.arrival_ms - item.ts_ms >= 10_000:
                self.expected.late_lines += 1
            if self.rng.random() < 0.01:  # an at-least-once redelivery: the identical envelope again
                self._line(item.arrival_ms + int(self.rng.uniform(1, 40) * 1000), body)
                self.expected.duplicates[item.company] += 1
        self._forgeries(plans, on_time)
        self._malformed(plans)
        self.lines.sort(key=lambda line: (line.order_ms, line.sequence))
        self.sessions.sort(key=lambda s: (s.company, s.environment, s.agent_arn, s.start_ms))
        return Scenario(
            companies=self.companies,
            agents=self.agents,
            hours=self.hours,
            seed=self.seed,
            window_start_ms=self.start_ms,
            window_end_ms=self.end_ms,
            plans=plans,
            sessions=self.sessions,
            lines=self.lines,
            expected=self.expected,
        )

    def _company_traffic(self, plan: CompanyPlan) -> list[_Emitted]:
        rng = self.rng
        quiet = None
        if plan.cancelled_at_ms is not None:
            quiet = (plan.cancelled_at_ms - 20 * MS_PER_MINUTE, plan.cancelled_at_ms + 20 * MS_PER_MINUTE)
        outages = self._outages(plan)
        emitted: list[_Emitted] = []
        for agent_id, env in plan.agents:
            agent_arn = f"{env.instance_arn}/agent/{agent_id}"
            previous_end = None
            for seg_start, seg_end, logout in _segments(rng, self.start_ms, self.end_ms, quiet):
                shift = Shift(
                    instance_arn=env.instance_arn,
                    agent_id=agent_id,
                    start=from_ms(seg_start),
                    end=from_ms(seg_end),
                    logout=logout,
                    heartbeats_after_logout=rng.randint(2, 5),
                )
                events = list(shift_events(shift, rng))
                stamps = [_ms(event) for event in events]
                if logout:
                    end = next(ts for ts, e in zip(stamps, events, strict=True) if e["EventType"] == "LOGOUT")
                else:
                    end = stamps[-1]
                if previous_end is not None and stamps[0] - previous_end <= SEGMENT_GAP_MS:
                    raise AssertionError(f"{agent_arn}: segments closer than {SEGMENT_GAP_MS} ms")
                previous_end = stamps[-1]
                self.sessions.append(Session(plan.alias, env.name, agent_arn, stamps[0], end))
                for position, (event, ts) in enumerate(zip(events, stamps, strict=True)):
                    arrival = ts + int(rng.uniform(300, 4000))
                    held = outages.get(env.instance_arn)
                    if held is not None and held[0] <= ts < held[1]:
                        # the forwarder's retries release the backlog when the outage ends, in order
                        arrival = held[1] + (ts - held[0]) // 1000 + int(rng.uniform(300, 4000))
                    elif self._may_straggle(events, position) and rng.random() < 0.004:
                        arrival = ts + int(rng.uniform(2, 9) * MS_PER_MINUTE)  # late, within the grace
                    emitted.append(_Emitted(event, ts, arrival, plan.alias))
        return emitted

    @staticmethod
    def _may_straggle(events: list[dict[str, Any]], position: int) -> bool:
        """A single event may arrive minutes late only where its absence changes no session: not the
        LOGIN, not the LOGOUT or anything after it, not the last event, and between two events <= 120 s
        apart from it."""
        if position == 0 or position >= len(events) - 1:
            return False
        kinds = [event["EventType"] for event in events[: position + 1]]
        return "LOGOUT" not in kinds and events[position + 1]["EventType"] != "LOGOUT"

    def _outages(self, plan: CompanyPlan) -> dict[str, tuple[int, int]]:
        """Per environment, maybe one forwarder outage [start, end) of 70 min to 3 h: its events are
        held and released at the end. None for the contract company (N(H) is as known when H is
        metered); after the cancellation only for the cancelled company."""
        outages: dict[str, tuple[int, int]] = {}
        if plan.role == ROLES[1]:
            return outages
        earliest = self.start_ms + 30 * MS_PER_MINUTE
        if plan.cancelled_at_ms is not None:
            earliest = plan.cancelled_at_ms + 20 * MS_PER_MINUTE
        for env in plan.environments:
            if self.rng.random() >= 0.6 or earliest >= self.end_ms - MS_PER_HOUR:
                continue
            begin = int(self.rng.uniform(earliest, self.end_ms - MS_PER_HOUR))
            outages[env.instance_arn] = (begin, begin + int(self.rng.uniform(70, 180) * MS_PER_MINUTE))
        return outages

    def _forgeries(self, plans: list[CompanyPlan], on_time: list[_Emitted]) -> None:
        """Per company: copies of real events sent first from another account (same EventId: the real
        one must still count), and a fabricated LOGIN on its instance from another account."""
        rng = self.rng
        by_company: dict[str, list[_Emitted]] = defaultdict(list)
        for item in on_time:
            by_company[item.company].append(item)
        for index, plan in enumerate(plans):
            attacker = (
                plans[(index + 1) % len(plans)].environments[0].account if len(plans) > 1 else STRAY_ACCOUNT
            )
            candidates = by_company.get(plan.alias, [])
            for item in rng.sample(candidates, min(2, len(candidates))):
                self._line(item.ts_ms + 100, _body(item.event, item.ts_ms + 100, account=attacker))
                self.expected.quarantined[plan.alias] += 1
            env = plan.environments[0]
            at = int(rng.uniform(self.start_ms, self.end_ms))
            fake = dict(candidates[0].event) if candidates else {}
            fake.update(
                {
                    "AWSAccountId": env.account,
                    "AgentARN": f"{env.instance_arn}/agent/{_uuid(rng)}",
                    "EventId": _uuid(rng),
                    "EventTimestamp": iso_ms(at),
                    "EventType": "LOGIN",
                    "InstanceARN": env.instance_arn,
                }
            )
            self._line(at + 500, _body(fake, at + 500, account=attacker))
            self.expected.quarantined[plan.alias] += 1

    def _malformed(self, plans: list[CompanyPlan]) -> None:
        """Lines the product must quarantine without attributing them to any company."""
        rng = self.rng
        env = plans[0].environments[0]
        unknown = f"arn:aws:connect:us-east-1:{STRAY_ACCOUNT}:instance/{_uuid(rng)}"
        for _ in range(max(1, self.companies // 5)):
            at = int(rng.uniform(self.start_ms, self.end_ms))
            good = {
                "AWSAccountId": env.account,
                "AgentARN": f"{env.instance_arn}/agent/{_uuid(rng)}",
                "EventId": _uuid(rng),
                "EventTimestamp": iso_ms(at),
                "EventType": "HEART_BEAT",
                "InstanceARN": env.instance_arn,
                "CurrentAgentSnapshot": {"AgentStatus": {"Name": "Available"}},
            }
            lowercase = {**good, "EventType": "heart_beat"}
            bad_time = {**good, "EventTimestamp": "yesterday at noon"}
            no_id = {key: value for key, value in good.items() if key != "EventId"}
            stranger = {
                **good,
                "AWSAccountId": STRAY_ACCOUNT,
                "InstanceARN": unknown,
                "AgentARN": f"{unknown}/agent/{_uuid(rng)}",
            }
            wrong_source = json.loads(_body(good, at))
            wrong_source["source"] = "aws.connect"
            bodies = [
                '{"EventType": "LOGIN", "AgentARN": "arn:aws:conn',  # truncated JSON
                "[1, 2, 3]",
                json.dumps(wrong_source),
                _body(lowercase, at),
                _body(bad_time, at),
                _body(no_id, at),
                _body(stranger, at, account=STRAY_ACCOUNT),
            ]
            for offset, body in enumerate(bodies):
                self._line(at + 1000 * offset, body)
                self.expected.unattributed += 1


def generate(companies: int, agents: int, hours: int, seed: int) -> Scenario:
    return Generator(companies, agents, hours, seed).run()
