"""The ingest Lambda handler on moto DynamoDB, fed SQS-of-EventBridge events built from the samples."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from connect_metering import observability
from connect_metering.adapters.activity_table import RETENTION_DAYS, DynamoActivityStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.activity import AddedEvents
from connect_metering.domain.instants import parse_iso, to_ms
from connect_metering.domain.tenancy import Company, Environment, build
from connect_metering.services.ingest import IngestResult
from connect_metering.settings import IngestSettings, load_settings
from functions.ingest import handler
from tests.factories import BILLING_FIELDS, SAMPLE_INSTANCE, agent_event, envelope, sqs_event

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

pytestmark = pytest.mark.integration

H = datetime(2026, 11, 2, 9, tzinfo=UTC)
OTHER_INSTANCE = "arn:aws:connect:eu-west-1:999988887777:instance/bbbbbbbb-bbbb-cccc-dddd-222222222222"


@pytest.fixture
def ingest(
    ingest_tables: None, dynamodb: DynamoDBClient, tenancy: DynamoTenancyStore
) -> Iterator[DynamoActivityStore]:
    tenancy.create_company(Company(alias="acme"))
    tenancy.add_environment(
        build(Environment, company_alias="acme", name="prod", instance_arn=SAMPLE_INSTANCE)
    )
    yield DynamoActivityStore("activity-test", dynamodb)
    observability.metrics.clear_metrics()
    handler.ingest_service.cache_clear()
    load_settings.cache_clear()


def quarantined(dynamodb: DynamoDBClient) -> list[dict[str, str]]:
    items = dynamodb.scan(TableName="quarantine-test")["Items"]
    return [{name: value.get("S", value.get("N", "")) for name, value in item.items()} for item in items]


def stored_points(activity: DynamoActivityStore, instance: str = SAMPLE_INSTANCE) -> list[Any]:
    window = activity.read_hours(instance, to_ms(H) - 86_400_000, to_ms(H) + 86_400_000)
    return sorted((event.agent_arn, event.point) for event in window.events)


def run(records: Sequence[str | dict[str, Any]]) -> tuple[dict[str, Any], list[IngestResult]]:
    return handler.handle_batch(sqs_event(records))


def test_sample_heartbeat_is_accepted_and_stored(ingest: DynamoActivityStore) -> None:
    event = agent_event(at=H + timedelta(minutes=5))
    response, results = run([envelope(event, arrived=H + timedelta(minutes=5, seconds=2))])
    assert response == {"batchItemFailures": []}
    assert [(r.outcome.value, r.company, r.environment, r.late) for r in results] == [
        ("accepted", "acme", "prod", False)
    ]
    [(agent, point)] = stored_points(ingest)
    assert agent == f"{SAMPLE_INSTANCE}/agent/agent-1"
    assert (point.ts_ms, point.kind.name, point.event_id, point.offline) == (
        to_ms(H + timedelta(minutes=5)),
        "HEART_BEAT",
        "EventId-1",
        False,
    )


def test_redelivery_is_a_counted_duplicate_stored_once(ingest: DynamoActivityStore) -> None:
    body = envelope(agent_event(at=H), arrived=H)
    run([body])
    response, results = run([body, body])
    assert response == {"batchItemFailures": []}
    assert [r.outcome.value for r in results] == ["duplicate", "duplicate"]
    assert len(stored_points(ingest)) == 1


def test_bad_input_is_quarantined_with_a_reason_and_the_batch_goes_on(
    ingest: DynamoActivityStore, dynamodb: DynamoDBClient
) -> None:
    at = H + timedelta(minutes=1)
    good = agent_event(event_id="good-1", at=at)
    missing = agent_event(event_id="missing", at=at)
    del missing["AgentARN"]
    mistyped = agent_event(event_id="mistyped", at=at)
    mistyped["EventTimestamp"] = 1234567
    oversized = agent_event(event_id="big", at=at)
    oversized["CurrentAgentSnapshot"]["Contacts"] = ["x" * 1000] * 80
    cases: list[tuple[str | dict[str, Any], str]] = [
        ("{not json", "unparseable"),
        (envelope(missing, arrived=at), "unparseable"),
        (envelope(mistyped, arrived=at), "unparseable"),
        (
            envelope(agent_event(event_id="lower", event_type="heart_beat", at=at), arrived=at),
            "unsupported_type",
        ),
        (envelope(agent_event(event_id="typo", event_type="BREAK", at=at), arrived=at), "unsupported_type"),
        (
            envelope(agent_event(event_id="unknown", at=at, instance_arn=OTHER_INSTANCE), arrived=at),
            "unknown_instance",
        ),
        (
            envelope(agent_event(event_id="forged", at=at), arrived=at, account="999988887777"),
            "account_mismatch",
        ),
        (
            envelope(
                agent_event(event_id="claims", at=at, account="999988887777"),
                arrived=at,
                account="999988887777",
            ),
            "account_mismatch",
        ),
        (envelope(oversized, arrived=at), "too_large"),
        (envelope(agent_event(event_id="future", at=at + timedelta(days=2)), arrived=at), "future_timestamp"),
    ]
    bodies = [case for case, _ in cases]
    response, results = run([*bodies[:5], envelope(good, arrived=at), *bodies[5:]])
    assert response == {"batchItemFailures": []}
    assert Counter(r.outcome.value for r in results) == {"quarantined": len(cases), "accepted": 1}
    kept = quarantined(dynamodb)
    records = [item for item in kept if "#count#" not in item["sk"] and "#sample#" not in item["sk"]]
    counters = [item for item in kept if "#count#" in item["sk"]]
    samples = [item for item in kept if "#sample#" in item["sk"]]
    # every case is kept exactly once: a record per message from the instance's own account, a counter
    # (per sender, reason and hour) for the others
    kept_reasons = [item["reason"] for item in records]
    kept_reasons += [item["reason"] for item in counters for _ in range(int(item["events"]))]
    assert sorted(kept_reasons) == sorted(reason for _, reason in cases)
    assert {(item["account"], item["reason"], item["events"]) for item in counters} == {
        ("unknown", "unparseable", "1"),
        ("999988887777", "unknown_instance", "1"),
        ("999988887777", "account_mismatch", "2"),
    }
    assert sorted(item["account"] for item in samples) == ["999988887777", "unknown"]
    for item in [*records, *samples]:
        assert item["message"]
        assert int(item["expires_at"]) - to_ms(parse_iso(item["arrived"])) // 1000 >= 14 * 86_400
    for item in counters:
        hour_end_s = to_ms(parse_iso(item["sk"].split("#", 1)[0] + ":00:00Z")) // 1000 + 3600
        assert int(item["expires_at"]) - hour_end_s >= 14 * 86_400
    forged = next(
        item
        for item in counters
        if "999988887777" in item.get("account", "") and item["reason"] == "account_mismatch"
    )
    # the forged events name acme's instance: counted against acme for audit, never billed
    assert forged["company"] == "acme"
    assert [point.event_id for _, point in stored_points(ingest)] == ["good-1"]


def test_a_forged_copy_first_does_not_suppress_the_real_event(ingest: DynamoActivityStore) -> None:
    real = agent_event(event_id="same-id", at=H)
    response, results = run([envelope(real, arrived=H, account="999988887777"), envelope(real, arrived=H)])
    assert response == {"batchItemFailures": []}
    assert [r.outcome.value for r in results] == ["quarantined", "accepted"]


def test_a_transient_dynamodb_failure_fails_only_that_record_and_redelivery_is_idempotent(
    ingest: DynamoActivityStore, dynamodb: DynamoDBClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[str | dict[str, Any]] = [
        envelope(
            agent_event(event_id=f"e{index}", agent=f"agent-{index}", at=H + timedelta(minutes=index)),
            arrived=H + timedelta(hours=1),
        )
        for index in range(4)
    ]
    service = handler.ingest_service()
    activity = service._activity
    original = activity.add_events
    failed_once: list[str] = []

    def flaky(events: Any, **kwargs: Any) -> AddedEvents:
        if events[0].event_id == "e2" and not failed_once:
            failed_once.append("e2")
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "UpdateItem"
            )
        result: AddedEvents = original(events, **kwargs)
        return result

    monkeypatch.setattr(activity, "add_events", flaky)
    response, _ = run(bodies)
    assert response == {"batchItemFailures": [{"itemIdentifier": "message-2"}]}
    assert sorted(point.event_id for _, point in stored_points(ingest)) == ["e0", "e1", "e3"]
    # SQS redelivers the whole batch's failed record (and, in the worst case, the others again)
    response, results = run(bodies)
    assert response == {"batchItemFailures": []}
    assert sorted(r.outcome.value for r in results) == ["accepted", "duplicate", "duplicate", "duplicate"]
    assert sorted(point.event_id for _, point in stored_points(ingest)) == ["e0", "e1", "e2", "e3"]


def test_late_events_are_flagged_for_the_metering_job(ingest: DynamoActivityStore) -> None:
    grace = timedelta(seconds=load_settings(IngestSettings).policy.grace)
    on_time = envelope(
        agent_event(event_id="on-time", at=H),
        arrived=H + timedelta(hours=1) + grace - timedelta(milliseconds=1),
    )
    at_instant = envelope(agent_event(event_id="at-instant", at=H), arrived=H + timedelta(hours=1) + grace)
    _, results = run([on_time, at_instant])
    assert [r.late for r in results] == [False, True]
    hours = ingest.late_event_hours(arrived_since_ms=to_ms(H))
    assert hours == {SAMPLE_INSTANCE: to_ms(H)}


def test_an_event_taken_from_the_queue_after_its_hour_was_metered_is_late(
    ingest: DynamoActivityStore,
) -> None:
    """Dated before the metering instant by its envelope, but still in the queue when the hour was
    metered (SQS's ApproximateFirstReceiveTimestamp is later): the metering could not have read it, so
    the agent-hour is marked late at the moment it was taken, and a later record bills it."""
    grace = timedelta(seconds=load_settings(IngestSettings).policy.grace)
    instant = H + timedelta(hours=1) + grace
    body = envelope(agent_event(event_id="in-flight", at=H), arrived=instant - timedelta(seconds=1))
    event = sqs_event([body])
    event["Records"][0]["attributes"]["ApproximateFirstReceiveTimestamp"] = str(to_ms(instant))
    _, results = handler.handle_batch(event)
    assert [(r.outcome.value, r.late) for r in results] == [("accepted", True)]
    assert ingest.late_event_hours(arrived_since_ms=to_ms(instant)) == {SAMPLE_INSTANCE: to_ms(H)}
    # taken a millisecond before the instant: on time, as its envelope says
    body = envelope(agent_event(event_id="on-time", at=H), arrived=instant - timedelta(seconds=1))
    event = sqs_event([body])
    event["Records"][0]["attributes"]["ApproximateFirstReceiveTimestamp"] = str(to_ms(instant) - 1)
    _, results = handler.handle_batch(event)
    assert [(r.outcome.value, r.late) for r in results] == [("accepted", False)]


def test_agent_hours_and_checkpoints_expire_after_the_retention(
    ingest: DynamoActivityStore, dynamodb: DynamoDBClient
) -> None:
    run(
        [
            envelope(
                agent_event(event_id="kept", at=H + timedelta(minutes=5)), arrived=H + timedelta(minutes=5)
            )
        ]
    )
    ingest.save_checkpoint(SAMPLE_INSTANCE, to_ms(H), b"checkpoint")
    items = dynamodb.scan(TableName="activity-test")["Items"]
    assert sorted(item["sk"]["S"][3] for item in items) == ["C", "E"]
    expected = to_ms(H) // 1000 + RETENTION_DAYS * 86_400
    assert {int(item["expires_at"]["N"]) for item in items} == {expected}
    assert RETENTION_DAYS > 366 + 31  # 13 months at the longest: a year of invoices and their disputes


def test_the_same_agent_id_on_two_instances_is_two_agents(
    ingest: DynamoActivityStore, tenancy: DynamoTenancyStore
) -> None:
    tenancy.add_environment(build(Environment, company_alias="acme", name="eu", instance_arn=OTHER_INSTANCE))
    events = [
        envelope(agent_event(event_id="x", at=H, instance_arn=instance), arrived=H)
        for instance in (SAMPLE_INSTANCE, OTHER_INSTANCE)
    ]
    _, results = run(events)
    assert [(r.outcome.value, r.environment) for r in results] == [("accepted", "prod"), ("accepted", "eu")]
    assert len(stored_points(ingest, OTHER_INSTANCE)) == 1


def test_tenancy_lookups_are_cached_and_writes_are_one_per_agent_hour_and_environment(
    ingest: DynamoActivityStore, dynamodb: DynamoDBClient
) -> None:
    operations = Counter[str]()
    handler.ingest_service.cache_clear()
    client = handler.ingest_service()._activity._client  # type: ignore[attr-defined]
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: operations.update([model.name]))
    bodies: list[str | dict[str, Any]] = [
        envelope(
            agent_event(event_id=f"hb{index}", at=H + timedelta(minutes=2 * index)),
            arrived=H + timedelta(minutes=2 * index),
        )
        for index in range(40)
    ]
    _, results = run(bodies)
    assert [result.outcome.value for result in results] == ["accepted"] * 40
    # one tenancy read for the instance (then cached); one write per agent-hour (40 events span 2 hours)
    # and one per environment for the meter's activity counter
    assert operations == {"UpdateItem": 3, "GetItem": 1}


def test_logs_carry_agent_arns_never_names(
    ingest: DynamoActivityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured = io.StringIO()
    monkeypatch.setattr(observability.logger.registered_handler, "stream", captured)
    late = envelope(agent_event(event_id="late", at=H), arrived=H + timedelta(hours=3))
    forged = envelope(agent_event(event_id="forged", at=H), arrived=H, account="999988887777")
    handler.lambda_handler(sqs_event([late, forged]), FakeContext())
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert {line["message"] for line in lines} == {"late event", "event quarantined"}
    assert any(line.get("agent_arn", "").endswith("/agent/agent-1") for line in lines)
    output = captured.getvalue()
    for personal in ("AgentEventStreamTest", "aestest", "FirstName", "Username"):
        assert personal not in output


class FakeContext:
    function_name = "ingest"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"
    aws_request_id = "request-1"


def activity_item_bytes(dynamodb: DynamoDBClient, agent: str = "agent-1") -> tuple[int, int]:
    """(elements, bytes of the elements) of the agent-hour item of hour H."""
    item = dynamodb.get_item(
        TableName="activity-test",
        Key={"pk": {"S": f"{SAMPLE_INSTANCE}#2026-11-02"}, "sk": {"S": f"09#E#{agent}"}},
    )["Item"]
    elements = item["ev"]["SS"]
    return len(elements), sum(len(element.encode()) for element in elements)


@pytest.mark.parametrize("stamp", ["0999-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2026-10-26T08:59:59Z"])
def test_events_older_than_max_event_age_are_too_old_and_never_stored(
    ingest: DynamoActivityStore, dynamodb: DynamoDBClient, stamp: str
) -> None:
    # arrival H = 2026-11-02T09:00Z; the last stamp is 7 days and 1 s before it
    response, results = run([envelope(agent_event(event_id="old", at=stamp), arrived=H)])
    assert response == {"batchItemFailures": []}
    assert [(r.outcome.value, r.reason) for r in results] == [("quarantined", "too_old")]
    assert stored_points(ingest) == []
    assert dynamodb.scan(TableName="activity-test")["Items"] == []  # in no partition, however far back


def test_max_event_age_is_exactly_inclusive(ingest: DynamoActivityStore) -> None:
    week = H - timedelta(days=7)
    _, results = run(
        [
            envelope(agent_event(event_id="week", at=week), arrived=H),
            envelope(agent_event(event_id="week-and-1-ms", at=week - timedelta(milliseconds=1)), arrived=H),
        ]
    )
    assert [(r.outcome.value, r.reason) for r in results] == [("accepted", None), ("quarantined", "too_old")]


def test_timestamps_more_than_300_s_ahead_are_future(ingest: DynamoActivityStore) -> None:
    _, results = run(
        [
            envelope(agent_event(event_id="ahead-301", at=H + timedelta(seconds=301)), arrived=H),
            envelope(agent_event(event_id="ahead-300", at=H + timedelta(seconds=300)), arrived=H),
        ]
    )
    assert [(r.outcome.value, r.reason) for r in results] == [
        ("quarantined", "future_timestamp"),
        ("accepted", None),
    ]


def test_oversized_or_non_ascii_identifiers_are_unparseable_and_never_fail_the_batch(
    ingest: DynamoActivityStore,
) -> None:
    long_id = agent_event(event_id="e" * 257, at=H)
    long_agent = agent_event(
        event_id="long-agent", agent="a" * (257 - len(f"{SAMPLE_INSTANCE}/agent/")), at=H
    )
    assert len(long_agent["AgentARN"]) == 257
    huge_agent = agent_event(event_id="huge-agent", agent="a" * 2000, at=H)
    accented_id = agent_event(event_id="événement", at=H)
    accented_agent = agent_event(event_id="accented-agent", agent="agent-é", at=H)
    unicode_digits = agent_event(event_id="digits", at=H, account="٠١٢٣٤٥٦٧٨٩٠١")
    limit = agent_event(event_id="i" * 256, agent="a" * (256 - len(f"{SAMPLE_INSTANCE}/agent/")), at=H)
    bodies: list[str | dict[str, Any]] = [
        envelope(event, arrived=H)
        for event in (long_id, long_agent, huge_agent, accented_id, accented_agent, unicode_digits, limit)
    ]
    response, results = run(bodies)
    assert response == {"batchItemFailures": []}
    assert [(r.outcome.value, r.reason) for r in results] == [("quarantined", "unparseable")] * 6 + [
        ("accepted", None)
    ]


def test_deeply_nested_or_far_off_values_are_quarantined_not_raised(ingest: DynamoActivityStore) -> None:
    nested = '{"detail": ' + "[" * 20_000 + "]" * 20_000 + "}"
    before_year_one = agent_event(event_id="year-one", at="0001-01-01T00:30:00+01:00")
    odd_status = agent_event(event_id="odd-status", at=H)
    odd_status["CurrentAgentSnapshot"]["AgentStatus"]["StartTimestamp"] = "0001-01-01T00:00:00+05:00"
    response, results = run([nested, envelope(before_year_one, arrived=H), envelope(odd_status, arrived=H)])
    assert response == {"batchItemFailures": []}
    assert [(r.outcome.value, r.reason) for r in results] == [
        ("quarantined", "unparseable"),
        ("quarantined", "unparseable"),
        ("accepted", None),
    ]


def test_rules_apply_in_billing_md_order(ingest: DynamoActivityStore, tenancy: DynamoTenancyStore) -> None:
    unknown_type_without_agent = agent_event(event_id="t1", event_type="BREAK", at=H)
    del unknown_type_without_agent["AgentARN"]
    far_future_forgery = agent_event(event_id="t2", at=H + timedelta(days=3))
    stale_unknown = agent_event(event_id="t3", at=H - timedelta(days=30), instance_arn=OTHER_INSTANCE)
    _, results = run(
        [
            envelope(unknown_type_without_agent, arrived=H),  # rule 1 before rule 2
            envelope(far_future_forgery, arrived=H, account="999988887777"),  # rule 4 before rule 5
            envelope(stale_unknown, arrived=H, account="012345678901"),  # rule 3 before rules 4 and 5
        ]
    )
    assert [r.reason for r in results] == ["unparseable", "account_mismatch", "unknown_instance"]


def test_an_agent_hour_accepts_fewer_than_3600_events_and_its_item_stays_small(
    ingest: DynamoActivityStore, dynamodb: DynamoDBClient
) -> None:
    # 256-character EventIds and extreme status starts: the largest elements rule 1 allows
    def event(index: int) -> dict[str, Any]:
        body = agent_event(
            event_id=f"{index:06d}".ljust(256, "x"), at=H + timedelta(milliseconds=index * 899)
        )
        body["CurrentAgentSnapshot"]["AgentStatus"]["StartTimestamp"] = "0001-01-01T00:00:00Z"
        return body

    outcomes: Counter[tuple[str, str | None]] = Counter()
    for first in range(0, 3_590, 100):
        _, results = run(
            [
                envelope(event(i), arrived=H + timedelta(hours=1))
                for i in range(first, min(first + 100, 3_590))
            ]
        )
        outcomes.update((r.outcome.value, r.reason) for r in results)
    # the last batch crosses the bound: 3,600 accepted, its redelivered copies are duplicates
    last = [envelope(event(i), arrived=H + timedelta(hours=1)) for i in range(3_590, 3_605)]
    response, results = run([*last, last[0]])
    assert response == {"batchItemFailures": []}
    assert [(r.outcome.value, r.reason) for r in results] == [("accepted", None)] * 10 + [
        ("quarantined", "too_many_events")
    ] * 5 + [("duplicate", None)]
    assert outcomes == {("accepted", None): 3_590}
    elements, size = activity_item_bytes(dynamodb)
    assert elements == 3_600
    assert size < 260_000, "far below DynamoDB's 400 KB item limit"
    # a later batch of the same hour stores nothing more and is not failed
    response, results = run([envelope(event(4_000), arrived=H + timedelta(hours=1))])
    assert response == {"batchItemFailures": []}
    assert [r.reason for r in results] == ["too_many_events"]
    assert activity_item_bytes(dynamodb)[0] == 3_600


def test_a_250_kb_event_leaves_a_bounded_quarantine_record_without_personal_data(
    ingest: DynamoActivityStore, dynamodb: DynamoDBClient
) -> None:
    event = agent_event(event_id="big", at=H)
    event["CurrentAgentSnapshot"]["Configuration"]["FirstName"] = "Zelda"
    event["CurrentAgentSnapshot"]["Contacts"] = [{"CustomerEndpoint": "+15550100"}] * 100
    event["AgentARN"] = event["AgentARN"] + '\u0007"é' * 8_000
    event["CurrentAgentSnapshot"]["AgentStatus"]["Name"] = "x" * 130_000
    body = json.dumps(envelope(event, arrived=H))
    assert 240_000 < len(body.encode()) <= 256 * 1024
    response, results = run([body])
    assert response == {"batchItemFailures": []}
    assert [r.reason for r in results] == ["too_large"]
    [item] = dynamodb.scan(TableName="quarantine-test")["Items"]
    size = sum(len(name) + len(json.dumps(value)) for name, value in item.items())
    assert size < 4_096
    assert item["body_bytes"]["N"] == str(len(body.encode()))
    assert item["body_sha256"]["S"] == hashlib.sha256(body.encode()).hexdigest()
    assert item["account"]["S"] == "012345678901" and item["company"]["S"] == "acme"
    reduced = json.loads(item["reduced"]["S"])
    assert set(reduced) == BILLING_FIELDS
    assert set(reduced["CurrentAgentSnapshot"]["AgentStatus"]) == {"ARN", "Name", "StartTimestamp"}
    for personal in ("Zelda", "+15550100", "Username", "FirstName", "aestest"):
        assert personal not in json.dumps(item)


def test_a_flood_from_an_account_without_environments_costs_a_bounded_number_of_items(
    ingest: DynamoActivityStore, dynamodb: DynamoDBClient
) -> None:
    stranger = "arn:aws:connect:us-east-1:555566667777:instance/cccccccc-bbbb-cccc-dddd-333333333333"
    for first in range(0, 1_000, 100):
        bodies: list[str | dict[str, Any]] = [
            envelope(agent_event(event_id=f"flood-{i}", at=H, instance_arn=stranger), arrived=H)
            for i in range(first, first + 100)
        ]
        bodies[0] = envelope({"EventId": "no-instance"}, arrived=H, account="555566667777")
        response, results = run(bodies)
        assert response == {"batchItemFailures": []}
        assert {r.outcome.value for r in results} == {"quarantined"}
    kept = quarantined(dynamodb)
    assert len(kept) == 3
    counters = {item["reason"]: int(item["events"]) for item in kept if "#count#" in item["sk"]}
    assert counters == {"unknown_instance": 990, "unparseable": 10}
    [sample] = [item for item in kept if "#sample#" in item["sk"]]
    assert sample["account"] == "555566667777"


def test_a_full_event_from_an_older_forwarder_and_a_reduced_one_are_both_accepted(
    ingest: DynamoActivityStore,
) -> None:
    full = agent_event(event_id="full", at=H, status="Offline")
    assert full["CurrentAgentSnapshot"]["Configuration"]["FirstName"]
    reduced = {
        name: full[name]
        for name in ("EventId", "EventType", "EventTimestamp", "AWSAccountId", "InstanceARN", "AgentARN")
    }
    reduced["EventId"] = "reduced"
    reduced["CurrentAgentSnapshot"] = {"AgentStatus": full["CurrentAgentSnapshot"]["AgentStatus"]}
    _, results = run([envelope(full, arrived=H), envelope(reduced, arrived=H)])
    assert [r.outcome.value for r in results] == ["accepted", "accepted"]
    points = [point for _, point in stored_points(ingest)]
    assert [(p.event_id, p.offline) for p in points] == [("full", True), ("reduced", True)]


def test_each_batch_reports_its_busiest_sender_without_a_per_account_dimension(
    ingest: DynamoActivityStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local CLI turns EMF output off process-wide (connect_metering.local.cli): a test of the CLI run
    # earlier on the same worker must not hide the metric this test reads.
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    ours = [envelope(agent_event(event_id=f"o{i}", at=H), arrived=H) for i in range(3)]
    stranger = [
        envelope(agent_event(event_id=f"s{i}", at=H, instance_arn=OTHER_INSTANCE), arrived=H)
        for i in range(2)
    ]
    capsys.readouterr()
    handler.lambda_handler(sqs_event([*stranger, *ours, "{not json"]), FakeContext())
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [busiest] = [line for line in metrics if "MaxEventsPerSender" in line]
    assert busiest["MaxEventsPerSender"] in (3, 3.0, [3.0])
    [directive] = busiest["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["service"]]
