"""`connect-metering simulate`: realistic traffic for several companies, its own ground truth, the replay.

    connect-metering simulate [--companies N] [--agents M] [--hours H] [--seed S] [--out DIR]

Deterministic by seed. The generator plans every agent's shifts (lunch logouts, breaks and status
changes inside a shift, HEART_BEATs every 120 s, Offline heartbeats after a logout, some logouts
missing), delivers them as EventBridge envelopes with a few seconds of delay, and adds what the real
world adds: duplicate deliveries (the identical envelope twice), forwarder outages (an environment's
events held for 70 min to 3 h and released at once, so some arrive after their hour was metered), a few
events a few minutes late, forged events (a copy of a real event sent from another account, first) and
malformed lines. Companies play roles in this order: two subscriptions (the second starts later, usage
follows the older), a contract over its licence, a cancellation mid-day (final metering), a legacy
CustomerIdentifier, then plain usage companies (every other one subscribing after its agents started).

The ground truth is computed here, from what the generator emitted, without the product's session,
usage or metering code: each shift segment is one session [LOGIN, LOGOUT] (or [LOGIN, last heartbeat]
when the logout is missing; heartbeats are never more than 120 s apart and segments of one agent are
more than 16 minutes apart, so sessions are unambiguous under BILLING.md section 3), attributed by the
primary rule of section 4. Then it runs `Replay` in-process and compares, per BILLING.md:

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

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_MINUTE, from_ms, hour_floor, iso_ms, to_ms
from connect_metering.local.traffic import Shift, eventbridge_envelope, shift_events

EXIT_MATCH = 0
EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2

# The simulated day starts on a Monday morning, UTC.
WINDOW_START = datetime(2026, 11, 2, 6, tzinfo=UTC)
GRACE_MS = 600_000  # BILLING.md section 8 default: the replay runs with the default policy
SETTLE_MS = 3 * MS_PER_HOUR  # --until = the last arrival + 3 h: every record is metered and answered
SEGMENT_GAP_MS = 16 * MS_PER_MINUTE  # > 10 min of Offline heartbeats + the 360 s silence timeout

LIMITS = {"companies": (1, 200), "agents": (2, 2000), "hours": (2, 72)}
DEFAULTS = {"companies": 6, "agents": 6, "hours": 10, "seed": 7}

# Replay speed measured on this 2-core machine (2026-11-22, `time connect-metering simulate`): about
# 2.5 ms per line with 30 agents (5 x 6) and 4.2 ms with 300 (10 x 30), metering included. Ingest costs
# one DynamoDB write per agent-hour present in a batch of 100 lines, so the time per line grows with the
# share of distinct agents in a batch: ms per line ~ 2.2 + 3.5 x share (a margin over the fit 2.0 + 3.0 x).
# A size whose estimate exceeds MAX_ESTIMATED_SECONDS is refused before any work.
MS_PER_LINE_BASE = 2.2
MS_PER_LINE_PER_DISTINCT_SHARE = 3.5
STARTUP_SECONDS = 6.0
MAX_ESTIMATED_SECONDS = 20 * 60
# Lines per logged-in agent-hour: `traffic.shift_events` (a heartbeat or status change every ~107 s, the
# Offline heartbeats after a logout) plus duplicates, forgeries and malformed lines; measured 36.1.
LINES_PER_AGENT_HOUR = 37.0

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


# Ground truth (independent of the product's domain code) --------------------------------------------


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


def check(scenario: Scenario, records: list[dict[str, Any]], summary: dict[str, Any]) -> Outcome:
    until_ms = scenario.until_ms
    accepted = _accepted_records(records)
    statuses = Counter(str(record.get("status")) for record in records)
    known_identities = {sub.key for plan in scenario.plans for sub in plan.subscriptions}
    global_problems = [
        f"record for an unknown identity {identity!r} at {stamp}"
        for identity, _, stamp in accepted
        if identity not in known_identities
    ]
    if statuses and set(statuses) - set(ACCEPTED_STATUSES):
        others = {status: n for status, n in statuses.items() if status not in ACCEPTED_STATUSES}
        global_problems.append(f"record results other than accepted (no faults were injected): {others}")
    hourly_billed: dict[tuple[str, str, int], int] = defaultdict(int)
    contract_hours: list[tuple[str, int, int, int, int, int | None]] = []
    companies: list[CompanyResult] = []
    environments: list[EnvironmentResult] = []
    product = summary.get("companies", {})
    for plan in scenario.plans:
        problems: list[str] = []
        sessions = [s for s in scenario.sessions if s.company == plan.alias]
        truth = attribute(sessions, plan.subscriptions)
        reported = product.get(plan.alias, {})
        contract = plan.subscriptions[0].pricing == "contract"
        billed_total = expected_total = 0
        accepted_by_env: Counter[str] = Counter()
        for sub in plan.subscriptions:
            hours = metered_hours(sub, until_ms)
            if contract:  # only the primary at instant H sends H's overage record (section 9)
                hours = [hour for hour in hours if primary_at(plan.subscriptions, hour) is sub]
            dimension = "overage_agents" if contract else "agent_minutes"
            got_hours = sorted(
                parse_hour(stamp)
                for identity, dim, stamp in accepted
                if identity == sub.key and dim == dimension
            )
            if got_hours != hours:
                missing = sorted(set(hours) - set(got_hours))
                extra = sorted(set(got_hours) - set(hours))
                problems.append(
                    f"{_short(sub.key)}: records for {len(got_hours)} hours, expected {len(hours)}"
                    + (f"; missing {', '.join(iso_ms(h)[:13] for h in missing[:6])}" if missing else "")
                    + (f"; unexpected {', '.join(iso_ms(h)[:13] for h in extra[:6])}" if extra else "")
                )
            foreign = [stamp for identity, dim, stamp in accepted if identity == sub.key and dim != dimension]
            if foreign:
                problems.append(f"{_short(sub.key)}: {len(foreign)} records on another dimension")
            if contract:
                overage = contract_overage(sessions, plan.subscriptions, hours)
                for hour, (agents, licensed, want) in overage.items():
                    usage = accepted.get((sub.key, dimension, iso_ms(hour)))
                    got = int(usage["Quantity"]) if usage else 0
                    contract_hours.append((plan.alias, hour, agents, licensed, want, got if usage else None))
                    billed_total += got
                    expected_total += want
                    if usage is not None and got != want:
                        problems.append(
                            f"{_short(sub.key)} hour {iso_ms(hour)[:13]}: overage {got}, expected "
                            f"max(0, N {agents} - L {licensed}) = {want} (off by {got - want:+d})"
                        )
                continue
            by_env: Counter[str] = Counter()
            for (identity, dim, stamp), usage in accepted.items():
                if identity != sub.key or dim != dimension:
                    continue
                allocations = _allocations(usage)
                if sum(allocations.values()) != int(usage["Quantity"]):
                    problems.append(
                        f"{_short(sub.key)} {stamp[:13]}: Quantity {usage['Quantity']} != allocations "
                        f"{sum(allocations.values())}"
                    )
                for name, minutes in allocations.items():
                    by_env[name] += minutes
                    env_hour = parse_hour(stamp)
                    hourly_billed[(plan.alias, name, env_hour)] += minutes
            unknown_envs = set(by_env) - {env.name for env in plan.environments}
            if unknown_envs:
                problems.append(
                    f"{_short(sub.key)}: allocations to unknown environments {sorted(unknown_envs)}"
                )
            for env in plan.environments:
                want = truth.get((sub.key, env.name), 0) // MS_PER_MINUTE
                got = by_env.get(env.name, 0)
                billed_total += got
                expected_total += want
                accepted_by_env[env.name] += got
                if got != want:
                    problems.append(
                        f"{_short(sub.key)} / {env.name}: billed {got} min, truth floor("
                        f"{truth.get((sub.key, env.name), 0)} ms / 60 s) = {want} min (off by {got - want:+d})"
                    )
        for env in plan.environments:
            total = sum(ms for (key, name), ms in truth.items() if name == env.name)
            unbilled = truth.get((None, env.name), 0)
            env_report = reported.get("environments", {}).get(env.name, {})
            product_ms = env_report.get("billable_ms")
            if product_ms is not None and product_ms != total:
                problems.append(
                    f"{env.name}: replay summary billable_ms {product_ms}, truth {total} (off by {product_ms - total:+d})"
                )
            product_unbilled = env_report.get("unbilled_ms")
            if product_unbilled is not None and product_unbilled != unbilled:
                problems.append(
                    f"{env.name}: replay summary unbilled_ms {product_unbilled}, truth {unbilled} "
                    f"(off by {product_unbilled - unbilled:+d})"
                )
            expected_minutes = sum(
                ms // MS_PER_MINUTE
                for (key, name), ms in truth.items()
                if name == env.name and key is not None
            )
            environments.append(
                EnvironmentResult(
                    company=plan.alias,
                    name=env.name,
                    region=env.region,
                    account=env.account,
                    truth_ms=total,
                    unbilled_ms=unbilled,
                    product_ms=product_ms,
                    minutes_accepted=accepted_by_env.get(env.name, 0),
                    minutes_expected=0 if contract else expected_minutes,
                )
            )
        counted = {
            "events accepted": (reported.get("events_accepted"), scenario.expected.accepted[plan.alias]),
            "duplicates": (reported.get("duplicates"), scenario.expected.duplicates[plan.alias]),
            "quarantined": (
                sum((reported.get("quarantined") or {}).values()),
                scenario.expected.quarantined[plan.alias],
            ),
        }
        for what, (got_count, want_count) in counted.items():
            if got_count != want_count:
                problems.append(f"{what}: {got_count}, generated {want_count}")
        if not reported:
            problems.append("missing from the replay summary")
        companies.append(
            CompanyResult(
                alias=plan.alias,
                role=plan.role,
                environments=len(plan.environments),
                billable_ms=sum(truth.values()),
                unbilled_ms=sum(ms for (key, _), ms in truth.items() if key is None),
                billed=billed_total,
                expected=expected_total,
                unit="overage agent-hours" if contract else "minutes",
                records_by_status=dict(reported.get("records_by_status") or {}),
                quarantined=sum((reported.get("quarantined") or {}).values()),
                duplicates=int(reported.get("duplicates") or 0),
                events_accepted=int(reported.get("events_accepted") or 0),
                problems=problems,
            )
        )
    unattributed = sum((summary.get("quarantined_unattributed") or {}).values())
    if unattributed != scenario.expected.unattributed:
        global_problems.append(
            f"unattributed quarantined events: {unattributed}, generated {scenario.expected.unattributed}"
        )
    return Outcome(
        companies=companies,
        environments=environments,
        unattributed_expected=scenario.expected.unattributed,
        unattributed_observed=unattributed,
        global_problems=global_problems,
        hourly_truth=hourly_ms(scenario.sessions),
        hourly_billed=dict(hourly_billed),
        contract_hours=contract_hours,
    )


def parse_hour(stamp: str) -> int:
    return hour_floor(to_ms(datetime.fromisoformat(stamp.replace("Z", "+00:00"))))


def _short(key: str) -> str:
    return key if len(key) <= 24 else f"…{key[-12:]}"


# Estimate -------------------------------------------------------------------------------------------


def logged_in_hours(hours: int) -> float:
    """Expected logged-in hours of one agent over the window, from `_segments`' distributions."""
    total = 0.0
    for day in range(math.ceil(hours / 24)):
        available = min(24.0, hours - 24.0 * day)
        room = available - min(3.0, 0.3 * available) / 2 - 0.25
        total += 0.675 * min(8.0, room) if room * 0.5 >= 1 / 3 else 0.0
    return total


