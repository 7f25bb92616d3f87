"""``IngestService.ingest``'s shortcuts give what its long way gives: an agent-hour whose events are all
new, none late, of one environment, is settled with one shared result, exactly as the per-event
settling (``_settle``) would; the results come in message order, and ``ingest_batch`` is them by
message id. Checked on batches mixing agents, hours, duplicates, late arrivals and refusals."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.domain.instants import MS_PER_HOUR, iso_ms
from connect_metering.domain.tenancy import Environment, build
from connect_metering.local.core_activity import MemoryActivityStore, MemoryQuarantineStore
from connect_metering.services.ingest import IngestResult, IngestService, Message, Outcome
from tests.unit.test_agent_event_fast_path import INSTANCE, published_event
from tests.unit.test_common_messages import forwarded

pytestmark = pytest.mark.unit

HOUR_MS = 1_767_247_200_000  # 2026-01-01T06:00Z
GRACE_MS = 300_000
OTHER_INSTANCE = INSTANCE.replace("0006", "0007")


class Environments:
    def __init__(self) -> None:
        self.environment = build(Environment, company_alias="acme", name="prod", instance_arn=INSTANCE)

    def environment_for_instance(self, instance_arn: str) -> Environment | None:
        return self.environment if instance_arn == INSTANCE else None


class Counts:
    def __init__(self) -> None:
        self.counted: Counter[tuple[str, str]] = Counter()

    def count_activity(self, alias: str, environment: str, events: int) -> None:
        self.counted[(alias, environment)] += events


class SettledOneByOne(IngestService):
    """The service with its shortcut off: every agent-hour settled event by event."""

    def _all_new_of_one_environment(self, *_: Any) -> bool:
        return False


def service(kind: type[IngestService]) -> tuple[IngestService, Counts]:
    counts = Counts()
    return (
        kind(
            environments=Environments(),
            activity=MemoryActivityStore(),
            quarantine=MemoryQuarantineStore(),
            grace_ms=GRACE_MS,
            max_event_age_ms=7 * 86_400_000,
            counter=counts,
        ),
        counts,
    )


def message(number: int, agent: int, hour: int, event: int, late: bool, wrong: str | None) -> Message:
    detail = published_event()
    ts_ms = HOUR_MS + hour * MS_PER_HOUR + event * 1000
    detail["AgentARN"] = f"{INSTANCE}/agent/agent-{agent}"
    detail["EventId"] = f"event-{agent}-{hour}-{event}"
    detail["EventTimestamp"] = iso_ms(ts_ms)
    detail["EventType"] = "HEART_BEAT"
    if wrong == "account":
        detail["AWSAccountId"] = "210000000007"
    elif wrong == "instance":
        detail["InstanceARN"] = OTHER_INSTANCE
        detail["AgentARN"] = f"{OTHER_INSTANCE}/agent/agent-{agent}"
    document = forwarded(detail)
    # A late one arrives at or after its hour was metered (BILLING.md section 6: H + 1 h + grace).
    arrival_ms = HOUR_MS + (hour + 1) * MS_PER_HOUR + GRACE_MS + event if late else ts_ms + 500
    document["time"] = iso_ms(arrival_ms)
    body = json.dumps(document)
    return Message(f"m-{number}", body, 0, json.loads(body))


lines = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(0, 1),
        st.integers(0, 3),
        st.booleans(),
        st.none() | st.sampled_from(["account", "instance"]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(lines, min_size=1, max_size=3))
def test_shared_results_are_the_per_event_ones_in_message_order(batches: list[list[Any]]) -> None:
    short, short_counts = service(IngestService)
    long, long_counts = service(SettledOneByOne)
    number = 0
    for batch in batches:
        messages = [message(number := number + 1, *line) for line in batch]
        results = short.ingest(messages)
        assert results == long.ingest(messages)
        assert short_counts.counted == long_counts.counted
        for result, line in zip(results, batch, strict=True):
            assert isinstance(result, IngestResult)
            assert (result.outcome is Outcome.QUARANTINED) == (line[4] is not None)


def test_ingest_batch_is_the_results_by_message_id() -> None:
    messages = [message(n, n % 2, 0, n // 2, n == 4, "account" if n == 3 else None) for n in range(6)]
    messages.append(messages[0]._replace(message_id="m-again"))  # a redelivery: a duplicate
    results = service(IngestService)[0].ingest(messages)
    by_id = service(IngestService)[0].ingest_batch(messages)
    assert by_id == {m.message_id: r for m, r in zip(messages, results, strict=True)}
    outcomes = [r.outcome for r in results if isinstance(r, IngestResult)]
    assert outcomes == [Outcome.ACCEPTED] * 3 + [Outcome.QUARANTINED] + [Outcome.ACCEPTED] * 2 + [
        Outcome.DUPLICATE
    ]
    assert [r.late for r in results if isinstance(r, IngestResult)] == [False] * 4 + [True, False, False]
