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


def subscription(
    licence: str, started: str | None, *, pricing: str = "usage", **extra: Any
) -> dict[str, Any]:
    return {
        "customer_aws_account_id": ACCOUNT,
        "license_arn": LICENSE.format(licence),
        "pricing": pricing,
        "started": started,
        **extra,
    }


def company(
    *subscriptions: dict[str, Any], environments: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
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
                str(r["usage_record"].get("LicenseArn") or r["usage_record"].get("CustomerIdentifier")).split(
                    ":"
                )[-1],
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
            run = Replay(
                load_registry(tmp_path / "R.json"), load_faults(faults_file), tmp_path / engine, engine
            )
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
        arriving(
            event("q", "mismatch", "LOGIN", arrival), arrival, account="999988887777"
        ),  # account_mismatch
        arriving(
            forged_body, arrival, account="999988887777"
        ),  # account_mismatch: not the instance's account
        arriving(event("f1", "ahead-300", "LOGIN", arrival + timedelta(seconds=300)), arrival),  # accepted
        arriving(
            event("f2", "ahead-301", "LOGIN", arrival + timedelta(seconds=300, milliseconds=1)), arrival
        ),
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
    lines = [
        *shift,
        event("b", shift[0]["EventId"], "LOGIN", at(8, 20)),
        event("b", "b-out", "LOGOUT", at(8, 24)),
    ]
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


# --- sections 1 and 4: identities and attribution ------------------------------------------------------

LEGACY = {"customer_identifier": "X01EXAMPLEX", "pricing": "usage", "started": "2026-11-02T08:00:00Z"}


def test_s1_a_legacy_subscription_is_billed_by_customer_identifier_and_product_code(tmp_path: Path) -> None:
    """Section 1: identity `CustomerIdentifier` (the product code goes with the BatchMeterUsage call, not
    in the UsageRecord); "A record never carries both LicenseArn and ProductCode"."""
    result = replay(tmp_path, registry(company(LEGACY)), session(I1, "a", at(8), at(8, 10)), until=at(9, 10))
    [record] = result.records
    assert record["usage_record"]["CustomerIdentifier"] == "X01EXAMPLEX"
    assert "LicenseArn" not in record["usage_record"]
    assert record["usage_record"]["Quantity"] == 10


def test_s4_s9_a_tie_compares_identity_strings_across_legacy_and_licence(tmp_path: Path) -> None:
    """Section 9: ties on `started` "compare their identity strings (LicenseArn if present, else
    CustomerIdentifier) and take the smaller": "X01EXAMPLEX" < "arn:aws:..." ('X' < 'a'), so the legacy
    subscription is primary and gets the 12 minutes; the licence gets its hourly record at 0."""
    document = registry(company(subscription("aaa", "2026-11-02T08:00:00Z"), LEGACY))
    result = replay(tmp_path, document, session(I1, "a", at(8), at(8, 12)), until=at(9, 10))
    assert sorted(result.sent()) == [
        ("X01EXAMPLEX", hour(8), 12, "Success", "2026-11-02T09:10:00.000Z"),
        ("l-aaa", hour(8), 0, "Success", "2026-11-02T09:10:00.000Z"),
    ]


def test_s4_s6_s9_the_primary_ends_mid_hour_and_the_younger_one_takes_the_rest(tmp_path: Path) -> None:
    """s1 (07:00-08:30) is primary until its end, then s2 (from 08:00). One shift 08:00-09:00, heartbeats
    every 4 min (08:28, 08:32...). Section 6: s1's hour 8 is metered at 08:30 "with usage known at T":
    the session known then is [08:00, 08:28] = 28 min; section 9: "time between an agent's last event and T
    is not billed to anyone". s2 gets [08:30, 09:00] = 30 in its hour-8 record at 09:10. Both engines."""
    document = registry(
        company(
            subscription("s1", "2026-11-02T07:00:00Z", ended="2026-11-02T08:30:00Z"),
            subscription("s2", "2026-11-02T08:00:00Z"),
        )
    )
    result = replay(
        tmp_path, document, session(I1, "a", at(8), at(9), step_s=240), until=at(9, 10), engines=BOTH
    )
    assert result.sent() == [
        ("l-s1", hour(7), 0, "Success", "2026-11-02T08:10:00.000Z"),
        ("l-s1", hour(8), 28, "Success", "2026-11-02T08:30:00.000Z"),
        ("l-s2", hour(8), 30, "Success", "2026-11-02T09:10:00.000Z"),
    ]
    assert (result.prod()["billable_ms"], result.prod()["unbilled_ms"]) == (60 * 60_000, 0)


def test_s4_late_usage_from_when_an_ended_subscription_was_primary_is_not_billed_to_another(
    tmp_path: Path,
) -> None:
    """Section 4: every billable millisecond at t goes to primary(t). s1 (07:00-08:30) was primary for a
    shift 08:00-08:20 that arrives at 09:30, after s1's final metering: those minutes are s1's (section 6:
    "usage known at T"), never s2's. Every record is 0. Both engines."""
    document = registry(
        company(
            subscription("s1", "2026-11-02T07:00:00Z", ended="2026-11-02T08:30:00Z"),
            subscription("s2", "2026-11-02T08:00:00Z"),
        )
    )
    lines = [arriving(e, at(9, 30)) for e in session(I1, "a", at(8), at(8, 20))]
    result = replay(tmp_path, document, lines, until=at(10, 10), engines=BOTH)
    assert result.sent() == [
        ("l-s1", hour(7), 0, "Success", "2026-11-02T08:10:00.000Z"),
        ("l-s1", hour(8), 0, "Success", "2026-11-02T08:30:00.000Z"),
        ("l-s2", hour(8), 0, "Success", "2026-11-02T09:10:00.000Z"),
        ("l-s2", hour(9), 0, "Success", "2026-11-02T10:10:00.000Z"),
    ]


# --- section 5: hourly quantity ------------------------------------------------------------------------


def test_s5_the_floor_is_taken_per_environment_then_summed(tmp_path: Path) -> None:
    """Section 5: Q(s,e,H) per environment, Quantity = sum over e. 10.5 min in each of two environments
    in hour 8: 10 + 10 = 20 (not floor(21)); 0.5 more in each in hour 9: (11 - 10) + (11 - 10) = 2. Both
    engines."""
    document = registry(company(environments=[("a", I1), ("b", I2)]))
    lines = by_time(
        [
            *session(I1, "x", at(8), at(8, 10, 30)),
            *session(I2, "y", at(8), at(8, 10, 30)),
            *session(I1, "x", at(9), at(9, 0, 30)),
            *session(I2, "y", at(9), at(9, 0, 30)),
        ]
    )
    result = replay(tmp_path, document, lines, until=at(10, 10), engines=BOTH)
    allocations = [
        [(a["Tags"][0]["Value"], a["AllocatedUsageQuantity"]) for a in r["usage_record"]["UsageAllocations"]]
        for r in result.records
    ]
    assert result.quantities() == [(hour(8), 20), (hour(9), 2)]
    assert allocations == [[("a", 10), ("b", 10)], [("a", 1), ("b", 1)]]


def test_s5_agents_of_one_environment_are_summed_before_the_floor(tmp_path: Path) -> None:
    """Section 5: T(s,e,H) is the environment's billable time: two agents of 10.5 min: floor(21) = 21."""
    lines = by_time([*session(I1, "x", at(8), at(8, 10, 30)), *session(I1, "y", at(8), at(8, 10, 30))])
    result = replay(tmp_path, registry(), lines, until=at(9, 10))
    assert result.quantities() == [(hour(8), 21)]


def test_s5_a_late_half_minute_completes_a_carried_fraction(tmp_path: Path) -> None:
    """Section 5: 10.5 min in hour 8 bill 10 at 09:10; a 30 s session of hour 8 arriving at 09:30 brings T
    to 11 min: hour 9 bills floor(11) - 10 = 1."""
    late = [arriving(e, at(9, 30)) for e in session(I1, "y", at(8, 20), at(8, 20, 30))]
    result = replay(tmp_path, registry(), [*session(I1, "x", at(8), at(8, 10, 30)), *late], until=at(10, 10))
    assert result.quantities() == [(hour(8), 10), (hour(9), 1)]
    assert result.acme()["late"] == 2


def test_s5_a_late_logout_that_shortens_billed_time_is_offset_by_later_usage(tmp_path: Path) -> None:
    """Section 5: Q = max(0, floor(T) - B). A session kept open to 08:30 by `Offline` heartbeats bills 30
    at 09:10 (B = 30); its LOGOUT at 08:10 arrives at 09:30: T becomes 10 min, hour 9 bills max(0, 10 - 30)
    = 0 and nothing is taken back. Shifts 09:40-09:55 (T = 25) and 11:00-11:10 (T = 35): hour 10 bills
    max(0, 25 - 30) = 0, hour 11 bills 35 - 30 = 5. Both engines."""
    lines = offline_after_ten_minutes()
    lines.append(arriving(event("a", "late-logout", "LOGOUT", at(8, 10)), at(9, 30)))
    lines += [*session(I1, "a", at(9, 40), at(9, 55)), *session(I1, "a", at(11), at(11, 10))]
    result = replay(tmp_path, registry(), lines, until=at(12, 10), engines=BOTH)
    assert result.quantities() == [(hour(8), 30), (hour(9), 0), (hour(10), 0), (hour(11), 5)]


def test_s5_usage_a_day_late_is_billed_in_the_next_metered_hour(tmp_path: Path) -> None:
    """Section 5: late usage "is billed in the next metered hour", however late (within max_event_age): a
    shift of Nov 1 10:00-10:30 arriving Nov 2 08:30. Every hour from Nov 1 00:00 gets its record (section
    6); only Nov 2 hour 8 carries the 30 minutes."""
    document = registry(company(subscription("s", "2026-11-01T00:00:00Z")))
    lines = [arriving(e, at(8, 30)) for e in session(I1, "a", at(-14), at(-14, 30))]
    result = replay(tmp_path, document, lines, until=at(9, 10))
    expected = [(f"2026-11-01T{h:02d}:00:00.000Z", 0) for h in range(24)] + [(hour(h), 0) for h in range(8)]
    assert result.quantities() == [*expected, (hour(8), 30)]


def test_s5_the_timestamp_is_started_when_that_is_later_to_the_millisecond(tmp_path: Path) -> None:
    """Section 5 `Timestamp` = H, or `started` when later: started 08:59:59.999, shift 08:30-09:30. Hour
    8's record is stamped 08:59:59.999 and carries floor(1 ms) = 0; hour 9: floor(30 min + 1 ms) - 0 = 30.
    The 29:59.999 before the start are unbilled."""
    document = registry(company(subscription("s", "2026-11-02T08:59:59.999Z")))
    result = replay(tmp_path, document, session(I1, "a", at(8, 30), at(9, 30)), until=at(10, 10))
    assert result.quantities() == [("2026-11-02T08:59:59.999Z", 0), (hour(9), 30)]
    assert result.prod()["unbilled_ms"] == 30 * 60_000 - 1


# --- section 6: when records are sent ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ended", "expected_tail"),
    [
        # ends on the hour: its last active instant is 09:59:59.999 (section 9), so hour 10 has no record
        ("2026-11-02T10:00:00Z", [("l-s", hour(9), 20, "Success", "2026-11-02T10:00:00.000Z")]),
        # one millisecond later it is active at 10:00:00.000: hour 10 gets its record, at 0
        (
            "2026-11-02T10:00:00.001Z",
            [
                ("l-s", hour(9), 20, "Success", "2026-11-02T10:00:00.001Z"),
                ("l-s", hour(10), 0, "Success", "2026-11-02T10:00:00.001Z"),
            ],
        ),
    ],
)
def test_s6_s9_final_metering_at_an_end_on_the_hour_and_one_ms_after(
    tmp_path: Path, ended: str, expected_tail: list[tuple[str, str, int, str, str]]
) -> None:
    """Section 6: one record per hour "in which it is active at some instant"; final metering at T covers
    the hours up to the one containing T - 1 ms (section 9), sent at T. Shift 09:00-09:20."""
    document = registry(company(subscription("s", "2026-11-02T08:00:00Z", ended=ended)))
    result = replay(tmp_path, document, session(I1, "a", at(9), at(9, 20)), until=at(12))
    assert result.sent() == [("l-s", hour(8), 0, "Success", "2026-11-02T09:10:00.000Z"), *expected_tail]


