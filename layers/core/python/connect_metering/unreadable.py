"""Stored items a reader cannot parse (a key or a document no writer of this version produces).

A reader never fails on one: it skips the item, counts it here by reader, and goes on, so one bad item
cannot stop the metering of anyone else. The handlers publish the counts (metric ``UnreadableItems``,
alarmed) and the log line names the item's key for the on-call engineer. Reader names are a small fixed
set: they are a metric dimension.
"""

from __future__ import annotations

import logging
from collections import Counter

logger = logging.getLogger(__name__)

LATE_EVENTS = "late-events"
ACTIVITY_EVENTS = "activity-events"
CHECKPOINTS = "checkpoints"
PENDING_RECORDS = "pending-records"


class UnreadableItems:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def skip(self, reader: str, key: str, error: object) -> None:
        self._counts[reader] += 1
        logger.warning(
            "unreadable stored item skipped",
            extra={"reader": reader, "key": key[:512], "error": str(error)[:256]},
        )

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def drain(self) -> dict[str, int]:
        """The counts since the last drain (a handler publishes them once per invocation)."""
        counts = dict(self._counts)
        self._counts.clear()
        return counts