def estimate(companies: int, agents: int, hours: int) -> tuple[int, float]:
    """(lines, seconds) expected for a size, from the measured replay speed: computed before any work."""
    lines = int(companies * agents * logged_in_hours(hours) * LINES_PER_AGENT_HOUR)
    concurrent = max(1.0, companies * agents * 0.8)
    share = concurrent * (1 - (1 - 1 / concurrent) ** 100) / 100 if concurrent > 1 else 0.01
    ms_per_line = MS_PER_LINE_BASE + MS_PER_LINE_PER_DISTINCT_SHARE * share
    return lines, STARTUP_SECONDS + lines * ms_per_line / 1000


# Command line ---------------------------------------------------------------------------------------


def _bounded(name: str) -> Callable[[str], int]:
    low, high = LIMITS[name]

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, what in (
        ("companies", "companies"),
        ("agents", "agents per company"),
        ("hours", "hours of traffic"),
    ):
        low, high = LIMITS[name]
        parser.add_argument(
            f"--{name}",
            type=_bounded(name),
            default=DEFAULTS[name],
            help=f"{what} ({low}-{high}, default {DEFAULTS[name]})",
        )
    parser.add_argument(
        "--seed", type=_seed, default=DEFAULTS["seed"], help=f"random seed (default {DEFAULTS['seed']})"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/simulate"),
        help="output folder (R.json, E.jsonl, records.jsonl, summary.json, truth.json, report.png, report.html)",
    )