def test_s6_a_subscription_active_for_half_an_hour_gets_one_record(tmp_path: Path) -> None:
    """Active [08:15, 08:45): one record, stamped 08:15 (section 5), sent at the end (section 6) with the
    usage known then: a shift 08:00-09:00 whose last heartbeat before 08:45 is 08:44, so [08:15, 08:44] =
    29. Unbilled (no active subscription): [08:00, 08:15) and [08:45, 09:00] = 30 min."""
    document = registry(company(subscription("s", "2026-11-02T08:15:00Z", ended="2026-11-02T08:45:00Z")))
    result = replay(tmp_path, document, session(I1, "a", at(8), at(9)), until=at(12))
    assert result.sent() == [("l-s", "2026-11-02T08:15:00.000Z", 29, "Success", "2026-11-02T08:45:00.000Z")]
    assert (result.prod()["billable_ms"], result.prod()["unbilled_ms"]) == (60 * 60_000, 30 * 60_000)


def test_s6_usage_that_arrives_after_the_final_metering_is_never_billed(tmp_path: Path) -> None:
    """Section 6: final metering at T "with usage known at T"; nothing is sent for the subscription after
    it. A shift 09:00-09:20 of a subscription ended 09:30 arrives at 09:40: no record carries it."""
    document = registry(company(subscription("s", "2026-11-02T08:00:00Z", ended="2026-11-02T09:30:00Z")))
    lines = [arriving(e, at(9, 40)) for e in session(I1, "a", at(9), at(9, 20))]
    result = replay(tmp_path, document, lines, until=at(12))
    assert result.sent() == [
        ("l-s", hour(8), 0, "Success", "2026-11-02T09:10:00.000Z"),
        ("l-s", hour(9), 0, "Success", "2026-11-02T09:30:00.000Z"),
    ]


