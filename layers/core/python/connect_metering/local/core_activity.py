"""The core engine's per-event stores, in memory: accepted agent events with their hourly checkpoints and
late markers (the activity port), and the quarantine (counted, not kept).

The activity store is ``DynamoActivityStore`` with its three DynamoDB calls answered from dicts: the
conditional ``ADD`` of an agent-hour's events (refused, with the set as it was, when it would pass the
agent-hour bound), the day query and the late-events index. Everything else (the encoding of events and
checkpoints, the bound's retry loop, which events are new, duplicate or refused, the decoding a read
does) is the adapter's own code.
"""

from __future__ import annotations

import bisect
import json
import zlib
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, cast

from botocore.exceptions import ClientError

from connect_metering.adapters.activity_table import (
    LATE_SHARDS,
    AgentHours,
    DynamoActivityStore,
    _hour_of_day,
    _outcomes,
    decode_event,
    encode_checkpoint,
    encode_events,
    late_shard,
    parse_hour_of_day,
    parse_partition_key,
    partition_key,
    read_late_marker,
)
from connect_metering.domain.activity import AddedEvents, EventStored, LateMarker
from connect_metering.domain.agent_events import (
    MAX_EVENTS_PER_AGENT_HOUR,
    AgentEvent,
    QuarantinedEvent,
    QuarantineTally,
)
from connect_metering.domain.instants import MS_PER_HOUR
from connect_metering.domain.sessions import AgentEventPoint
from connect_metering.domain.usage import EnvironmentCheckpoint
from connect_metering.local.core_tables import Item
from connect_metering.unreadable import ACTIVITY_EVENTS, UnreadableItems

# How many agent-hours' keys ``MemoryActivityStore`` remembers (a few MB at most).
_MAX_ITEMS = 20_000


