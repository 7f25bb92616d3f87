"""BILLING.md checked from outside, as a grader would: small replay inputs (R.json, E.jsonl, F.json) for
rules and boundaries the other replay tests leave out, each expected figure worked out by hand from the
contract (the comment above each assertion shows the sum), never copied from the product's output.

Most run the core engine alone (fast); the ones marked `BOTH` also run the handlers engine and require
the same records.jsonl and summary.json. A test marked xfail(strict) is a place where the product does
not do what BILLING.md says; its reason quotes the contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connect_metering.domain.instants import iso
from connect_metering.local import traffic
from connect_metering.local.replay import Replay, load_faults, load_registry, read_events
from tests.conftest import environment_restored
from tests.replay_harness import ACCOUNT, LICENSE, agent_event, instance, same_outcome, session, usage_company

pytestmark = pytest.mark.integration

D = datetime(2026, 11, 2, tzinfo=UTC)
I1, I2 = instance(1), instance(2)
BOTH = ("handlers", "core")
CORE = ("core",)


def at(hour: int, minute: int = 0, second: int = 0, ms: int = 0) -> datetime:
    return D + timedelta(hours=hour, minutes=minute, seconds=second, milliseconds=ms)


def hour(h: int, day: int = 2) -> str:
    return f"2026-11-{day:02d}T{h:02d}:00:00.000Z"


def event(
    agent: str, event_id: str, kind: str, moment: datetime, status: str = "Available", **options: Any
) -> dict[str, Any]:
    """A reduced agent event; ``since`` sets the status's StartTimestamp, ``arn`` the instance."""
    detail = agent_event(options.get("arn", I1), agent, event_id, kind, moment, status)
    if "since" in options:
        detail["CurrentAgentSnapshot"]["AgentStatus"]["StartTimestamp"] = iso(options["since"])
    return detail


def arriving(detail: dict[str, Any], moment: datetime, account: str | None = None) -> dict[str, Any]:
    """The EventBridge envelope of ``detail``, arrived at ``moment`` from ``account`` (its own by default)."""
    return traffic.eventbridge_envelope(detail, arrived=moment, account=account)


def subscription(licence: str, started: str | None, *, pricing: str = "usage", **extra: Any) -> dict[str, Any]:
    return {
        "customer_aws_account_id": ACCOUNT,
        "license_arn": LICENSE.format(licence),
        "pricing": pricing,
        "started": started,
        **extra,
    }


def company(*subscriptions: dict[str, Any], environments: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    return usage_company(subscriptions=list(subscriptions) or None, environments=environments)


def registry(*companies: dict[str, Any], **policy: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"product_code": "prod1", "companies": list(companies) or [usage_company()]}
    if policy:
        document["policy"] = policy
    return document


def by_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda line: str(line["EventTimestamp"]))


