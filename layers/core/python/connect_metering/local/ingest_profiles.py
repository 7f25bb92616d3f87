"""Ingest's DynamoDB write cost for two kinds of agent (issue 12, section 6), measured by `bench`.

DynamoDB bills an UpdateItem by the larger of the item's size before and after it, in 1 KB write units,
so an agent-hour item costs more per write as its hour fills: what an accepted event costs depends on how
many events an agent sends in an hour and how many of them one batch holds. Two profiles bound it:

- ``heartbeat_only``: agents logged in all hour and never on a contact: a LOGIN, the status set to
  Available, then only the HEART_BEAT Connect sends every 120 s when nothing else happens, about 30
  events an agent-hour (the fewest events, so the fewest events per write).
- ``busy``: an inbound contact every two minutes all hour. Each contact is the STATE_CHANGEs the agent
  event stream sends for it (the contact CONNECTING, CONNECTED, ENDED into after-contact work, then the
  agent cleared for the next one, as in the published samples), about 120 events an agent-hour and no
  heartbeat (there is never 120 s without an event): the largest agent-hour items.

Each agent logs in a few minutes before the measured hour and out a few minutes after it, so one whole
agent-hour item fills; the events arrive as the forwarder delivers them and are handed to the ingest
handler in the batches the deployed event source makes (``bench.deployed_batches``), on embedded AWS,
with the write units counted from the items as DynamoDB sizes them (``write_units``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from connect_metering.domain.instants import iso
from connect_metering.local.bench import BENCH_INSTANCE, START, Figure, IngestMeasure, measure_ingest
from connect_metering.local.traffic import HEARTBEAT, agent_event, agent_snapshot, eventbridge_envelope

HEARTBEAT_ONLY: Final = "heartbeat_only"
BUSY: Final = "busy"
PROFILES: Final = (HEARTBEAT_ONLY, BUSY)
CONTACT_EVERY: Final = timedelta(minutes=2)
# Seconds into a contact at which the agent event stream reports it (CONNECTING, CONNECTED, ENDED: after
# contact work, then cleared): a 70 s call and 25 s of after-contact work, inside the two minutes.
_CONTACT_STEPS: Final = ((0, "CONNECTING"), (8, "CONNECTED"), (78, "ENDED"), (103, None))
_HEARTBEATS_AFTER_LOGOUT: Final = 5
# Agents of each profile: enough that a batch holds many agents, few enough that batches still close on
# the batching window, as they do up to a few hundred busy agents (past that they close on the payload).
PROFILE_AGENTS = 200


@dataclass(frozen=True)
class ProfileShift:
    instance_arn: str
    agent_id: str
    start: datetime
    end: datetime


def _contact(
    instance_arn: str, contact_id: str, state: str, since: datetime, began: datetime
) -> dict[str, Any]:
    queue = {"ARN": f"{instance_arn}/queue/basic", "Name": "BasicQueue"}
    return {
        "Channel": "VOICE",
        "ConnectedToAgentTimestamp": None if state == "CONNECTING" else iso(began + timedelta(seconds=8)),
        "ContactId": contact_id,
        "InitialContactId": None,
        "InitiationMethod": "INBOUND",
        "Queue": queue,
        "QueueTimestamp": iso(began - timedelta(seconds=5)),
        "State": state,
        "StateStartTimestamp": iso(since),
    }


def profile_events(profile: str, shift: ProfileShift) -> Iterator[dict[str, Any]]:
    """The agent events of one shift of ``profile``, in time order (``traffic.agent_event`` builds each)."""
    if profile not in PROFILES:
        raise ValueError(f"profile: must be one of {', '.join(PROFILES)}, got {profile!r}")
    counter = 0
    available_since = shift.start + timedelta(seconds=5)

    def emit(
        event_type: str, at: datetime, status: str, since: datetime, contacts: list[Any]
    ) -> dict[str, Any]:
        nonlocal counter
        counter += 1
        snapshot = agent_snapshot(shift.instance_arn, status, since, shift.agent_id)
        snapshot["Contacts"] = contacts
        return agent_event(
            instance_arn=shift.instance_arn,
            agent_id=shift.agent_id,
            event_id=f"{shift.agent_id}-{shift.start:%Y%m%d%H%M}-{counter:05d}",
            event_type=event_type,
            at=at,
            snapshot=snapshot,
        )

    yield emit("LOGIN", shift.start, "Offline", shift.start, [])
    yield emit("STATE_CHANGE", available_since, "Available", available_since, [])
    last = available_since
    if profile == HEARTBEAT_ONLY:
        while last + HEARTBEAT < shift.end:
            last += HEARTBEAT
            yield emit("HEART_BEAT", last, "Available", available_since, [])
    else:
        number = 0
        while last + CONTACT_EVERY < shift.end:
            began = last + CONTACT_EVERY - timedelta(seconds=_CONTACT_STEPS[-1][0])
            number += 1
            contact_id = f"{shift.agent_id}-contact-{number:04d}"
            for offset, state in _CONTACT_STEPS:
                at = began + timedelta(seconds=offset)
                contacts = (
                    [] if state is None else [_contact(shift.instance_arn, contact_id, state, at, began)]
                )
                yield emit("STATE_CHANGE", at, "Available", available_since, contacts)
            last = began + timedelta(seconds=_CONTACT_STEPS[-1][0])
    yield emit("LOGOUT", shift.end, "Offline", shift.end, [])
    for beat in range(1, _HEARTBEATS_AFTER_LOGOUT + 1):
        yield emit("HEART_BEAT", shift.end + beat * HEARTBEAT, "Offline", shift.end, [])


def profile_stream(
    profile: str, agents: int, instance_arn: str, hour: datetime, seed: int
) -> list[tuple[datetime, str]]:
    """(arrival, SQS body) of ``agents`` agents of ``profile`` in one environment, in arrival order: each
    logged in from up to 5 minutes before ``hour`` to up to 5 minutes after its end, so the hour is whole
    for every agent; each event arrives 0.5 to 5 s after its timestamp (the forwarder's latency)."""
    rng = random.Random(seed)
    bodies: list[tuple[datetime, str]] = []
    for agent in range(agents):
        shift = ProfileShift(
            instance_arn,
            f"{profile}-{agent:04d}",
            hour - timedelta(seconds=rng.randint(1, 300)),
            hour + timedelta(hours=1, seconds=rng.randint(1, 300)),
        )
        for event in profile_events(profile, shift):
            arrival = datetime.fromisoformat(event["EventTimestamp"]) + timedelta(seconds=rng.uniform(0.5, 5))
            bodies.append((arrival, json.dumps(eventbridge_envelope(event, arrived=arrival))))
    bodies.sort(key=lambda pair: pair[0])
    return bodies


@dataclass(frozen=True)
class ProfileMeasure:
    """The ingest measure of one environment whose agents all follow one profile (``ingest_profiles``)."""

    profile: str
    measure: IngestMeasure


def measure_ingest_profiles(*, agents: int = PROFILE_AGENTS, seed: int = 13) -> list[ProfileMeasure]:
    """Writes and write units per accepted event for heartbeat-only agents and for busy agents (issue 12,
    section 6): one environment of ``agents`` agents of each profile over a whole hour."""
    hour = START + timedelta(hours=1)  # every event after the embedded clock's start
    return [
        ProfileMeasure(
            profile,
            measure_ingest(agents=agents, stream=profile_stream(profile, agents, BENCH_INSTANCE, hour, seed)),
        )
        for profile in PROFILES
    ]


def profile_figures(profiles: list[ProfileMeasure]) -> list[Figure]:
    figures = []
    for item in profiles:
        m, name = item.measure, f"ingest, {item.profile} profile, {item.measure.agents:,} agents"
        figures += [
            Figure(f"{name}: writes per accepted event", m.writes_per_event, "requests", "", None),
            Figure(
                f"{name}: write units per accepted event",
                m.wcu_per_event,
                "WCU",
                "<= 1.0",
                m.wcu_per_event <= 1.0,
            ),
        ]
    return figures