def test_s6_throttled_records_of_an_ended_subscription_are_still_retried_to_acceptance(
    tmp_path: Path,
) -> None:
    """Section 6: throttling is "retried with back-off" and every retry sends the stored record unchanged.
    Throttling 09:00-09:45; the subscription ends at 09:30. Hours 8 (30 min) and 9 (20 min) are each
    accepted once, unchanged, after the outage. Both engines."""
    document = registry(company(subscription("s", "2026-11-02T08:00:00Z", ended="2026-11-02T09:30:00Z")))
    faults = {
        "seed": 1,
        "outages": [{"start": iso(at(9)), "end": iso(at(9, 45)), "error": "ThrottlingException"}],
    }
    lines = [*session(I1, "a", at(8, 10), at(8, 40)), *session(I1, "a", at(9), at(9, 20))]
    result = replay(tmp_path, document, lines, until=at(12), faults=faults, engines=BOTH)
    assert {(h, q) for _, h, q, _, _ in result.sent()} == {(hour(8), 30), (hour(9), 20)}
    accepted = [(h, q) for _, h, q, status, sent_at in result.sent() if status == "Success"]
    assert accepted == [(hour(8), 30), (hour(9), 20)]
    assert {status for _, _, _, status, _ in result.sent()} == {"Error:ThrottlingException", "Success"}
    assert all(
        sent_at >= "2026-11-02T09:45:00.000Z" for *_, status, sent_at in result.sent() if status == "Success"
    )
    assert result.acme()["minutes_accepted"] == 50


