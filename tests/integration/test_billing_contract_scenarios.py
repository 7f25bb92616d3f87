"""BILLING.md checked from outside, as a grader would: small replay inputs (R.json, E.jsonl, F.json) for
rules and boundaries the other replay tests leave out, every expected figure worked out by hand from the
contract (each docstring shows the sum), never copied from the product's output. Most run the core engine
(fast); `engines=BOTH` also runs the handlers engine and requires identical records and summary. An
xfail(strict) test is a place where the product does not do what BILLING.md says; its reason quotes it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connect_metering.domain.instants import iso
from connect_metering.local import traffic
from tests.replay_harness import ACCOUNT, LICENSE, agent_event, instance, session, usage_company
from tests.replay_harness import replay as harness_replay

pytestmark = pytest.mark.integration

D = datetime(2026, 11, 2, tzinfo=UTC)
I1, I2 = instance(1), instance(2)
BOTH = ("handlers", "core")
CORE = ("core",)


def at(hour: int, minute: int = 0, second: int = 0, ms: int = 0) -> datetime:
    return D + timedelta(hours=hour, minutes=minute, seconds=second, milliseconds=ms)


def hour(h: int, day: int = 2) -> str:
    return f"2026-11-{day:02d}T{h:02d}:00:00.000Z"


def ev(agent: str, event_id: str, kind: str, at: datetime, status: str = "Available", **options: Any) -> Any:
    """A reduced agent event; ``since`` sets the status's StartTimestamp, ``arn`` the instance."""
    detail = agent_event(options.get("arn", I1), agent, event_id, kind, at, status)
    if "since" in options:
        detail["CurrentAgentSnapshot"]["AgentStatus"]["StartTimestamp"] = iso(options["since"])
    return detail


def arriving(detail: dict[str, Any], moment: datetime, account: str | None = None) -> dict[str, Any]:
    """The EventBridge envelope of ``detail``, arrived at ``moment`` from ``account`` (its own by default)."""
    return traffic.eventbridge_envelope(detail, arrived=moment, account=account)


def subscription(licence: str, started: str, *, pricing: str = "usage", **extra: Any) -> dict[str, Any]:
    identity = {"customer_aws_account_id": ACCOUNT, "license_arn": LICENSE.format(licence)}
    return {**identity, "pricing": pricing, "started": started, **extra}


def company(*subscriptions: dict[str, Any], environments: list[tuple[str, str]] | None = None) -> Any:
    return usage_company(subscriptions=list(subscriptions) or None, environments=environments)


def registry(*companies: dict[str, Any], **policy: Any) -> dict[str, Any]:
    return {"product_code": "prod1", "companies": list(companies) or [usage_company()], "policy": policy}


def by_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda line: str(line["EventTimestamp"]))


@dataclass
class Outcome:
    records: list[dict[str, Any]]
    summary: dict[str, Any]

    def sent(self) -> list[tuple[str, str, int, str, str]]:
        """Every record result in send order: (identity tail, Timestamp, Quantity, status, sent_at)."""
        return [
            (who.split(":")[-1], u["Timestamp"], u["Quantity"], r["status"], r["sent_at"])
            for r in self.records
            for u in [r["usage_record"]]
            for who in [str(u.get("LicenseArn", u.get("CustomerIdentifier")))]
        ]

    def quantities(self) -> list[tuple[str, int]]:
        return [(r["usage_record"]["Timestamp"], r["usage_record"]["Quantity"]) for r in self.records]

    def acme(self) -> dict[str, Any]:
        return dict(self.summary["companies"]["acme"])

    def prod(self) -> dict[str, Any]:
        return dict(self.acme()["environments"]["prod"])


def replay(
    tmp_path: Path,
    document: dict[str, Any],
    lines: list[dict[str, Any]],
    until: datetime,
    faults: dict[str, Any] | None = None,
    engines: tuple[str, ...] = CORE,
) -> Outcome:
    """`connect-metering replay` in-process; with both engines, their outputs must be identical."""
    result = harness_replay(tmp_path, document, lines, until, faults, engines)
    return Outcome(result.records, result.summary)