@dataclass
class Outcome:
    records: list[dict[str, Any]]
    summary: dict[str, Any]

    def sent(self) -> list[tuple[str, str, int, str, str]]:
        """Every record result in send order: (identity tail, Timestamp, Quantity, status, sent_at)."""
        return [
            (
                str(r["usage_record"].get("LicenseArn") or r["usage_record"].get("CustomerIdentifier")).split(":")[-1],
                r["usage_record"]["Timestamp"],
                r["usage_record"]["Quantity"],
                r["status"],
                r["sent_at"],
            )
            for r in self.records
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
    (tmp_path / "R.json").write_text(json.dumps(document))
    (tmp_path / "E.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    faults_file = None
    if faults is not None:
        faults_file = tmp_path / "F.json"
        faults_file.write_text(json.dumps(faults))
    summaries = []
    for engine in engines:
        with environment_restored():
            run = Replay(load_registry(tmp_path / "R.json"), load_faults(faults_file), tmp_path / engine, engine)
            summaries.append(run.run(read_events(tmp_path / "E.jsonl"), int(until.timestamp() * 1000)))
    if len(engines) == 2:
        same_outcome(tmp_path / engines[0], tmp_path / engines[1], (summaries[0], summaries[1]))
    records = (tmp_path / engines[0] / "records.jsonl").read_text().splitlines()
    return Outcome([json.loads(line) for line in records], summaries[0])


# --- section 2: which events count -----------------------------------------------------------------------


def test_s2_each_quarantine_reason_and_the_exact_bounds_of_rule_5(tmp_path: Path) -> None:
    """Section 2 rules 1-5, first broken rule wins; rule 5's bounds are inclusive ("at most 300 s after",
    "at most max_event_age before"); EventId at most 256 ASCII characters."""
    arrival = at(8, 30)
    lines = []
    missing_id = event("q", "x", "LOGIN", arrival)
    del missing_id["EventId"]
    bad_time = event("q", "bad-time", "LOGIN", arrival)
    bad_time["EventTimestamp"] = "yesterday"
    lowercase = event("q", "lowercase", "LOGIN", arrival)
    lowercase["EventType"] = "login"  # case-sensitive (section 9), and rule 2 comes before rule 4
    other_type = event("q", "contact", "LOGIN", arrival)
    other_type["EventType"] = "CONNECTED_TO_AGENT"
    forged_body = event("q", "forged-body", "LOGIN", arrival)
    forged_body["AWSAccountId"] = "999988887777"
    lines = [
        arriving(missing_id, arrival),  # unparseable
        arriving(event("q", "y" * 257, "LOGIN", arrival), arrival),  # unparseable: 257 characters
        arriving(event("q256", "z" * 256, "LOGIN", arrival), arrival),  # accepted: 256
        arriving(bad_time, arrival),  # unparseable
        arriving(event("agent\u00e9", "non-ascii", "LOGIN", arrival), arrival),  # unparseable AgentARN
        arriving(lowercase, arrival, account="999988887777"),  # unsupported_type
        arriving(other_type, arrival),  # unsupported_type
        arriving(event("q", "unknown", "LOGIN", arrival, arn=instance(9)), arrival),  # unknown_instance
        arriving(event("q", "mismatch", "LOGIN", arrival), arrival, account="999988887777"),  # account_mismatch
        arriving(forged_body, arrival, account="999988887777"),  # account_mismatch: not the instance's account
        arriving(event("f1", "ahead-300", "LOGIN", arrival + timedelta(seconds=300)), arrival),  # accepted
        arriving(event("f2", "ahead-301", "LOGIN", arrival + timedelta(seconds=300, milliseconds=1)), arrival),
        arriving(event("o1", "old-7d", "LOGIN", arrival - timedelta(days=7)), arrival),  # accepted
        arriving(event("o2", "old-7d1", "LOGIN", arrival - timedelta(days=7, milliseconds=1)), arrival),
    ]
    result = replay(tmp_path, registry(), lines, until=at(9, 10), engines=BOTH)
    reasons: dict[str, int] = {}
    for counts in (result.acme()["quarantined"], result.summary["quarantined_unattributed"]):
        for reason, count in counts.items():
            reasons[reason] = reasons.get(reason, 0) + count
    assert reasons == {
        "unparseable": 4,
        "unsupported_type": 2,
        "unknown_instance": 1,
        "account_mismatch": 2,
        "future_timestamp": 1,
        "too_old": 1,
    }
    assert result.acme()["events_accepted"] == 3
    assert result.summary["quarantined_unattributed"].get("unknown_instance") == 1
    # the accepted ones are lone LOGINs: zero-length sessions, nothing to bill
    assert result.quantities() == [(hour(8), 0)]


def test_s2_s8_a_policy_max_event_age_is_inclusive_to_the_millisecond(tmp_path: Path) -> None:
    """Section 2 rule 5 with section 8's `max_event_age` set to 3600 s in R.json."""
    arrival = at(9, 30)
    lines = [
        arriving(event("a", "exact", "LOGIN", arrival - timedelta(seconds=3600)), arrival),
        arriving(event("b", "beyond", "LOGIN", arrival - timedelta(seconds=3600, milliseconds=1)), arrival),
    ]
    result = replay(tmp_path, registry(max_event_age=3600), lines, until=at(10, 10))
    assert result.acme()["quarantined"] == {"too_old": 1}
    assert result.acme()["events_accepted"] == 1


def test_s2_rule_6_the_3601st_event_of_an_agent_hour_is_quarantined_and_not_used(tmp_path: Path) -> None:
    """Section 2 rule 6: accepted only while the agent has fewer than 3,600 accepted events in the hour.
    Hour 8 holds a LOGIN at 08:00:00 and heartbeats every second to 08:59:59 (3,600 events); a LOGOUT at
    08:59:59.500 is the 3,601st: quarantined, so it does not close the session, which the 09:00:30
    heartbeat extends until the 09:01 LOGOUT. Hour 8: 60 min. Hour 9: floor(61) - 60 = 1."""
    lines = [event("a", "e-0", "LOGIN", at(8))]
    lines += [event("a", f"e-{n}", "HEART_BEAT", at(8, 0, n)) for n in range(1, 3600)]
    lines += [
        event("a", "e-x", "LOGOUT", at(8, 59, 59, 500)),
        event("a", "e-y", "HEART_BEAT", at(9, 0, 30)),
        event("a", "e-z", "LOGOUT", at(9, 1)),
    ]
    result = replay(tmp_path, registry(), lines, until=at(10, 10))
    assert result.acme()["quarantined"] == {"too_many_events": 1}
    assert result.acme()["events_accepted"] == 3602
    assert result.quantities() == [(hour(8), 60), (hour(9), 1)]


def test_s2_s9_a_forged_copy_quarantined_first_does_not_suppress_the_real_event(tmp_path: Path) -> None:
    """Section 9: "a quarantined event never blocks a later valid event with the same EventId"."""
    shift = session(I1, "a", at(8), at(8, 10))
    forged = arriving(shift[0], at(8), account="999988887777")
    lines = [forged] + [arriving(e, datetime.fromisoformat(e["EventTimestamp"])) for e in shift]
    result = replay(tmp_path, registry(), lines, until=at(9, 10))
    assert result.acme()["quarantined"] == {"account_mismatch": 1}
    assert result.acme()["duplicates"] == 0
    assert result.quantities() == [(hour(8), 10)]


def test_s2_s3_redeliveries_in_reverse_order_bill_the_set_once(tmp_path: Path) -> None:
    """Section 2 duplicates ("counted, ignored") and section 3 ("depends only on the set of events, never
    on their arrival order"): a 30-minute shift delivered backwards, then again forwards, before 09:10."""
    shift = session(I1, "a", at(8), at(8, 30))  # LOGIN, 14 heartbeats, LOGOUT
    lines = [arriving(e, at(8, 59)) for e in [*reversed(shift), *shift]]
    result = replay(tmp_path, registry(), lines, until=at(9, 10))
    assert (result.acme()["events_accepted"], result.acme()["duplicates"]) == (16, 16)
    assert result.quantities() == [(hour(8), 30)]


DEDUP = (
    'BILLING.md s2: "Events with an EventId already accepted are duplicates: counted, ignored" vs the product, '
    "which de-duplicates per (instance, agent, hour, EventId) (docs/billing.md 'Decided') and accepts it"
)


@pytest.mark.xfail(strict=True, reason=DEDUP)
def test_s2_an_event_id_accepted_in_an_earlier_hour_is_a_duplicate(tmp_path: Path) -> None:
    """Shift 08:00-08:10 whose LOGIN is `dup-1`; at 09:00 a HEART_BEAT with EventId `dup-1` again and a
    LOGOUT at 09:04. The 09:00 event is a duplicate (ignored); the LOGOUT finds the agent closed (ignored).
    Billable: 10 min in all. Both engines."""
    lines = [event("a", "dup-1", "LOGIN", at(8))]
    lines += [event("a", f"u{n}", "HEART_BEAT", at(8, 2 * n)) for n in range(1, 5)]
    lines += [
        event("a", "o1", "LOGOUT", at(8, 10)),
        event("a", "dup-1", "HEART_BEAT", at(9)),
        event("a", "o2", "LOGOUT", at(9, 4)),
    ]
    result = replay(tmp_path, registry(), lines, until=at(10, 10), engines=BOTH)
    assert result.acme()["duplicates"] == 1
    assert result.quantities() == [(hour(8), 10), (hour(9), 0)]
    # section 5: accepted minutes = floor(total billable time / 60 s); the product's own summary says 10
    assert result.acme()["minutes_accepted"] == result.prod()["billable_ms"] // 60_000 == 10


@pytest.mark.xfail(strict=True, reason=DEDUP)
def test_s2_an_event_id_accepted_for_another_agent_is_a_duplicate(tmp_path: Path) -> None:
    """Agent a's shift 08:00-08:10; agent b's LOGIN at 08:20 reuses a's LOGIN EventId (a duplicate,
    ignored), so b's LOGOUT at 08:24 finds b closed. Billable: 10 min."""
    shift = session(I1, "a", at(8), at(8, 10))
    lines = [*shift, event("b", shift[0]["EventId"], "LOGIN", at(8, 20)), event("b", "b-out", "LOGOUT", at(8, 24))]
    result = replay(tmp_path, registry(), lines, until=at(9, 10))
    assert result.acme()["duplicates"] == 1
    assert result.quantities() == [(hour(8), 10)]


# --- section 3: sessions -------------------------------------------------------------------------------


def test_s3_a_gap_of_exactly_the_timeout_continues_and_one_ms_more_closes_at_last(tmp_path: Path) -> None:
    """Section 3 open state: closes only if `event.ts - last > silence_timeout` (360 s). LOGIN 08:00,
    heartbeat 08:06:00 (gap 360 s: continues), heartbeat 08:12:00.001 (gap 360.001 s: closes at 08:06, the
    heartbeat reopens), LOGOUT 08:15. Billable: 360,000 + 179,999 ms; hour 8: floor(8.99) = 8."""
    lines = [
        event("a", "l", "LOGIN", at(8)),
        event("a", "h1", "HEART_BEAT", at(8, 6)),
        event("a", "h2", "HEART_BEAT", at(8, 12, 0, 1)),
        event("a", "o", "LOGOUT", at(8, 15)),
    ]
    result = replay(tmp_path, registry(), lines, until=at(9, 10), engines=BOTH)
    assert result.prod()["billable_ms"] == 539_999
    assert result.quantities() == [(hour(8), 8)]


def test_s3_a_logout_after_more_than_the_timeout_closes_the_session_at_last(tmp_path: Path) -> None:
    """Section 3: the LOGOUT 10.5 min after the LOGIN, nothing between, first closes the session at `last`
    (the LOGIN): a zero-length session, nothing billed."""
    lines = [event("a", "l", "LOGIN", at(8)), event("a", "o", "LOGOUT", at(8, 10, 30))]
    result = replay(tmp_path, registry(), lines, until=at(9, 10))
    assert result.prod()["billable_ms"] == 0
    assert result.quantities() == [(hour(8), 0)]


def test_s3_a_renamed_status_is_offline_up_to_60_s_after_the_logout_and_not_after(tmp_path: Path) -> None:
    """Section 3 offline rule, boundary: StartTimestamp "at most 60 s after that LOGOUT". Shift
    08:00-08:10 (LOGOUT 08:10); heartbeat 08:12 `Away` since 08:11:00 (60 s: offline, ignored); heartbeat
    08:14 `Away` since 08:11:00.001 (60.001 s: not offline, opens), heartbeats to 08:18, LOGOUT 08:20.
    Billable: 10 + 6 = 16 min."""
    later = at(8, 11, 0, 1)
    lines = session(I1, "a", at(8), at(8, 10))
    lines += [
        event("a", "p1", "HEART_BEAT", at(8, 12), "Away", since=at(8, 11)),
        event("a", "p2", "HEART_BEAT", at(8, 14), "Away", since=later),
        event("a", "p3", "HEART_BEAT", at(8, 16), "Away", since=later),
        event("a", "p4", "HEART_BEAT", at(8, 18), "Away", since=later),
        event("a", "p5", "LOGOUT", at(8, 20), "Away", since=later),
    ]
    result = replay(tmp_path, registry(), lines, until=at(9, 10))
    assert result.quantities() == [(hour(8), 16)]


def test_s3_without_any_login_a_status_entered_within_60_s_of_a_logout_is_offline(tmp_path: Path) -> None:
    """Section 3: "(or there is no such LOGIN)". LOGOUT 08:00 (closed: ignored); `Away` since 08:00:30 at
    08:02 and since 08:01 at 08:03: offline, ignored; `Available` since 08:05 at 08:05 opens; heartbeat
    08:07; LOGOUT 08:09. Billable: 4 min."""
    lines = [
        event("a", "o", "LOGOUT", at(8)),
        event("a", "p1", "HEART_BEAT", at(8, 2), "Away", since=at(8, 0, 30)),
        event("a", "p2", "STATE_CHANGE", at(8, 3), "Away", since=at(8, 1)),
        event("a", "p3", "STATE_CHANGE", at(8, 5), since=at(8, 5)),
        event("a", "p4", "HEART_BEAT", at(8, 7), since=at(8, 5)),
        event("a", "p5", "LOGOUT", at(8, 9), since=at(8, 5)),
    ]
    result = replay(tmp_path, registry(), lines, until=at(9, 10))
    assert result.quantities() == [(hour(8), 4)]


def test_s3_a_heartbeat_and_a_logout_at_one_instant_sort_heartbeat_first(tmp_path: Path) -> None:
    """Section 3 tie order (HEART_BEAT < LOGOUT), whatever the file order: shift 08:00 with heartbeats to
    08:08; at 08:10 a LOGOUT (first in the file) and an `Available` heartbeat without StartTimestamp. Sorted,
    the heartbeat sets last and the LOGOUT closes at 08:10; the 08:12 heartbeat reopens (not offline by
    name), 08:14, LOGOUT 08:16. Billable: 10 + 4 = 14 min (16 if the LOGOUT were read first)."""
    lines = [event("a", "l", "LOGIN", at(8))]
    lines += [event("a", f"h{n}", "HEART_BEAT", at(8, 2 * n)) for n in range(1, 5)]
    lines += [
        event("a", "o", "LOGOUT", at(8, 10)),
        event("a", "hx", "HEART_BEAT", at(8, 10)),
        event("a", "h6", "HEART_BEAT", at(8, 12)),
        event("a", "h7", "HEART_BEAT", at(8, 14)),
        event("a", "o2", "LOGOUT", at(8, 16)),
    ]
    result = replay(tmp_path, registry(), lines, until=at(9, 10))
    assert result.quantities() == [(hour(8), 14)]


def offline_after_ten_minutes() -> list[dict[str, Any]]:
    """LOGIN 08:00, heartbeats to 08:08, STATE_CHANGE to `Offline` at 08:10, `Offline` heartbeats every
    2 min to 08:30, no LOGOUT."""
    lines = [event("a", "l", "LOGIN", at(8))]
    lines += [event("a", f"h{n}", "HEART_BEAT", at(8, 2 * n)) for n in range(1, 5)]
    lines.append(event("a", "sc", "STATE_CHANGE", at(8, 10), "Offline"))
    lines += [event("a", f"o{n}", "HEART_BEAT", at(8, 10 + 2 * n), "Offline") for n in range(1, 11)]
    return lines


def test_s3_an_open_session_is_kept_open_by_offline_events_under_logged_in(tmp_path: Path) -> None:
    """Section 3 open state: only a LOGOUT or silence closes; "any other event sets last". Billable
    (default `billable_time = logged_in`, section 8): [08:00, 08:30] = 30 min."""
    result = replay(tmp_path, registry(), offline_after_ten_minutes(), until=at(9, 10))
    assert result.quantities() == [(hour(8), 30)]


def test_s3_policy_online_removes_the_time_whose_status_is_offline(tmp_path: Path) -> None:
    """Section 3: "Policy billable_time = online ... removes time whose current status is Offline":
    [08:10, 08:30] removed, 10 min left."""
    result = replay(tmp_path, registry(billable_time="online"), offline_after_ten_minutes(), until=at(9, 10))
    assert result.quantities() == [(hour(8), 10)]


def test_s3_s5_a_session_over_midnight_is_split_at_the_day_boundary(tmp_path: Path) -> None:
    """Section 5, hours are [H, H+1h): shift 23:50-00:20 bills 10 in hour 23 (sent 00:10 the next day) and
    20 in hour 00 (sent 01:10)."""
    document = registry(company(subscription("s", "2026-11-02T22:00:00Z")))
    result = replay(tmp_path, document, session(I1, "a", at(23, 50), at(24, 20)), until=at(25, 10))
    assert result.sent() == [
        ("l-s", hour(22), 0, "Success", "2026-11-02T23:10:00.000Z"),
        ("l-s", hour(23), 10, "Success", "2026-11-03T00:10:00.000Z"),
        ("l-s", hour(0, day=3), 20, "Success", "2026-11-03T01:10:00.000Z"),
    ]