def test_s5_s6_a_record_still_being_retried_counts_in_b(tmp_path: Path) -> None:
    """Section 5: B holds records "stored and still being retried (pending)". Every call answers the record
    unprocessed: hour 8 (30 min) stays pending and is resent unchanged, so hours 9 and 10 carry 0, never the
    same 30 again; nothing is accepted."""
    faults = {"seed": 1, "unprocessed_rate": 1.0}
    result = replay(
        tmp_path, registry(), session(I1, "a", at(8, 10), at(8, 40)), until=at(11, 10), faults=faults
    )
    assert {(h, q) for _, h, q, _, _ in result.sent()} == {(hour(8), 30), (hour(9), 0), (hour(10), 0)}
    assert {status for *_, status, _ in result.sent()} == {"Unprocessed"}
    assert result.acme()["minutes_accepted"] == 0


def test_s1_s6_a_licence_refused_as_a_whole_matched_by_its_licence_id(tmp_path: Path) -> None:
    """Sections 1 and 6: F.json revokes the licence spelled as an agreement event writes it
    (`aws:license-manager:<region>:<account>:l-...`); the registry holds `...:license/l-...`: the same
    licence. Its call is refused whole (InvalidLicenseException); the record stays pending, so hour 9 is
    computed with B = 30 and carries 0."""
    licence_id = "l-0123456789abcdef0123456789abcdef"
    document = registry(
        company(
            {
                "customer_aws_account_id": ACCOUNT,
                "license_arn": f"arn:aws:license-manager::123456789012:license/{licence_id}",
                "pricing": "usage",
                "started": "2026-11-02T08:00:00Z",
            }
        )
    )
    revoked = f"aws:license-manager:us-east-1:123456789012:{licence_id}"
    faults = {"seed": 1, "revoked": [{"license_arn": revoked, "at": iso(at(8, 30))}]}
    result = replay(
        tmp_path, document, session(I1, "a", at(8, 10), at(8, 40)), until=at(10, 10), faults=faults
    )
    assert {(h, q) for _, h, q, _, _ in result.sent()} == {(hour(8), 30), (hour(9), 0)}
    assert {status for *_, status, _ in result.sent()} == {"Error:InvalidLicenseException"}
    assert result.acme()["minutes_accepted"] == 0


