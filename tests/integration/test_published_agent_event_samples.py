"""AWS's published agent event samples (tests/fixtures/aws), forwarded as they are, through the ingest Lambda
on moto: each is accepted when its instance is registered, and the sessions they make are BILLING.md
section 3's. The samples' own account, instance and agent placeholders are used unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from connect_metering import observability
from connect_metering.adapters.activity_table import DynamoActivityStore
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.domain.instants import parse_iso, to_ms
from connect_metering.domain.sessions import AgentEventPoint, Session, SessionEnd, sessions_for_agent
from connect_metering.domain.tenancy import Company, Environment, build
from connect_metering.services.ingest import IngestResult
from connect_metering.settings import load_settings
from functions.ingest import handler
from tests.factories import aws_sample, envelope, sqs_event

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

pytestmark = pytest.mark.integration

# The two Connect instances the samples name (same account, two regions): one company's environments.
HEART_BEAT_INSTANCE = "arn:aws:connect:us-west-2:012345678901:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111"
ACW_INSTANCE = "arn:aws:connect:us-east-1:012345678901:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111"
SAMPLE_AGENT = "agent-ARN"
# EventBridge stamps the arrival; a forwarded event arrives a moment after Connect wrote it.
FORWARDING_DELAY = timedelta(seconds=2)

AGENT_EVENT_SAMPLES = (
    "agent-event-heart-beat",
    "agent-event-heart-beat-offline",
    "agent-event-state-change-acw-entered",
    "agent-event-state-change-acw-left",
    "agent-event-state-change-acw-entered-2018",
    "agent-event-state-change-acw-left-2018",
)


@pytest.fixture
def activity(
    ingest_tables: None, dynamodb: DynamoDBClient, tenancy: DynamoTenancyStore
) -> Iterator[DynamoActivityStore]:
    tenancy.create_company(Company(alias="acme"))
    for name, instance in (("west", HEART_BEAT_INSTANCE), ("east", ACW_INSTANCE)):
        tenancy.add_environment(build(Environment, company_alias="acme", name=name, instance_arn=instance))
    yield DynamoActivityStore("activity-test", dynamodb)
    observability.metrics.clear_metrics()
    handler.ingest_service.cache_clear()
    load_settings.cache_clear()


def stamped(event: dict[str, Any]) -> datetime:
    return parse_iso(event["EventTimestamp"])


def forward(*events: dict[str, Any]) -> list[IngestResult]:
    """Each event in the forwarder's envelope, arriving just after its timestamp, in one SQS batch."""
    bodies = [envelope(event, arrived=stamped(event) + FORWARDING_DELAY) for event in events]
    response, results = handler.handle_batch(sqs_event(bodies))
    assert response == {"batchItemFailures": []}
    return results


def quarantined(dynamodb: DynamoDBClient) -> list[dict[str, Any]]:
    return dynamodb.scan(TableName="quarantine-test")["Items"]


def stored_points(activity: DynamoActivityStore, instance: str, around: datetime) -> list[AgentEventPoint]:
    """The sample agent's stored events within a day of ``around``."""
    window = activity.read_hours(instance, to_ms(around) - 86_400_000, to_ms(around) + 86_400_000)
    return sorted(
        event.point for event in window.events if event.agent_arn == f"{instance}/agent/{SAMPLE_AGENT}"
    )


def sessions(activity: DynamoActivityStore, instance: str, around: datetime) -> list[Session]:
    return sessions_for_agent(stored_points(activity, instance, around))


def derived(sample: str, *, event_type: str, event_id: str, at: str) -> dict[str, Any]:
    """A published sample re-typed and re-timed: AWS publishes no LOGIN or LOGOUT sample. LOGIN and LOGOUT
    carry no PreviousAgentSnapshot (the data model says it is not applicable to them)."""
    event = aws_sample(sample)
    event.update({"EventType": event_type, "EventId": event_id, "EventTimestamp": at})
    if event_type in ("LOGIN", "LOGOUT"):
        del event["PreviousAgentSnapshot"]
    return event