def test_s2_each_quarantine_reason_and_the_exact_bounds_of_rule_5(tmp_path: Path) -> None:
    """Section 2 rules 1-5, the first broken rule wins; EventId and AgentARN at most 256 ASCII characters;
    rule 5's bounds are inclusive ("at most 300 s after", "at most max_event_age before"). Both engines."""
    now, stranger = at(8, 30), "999988887777"
    cases: list[tuple[dict[str, Any], str | None]] = []  # (detail, envelope account), the reason after it

    def add(detail: dict[str, Any], account: str | None = None, **fields: Any) -> None:  # None: field removed
        cases.append(({k: v for k, v in {**detail, **fields}.items() if v is not None}, account))

    add(ev("q", "no-id", "LOGIN", now), EventId=None)  # unparseable
    add(ev("q", "y" * 257, "LOGIN", now))  # unparseable: 257 characters
    add(ev("q", "bad-time", "LOGIN", now), EventTimestamp="yesterday")  # unparseable
    add(ev("agent\u00e9", "non-ascii", "LOGIN", now))  # unparseable: AgentARN not ASCII
    add(ev("q", "lower", "LOGIN", now), stranger, EventType="login")  # unsupported_type before rule 4
    add(ev("q", "contact", "LOGIN", now), EventType="CONNECTED_TO_AGENT")  # unsupported_type
    add(ev("q", "unknown", "LOGIN", now, arn=instance(9)))  # unknown_instance
    add(ev("q", "mismatch", "LOGIN", now), stranger)  # account_mismatch: envelope
    add(ev("q", "body", "LOGIN", now), stranger, AWSAccountId=stranger)  # account_mismatch: instance's
    add(ev("f2", "ahead-301", "LOGIN", now + timedelta(seconds=300, milliseconds=1)))  # future_timestamp
    add(ev("o2", "old-7d1", "LOGIN", now - timedelta(days=7, milliseconds=1)))  # too_old
    add(ev("q256", "z" * 256, "LOGIN", now))  # accepted: 256 characters
    add(ev("f1", "ahead-300", "LOGIN", now + timedelta(seconds=300)))  # accepted: exactly 300 s ahead
    add(ev("o1", "old-7d", "LOGIN", now - timedelta(days=7)))  # accepted: exactly 7 days old
    lines = [arriving(detail, now, account) for detail, account in cases]
    result = replay(tmp_path, registry(), lines, until=at(9, 10), engines=BOTH)
    reasons = Counter(result.acme()["quarantined"]) + Counter(result.summary["quarantined_unattributed"])
    expected = {"unparseable": 4, "unsupported_type": 2, "unknown_instance": 1, "account_mismatch": 2}
    assert reasons == {**expected, "future_timestamp": 1, "too_old": 1}
    assert result.summary["quarantined_unattributed"].get("unknown_instance") == 1
    assert result.acme()["events_accepted"] == 3
    assert result.quantities() == [(hour(8), 0)]  # lone LOGINs: zero-length sessions


def test_s2_s8_a_policy_max_event_age_is_inclusive_to_the_millisecond(tmp_path: Path) -> None:
    """Section 2 rule 5 with section 8's `max_event_age` set to 3600 s in R.json."""
    ages = {"exact": timedelta(seconds=3600), "beyond": timedelta(seconds=3600, milliseconds=1)}
    lines = [arriving(ev(name, name, "LOGIN", at(9, 30) - age), at(9, 30)) for name, age in ages.items()]
    result = replay(tmp_path, registry(max_event_age=3600), lines, until=at(10, 10))
    assert result.acme()["quarantined"] == {"too_old": 1}
    assert result.acme()["events_accepted"] == 1


def test_s2_rule_6_the_3601st_event_of_an_agent_hour_is_quarantined_and_not_used(tmp_path: Path) -> None:
    """Section 2 rule 6: accepted only while the agent has fewer than 3,600 accepted events in the hour.
    Hour 8 holds a LOGIN at 08:00:00 and heartbeats every second to 08:59:59 (3,600 events); a LOGOUT at
    08:59:59.500 is the 3,601st: quarantined, so it does not close the session, which the 09:00:30
    heartbeat extends until the 09:01 LOGOUT. Hour 8: 60 min. Hour 9: floor(61) - 60 = 1."""
    lines = [ev("a", "e-0", "LOGIN", at(8))]
    lines += [ev("a", f"e-{n}", "HEART_BEAT", at(8, 0, n)) for n in range(1, 3600)]
    lines += [ev("a", "e-x", "LOGOUT", at(8, 59, 59, 500)), ev("a", "e-y", "HEART_BEAT", at(9, 0, 30))]
    lines.append(ev("a", "e-z", "LOGOUT", at(9, 1)))
    result = replay(tmp_path, registry(), lines, until=at(10, 10))
    assert result.acme()["quarantined"] == {"too_many_events": 1}
    assert result.acme()["events_accepted"] == 3602
    assert result.quantities() == [(hour(8), 60), (hour(9), 1)]


DEDUP = (
    'BILLING.md s2: "Events with an EventId already accepted are duplicates: counted, ignored" vs the product, '
    "which de-duplicates per (instance, agent, hour, EventId) (docs/billing.md 'Decided') and accepts it"
)


def id_reused_an_hour_later() -> list[dict[str, Any]]:
    """Shift 08:00-08:10 whose LOGIN is `dup-1`; at 09:00 a HEART_BEAT with EventId `dup-1`, LOGOUT 09:04."""
    first = [
        ev("a", "dup-1", "LOGIN", at(8)),
        *beats("a", at(8, 2), at(8, 8)),
        ev("a", "o", "LOGOUT", at(8, 10)),
    ]
    return [*first, ev("a", "dup-1", "HEART_BEAT", at(9)), ev("a", "o2", "LOGOUT", at(9, 4))]