def _writable(path: Path) -> str | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        return error.strerror or str(error)
    return None


def _counting(deliveries: Iterator[Any], tick: Callable[[int], None]) -> Iterator[Any]:
    count = 0
    for delivery in deliveries:
        yield delivery
        count += 1
        if count % 50 == 0:
            tick(count)
    tick(count)


def run(arguments: argparse.Namespace) -> int:
    from connect_metering.local.report import Progress

    companies, agents, hours, seed = arguments.companies, arguments.agents, arguments.hours, arguments.seed
    events, seconds = estimate(companies, agents, hours)
    if seconds > MAX_ESTIMATED_SECONDS:
        print(
            f"simulate: --companies {companies} x --agents {agents} x --hours {hours} is about "
            f"{events:,} lines to replay: about {seconds / 60:,.0f} min at the replay speed measured on a "
            f"2-core machine ({1000 / (MS_PER_LINE_BASE + MS_PER_LINE_PER_DISTINCT_SHARE):.0f} to "
            f"{1000 / MS_PER_LINE_BASE:.0f} lines/s), over the {MAX_ESTIMATED_SECONDS // 60} min limit; use "
            "fewer companies, agents or hours",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    out: Path = arguments.out
    problem = _writable(out)
    if problem is not None:
        print(f"simulate: argument --out: cannot write to {out}: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return simulate(companies, agents, hours, seed, out, Progress.for_stderr())


def simulate(
    companies: int,
    agents: int,
    hours: int,
    seed: int,
    out: Path,
    progress: Any,
    *,
    quiet_handlers: bool = True,
) -> int:
    from connect_metering.local import report
    from connect_metering.local.replay import FaultsFile, Replay, load_registry, read_events

    started = time.perf_counter()
    progress.phase("generating", companies)
    scenario = Generator(companies, agents, hours, seed).run(progress.update)
    (out / "R.json").write_text(json.dumps(scenario.registry(), indent=2) + "\n", encoding="utf-8")
    with (out / "E.jsonl").open("w", encoding="utf-8") as handle:
        for line in scenario.lines:
            handle.write(line.body + "\n")
    generated = time.perf_counter()

    progress.phase("replaying", len(scenario.lines))
    registry = load_registry(out / "R.json")
    saved = dict(os.environ)
    try:
        # The handlers' single_metric EMF lines ignore POWERTOOLS_METRICS_DISABLED: keep stdout readable.
        with contextlib.redirect_stdout(io.StringIO()) if quiet_handlers else contextlib.nullcontext():
            summary = Replay(registry, FaultsFile(), out).run(
                _counting(read_events(out / "E.jsonl"), progress.update), scenario.until_ms
            )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    replayed = time.perf_counter()

    progress.phase("checking", 1)
    records = [
        json.loads(text) for text in (out / "records.jsonl").read_text(encoding="utf-8").splitlines() if text
    ]
    outcome = check(scenario, records, summary)
    _write_truth(out / "truth.json", scenario, outcome)
    progress.update(1)

    progress.phase("reporting", 2)
    timings = {
        "generate_s": generated - started,
        "replay_s": replayed - generated,
        "lines": len(scenario.lines),
        "events_per_s": len(scenario.lines) / max(replayed - generated, 1e-9),
    }
    paths = report.write_report(out, scenario, outcome, summary, timings, progress.update)
    progress.done()

    print(report.text_table(scenario, outcome))
    print()
    print(
        f"{len(scenario.lines):,} lines replayed in {timings['replay_s']:.1f} s "
        f"({timings['events_per_s']:,.0f}/s), until {iso_ms(scenario.until_ms)}; "
        f"{summary.get('records_sent', 0)} record results, {summary.get('marketplace_calls', 0)} "
        "BatchMeterUsage calls"
    )
    if outcome.matches:
        print("Billing matches the ground truth (docs/billing.md) for every company.")
    else:
        print(
            "MISMATCH: the product's billing differs from the ground truth. Reproduce with: "
            f"connect-metering simulate --companies {companies} --agents {agents} --hours {hours} --seed {seed}"
        )
        for problem in outcome.global_problems:
            print(f"  - {problem}")
        for company in outcome.companies:
            for problem in company.problems:
                print(f"  - {company.alias}: {problem}")
    print(f"Report: {paths['html']} (chart: {paths['png']})")
    if report.BILLING_RULES.is_file():
        print(f"Billing rules checked: {report.BILLING_RULES}")
    return EXIT_MATCH if outcome.matches else EXIT_MISMATCH


def _write_truth(path: Path, scenario: Scenario, outcome: Outcome) -> None:
    document = {
        "seed": scenario.seed,
        "until": iso_ms(scenario.until_ms),
        "companies": {
            plan.alias: {
                "role": plan.role,
                "attributed_ms": {
                    f"{key or 'unbilled'} / {env}": ms
                    for (key, env), ms in sorted(
                        attribute(
                            [s for s in scenario.sessions if s.company == plan.alias], plan.subscriptions
                        ).items(),
                        key=lambda item: (item[0][0] or "", item[0][1]),
                    )
                },
                "sessions": len([s for s in scenario.sessions if s.company == plan.alias]),
            }
            for plan in scenario.plans
        },
        "expected": {
            "events_accepted": dict(scenario.expected.accepted),
            "duplicates": dict(scenario.expected.duplicates),
            "quarantined": dict(scenario.expected.quarantined),
            "quarantined_unattributed": scenario.expected.unattributed,
            "lines_arriving_10_s_or_more_after_their_event": scenario.expected.late_lines,
        },
        "matches": outcome.matches,
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