@pytest.mark.parametrize("name", AGENT_EVENT_SAMPLES)
def test_each_published_sample_is_accepted_when_its_instance_is_registered(
    name: str, activity: DynamoActivityStore, dynamodb: DynamoDBClient
) -> None:
    sample = aws_sample(name)
    [result] = forward(sample)
    assert (result.outcome.value, result.company) == ("accepted", "acme")
    assert quarantined(dynamodb) == []
    instance = sample["InstanceARN"]
    offline = sample["CurrentAgentSnapshot"]["AgentStatus"]["Name"] == "Offline"
    assert [
        (p.ts_ms, p.kind.name, p.event_id, p.offline)
        for p in stored_points(activity, instance, stamped(sample))
    ] == [(to_ms(stamped(sample)), sample["EventType"], sample["EventId"], offline)]


def test_the_available_heart_beat_alone_opens_a_session_at_its_timestamp(
    activity: DynamoActivityStore,
) -> None:
    sample = aws_sample("agent-event-heart-beat")
    forward(sample)
    at = to_ms(stamped(sample))
    assert sessions(activity, HEART_BEAT_INSTANCE, stamped(sample)) == [Session(at, at, at, SessionEnd.OPEN)]


def test_the_offline_heart_beat_alone_opens_no_session(activity: DynamoActivityStore) -> None:
    sample = aws_sample("agent-event-heart-beat-offline")
    forward(sample)
    assert sessions(activity, HEART_BEAT_INSTANCE, stamped(sample)) == []


@pytest.mark.parametrize(
    ("entered", "left"),
    [
        ("agent-event-state-change-acw-entered", "agent-event-state-change-acw-left"),
        ("agent-event-state-change-acw-entered-2018", "agent-event-state-change-acw-left-2018"),
    ],
)
def test_the_acw_pair_is_one_session_of_the_documented_five_seconds(
    entered: str, left: str, activity: DynamoActivityStore
) -> None:
    """The guide computes 5.005 s of ACW between these two STATE_CHANGE events; the agent is Available
    throughout, so that is also the billable time."""
    first, second = aws_sample(entered), aws_sample(left)
    forward(second, first)  # the arrival order must not matter
    [session] = sessions(activity, ACW_INSTANCE, stamped(first))
    assert (session.start_ms, session.end_ms) == (to_ms(stamped(first)), to_ms(stamped(second)))
    assert session.duration_ms == 5_005
    assert session.end_reason is SessionEnd.OPEN


def test_a_login_then_heart_beats_then_a_logout_is_one_session(activity: DynamoActivityStore) -> None:
    """LOGIN when the sample's status began, heart beats every 120 s, the published heart beat, LOGOUT."""
    published = aws_sample("agent-event-heart-beat")
    login = derived(
        "agent-event-heart-beat", event_type="LOGIN", event_id="login-1", at="2019-08-13T20:52:30.704Z"
    )
    beats = [
        derived("agent-event-heart-beat", event_type="HEART_BEAT", event_id=f"beat-{minute}", at=at)
        for minute, at in ((2, "2019-08-13T20:54:30.704Z"), (4, "2019-08-13T20:56:30.704Z"))
    ]
    logout = derived(
        "agent-event-heart-beat", event_type="LOGOUT", event_id="logout-1", at="2019-08-13T21:00:00.000Z"
    )
    results = forward(login, *beats, published, logout)
    assert [r.outcome.value for r in results] == ["accepted"] * 5
    assert sessions(activity, HEART_BEAT_INSTANCE, stamped(published)) == [
        Session(to_ms(stamped(login)), to_ms(stamped(logout)), to_ms(stamped(published)), SessionEnd.LOGOUT)
    ]


def test_the_published_offline_heart_beat_after_a_logout_does_not_reopen_the_session(
    activity: DynamoActivityStore,
) -> None:
    """Connect keeps sending Offline heart beats for up to an hour after a logout (BILLING.md section 3)."""
    offline = aws_sample("agent-event-heart-beat-offline")
    login = derived(
        "agent-event-heart-beat", event_type="LOGIN", event_id="login-1", at="2019-08-13T20:40:00.000Z"
    )
    logout = derived(
        "agent-event-heart-beat", event_type="LOGOUT", event_id="logout-1", at="2019-08-13T20:44:00.000Z"
    )
    forward(login, logout, offline)
    assert sessions(activity, HEART_BEAT_INSTANCE, stamped(offline)) == [
        Session(to_ms(stamped(login)), to_ms(stamped(logout)), to_ms(stamped(login)), SessionEnd.LOGOUT)
    ]