@pytest.mark.xfail(strict=True, reason=DEDUP)
def test_s2_an_event_id_accepted_in_an_earlier_hour_is_a_duplicate(tmp_path: Path) -> None:
    """The 09:00 event is a duplicate (ignored), so the LOGOUT finds the agent closed (ignored): 10 min in
    all, hour 9 bills 0. Both engines."""
    result = replay(tmp_path, registry(), id_reused_an_hour_later(), until=at(10, 10), engines=BOTH)
    assert result.acme()["duplicates"] == 1
    assert result.quantities() == [(hour(8), 10), (hour(9), 0)]


@pytest.mark.xfail(
    strict=True,
    reason="BILLING.md s5: 'sum of accepted quantities for (s,e) = floor(total billable time of (s,e) / 60 s)' "
    "vs the product: its summary's billable_ms is 600,000 (the 09:00 event dropped) but 14 minutes accepted",
)
def test_s5_accepted_minutes_match_the_products_own_billable_time_when_an_id_is_reused(
    tmp_path: Path,
) -> None:
    """Whatever the duplicate rule, the product's books must agree: minutes accepted = floor(billable_ms)."""
    result = replay(tmp_path, registry(), id_reused_an_hour_later(), until=at(10, 10))
    assert result.acme()["minutes_accepted"] == result.prod()["billable_ms"] // 60_000


@pytest.mark.xfail(strict=True, reason=DEDUP)
def test_s2_an_event_id_accepted_for_another_agent_is_a_duplicate(tmp_path: Path) -> None:
    """Agent a's shift 08:00-08:10; agent b's LOGIN at 08:20 reuses a's LOGIN EventId (a duplicate,
    ignored), so b's LOGOUT at 08:24 finds b closed. Billable: 10 min."""
    shift = session(I1, "a", at(8), at(8, 10))
    reused = [ev("b", shift[0]["EventId"], "LOGIN", at(8, 20)), ev("b", "o", "LOGOUT", at(8, 24))]
    result = replay(tmp_path, registry(), [*shift, *reused], until=at(9, 10))
    assert result.acme()["duplicates"] == 1
    assert result.quantities() == [(hour(8), 10)]


def beats(
    agent: str, first: datetime, last: datetime, status: str = "Available", **options: Any
) -> list[Any]:
    """`HEART_BEAT`s of ``agent`` every 2 min from ``first`` to ``last`` included (options as `ev`)."""
    count = int((last - first).total_seconds()) // 120 + 1
    moments = [first + timedelta(minutes=2 * n) for n in range(count)]
    return [ev(agent, f"{agent}-{m:%H%M%S%f}", "HEART_BEAT", m, status, **options) for m in moments]


def test_s3_a_gap_of_exactly_the_timeout_continues_and_one_ms_more_closes_at_last(tmp_path: Path) -> None:
    """Section 3: closes only if `event.ts - last > silence_timeout` (360 s). LOGIN 08:00, heartbeat
    08:06:00 (gap 360 s: continues), heartbeat 08:12:00.001 (360.001 s: closes at 08:06, the heartbeat
    reopens), LOGOUT 08:15. Billable 360,000 + 179,999 ms; hour 8: floor(8.99) = 8. Both engines."""
    lines = [ev("a", "l", "LOGIN", at(8)), ev("a", "h1", "HEART_BEAT", at(8, 6))]
    lines += [ev("a", "h2", "HEART_BEAT", at(8, 12, 0, 1)), ev("a", "o", "LOGOUT", at(8, 15))]
    result = replay(tmp_path, registry(), lines, until=at(9, 10), engines=BOTH)
    assert result.prod()["billable_ms"] == 539_999
    assert result.quantities() == [(hour(8), 8)]


def test_s3_a_renamed_status_is_offline_up_to_60_s_after_the_logout_and_not_after(tmp_path: Path) -> None:
    """Section 3: offline when StartTimestamp is "at most 60 s after that LOGOUT". Shift 08:00-08:10;
    `Away` since 08:11:00 at 08:12 (60 s: offline, ignored); `Away` since 08:11:00.001 at 08:14 (not
    offline: opens), heartbeats to 08:18, LOGOUT 08:20. Billable 10 + 6 = 16 min."""
    lines = [*session(I1, "a", at(8), at(8, 10)), *beats("a", at(8, 12), at(8, 12), "Away", since=at(8, 11))]
    lines += beats("a", at(8, 14), at(8, 18), "Away", since=at(8, 11, 0, 1))
    lines.append(ev("a", "out", "LOGOUT", at(8, 20), "Away", since=at(8, 11, 0, 1)))
    result = replay(tmp_path, registry(), lines, until=at(9, 10))
    assert result.quantities() == [(hour(8), 16)]