class MemoryActivityStore(DynamoActivityStore):
    """Partitions ``pk -> sk -> set of encodings | checkpoint bytes``, as the table lays them out."""

    def __init__(self, unreadable: UnreadableItems | None = None) -> None:
        super().__init__("activity", cast(Any, None), unreadable)
        self._event_sets: dict[str, dict[str, set[str]]] = {}
        self._checkpoint_docs: dict[str, dict[str, bytes]] = {}
        # (pk, sk) -> (late shard, late_at) of agent-hours that received events after they were metered.
        self._marked_late: dict[tuple[str, str], tuple[str, int]] = {}
        # Day partitions no event can reach any more, compressed: pk -> zlib(JSON {sk: [encodings]}).
        self._frozen: dict[str, bytes] = {}
        self._days: dict[str, int] = {}
        # pk -> sk -> encoding -> its decoding, for the partitions not frozen: a stored event is read by
        # the metering of its hour and of the hour before, by recomputes and by the summary, and decoded
        # once; a read of an agent-hour whose set did not grow since (sets only grow: the same size is
        # the same set) decodes nothing.
        self._decoded: dict[str, dict[str, _DecodedItem]] = {}
        # pk -> its event sort keys, sorted (a partition only grows: the same size is the same keys).
        self._sorted_keys: dict[str, list[str]] = {}
        # Checkpoints the meter store encoded and has not written here yet: id(document) -> (document,
        # checkpoint); and per instance, the latest checkpoint written or decoded: (hour, document,
        # checkpoint). One per instance: the hourly run reads the checkpoint the previous run wrote.
        self._encoded: dict[int, tuple[bytes, EnvironmentCheckpoint]] = {}
        self._latest_checkpoints: dict[str, tuple[int, bytes, EnvironmentCheckpoint]] = {}
        # (agent ARN, hour) -> (instance ARN, pk, sk) of the agent-hours written lately: an agent's events
        # of one hour come in several batches. Bounded; a forgotten one is worked out again.
        self._items: dict[tuple[str, int], tuple[str, str, str]] = {}

    def add_events(self, events: Sequence[AgentEvent], *, late_at_ms: int | None) -> AddedEvents:
        """The adapter's ``add_events``, with its commonest calls answered directly: events of one
        agent-hour that has room for all of them, of a day not frozen. The adapter's first ``ADD`` then
        succeeds too; the outcomes, the set and the late marker come out the same (the encoding decides,
        as the string set does). Every other call (a full or nearly full agent-hour, a frozen day, events
        of several agent-hours) is the adapter's own."""
        first = events[0]
        agent_arn, hour_ms = first.agent_arn, first.ts_ms - first.ts_ms % MS_PER_HOUR
        if len(events) > 1:
            for event in events:
                if event.agent_arn != agent_arn or event.ts_ms - event.ts_ms % MS_PER_HOUR != hour_ms:
                    return super().add_events(events, late_at_ms=late_at_ms)
        instance_arn, pk, sk = self._items.get((agent_arn, hour_ms)) or self._item(first, hour_ms)
        partition = self._event_sets.get(pk)
        if partition is None:
            if pk in self._frozen:
                return super().add_events(events, late_at_ms=late_at_ms)
            partition = self._event_sets[pk] = {}
        stored = partition.get(sk)
        # The adapter's first ADD succeeds when the set has room for every encoding, stored or not.
        if (0 if stored is None else len(stored)) + len(events) > MAX_EVENTS_PER_AGENT_HOUR:
            return super().add_events(events, late_at_ms=late_at_ms)
        encodings = encode_events(events)
        if stored is None:
            new = partition[sk] = set(encodings)
        else:
            new = set(encodings).difference(stored)
            stored.update(new)
        if late_at_ms is not None:
            self._marked_late[(pk, sk)] = (late_shard(instance_arn), late_at_ms)
        if len(new) == len(encodings):
            return AddedEvents([EventStored.NEW] * len(encodings))
        return _outcomes(encodings, new, set())

    def _item(self, event: AgentEvent, hour_ms: int) -> tuple[str, str, str]:
        """(instance ARN, pk, sk) of the item holding the agent-hour of ``event``, remembered."""
        instance_arn = event.instance.arn
        item = (
            instance_arn,
            partition_key(instance_arn, hour_ms),
            f"{(hour_ms // MS_PER_HOUR) % 24:02d}#E#{event.agent_id}",
        )
        if len(self._items) >= _MAX_ITEMS:
            self._items.clear()
        self._items[(event.agent_arn, hour_ms)] = item
        return item

    def _add(
        self, key: dict[str, Any], encodings: list[str], instance_arn: str, late_at_ms: int | None, ttl: str
    ) -> set[str]:
        pk, sk = key["pk"]["S"], key["sk"]["S"]
        if pk in self._frozen:
            self._event_sets[pk] = self._thawed(pk)
            del self._frozen[pk]
        partition = self._event_sets.get(pk)
        if partition is None:
            partition = self._event_sets[pk] = {}
        stored = partition.get(sk)
        if stored is None:
            old: set[str] = set()
            partition[sk] = set(encodings)
        elif len(stored) > MAX_EVENTS_PER_AGENT_HOUR - len(encodings):
            error = {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}
            raise ClientError({"Error": error, "Item": {"ev": {"SS": sorted(stored)}}}, "UpdateItem")  # type: ignore[typeddict-item]
        else:
            old = stored.copy()  # the answer (ALL_OLD); the stored set grows in place
            stored.update(encodings)
        if late_at_ms is not None:
            self._marked_late[(pk, sk)] = (late_shard(instance_arn), late_at_ms)
        return old

    def _query(self, pk: str, low: str, high: str) -> Iterator[dict[str, Any]]:
        partition: Mapping[str, Collection[str]] = (
            json.loads(zlib.decompress(self._frozen[pk]))
            if pk in self._frozen
            else self._event_sets.get(pk, {})
        )
        items: list[tuple[str, dict[str, Any]]] = [
            (sk, {"sk": {"S": sk}, "ev": {"SS": list(events)}})
            for sk, events in partition.items()
            if low <= sk <= high
        ]
        items += [
            (sk, {"sk": {"S": sk}, "doc": {"B": document}})
            for sk, document in self._checkpoint_docs.get(pk, {}).items()
            if low <= sk <= high
        ]
        for _, found in sorted(items, key=lambda pair: pair[0]):
            yield found

    def _read_day(
        self,
        pk: str,
        day_start: int,
        hours: tuple[int, int],
        agent_prefix: str,
        documents: dict[int, bytes],
        events: AgentHours,
    ) -> None:
        """The adapter's day query answered from the partition's dicts, without building its items: the
        sort keys in range (kept sorted while the partition does not grow) and each agent-hour's
        decodings; a frozen day decompressed and decoded item by item (nothing kept). A sort key the
        adapter would not read takes the adapter's path."""
        low, high = f"{_hour_of_day(hours[0]):02d}#", f"{_hour_of_day(hours[1]):02d}#~"
        for sort_key, document in self._checkpoint_docs.get(pk, {}).items():
            if low <= sort_key <= high:
                self._read_item(
                    pk,
                    day_start,
                    {"sk": {"S": sort_key}, "doc": {"B": document}},
                    agent_prefix,
                    documents,
                    events,
                )
        if pk in self._frozen:
            self._read_frozen(pk, day_start, (low, high), agent_prefix, documents, events)
            return
        partition = self._event_sets.get(pk)
        if partition is None:
            return
        keys = self._sorted_keys.get(pk)
        if keys is None or len(keys) != len(partition):
            keys = self._sorted_keys[pk] = sorted(partition)
        items = self._decoded.get(pk)
        if items is None:
            items = self._decoded[pk] = {}
        for sort_key in keys[bisect.bisect_left(keys, low) : bisect.bisect_right(keys, high)]:
            texts = partition[sort_key]
            known = items.get(sort_key)
            if known is not None and known.count == len(texts):
                events.append((known.agent_arn, known.events))
            elif _readable_events_key(sort_key):
                events.append(self._decoded_item(known, items, pk, sort_key, agent_prefix, texts))
            else:
                item = {"sk": {"S": sort_key}, "ev": {"SS": list(texts)}}
                self._read_item(pk, day_start, item, agent_prefix, documents, events)

    def _read_frozen(
        self,
        pk: str,
        day_start: int,
        sort_keys: tuple[str, str],
        agent_prefix: str,
        documents: dict[int, bytes],
        events: AgentHours,
    ) -> None:
        """A frozen day's agent-hours in [low, high], decoded (the summary reads every day once)."""
        low, high = sort_keys
        partition: dict[str, list[str]] = json.loads(zlib.decompress(self._frozen[pk]))
        for sort_key in sorted(partition):
            if not low <= sort_key <= high:
                continue
            texts = partition[sort_key]
            if not _readable_events_key(sort_key):
                item = {"sk": {"S": sort_key}, "ev": {"SS": texts}}
                self._read_item(pk, day_start, item, agent_prefix, documents, events)
                continue
            try:
                points = [decode_event(text) for text in texts]
            except (TypeError, ValueError):
                points = self._item_events(pk, sort_key, texts)  # the adapter's: skips and counts
            events.append((agent_prefix + sort_key.split("#", 2)[2], points))

    def _decoded_item(
        self,
        known: _DecodedItem | None,
        items: dict[str, _DecodedItem],
        pk: str,
        sort_key: str,
        agent_prefix: str,
        texts: Collection[str],
    ) -> tuple[str, list[AgentEventPoint]]:
        """An agent-hour's decodings brought up to its set: only encodings not decoded yet are decoded
        (the adapter's own decoding); one that does not decode is skipped and counted at every read, as
        the adapter does, and keeps the item from being taken as fully decoded."""
        if known is None:
            known = items[sort_key] = _DecodedItem(agent_prefix + sort_key.split("#", 2)[2])
        decoded = known.decoded
        for text in texts:
            if text not in decoded:
                try:
                    decoded[text] = decode_event(text)
                except (TypeError, ValueError) as error:
                    self.unreadable.skip(ACTIVITY_EVENTS, f"{pk} {sort_key}", error)
        # A new list: the one handed out by earlier reads stays as it was.
        known.events = list(decoded.values())
        known.count = len(decoded)
        return known.agent_arn, known.events

    def encode_checkpoint(self, checkpoint: EnvironmentCheckpoint) -> bytes:
        """The adapter's encoding (the meter store's encoder in the core engine), remembered until the
        document is written here (``store_table_write``)."""
        document = encode_checkpoint(checkpoint)
        if len(self._encoded) >= MAX_ENCODED_UNWRITTEN:
            self._encoded.clear()  # documents of failed transactions, never written: forgotten
        self._encoded[id(document)] = (document, checkpoint)
        return document

    def _checkpoints(
        self, instance_arn: str, documents: dict[int, bytes]
    ) -> dict[int, EnvironmentCheckpoint]:
        """The adapter's decoding of checkpoint documents, except for the instance's latest one written
        or read: the very document (the same bytes object) gives the checkpoint it was encoded from (or
        decoded to), as the codec round trip does (``tests/unit/test_usage_properties.py``). One that
        does not decode is counted at every read, as the adapter does."""
        latest = self._latest_checkpoints.get(instance_arn)
        undecoded = dict(documents)
        readable: dict[int, EnvironmentCheckpoint] = {}
        if latest is not None and undecoded.get(latest[0]) is latest[1]:
            del undecoded[latest[0]]
            readable[latest[0]] = latest[2]
        if undecoded:
            decoded = super()._checkpoints(instance_arn, undecoded)
            if decoded:
                hour_ms = max(decoded)
                self._latest_checkpoints[instance_arn] = (hour_ms, undecoded[hour_ms], decoded[hour_ms])
            readable.update(decoded)
        return {hour_ms: readable[hour_ms] for hour_ms in documents if hour_ms in readable}

    def _thawed(self, pk: str) -> dict[str, set[str]]:
        stored: dict[str, list[str]] = json.loads(zlib.decompress(self._frozen[pk]))
        return {sk: set(events) for sk, events in stored.items()}

    def freeze_before(self, day_ms: int) -> None:
        """Compress the accepted events of the days before ``day_ms``: what a replay keeps of a month is
        then a few bytes per event. Reads decompress them; a write (none can come: rule 5 refuses events
        that old) would restore the day first."""
        for pk in list(self._event_sets):
            day = self._days.get(pk)
            if day is None:
                day = self._days[pk] = parse_partition_key(pk)[1]
            if day < day_ms:
                partition = {sk: sorted(events) for sk, events in self._event_sets.pop(pk).items()}
                self._decoded.pop(pk, None)
                self._sorted_keys.pop(pk, None)
                # Level 1: twice as fast as the default for a few per cent more bytes (EventIds are
                # random, they hardly compress at any level).
                self._frozen[pk] = zlib.compress(json.dumps(partition, separators=(",", ":")).encode(), 1)

    def save_checkpoint(self, instance_arn: str, hour_ms: int, document: bytes) -> None:
        if hour_ms % MS_PER_HOUR:
            raise ValueError(f"hour_ms: {hour_ms} is not the start of an hour")
        self._checkpoint_docs.setdefault(partition_key(instance_arn, hour_ms), {})[
            f"{(hour_ms // MS_PER_HOUR) % 24:02d}#C"
        ] = document

    def store_table_write(self, item: Item | None, key: Item) -> None:
        """A write the meter store makes to the activity table (its checkpoints, in its transaction)."""
        if item is None or "doc" not in item:
            raise ValueError(f"the activity table takes checkpoints only from the meter: {key}")
        pk, document = item["pk"]["S"], item["doc"]["B"]
        self._checkpoint_docs.setdefault(pk, {})[item["sk"]["S"]] = document
        encoded = self._encoded.pop(id(document), None)
        if encoded is not None and encoded[0] is document:
            checkpoint = encoded[1]
            try:
                instance_arn, day_ms = parse_partition_key(pk)
                hour_ms = day_ms + parse_hour_of_day(item["sk"]["S"]) * MS_PER_HOUR
            except ValueError:
                return
            if checkpoint.boundary_ms == hour_ms:  # else the read's decoding refuses it, as the adapter's
                self._latest_checkpoints[instance_arn] = (hour_ms, document, checkpoint)

    def _read_markers(self, arrived_since_ms: int) -> tuple[list[LateMarker], list[LateMarker]]:
        """The late-events index: by shard, then by arrival, as one query per shard returns them."""
        readable: list[LateMarker] = []
        unreadable: list[LateMarker] = []
        ordered = sorted(self._marked_late.items(), key=lambda entry: (entry[1], entry[0]))
        for shard in range(LATE_SHARDS):
            for (pk, sk), (marker_shard, late_at_ms) in ordered:
                if marker_shard != f"late#{shard}" or late_at_ms < arrived_since_ms:
                    continue
                marker = read_late_marker(pk, sk, late_at_ms, self.unreadable)
                (readable if marker.instance_arn else unreadable).append(marker)
        return readable, unreadable

    def clear_late_markers(self, markers: Sequence[LateMarker]) -> None:
        for marker in markers:
            current = self._marked_late.get((marker.pk, marker.sk))
            if current is not None and current[1] == marker.late_at_ms:
                del self._marked_late[(marker.pk, marker.sk)]


