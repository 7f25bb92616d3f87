"""DynamoDB write capacity units as DynamoDB bills them, counted from the items the calls change.

A PutItem, UpdateItem or DeleteItem costs ``ceil(max(size before, size after) / 1 KB)`` units, at least
one, whether it succeeds or its condition fails (then before and after are the same item); each action
of a TransactWriteItems costs twice that. Item size is the sum of its attribute names and values:
strings and binaries by their bytes, a number about one byte per two significant digits plus one, a
boolean or null one byte, a set the sum of its elements, a list or map 3 bytes plus one per element
plus its contents.
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

WRITE_UNIT_BYTES = 1024
SINGLE_WRITES = ("PutItem", "UpdateItem", "DeleteItem")
WireItem = Mapping[str, Mapping[str, Any]]
# (table name, the request's Key or Item) -> the stored item in DynamoDB's wire form, or None.
ItemLookup = Callable[[str, WireItem], WireItem | None]


def number_bytes(text: str) -> int:
    digits = text.lstrip("+-").lower().split("e", 1)[0].replace(".", "").strip("0")
    return math.ceil(len(digits) / 2) + 1


def value_bytes(value: Mapping[str, Any]) -> int:
    kind, content = next(iter(value.items()))
    if kind == "S":
        return len(str(content).encode())
    if kind == "B":
        return len(content)
    if kind == "N":
        return number_bytes(str(content))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(element).encode()) for element in content)
    if kind == "NS":
        return sum(number_bytes(str(element)) for element in content)
    if kind == "BS":
        return sum(len(element) for element in content)
    if kind == "L":
        return 3 + sum(1 + value_bytes(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_bytes(element) for name, element in content.items())
    raise ValueError(f"not a DynamoDB attribute value: {value!r}")


def item_bytes(item: WireItem | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_bytes(value) for name, value in item.items())


def write_units(before_bytes: int, after_bytes: int, *, transactional: bool = False) -> int:
    units = max(1, math.ceil(max(before_bytes, after_bytes) / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units


@dataclass
class WriteUnitMeter:
    """Counts the write units of every write made through the watched clients (botocore hooks)."""

    lookup: ItemLookup
    units: int = 0
    by_table: dict[str, int] = field(default_factory=dict)
    _pending: list[tuple[str, WireItem, int, bool]] = field(default_factory=list)

    def watch(self, events: Any) -> None:
        for operation in (*SINGLE_WRITES, "TransactWriteItems"):
            events.register(f"before-parameter-build.dynamodb.{operation}", self._before)
            events.register(f"after-call.dynamodb.{operation}", self._after)

    def clear(self) -> None:
        self.units = 0
        self.by_table.clear()

    def _actions(self, operation: str, params: Mapping[str, Any]) -> list[tuple[str, WireItem, bool]]:
        if operation == "TransactWriteItems":
            actions = []
            for entry in params["TransactItems"]:
                kind, action = next(iter(entry.items()))
                if kind != "ConditionCheck":  # a condition check is a read
                    actions.append((action["TableName"], action.get("Key") or action["Item"], True))
            return actions
        return [(params["TableName"], params.get("Key") or params["Item"], False)]

    def _before(self, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        self._pending = [
            (table, key, item_bytes(self.lookup(table, key)), transactional)
            for table, key, transactional in self._actions(model.name, params)
        ]

    def _after(self, **_: Any) -> None:
        for table, key, before, transactional in self._pending:
            after = item_bytes(self.lookup(table, key))
            units = write_units(before, after, transactional=transactional)
            self.units += units
            self.by_table[table] = self.by_table.get(table, 0) + units
        self._pending = []