def offline_after_ten_minutes() -> list[dict[str, Any]]:
    """LOGIN 08:00, heartbeats to 08:08, STATE_CHANGE to `Offline` at 08:10, `Offline` heartbeats to
    08:30, no LOGOUT."""
    online = [ev("a", "l", "LOGIN", at(8)), *beats("a", at(8, 2), at(8, 8))]
    offline = [
        ev("a", "sc", "STATE_CHANGE", at(8, 10), "Offline"),
        *beats("a", at(8, 12), at(8, 30), "Offline"),
    ]
    return online + offline


@pytest.mark.parametrize(("policy", "minutes"), [("logged_in", 30), ("online", 10)])
def test_s3_offline_events_keep_a_session_open_and_online_removes_their_time(
    tmp_path: Path, policy: str, minutes: int
) -> None:
    """Section 3: only a LOGOUT or silence closes an open session ("any other event sets last"): under the
    default `logged_in`, [08:00, 08:30] = 30. `online` "removes time whose current status is Offline":
    [08:10, 08:30] goes, 10 left."""
    result = replay(tmp_path, registry(billable_time=policy), offline_after_ten_minutes(), until=at(9, 10))
    assert result.quantities() == [(hour(8), minutes)]


def test_s3_s5_a_session_over_midnight_is_split_at_the_day_boundary(tmp_path: Path) -> None:
    """Hours are [H, H+1h): shift 23:50-00:20 bills 10 in hour 23 (sent 00:10 the next day), 20 in 00."""
    document = registry(company(subscription("s", "2026-11-02T22:00:00Z")))
    result = replay(tmp_path, document, session(I1, "a", at(23, 50), at(24, 20)), until=at(25, 10))
    assert result.sent() == [
        ("l-s", hour(22), 0, "Success", "2026-11-02T23:10:00.000Z"),
        ("l-s", hour(23), 10, "Success", "2026-11-03T00:10:00.000Z"),
        ("l-s", hour(0, day=3), 20, "Success", "2026-11-03T01:10:00.000Z"),
    ]


def test_s1_s4_s9_a_tie_compares_identity_strings_across_legacy_and_licence(tmp_path: Path) -> None:
    """Section 9: a tie on `started`: "compare their identity strings (LicenseArn if present, else
    CustomerIdentifier) and take the smaller": "X01EXAMPLEX" < "arn:aws:..." ('X' < 'a'), so the legacy
    subscription is primary and gets the 12 minutes, by CustomerIdentifier with no LicenseArn (section 1);
    the licence gets its hourly record at 0."""
    legacy = {"customer_identifier": "X01EXAMPLEX", "pricing": "usage", "started": "2026-11-02T08:00:00Z"}
    document = registry(company(subscription("aaa", "2026-11-02T08:00:00Z"), legacy))
    result = replay(tmp_path, document, session(I1, "a", at(8), at(8, 12)), until=at(9, 10))
    assert sorted(result.sent()) == [
        ("X01EXAMPLEX", hour(8), 12, "Success", "2026-11-02T09:10:00.000Z"),
        ("l-aaa", hour(8), 0, "Success", "2026-11-02T09:10:00.000Z"),
    ]
    assert sum("LicenseArn" in r["usage_record"] for r in result.records) == 1


HANDOVER = ("s1", "2026-11-02T07:00:00Z", "2026-11-02T08:30:00Z"), ("s2", "2026-11-02T08:00:00Z", None)


def test_s4_s6_s9_the_primary_ends_mid_hour_and_the_younger_one_takes_the_rest(tmp_path: Path) -> None:
    """s1 (07:00-08:30) is primary until its end, then s2 (from 08:00). A shift 08:00-09:00 with heartbeats
    every 4 min (08:28, 08:32...). Section 6: s1's hour 8 is metered at 08:30 "with usage known at T":
    [08:00, 08:28] = 28 (section 9: "time between an agent's last event and T is not billed to anyone").
    s2 gets [08:30, 09:00] = 30 in its hour-8 record at 09:10. Both engines."""
    document = registry(company(*(subscription(n, s, ended=e) for n, s, e in HANDOVER)))
    lines = session(I1, "a", at(8), at(9), step_s=240)
    result = replay(tmp_path, document, lines, until=at(9, 10), engines=BOTH)
    assert result.sent() == [
        ("l-s1", hour(7), 0, "Success", "2026-11-02T08:10:00.000Z"),
        ("l-s1", hour(8), 28, "Success", "2026-11-02T08:30:00.000Z"),
        ("l-s2", hour(8), 30, "Success", "2026-11-02T09:10:00.000Z"),
    ]
    assert (result.prod()["billable_ms"], result.prod()["unbilled_ms"]) == (60 * 60_000, 0)