# Encoded checkpoints kept while waiting for their write (a failed transaction's are never written).
MAX_ENCODED_UNWRITTEN = 10_000


class _DecodedItem:
    """One agent-hour's decodings: its agent, encoding -> event, the events in a list, and how many."""

    __slots__ = ("agent_arn", "count", "decoded", "events")

    def __init__(self, agent_arn: str) -> None:
        self.agent_arn = agent_arn
        self.decoded: dict[str, AgentEventPoint] = {}
        self.events: list[AgentEventPoint] = []
        self.count = -1


def _readable_events_key(sort_key: str) -> bool:
    """Whether the adapter reads an item with this sort key as an agent-hour's events."""
    try:
        parse_hour_of_day(sort_key)
    except ValueError:
        return False
    return sort_key[3] != "C"


class MemoryQuarantineStore:
    """What the quarantine table would hold, counted: records kept, counters by (account, reason, hour),
    samples by (account, hour). Nothing reads the quarantine back during a replay."""

    def __init__(self) -> None:
        self.records = 0
        self.tallies: Counter[QuarantineTally] = Counter()
        self.samples: set[tuple[str, int]] = set()

    def keep(self, event: QuarantinedEvent) -> None:
        self.records += 1

    def count(self, tally: QuarantineTally, events: int, *, company: str | None) -> None:
        self.tallies[tally] += events

    def keep_sample(self, event: QuarantinedEvent) -> None:
        self.samples.add((event.account or "", event.arrival_ms // MS_PER_HOUR))