def test_s6_s8_grace_and_silence_timeout_from_the_registry_policy(tmp_path: Path) -> None:
    """Section 8 names in R.json: grace 300 s meters hour 8 at 09:05; silence_timeout 600 s keeps an 8-min
    LOGIN-LOGOUT session whole. Agent b's 9-min session of hour 8 arrives exactly at 09:05: "ingested after
    that metering" (section 9), so hour 9 (metered 10:05) bills it: 8, then 9."""
    lines = [
        event("a", "a1", "LOGIN", at(8, 50)),
        event("a", "a2", "LOGOUT", at(8, 58)),
        arriving(event("b", "b1", "LOGIN", at(8)), at(9, 5)),
        arriving(event("b", "b2", "LOGOUT", at(8, 9)), at(9, 5)),
    ]
    result = replay(tmp_path, registry(grace=300, silence_timeout=600), lines, until=at(10, 10))
    assert result.sent() == [
        ("l-acme1", hour(8), 8, "Success", "2026-11-02T09:05:00.000Z"),
        ("l-acme1", hour(9), 9, "Success", "2026-11-02T10:05:00.000Z"),
    ]


# --- section 7: contract pricing -----------------------------------------------------------------------


def contract(licence: str, started: str, agents: int, **extra: Any) -> dict[str, Any]:
    return subscription(
        licence, started, pricing="contract", entitlements={"licensed_agents": agents}, **extra
    )


def overage(result: Outcome) -> list[tuple[str, str, int]]:
    assert {r["usage_record"]["Dimension"] for r in result.records} <= {"overage_agents"}
    assert all("UsageAllocations" not in r["usage_record"] for r in result.records)
    return [(licence, h, q) for licence, h, q, _, _ in result.sent()]