def test_s4_late_usage_of_an_ended_primary_is_never_billed_to_its_successor(tmp_path: Path) -> None:
    """Section 4: a millisecond at t goes to primary(t). s1 was primary for a shift 08:00-08:20 that
    arrives at 09:30, after s1's final metering (08:30): the minutes are s1's, never s2's. All records 0."""
    document = registry(company(*(subscription(n, s, ended=e) for n, s, e in HANDOVER)))
    lines = [arriving(e, at(9, 30)) for e in session(I1, "a", at(8), at(8, 20))]
    result = replay(tmp_path, document, lines, until=at(10, 10))
    assert result.sent() == [
        ("l-s1", hour(7), 0, "Success", "2026-11-02T08:10:00.000Z"),
        ("l-s1", hour(8), 0, "Success", "2026-11-02T08:30:00.000Z"),
        ("l-s2", hour(8), 0, "Success", "2026-11-02T09:10:00.000Z"),
        ("l-s2", hour(9), 0, "Success", "2026-11-02T10:10:00.000Z"),
    ]


def test_s5_the_floor_is_taken_per_environment_then_summed(tmp_path: Path) -> None:
    """Section 5: Q(s,e,H) per environment, Quantity = sum over e. 10.5 min in each of two environments in
    hour 8: 10 + 10 = 20 (not floor(21)); 0.5 more in each in hour 9: (11 - 10) + (11 - 10) = 2. Both."""
    document = registry(company(environments=[("a", I1), ("b", I2)]))
    spans = [(at(8), at(8, 10, 30)), (at(9), at(9, 0, 30))]
    lines = by_time([e for start, end in spans for arn in (I1, I2) for e in session(arn, "x", start, end)])
    result = replay(tmp_path, document, lines, until=at(10, 10), engines=BOTH)
    allocations = [
        [(a["Tags"][0]["Value"], a["AllocatedUsageQuantity"]) for a in r["usage_record"]["UsageAllocations"]]
        for r in result.records
    ]
    assert result.quantities() == [(hour(8), 20), (hour(9), 2)]
    assert allocations == [[("a", 10), ("b", 10)], [("a", 1), ("b", 1)]]


def test_s5_a_late_logout_that_shortens_billed_time_is_offset_by_later_usage(tmp_path: Path) -> None:
    """Section 5: Q = max(0, floor(T) - B). A session kept open to 08:30 by `Offline` heartbeats bills 30
    at 09:10 (B = 30); its LOGOUT at 08:10 arrives at 09:30: T = 10, hour 9 bills max(0, 10 - 30) = 0 and
    nothing is taken back. Shifts 09:40-09:55 (T = 25) and 11:00-11:10 (T = 35): hour 10 bills 0, hour 11
    35 - 30 = 5. Both engines."""
    lines = [*offline_after_ten_minutes(), arriving(ev("a", "late-out", "LOGOUT", at(8, 10)), at(9, 30))]
    lines += [*session(I1, "a", at(9, 40), at(9, 55)), *session(I1, "a", at(11), at(11, 10))]
    result = replay(tmp_path, registry(), lines, until=at(12, 10), engines=BOTH)
    assert result.quantities() == [(hour(8), 30), (hour(9), 0), (hour(10), 0), (hour(11), 5)]


def test_s5_an_envelope_dated_just_before_a_metering_it_missed_is_still_billed(tmp_path: Path) -> None:
    """Agent b's LOGIN at 09:10:00.001 moves the clock past hour 8's metering (09:10); then agent a's shift
    08:00-08:30 comes in envelopes dated 09:09:59.999 (an archive replayed out of order within a minute).
    Hour 8 was sent without it; by 10:10 T = 30 min, B = 0: hour 9 bills 30. Both engines."""
    lines = [ev("b", "b1", "LOGIN", at(9, 10, 0, 1))]
    lines += [arriving(e, at(9, 9, 59, 999)) for e in session(I1, "a", at(8), at(8, 30))]
    result = replay(tmp_path, registry(), lines, until=at(10, 10), engines=BOTH)
    assert result.prod()["billable_ms"] == 30 * 60_000
    assert sum(q for _, q in result.quantities()) == result.acme()["minutes_accepted"] == 30


def test_s5_usage_a_day_late_is_billed_in_the_next_metered_hour(tmp_path: Path) -> None:
    """Section 5: late usage "is billed in the next metered hour": a shift of Nov 1 10:00-10:30 arriving
    Nov 2 08:30. Every hour from Nov 1 00:00 has its record (section 6); only Nov 2 08:00 carries 30."""
    document = registry(company(subscription("s", "2026-11-01T00:00:00Z")))
    lines = [arriving(e, at(8, 30)) for e in session(I1, "a", at(-14), at(-14, 30))]
    result = replay(tmp_path, document, lines, until=at(9, 10))
    expected = [(f"2026-11-01T{h:02d}:00:00.000Z", 0) for h in range(24)] + [(hour(h), 0) for h in range(8)]
    assert result.quantities() == [*expected, (hour(8), 30)]


def test_s5_the_timestamp_is_started_when_that_is_later_to_the_millisecond(tmp_path: Path) -> None:
    """Section 5: `Timestamp` = H, or `started` when later. Started 08:59:59.999, shift 08:30-09:30: hour
    8's record is stamped 08:59:59.999 with floor(1 ms) = 0; hour 9: floor(30 min + 1 ms) - 0 = 30. The
    30 min - 1 ms before the start are unbilled."""
    document = registry(company(subscription("s", "2026-11-02T08:59:59.999Z")))
    result = replay(tmp_path, document, session(I1, "a", at(8, 30), at(9, 30)), until=at(10, 10))
    assert result.quantities() == [("2026-11-02T08:59:59.999Z", 0), (hour(9), 30)]
    assert result.prod()["unbilled_ms"] == 30 * 60_000 - 1


