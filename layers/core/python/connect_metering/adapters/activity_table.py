"""DynamoDB store of accepted agent events and the hourly checkpoints computed from them.

Layout: one partition per (Connect instance, UTC day), sort keys ordered by hour so one query returns an
hour's checkpoint and events together, and the events of the next hour's first minutes with them:

    pk = <instance arn>#<YYYY-MM-DD>
    sk = <HH>#C                 checkpoint: the scan state at the start of hour HH (metering)
    sk = <HH>#E#<agent id>      the agent's accepted events of hour HH: a string set ``ev``

Ingest adds all of a batch's events of one agent-hour with ONE UpdateItem (``ADD ev``) and no read:
the returned old set tells which events were already there (duplicates), and set semantics make a
redelivery harmless. The update is conditional on the set's size, so an agent-hour never holds more
than ``MAX_EVENTS_PER_AGENT_HOUR`` events (BILLING.md section 2 rule 6): with every element at most
``MAX_ENCODED_BYTES`` the item stays near 250 KB at worst, far from DynamoDB's 400 KB item limit. Only
an agent-hour that is full (an abusive stream) costs more than one write. An agent-hour that receives events after the hour was metered gets
``late_shard``/``late_at``, which puts it in the sparse GSI ``late-events`` so the next metering run
finds the hours to recompute with a few queries instead of a scan. The dispatcher removes a marker
(``clear_late_markers``) once the recompute it asks for is queued: each marker is its own progress.

Every key is total: the day is ``YYYY-MM-DD`` zero-padded from the epoch (``utc_day``), whatever the
year. A reader skips an item it cannot parse (counted in ``UnreadableItems``, alarmed) instead of
failing: one stored item must never stop the metering of anyone else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from connect_metering.adapters.table_schema import Index, create_table
from connect_metering.domain.activity import (
    AddedEvents,
    AgentHoursWindow,
    EventStored,
    HourWindow,
    LateMarker,
    StoredEvent,
)
from connect_metering.domain.agent_events import MAX_EVENTS_PER_AGENT_HOUR, AgentEvent, split_at_hour_bound
from connect_metering.domain.instants import MS_PER_HOUR, hour_floor, iso_ms, to_ms, utc_day
from connect_metering.domain.sessions import UNKNOWN_STATUS_START_MS, AgentEventPoint, EventKind
from connect_metering.domain.usage import EnvironmentCheckpoint
from connect_metering.unreadable import ACTIVITY_EVENTS, CHECKPOINTS, LATE_EVENTS, UnreadableItems

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LATE_EVENTS_INDEX = "late-events"
LATE_SHARDS = 8
# DynamoDB TTL removes an agent-hour and a checkpoint this long after their hour: 13 months of invoices
# (a buyer's dispute, a seller's replay of any month) and far beyond what metering reads back (late
# events are refused after max_event_age, 7 days, and a recompute never reaches further).
RETENTION_DAYS = 400
EXPIRES_AT = "expires_at"


def expires_at(hour_ms: int) -> str:
    """The TTL attribute's value (epoch seconds) for an item of the hour starting at ``hour_ms``."""
    return str(hour_ms // 1000 + RETENTION_DAYS * 86_400)


MS_PER_DAY = 24 * MS_PER_HOUR
# Events read, per agent-hour item: (agent ARN, its decoded events).
AgentHours = list[tuple[str, list[AgentEventPoint]]]
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_HOUR_SORT_KEY = re.compile(r"(\d{2})#(C|E#.+)", re.DOTALL)

# Amazon Connect EventIds are UUIDs (36 characters); a longer one is stored as a 33-character digest.
MAX_STORED_EVENT_ID = 36
# ts (13 digits: rule 5 keeps it within days of a real arrival) | kind | offline@status start (at most
# 17 characters for years 1-9999) | stored EventId.
MAX_ENCODED_BYTES = 13 + 1 + 1 + 1 + 17 + 1 + MAX_STORED_EVENT_ID
# Concurrent batches for one agent-hour only happen to an abusive stream; past this, SQS redelivers.
MAX_BOUNDED_WRITE_ATTEMPTS = 5


def partition_key(instance_arn: str, hour_ms: int) -> str:
    return f"{instance_arn}#{_day_text(hour_ms // MS_PER_DAY)}"


@lru_cache(maxsize=1024)
def _day_text(day: int) -> str:
    """``utc_day`` of the ``day``-th day since the epoch (negative before it), remembered."""
    return utc_day(day * MS_PER_DAY)


def parse_partition_key(pk: str) -> tuple[str, int]:
    """``<instance arn>#<YYYY-MM-DD>`` -> (instance ARN, day start in epoch ms); ValueError otherwise."""
    instance_arn, _, day = pk.rpartition("#")
    if not instance_arn or not _DAY.fullmatch(day):
        raise ValueError(f"not <instance>#YYYY-MM-DD: {pk!r}")
    year, month, date = (int(part) for part in day.split("-"))
    return instance_arn, to_ms(datetime(year, month, date, tzinfo=UTC))


def parse_hour_of_day(sk: str) -> int:
    hour = _HOUR_SORT_KEY.fullmatch(sk)
    if hour is None or int(hour.group(1)) > 23:
        raise ValueError(f"not <HH>#C or <HH>#E#<agent>: {sk!r}")
    return int(hour.group(1))


def _hour_of_day(hour_ms: int) -> int:
    return (hour_ms % MS_PER_DAY) // MS_PER_HOUR


def stored_event_id(event_id: str) -> str:
    """The EventId as stored: itself up to 36 characters (every EventId Connect sends), else ``~`` and a
    192-bit digest, so 3,600 events of 256-character ids still fit one item. Two ids that differ stay
    different; only the tie order between two such events at the same instant follows the digest."""
    if len(event_id) <= MAX_STORED_EVENT_ID:
        return event_id
    digest = hashlib.sha256(event_id.encode()).digest()[:24]
    return "~" + base64.urlsafe_b64encode(digest).decode()


def encode_event(event: AgentEvent) -> str:
    """Compact, exact form of what the session scan needs: ``ts|kind|offline[@status_start]|EventId``
    (the status's StartTimestamp only when it has one; EventId last, since it may hold ``|``)."""
    event_id = event.event_id
    stored_id = event_id if len(event_id) <= MAX_STORED_EVENT_ID else stored_event_id(event_id)
    if event.status_start_ms != UNKNOWN_STATUS_START_MS:
        return f"{event.ts_ms}|{int(event.kind)}|{int(event.offline)}@{event.status_start_ms}|{stored_id}"
    return f"{event.ts_ms}|{int(event.kind)}|{int(event.offline)}|{stored_id}"


def encode_events(events: Sequence[AgentEvent]) -> list[str]:
    """``encode_event`` of each event; the commonest (an EventId Connect sends, a status with a start)
    written out in place, without a call per event."""
    return [
        f"{event.ts_ms}|{event.kind:d}|{event.offline:d}@{event.status_start_ms}|{event.event_id}"
        if event.status_start_ms != UNKNOWN_STATUS_START_MS and len(event.event_id) <= MAX_STORED_EVENT_ID
        else encode_event(event)
        for event in events
    ]


_KINDS = {str(int(kind)): kind for kind in EventKind}
_new_point = tuple.__new__


def decode_event(text: str) -> AgentEventPoint:
    ts_ms, kind, status, event_id = text.split("|", 3)
    offline, _, status_start = status.partition("@")
    # The tuple built directly: a NamedTuple's own constructor is a Python-level call per event.
    return _new_point(
        AgentEventPoint,
        (
            int(ts_ms),
            _KINDS.get(kind) or EventKind(int(kind)),
            event_id,
            offline == "1",
            int(status_start) if status_start else UNKNOWN_STATUS_START_MS,
        ),
    )


def encode_checkpoint(checkpoint: EnvironmentCheckpoint) -> bytes:
    """A checkpoint as stored (``doc``): compressed compact JSON."""
    return zlib.compress(json.dumps(checkpoint.to_json(), separators=(",", ":")).encode())


def decode_checkpoint(document: bytes, hour_ms: int) -> EnvironmentCheckpoint:
    """The checkpoint stored at ``hour_ms``; ValueError (or whatever the bytes raise) unless it decodes
    and its boundary is that very hour."""
    checkpoint = EnvironmentCheckpoint.from_json(json.loads(zlib.decompress(document)))
    if checkpoint.boundary_ms != hour_ms:
        raise ValueError(f"boundary {checkpoint.boundary_ms} stored at hour {hour_ms}")
    return checkpoint


def _outcomes(encodings: Sequence[str], new: set[str], refused: set[str]) -> AddedEvents:
    """Per event (by its encoding), from the write's answer: the first event of a new encoding is new, a
    later one with the same encoding is its duplicate."""
    unclaimed = set(new)
    outcomes: list[EventStored] = []
    for encoding in encodings:
        if encoding in refused:
            outcomes.append(EventStored.REFUSED)
        elif encoding in unclaimed:
            unclaimed.discard(encoding)
            outcomes.append(EventStored.NEW)
        else:
            outcomes.append(EventStored.DUPLICATE)
    return AddedEvents(outcomes)


def late_shard(instance_arn: str) -> str:
    return f"late#{zlib.crc32(instance_arn.encode()) % LATE_SHARDS}"


class DynamoActivityStore:
    """The activity port on one DynamoDB table; the client is injected."""

    def __init__(
        self, table_name: str, client: DynamoDBClient, unreadable: UnreadableItems | None = None
    ) -> None:
        self._table = table_name
        self._client = client
        self.unreadable = unreadable or UnreadableItems()

    def add_events(self, events: Sequence[AgentEvent], *, late_at_ms: int | None) -> AddedEvents:
        """Add events of ONE agent and ONE hour, in arrival order, up to the agent-hour bound (rule 6);
        what became of each event, in order.

        The first write assumes room and is conditional on it; only when the condition fails (the hour
        is nearly full) does the returned old set decide which events still fit, and the write is tried
        again with those. ``late_at_ms`` marks the agent-hour for recomputation."""
        first = events[0]
        hour_ms = hour_floor(first.ts_ms)
        if len(events) > 1 and any(
            e.agent_arn != first.agent_arn or hour_floor(e.ts_ms) != hour_ms for e in events
        ):
            raise ValueError("events: one call stores one agent's events of one hour")
        instance_arn = first.instance.arn
        key = {
            "pk": {"S": partition_key(instance_arn, hour_ms)},
            "sk": {"S": f"{_hour_of_day(hour_ms):02d}#E#{first.agent_id}"},
        }
        ttl = expires_at(hour_ms)
        encodings = encode_events(events)
        wanted = list(dict.fromkeys(encodings)) if len(encodings) > 1 else encodings
        stored: set[str] | None = None  # the item's set as last seen; unknown until a write answers
        added: set[str] = set()
        for _ in range(MAX_BOUNDED_WRITE_ATTEMPTS):
            fresh = [e for e in wanted if e not in added and (stored is None or e not in stored)]
            batch, beyond = split_at_hour_bound(0 if stored is None else len(stored), fresh)
            if not batch:
                return _outcomes(encodings, added, set(beyond))
            try:
                old = self._add(key, batch, instance_arn, late_at_ms, ttl)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                item: dict[str, Any] = error.response.get("Item", {})  # type: ignore[assignment]
                stored = set(item.get("ev", {}).get("SS", []))
                continue
            added |= set(batch) - old
            stored = old | added
            if not any(e not in stored for e in beyond):
                return _outcomes(encodings, added, set())
        raise RuntimeError(f"agent-hour {key['sk']['S']}: contended past {MAX_BOUNDED_WRITE_ATTEMPTS} writes")

    def _add(
        self, key: dict[str, Any], encodings: list[str], instance_arn: str, late_at_ms: int | None, ttl: str
    ) -> set[str]:
        """ADD the encodings if the set then holds at most the bound; the set as it was before."""
        values: dict[str, Any] = {
            ":events": {"SS": sorted(encodings)},
            ":most": {"N": str(MAX_EVENTS_PER_AGENT_HOUR - len(encodings))},
            ":expires": {"N": ttl},
        }
        update = f"ADD ev :events SET {EXPIRES_AT} = :expires"
        if late_at_ms is not None:
            update += ", late_shard = :shard, late_at = :late_at"
            values[":shard"] = {"S": late_shard(instance_arn)}
            values[":late_at"] = {"N": str(late_at_ms)}
        response = self._client.update_item(
            TableName=self._table,
            Key=key,
            UpdateExpression=update,
            ConditionExpression="attribute_not_exists(ev) OR size(ev) <= :most",
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",  # the old set, whether or not this call changed it
            ReturnValuesOnConditionCheckFailure="ALL_OLD",  # the set that did not leave room
        )
        return set(response.get("Attributes", {}).get("ev", {}).get("SS", []))

    def read_hours(self, instance_arn: str, first_hour_ms: int, last_hour_ms: int) -> HourWindow:
        """Checkpoints and events of hours [first, last] of one instance: one query per UTC day touched.
        A checkpoint that does not decode or does not sit at its own hour is skipped (the metering job
        then uses an earlier one and recomputes the hours after it) and counted."""
        documents, agent_hours = self._read(instance_arn, first_hour_ms, last_hour_ms)
        return HourWindow(self._checkpoints(instance_arn, documents), _stored_events(agent_hours))

    def read_agent_hours(self, instance_arn: str, first_hour_ms: int, last_hour_ms: int) -> AgentHoursWindow:
        """``read_hours`` with the events left as the items hold them: (agent ARN, its events) per
        agent-hour, for a reader that groups them by agent anyway."""
        documents, agent_hours = self._read(instance_arn, first_hour_ms, last_hour_ms)
        return AgentHoursWindow(self._checkpoints(instance_arn, documents), agent_hours)

    def read_events(self, instance_arn: str, first_hour_ms: int, last_hour_ms: int) -> list[StoredEvent]:
        """The events of ``read_hours`` alone, its checkpoints left undecoded (a whole-history reader
        such as the replay's summary has no use for them)."""
        return _stored_events(self._read(instance_arn, first_hour_ms, last_hour_ms)[1])

    def read_agent_events(
        self, instance_arn: str, first_hour_ms: int, last_hour_ms: int
    ) -> list[tuple[str, list[AgentEventPoint]]]:
        """The events of ``read_agent_hours`` alone, its checkpoints left undecoded."""
        return self._read(instance_arn, first_hour_ms, last_hour_ms)[1]

    def _read(
        self, instance_arn: str, first_hour_ms: int, last_hour_ms: int
    ) -> tuple[dict[int, bytes], AgentHours]:
        """The checkpoint documents (by hour) and the decoded events of hours [first, last], by item."""
        documents: dict[int, bytes] = {}
        events: AgentHours = []
        agent_prefix = f"{instance_arn}/agent/"
        day_start = first_hour_ms - first_hour_ms % MS_PER_DAY
        while day_start <= last_hour_ms:
            low = max(first_hour_ms, day_start)
            high = min(last_hour_ms, day_start + MS_PER_DAY - MS_PER_HOUR)
            self._read_day(
                partition_key(instance_arn, day_start),
                day_start,
                (low, high),
                agent_prefix,
                documents,
                events,
            )
            day_start += MS_PER_DAY
        return documents, events

    def _read_day(
        self,
        pk: str,
        day_start: int,
        hours: tuple[int, int],
        agent_prefix: str,
        documents: dict[int, bytes],
        events: AgentHours,
    ) -> None:
        """One day's query, hours [low, high] of it: its checkpoint documents and decoded events added."""
        low, high = hours
        for item in self._query(pk, f"{_hour_of_day(low):02d}#", f"{_hour_of_day(high):02d}#~"):
            self._read_item(pk, day_start, item, agent_prefix, documents, events)

    def _read_item(
        self,
        pk: str,
        day_start: int,
        item: dict[str, Any],
        agent_prefix: str,
        documents: dict[int, bytes],
        events: AgentHours,
    ) -> None:
        """One item of a day's query: a checkpoint document or an agent-hour's events (or, when it cannot
        be read, nothing: skipped and counted)."""
        sort_key = str(item.get("sk", {}).get("S", ""))
        try:
            hour_ms = day_start + parse_hour_of_day(sort_key) * MS_PER_HOUR
            if sort_key[3] == "C":
                documents[hour_ms] = item["doc"]["B"]
                return
            texts = item["ev"]["SS"]
        except (KeyError, TypeError, ValueError) as error:
            self.unreadable.skip(ACTIVITY_EVENTS, f"{pk} {sort_key}", error)
            return
        events.append((agent_prefix + sort_key.split("#", 2)[2], self._item_events(pk, sort_key, texts)))

    def _item_events(self, pk: str, sort_key: str, texts: Sequence[str]) -> list[AgentEventPoint]:
        """The events of one agent-hour item, decoded (a store that keeps them decoded may answer); one
        that does not decode is skipped and counted."""
        found: list[AgentEventPoint] = []
        for text in texts:
            try:
                found.append(decode_event(text))
            except (TypeError, ValueError) as error:
                self.unreadable.skip(ACTIVITY_EVENTS, f"{pk} {sort_key}", error)
        return found

    def _checkpoints(
        self, instance_arn: str, documents: dict[int, bytes]
    ) -> dict[int, EnvironmentCheckpoint]:
        readable: dict[int, EnvironmentCheckpoint] = {}
        for hour_ms, document in documents.items():
            try:
                readable[hour_ms] = decode_checkpoint(document, hour_ms)
            except Exception as error:  # zlib.error, JSON, a missing field: whatever the bytes are
                self.unreadable.skip(CHECKPOINTS, f"{instance_arn} {iso_ms(hour_ms)}", error)
        return readable

    def save_checkpoint(self, instance_arn: str, hour_ms: int, document: bytes) -> None:
        """The scan state at the start of ``hour_ms`` (compressed JSON, written by the metering job)."""
        if hour_ms != hour_floor(hour_ms):
            raise ValueError(f"hour_ms: {hour_ms} is not the start of an hour")
        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": partition_key(instance_arn, hour_ms)},
                "sk": {"S": f"{_hour_of_day(hour_ms):02d}#C"},
                "doc": {"B": document},
                EXPIRES_AT: {"N": expires_at(hour_ms)},
            },
        )

    def late_event_hours(self, *, arrived_since_ms: int) -> dict[str, int]:
        """Instance ARN -> earliest event hour among events that arrived late since the instant."""
        earliest: dict[str, int] = {}
        for marker in self._read_markers(arrived_since_ms)[0]:
            earliest[marker.instance_arn] = min(
                marker.hour_ms, earliest.get(marker.instance_arn, marker.hour_ms)
            )
        return earliest

    def late_markers(self) -> list[LateMarker]:
        """Every marker not yet cleared. A marker whose key cannot be read is skipped, counted and
        cleared (the item stays for audit), so it is never read again."""
        markers, unreadable = self._read_markers(0)
        self.clear_late_markers(unreadable)
        return markers

    def clear_late_markers(self, markers: Sequence[LateMarker]) -> None:
        """Take handled agent-hours out of the index. A marker that moved since it was read (more events
        arrived late) stays: the next run handles it."""
        for marker in markers:
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": marker.pk}, "sk": {"S": marker.sk}},
                    UpdateExpression="REMOVE late_shard, late_at",
                    ConditionExpression="late_at = :seen",
                    ExpressionAttributeValues={":seen": {"N": str(marker.late_at_ms)}},
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise

    def _read_markers(self, arrived_since_ms: int) -> tuple[list[LateMarker], list[LateMarker]]:
        """(readable markers, unreadable ones: keys only, hour 0) of events that arrived since the instant."""
        readable: list[LateMarker] = []
        unreadable: list[LateMarker] = []
        paginator = self._client.get_paginator("query")
        for shard in range(LATE_SHARDS):
            for page in paginator.paginate(
                TableName=self._table,
                IndexName=LATE_EVENTS_INDEX,
                KeyConditionExpression="late_shard = :shard AND late_at >= :since",
                ExpressionAttributeValues={
                    ":shard": {"S": f"late#{shard}"},
                    ":since": {"N": str(arrived_since_ms)},
                },
            ):
                for item in page.get("Items", []):
                    late_at_ms = int(item["late_at"]["N"])
                    marker = read_late_marker(
                        str(item["pk"]["S"]), str(item["sk"]["S"]), late_at_ms, self.unreadable
                    )
                    (readable if marker.instance_arn else unreadable).append(marker)
        return readable, unreadable

    def _query(self, pk: str, low: str, high: str) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues={":pk": {"S": pk}, ":low": {"S": low}, ":high": {"S": high}},
            ConsistentRead=True,
        ):
            yield from page.get("Items", [])


def _stored_events(agent_hours: AgentHours) -> list[StoredEvent]:
    return [StoredEvent(agent_arn, point) for agent_arn, points in agent_hours for point in points]


def read_late_marker(pk: str, sk: str, late_at_ms: int, skipped: UnreadableItems) -> LateMarker:
    """The marker of one late-events index entry. One whose key cannot be read is counted in ``skipped``
    and returned with its keys only (no instance, hour 0), for the caller to clear."""
    try:
        instance_arn, day_ms = parse_partition_key(pk)
        hour_ms = day_ms + parse_hour_of_day(sk) * MS_PER_HOUR
    except ValueError as error:
        skipped.skip(LATE_EVENTS, f"{pk} {sk}", error)
        return LateMarker("", 0, pk, sk, late_at_ms)
    return LateMarker(instance_arn, hour_ms, pk, sk, late_at_ms)


def create_activity_table(client: DynamoDBClient, table_name: str) -> None:
    """Same keys and index as infra/constructs/agent_activity.py (local runtime and tests)."""
    create_table(
        client,
        table_name,
        index=Index(LATE_EVENTS_INDEX, "late_shard", "late_at", sort_key_type="N", projection="KEYS_ONLY"),
    )