def test_s7_an_expired_contract_leaves_l_and_the_primary_role(tmp_path: Path) -> None:
    """c1 (from 07:00, 2 agents, expires 08:45), c2 (from 07:30, 1 agent); 3 agents 08:00-09:30. Hour 7:
    primary c1, N = 0: 0. Hour 8: L = 2 + 1, N = 3: 0. Hour 9: c1 expired, so L = 1 and the primary is c2:
    3 - 1 = 2. c2 sends nothing for the hours c1 is primary; no agent_minutes records at all."""
    document = registry(
        company(
            contract("c1", "2026-11-02T07:00:00Z", 2, expires="2026-11-02T08:45:00Z"),
            contract("c2", "2026-11-02T07:30:00Z", 1),
        )
    )
    lines = by_time([e for n in range(3) for e in session(I1, f"agent{n}", at(8), at(9, 30))])
    result = replay(tmp_path, document, lines, until=at(10, 10))
    assert overage(result) == [("l-c1", hour(7), 0), ("l-c1", hour(8), 0), ("l-c2", hour(9), 2)]


def test_s7_s9_n_counts_only_agents_with_more_than_0_ms_in_the_hour(tmp_path: Path) -> None:
    """Section 9: "N(H) counts agents with more than 0 ms of billable time in H". L = 1. Hour 8: a
    (08:00-09:00) and b (08:30-09:00): N = 2, overage 1. Hour 9: a and b end at 09:00 exactly (0 ms in hour
    9), c works 09:00-09:20, d's LOGIN and LOGOUT at 09:30 are a zero-length session: N = 1, overage 0."""
    document = registry(company(contract("c1", "2026-11-02T08:00:00Z", 1)))
    lines = by_time(
        [
            *session(I1, "a", at(8), at(9)),
            *session(I1, "b", at(8, 30), at(9)),
            *session(I1, "c", at(9), at(9, 20)),
            event("d", "d1", "LOGIN", at(9, 30)),
            event("d", "d2", "LOGOUT", at(9, 30)),
        ]
    )
    result = replay(tmp_path, document, lines, until=at(10, 10), engines=BOTH)
    assert overage(result) == [("l-c1", hour(8), 1), ("l-c1", hour(9), 0)]


def test_s7_s9_an_agent_known_only_after_its_hour_was_metered_is_not_counted(tmp_path: Path) -> None:
    """Section 9: N(H) is "as known when H is metered". L = 1; a works 08:00-08:30 on time, b 08:00-08:30
    arriving at 09:30. Hour 8 (09:10): N = 1, overage 0. Hour 9: nobody works in it: 0."""
    document = registry(company(contract("c1", "2026-11-02T08:00:00Z", 1)))
    late = [arriving(e, at(9, 30)) for e in session(I1, "b", at(8), at(8, 30))]
    result = replay(tmp_path, document, [*session(I1, "a", at(8), at(8, 30)), *late], until=at(10, 10))
    assert overage(result) == [("l-c1", hour(8), 0), ("l-c1", hour(9), 0)]


def test_s7_s9_overage_aggregates_environments_and_agents_are_their_arns(tmp_path: Path) -> None:
    """Section 7: aggregate overage across the company; section 9: sessions are per AgentARN, so agent id
    `a` in two instances is two agents. L = 2; agents I1/a, I2/a, I1/b in hour 8: N = 3, overage 1."""
    document = registry(
        company(contract("c1", "2026-11-02T08:00:00Z", 2), environments=[("a", I1), ("b", I2)])
    )
    lines = by_time(
        [
            *session(I1, "a", at(8), at(8, 30)),
            *session(I2, "a", at(8), at(8, 30)),
            *session(I1, "b", at(8), at(8, 30)),
        ]
    )
    result = replay(tmp_path, document, lines, until=at(9, 10))
    assert overage(result) == [("l-c1", hour(8), 1)]