@pytest.mark.parametrize(
    ("ended", "tail"),
    [  # on the hour the last active instant is 09:59:59.999 (section 9): no record for hour 10
        ("2026-11-02T10:00:00Z", [(hour(9), 20, "2026-11-02T10:00:00.000Z")]),
        (
            "2026-11-02T10:00:00.001Z",  # active at 10:00:00.000: hour 10 gets its record, at 0
            [(hour(9), 20, "2026-11-02T10:00:00.001Z"), (hour(10), 0, "2026-11-02T10:00:00.001Z")],
        ),
    ],
)
def test_s6_s9_final_metering_at_an_end_on_the_hour_and_one_ms_after(
    tmp_path: Path, ended: str, tail: list[tuple[str, int, str]]
) -> None:
    """Section 6: a record per hour "in which it is active at some instant"; final metering at T covers
    the hours up to the one containing T - 1 ms (section 9), sent at T. Shift 09:00-09:20."""
    document = registry(company(subscription("s", "2026-11-02T08:00:00Z", ended=ended)))
    result = replay(tmp_path, document, session(I1, "a", at(9), at(9, 20)), until=at(12))
    assert [(h, q, sent_at) for _, h, q, _, sent_at in result.sent()] == [
        (hour(8), 0, "2026-11-02T09:10:00.000Z"),
        *tail,
    ]


def test_s6_s9_an_end_at_a_metering_instant_meters_each_hour_once(tmp_path: Path) -> None:
    """Ended 09:10, when hour 8 is also due: section 9, records due at one instant are computed one after
    another in hour order, "nothing is computed twice". Shift 08:30-09:05: hour 8 30, hour 9 5, both 09:10."""
    document = registry(company(subscription("s", "2026-11-02T08:00:00Z", ended="2026-11-02T09:10:00Z")))
    result = replay(tmp_path, document, session(I1, "a", at(8, 30), at(9, 5)), until=at(12), engines=BOTH)
    sent_at = "2026-11-02T09:10:00.000Z"
    assert result.sent() == [
        ("l-s", hour(8), 30, "Success", sent_at),
        ("l-s", hour(9), 5, "Success", sent_at),
    ]


def test_s5_s6_a_record_out_of_the_window_leaves_b_before_the_next_record_is_computed(tmp_path: Path) -> None:
    """Section 6: an hour older than max_record_age (6 h) is no longer sent; section 5: it leaves B. Throttling
    09:00-14:05: hour 8 (30 min) is never accepted and is out of the window from 14:00, so the record computed
    at 14:10 (hour 13) carries the 30; hours 9-12 (0 each) are accepted at 14:10 too."""
    faults = {"outages": [{"start": iso(at(9)), "end": iso(at(14, 5)), "error": "ThrottlingException"}]}
    result = replay(tmp_path, registry(), session(I1, "a", at(8), at(8, 30)), until=at(15, 10), faults=faults)
    accepted = [(h, q) for _, h, q, status, _ in result.sent() if status == "Success"]
    assert accepted == [*((hour(h), 0) for h in range(9, 13)), (hour(13), 30), (hour(14), 0)]
    assert result.acme()["records_by_status"] == {"expired": 1, "accepted": 6}


def test_s6_a_subscription_active_for_half_an_hour_gets_one_record(tmp_path: Path) -> None:
    """Active [08:15, 08:45): one record, stamped 08:15 (section 5), sent at the end with the usage known
    then: the shift 08:00-09:00's last heartbeat before 08:45 is 08:44, so [08:15, 08:44] = 29. Unbilled
    (no active subscription): [08:00, 08:15) and [08:45, 09:00] = 30 min."""
    document = registry(company(subscription("s", "2026-11-02T08:15:00Z", ended="2026-11-02T08:45:00Z")))
    result = replay(tmp_path, document, session(I1, "a", at(8), at(9)), until=at(12))
    assert result.sent() == [("l-s", "2026-11-02T08:15:00.000Z", 29, "Success", "2026-11-02T08:45:00.000Z")]
    assert (result.prod()["billable_ms"], result.prod()["unbilled_ms"]) == (60 * 60_000, 30 * 60_000)


def test_s1_s6_an_end_delivered_after_later_usage_bills_only_until_the_end(tmp_path: Path) -> None:
    """Section 6: "usage after T is not s's". A License Deprovisioned dated 09:30 (the licence spelled
    `...:license:l-...`) comes after the lines of a shift 09:00-09:55: hour 9 bills [09:00, 09:30) = 30,
    the 25 minutes after it are unbilled. Both engines."""
    document = registry(company(subscription("s", "2026-11-02T08:00:00Z")))
    deprovisioned = {
        **{
            "version": "0",
            "id": "end-1",
            "account": "123456789012",
            "time": iso(at(9, 30)),
            "region": "us-east-1",
        },
        **{"detail-type": "License Deprovisioned - Manufacturer", "source": "aws.agreement-marketplace"},
        "resources": [],
        "detail": {"product": {"code": "prod1"}, "license": {"arn": LICENSE.format("s")}},
    }
    lines = [*session(I1, "a", at(9), at(9, 55)), deprovisioned]
    result = replay(tmp_path, document, lines, until=at(12), engines=BOTH)
    assert result.quantities() == [(hour(8), 0), (hour(9), 30)]
    assert result.prod()["unbilled_ms"] == 25 * 60_000


def test_s6_throttled_records_of_an_ended_subscription_are_retried_to_acceptance(tmp_path: Path) -> None:
    """Section 6: throttling is "retried with back-off", each retry the stored record unchanged. Throttling
    09:00-09:45; the subscription ends 09:30: hours 8 (30) and 9 (20) are accepted once each, after the
    outage. Both engines."""
    document = registry(company(subscription("s", "2026-11-02T08:00:00Z", ended="2026-11-02T09:30:00Z")))
    faults = {"outages": [{"start": iso(at(9)), "end": iso(at(9, 45)), "error": "ThrottlingException"}]}
    lines = [*session(I1, "a", at(8, 10), at(8, 40)), *session(I1, "a", at(9), at(9, 20))]
    result = replay(tmp_path, document, lines, until=at(12), faults=faults, engines=BOTH)
    assert {(h, q) for _, h, q, _, _ in result.sent()} == {(hour(8), 30), (hour(9), 20)}
    accepted = [
        (h, q, sent_at >= "2026-11-02T09:45")
        for _, h, q, status, sent_at in result.sent()
        if status == "Success"
    ]
    assert accepted == [(hour(8), 30, True), (hour(9), 20, True)]
    assert {status for *_, status, _ in result.sent()} == {"Error:ThrottlingException", "Success"}


def test_s5_s6_a_record_still_being_retried_counts_in_b(tmp_path: Path) -> None:
    """Section 5: B holds records "stored and still being retried (pending)". Every call answers the record
    unprocessed: hour 8 (30) is resent unchanged, hours 9 and 10 carry 0, never the 30 again."""
    lines = session(I1, "a", at(8, 10), at(8, 40))
    result = replay(tmp_path, registry(), lines, until=at(11, 10), faults={"unprocessed_rate": 1.0})
    assert {(h, q) for _, h, q, _, _ in result.sent()} == {(hour(8), 30), (hour(9), 0), (hour(10), 0)}
    assert {status for *_, status, _ in result.sent()} == {"Unprocessed"}
    assert result.acme()["minutes_accepted"] == 0


def test_s1_s6_a_licence_refused_as_a_whole_matched_by_its_licence_id(tmp_path: Path) -> None:
    """Sections 1 and 6: F.json revokes the licence spelled as agreement events write it
    (`aws:license-manager:<region>:<account>:l-...`; the registry has `arn:...:license:l-...`): its calls
    are refused whole, the record stays pending, so hour 9 is computed with B = 30 and carries 0."""
    revoked = [{"license_arn": "aws:license-manager:us-east-1:123456789012:l-acme1", "at": iso(at(8, 30))}]
    lines = session(I1, "a", at(8, 10), at(8, 40))
    result = replay(tmp_path, registry(), lines, until=at(10, 10), faults={"revoked": revoked})
    assert {(h, q) for _, h, q, _, _ in result.sent()} == {(hour(8), 30), (hour(9), 0)}
    assert {status for *_, status, _ in result.sent()} == {"Error:InvalidLicenseException"}


def test_s6_s8_grace_and_silence_timeout_from_the_registry_policy(tmp_path: Path) -> None:
    """Section 8 names in R.json: grace 300 s meters hour 8 at 09:05; silence_timeout 600 s keeps an 8-min
    LOGIN-LOGOUT session whole. Agent b's 9 minutes of hour 8 arrive exactly at 09:05, "ingested after that
    metering" (section 9): hour 9 (metered 10:05) bills them. 8, then 9."""
    lines = [ev("a", "a1", "LOGIN", at(8, 50)), ev("a", "a2", "LOGOUT", at(8, 58))]
    lines += [
        arriving(ev("b", "b1", "LOGIN", at(8)), at(9, 5)),
        arriving(ev("b", "b2", "LOGOUT", at(8, 9)), at(9, 5)),
    ]
    result = replay(tmp_path, registry(grace=300, silence_timeout=600), lines, until=at(10, 10))
    assert [(h, q, sent_at) for _, h, q, _, sent_at in result.sent()] == [
        (hour(8), 8, "2026-11-02T09:05:00.000Z"),
        (hour(9), 9, "2026-11-02T10:05:00.000Z"),
    ]


def contract(licence: str, started: str, agents: int, **extra: Any) -> dict[str, Any]:
    return subscription(
        licence, started, pricing="contract", entitlements={"licensed_agents": agents}, **extra
    )


def overage(result: Outcome) -> list[tuple[str, str, int, str]]:
    """(licence, Timestamp, Quantity, sent_at) of each record, all `overage_agents` without allocations."""
    assert {r["usage_record"]["Dimension"] for r in result.records} <= {"overage_agents"}
    assert all("UsageAllocations" not in r["usage_record"] for r in result.records)
    return [(licence, h, q, sent_at) for licence, h, q, _, sent_at in result.sent()]


@pytest.mark.parametrize("ending", [{"expires": "2026-11-02T08:45:00Z"}, {"ended": "2026-11-02T08:30:00Z"}])
def test_s7_s9_a_contract_that_expires_or_ends_leaves_l_and_the_primary_role(
    tmp_path: Path, ending: dict[str, str]
) -> None:
    """c1 (from 07:00, expiring 08:45 or ending 08:30) and c2 (from 07:30), 1 agent each; 3 agents
    08:00-09:30. Hour 7: c1 primary, N = 0: 0. Hour 8: c1 is "the primary at instant H" (section 9), L =
    1 + 1: 3 - 2 = 1; c2 sends nothing for it. Hour 9: c1 inactive, L = 1, c2 primary: 3 - 1 = 2. An end
    is final metering at the end (section 6). Both engines."""
    c1 = contract("c1", "2026-11-02T07:00:00Z", 1, **ending)
    document = registry(company(c1, contract("c2", "2026-11-02T07:30:00Z", 1)))
    lines = by_time([e for n in range(3) for e in session(I1, f"agent{n}", at(8), at(9, 30))])
    result = replay(tmp_path, document, lines, until=at(10, 10), engines=BOTH)
    rows = overage(result)
    assert [row[:3] for row in rows] == [("l-c1", hour(7), 0), ("l-c1", hour(8), 1), ("l-c2", hour(9), 2)]
    assert rows[2][3] == "2026-11-02T10:10:00.000Z"
    if "ended" in ending:
        assert rows[1][3] == "2026-11-02T08:30:00.000Z"


def test_s7_s9_n_counts_only_agents_with_more_than_0_ms_in_the_hour(tmp_path: Path) -> None:
    """Section 9: "N(H) counts agents with more than 0 ms of billable time in H". L = 1. Hour 8: a
    (08:00-09:00) and b (08:30-09:00): N = 2, overage 1. Hour 9: a and b end at 09:00 exactly (0 ms in it),
    c works 09:00-09:20, d's LOGIN and LOGOUT at 09:30 make a zero-length session: N = 1, overage 0."""
    document = registry(company(contract("c1", "2026-11-02T08:00:00Z", 1)))
    lines = [
        *session(I1, "a", at(8), at(9)),
        *session(I1, "b", at(8, 30), at(9)),
        *session(I1, "c", at(9), at(9, 20)),
    ]
    lines += [ev("d", "d1", "LOGIN", at(9, 30)), ev("d", "d2", "LOGOUT", at(9, 30))]
    result = replay(tmp_path, document, by_time(lines), until=at(10, 10))
    assert [row[:3] for row in overage(result)] == [("l-c1", hour(8), 1), ("l-c1", hour(9), 0)]


def test_s7_s9_an_agent_known_only_after_its_hour_was_metered_is_not_counted(tmp_path: Path) -> None:
    """Section 9: N(H) is "as known when H is metered". L = 1; a works 08:00-08:30 on time, b 08:00-08:30
    arriving at 09:30. Hour 8 (09:10): N = 1, overage 0. Hour 9: nobody works in it: 0."""
    document = registry(company(contract("c1", "2026-11-02T08:00:00Z", 1)))
    late = [arriving(e, at(9, 30)) for e in session(I1, "b", at(8), at(8, 30))]
    result = replay(tmp_path, document, [*session(I1, "a", at(8), at(8, 30)), *late], until=at(10, 10))
    assert [row[:3] for row in overage(result)] == [("l-c1", hour(8), 0), ("l-c1", hour(9), 0)]


def test_s7_s9_overage_aggregates_environments_and_agents_are_their_arns(tmp_path: Path) -> None:
    """Section 7: overage is aggregate across the company; section 9: sessions are per AgentARN, so agent
    id `a` in two instances is two agents. L = 2; I1/a, I2/a and I1/b work in hour 8: N = 3, overage 1."""
    document = registry(company(contract("c1", iso(at(8)), 2), environments=[("a", I1), ("b", I2)]))
    pairs = [(I1, "a"), (I2, "a"), (I1, "b")]
    lines = by_time([e for arn, agent in pairs for e in session(arn, agent, at(8), at(8, 30))])
    result = replay(tmp_path, document, lines, until=at(9, 10))
    assert [row[:3] for row in overage(result)] == [("l-c1", hour(8), 1)]
