"""The core engine's tenancy and ledger tables: dicts that answer the very requests the tenancy and meter
store adapters make (``put_item``, ``get_item``, ``update_item``, ``delete_item``, ``query``,
``transact_write_items``, ``batch_write_item``), in process, with no botocore and no moto.

These tables hold a few items per company and per metered hour, so the adapters' own code runs on them
unchanged: the uniqueness claims, the compare-and-set lifecycle writes and the write-ahead transaction
conditioned on the meter state's version keep exactly their semantics. Only the expression forms those
adapters use are understood (``attribute_exists``, ``attribute_not_exists``, ``begins_with``, ``size``,
comparisons, ``BETWEEN``, ``AND``/``OR``/parentheses; ``SET`` with ``if_not_exists``, ``ADD``,
``REMOVE``); anything else raises, so a new adapter request cannot be silently misread.

Writes to another table (the meter store's checkpoints in the activity table) go to a ``sink``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

Item = dict[str, Any]
# A write to a table this client does not hold: (table, item or None for a delete, key).
Sink = Callable[[str, Item | None, Item], None]

_TOKEN = re.compile(r"\s*(<>|<=|>=|[=<>(),]|[#:]?[A-Za-z_][A-Za-z0-9_.\-]*)")
PARTITION_KEY, SORT_KEY = "pk", "sk"


def _tokens(expression: str) -> tuple[str, ...]:
    tokens: list[str] = []
    position = 0
    text = expression.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"expression not understood at {text[position:]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tuple(tokens)


def _failed(code: str, message: str, **extra: Any) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, **extra}
    return ClientError(response, "InMemoryTable")


def _plain_value(value: Mapping[str, Any]) -> Any:
    """A typed value, comparable: numbers as Decimal, sets as sets, strings and bytes as they are."""
    (kind, raw), *_ = value.items()
    if kind == "N":
        return Decimal(raw)
    if kind in ("SS", "NS", "BS"):
        return set(raw)
    return raw


# Conditions ----------------------------------------------------------------------------------------


class _Condition:
    """A condition expression, parsed once, evaluated against an item (typed) and the request's names
    and values."""

    def __init__(self, expression: str) -> None:
        self._tokens = _tokens(expression)
        self._position = 0
        self.tree = self._or()
        if self._position != len(self._tokens):
            raise ValueError(f"condition not understood: {expression!r}")

    def _peek(self) -> str | None:
        return self._tokens[self._position] if self._position < len(self._tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._tokens[self._position]
        if expected is not None and token.upper() != expected:
            raise ValueError(f"expected {expected}, found {token}")
        self._position += 1
        return token

    def _or(self) -> tuple[Any, ...]:
        node = self._and()
        while (self._peek() or "").upper() == "OR":
            self._take()
            node = ("or", node, self._and())
        return node

    def _and(self) -> tuple[Any, ...]:
        node = self._term()
        while (self._peek() or "").upper() == "AND":
            self._take()
            node = ("and", node, self._term())
        return node

    def _term(self) -> tuple[Any, ...]:
        token = self._take()
        if token == "(":  # noqa: S105 - a parenthesis, not a password
            node = self._or()
            self._take(")")
            return node
        if token in ("attribute_exists", "attribute_not_exists", "begins_with", "size"):
            return self._function(token)
        return self._comparison(("path", token))

    def _function(self, name: str) -> tuple[Any, ...]:
        self._take("(")
        path = self._take()
        if name == "begins_with":
            self._take(",")
            prefix = self._take()
            self._take(")")
            return ("begins_with", path, prefix)
        self._take(")")
        if name == "size":
            return self._comparison(("size", path))
        return (name, path)

    def _comparison(self, left: tuple[str, str]) -> tuple[Any, ...]:
        operator = self._take()
        if operator.upper() == "BETWEEN":
            low = self._take()
            self._take("AND")
            return ("between", left, low, self._take())
        if operator not in ("=", "<>", "<", "<=", ">", ">="):
            raise ValueError(f"operator not understood: {operator}")
        return ("compare", operator, left, self._take())


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "<>": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


@lru_cache(maxsize=512)
def _condition(expression: str) -> _Condition:
    return _Condition(expression)


class _Request:
    """The names and values a request's expressions refer to."""

    def __init__(self, names: Mapping[str, str] | None, values: Mapping[str, Any] | None) -> None:
        self.names = names or {}
        self.values = values or {}

    def name(self, token: str) -> str:
        return self.names[token] if token.startswith("#") else token

    def value(self, token: str) -> Any:
        return _plain_value(self.values[token])

    def operand(self, item: Item, operand: tuple[str, str] | str) -> Any:
        """The left side of a comparison (a path or size(path)), or a value token; None when missing."""
        if isinstance(operand, str):
            return self.value(operand) if operand.startswith(":") else self._attribute(item, operand)
        kind, path = operand
        found = self._attribute(item, path)
        if kind == "size" and found is not None:
            return Decimal(len(found))
        return found

    def _attribute(self, item: Item, token: str) -> Any:
        stored = item.get(self.name(token))
        return None if stored is None else _plain_value(stored)

    def holds(self, node: tuple[Any, ...], item: Item) -> bool:
        kind = node[0]
        if kind in ("or", "and"):
            left = self.holds(node[1], item)
            return (
                (left or self.holds(node[2], item)) if kind == "or" else (left and self.holds(node[2], item))
            )
        if kind == "attribute_exists":
            return self.name(node[1]) in item
        if kind == "attribute_not_exists":
            return self.name(node[1]) not in item
        if kind == "begins_with":
            found = self.operand(item, node[1])
            return isinstance(found, str) and found.startswith(self.value(node[2]))
        if kind == "between":
            found = self.operand(item, node[1])
            return found is not None and self.value(node[2]) <= found <= self.value(node[3])
        found, other = self.operand(item, node[2]), self.operand(item, node[3])
        if found is None or other is None or type(found) is not type(other):
            return False  # DynamoDB: a missing attribute or another type never compares true
        return _COMPARE[node[1]](found, other)


def _check(item: Item | None, expression: str | None, request: _Request) -> bool:
    if expression is None:
        return True
    return request.holds(_condition(expression).tree, item or {})


# Updates -------------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _update_clauses(expression: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(SET | ADD | REMOVE, its tokens) in order."""
    clauses: list[tuple[str, list[str]]] = []
    for token in _tokens(expression):
        if token.upper() in ("SET", "ADD", "REMOVE"):
            clauses.append((token.upper(), []))
        elif clauses:
            clauses[-1][1].append(token)
        else:
            raise ValueError(f"update not understood: {expression!r}")
    return tuple((kind, tuple(tokens)) for kind, tokens in clauses)


def _split(tokens: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The comma-separated actions of a clause (commas inside ``if_not_exists(...)`` kept)."""
    actions: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token, 0)
        if token == "," and depth == 0:  # noqa: S105 - a comma, not a password
            actions.append([])
        else:
            actions[-1].append(token)
    return [tuple(action) for action in actions if action]


@lru_cache(maxsize=512)
def _update_actions(expression: str) -> tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]:
    """(SET | ADD | REMOVE, its actions) in order, parsed once per expression."""
    return tuple((kind, tuple(_split(tokens))) for kind, tokens in _update_clauses(expression))


def _apply_update(item: Item, expression: str, request: _Request) -> None:
    for kind, actions in _update_actions(expression):
        for action in actions:
            if kind == "REMOVE":
                item.pop(request.name(action[0]), None)
            elif kind == "ADD":
                _add(item, request.name(action[0]), request.values[action[1]])
            else:
                item[request.name(action[0])] = _set_value(item, action[2:], request)


def _set_value(item: Item, operand: tuple[str, ...], request: _Request) -> Any:
    if operand[0] == "if_not_exists":  # if_not_exists ( path , value-or-path )
        existing = item.get(request.name(operand[2]))
        if existing is not None:
            return existing
        fallback = operand[4]
        return request.values[fallback] if fallback.startswith(":") else item.get(request.name(fallback))
    if len(operand) != 1 or not operand[0].startswith(":"):
        raise ValueError(f"SET operand not understood: {operand}")
    return request.values[operand[0]]


def _add(item: Item, name: str, value: Mapping[str, Any]) -> None:
    existing = item.get(name)
    if "N" in value:
        total = Decimal(value["N"]) + (Decimal(existing["N"]) if existing else 0)
        item[name] = {"N": str(total)}
        return
    (kind, members), *_ = value.items()
    item[name] = {kind: sorted(set(existing[kind] if existing else []) | set(members))}


# The client ----------------------------------------------------------------------------------------


class _Paginator:
    def __init__(self, client: InMemoryTables) -> None:
        self._client = client

    def paginate(self, **request: Any) -> Iterator[dict[str, Any]]:
        yield self._client.query(**request)


class InMemoryTables:
    """Tables by name, each ``pk -> sk -> item`` (typed form), with the global secondary indexes given
    as ``table -> {index: (partition attribute, sort attribute)}``."""

    def __init__(self, indexes: Mapping[str, Mapping[str, tuple[str, str]]], sink: Sink) -> None:
        self._indexes = indexes
        self._tables: dict[str, dict[str, dict[str, Item]]] = {name: {} for name in indexes}
        # table -> index -> the table's items that have both of the index's keys (a sparse index), kept
        # until the table's next write: the dispatcher's queries of every shard share one walk.
        self._index_items: dict[str, dict[str, list[Item]]] = {}
        self._sink = sink

    # Single items ----------------------------------------------------------------------------------

    def _key(self, key: Mapping[str, Any]) -> tuple[str, str]:
        return str(key[PARTITION_KEY]["S"]), str(key[SORT_KEY]["S"])

    def _stored(self, table: str, key: Mapping[str, Any]) -> Item | None:
        pk, sk = self._key(key)
        return self._tables[table].get(pk, {}).get(sk)

    def _write(self, table: str, key: Mapping[str, Any], item: Item | None) -> None:
        if table not in self._tables:
            self._sink(table, item, dict(key))
            return
        self._index_items.pop(table, None)
        pk, sk = self._key(key)
        partition = self._tables[table].setdefault(pk, {})
        if item is None:
            partition.pop(sk, None)
        else:
            partition[sk] = item

    def get_item(self, *, TableName: str, Key: Item, **_: Any) -> dict[str, Any]:
        found = self._stored(TableName, Key)
        return {"Item": dict(found)} if found is not None else {}

    def put_item(self, **request: Any) -> dict[str, Any]:
        self._apply(self._put_action(request))
        return {}

    def update_item(self, **request: Any) -> dict[str, Any]:
        new = self._apply(self._update_action(request))
        return {"Attributes": dict(new)} if request.get("ReturnValues") == "ALL_NEW" and new else {}

    def delete_item(self, **request: Any) -> dict[str, Any]:
        self._apply(self._delete_action(request))
        return {}

    def _apply(self, action: tuple[str, Item, Item | None, bool]) -> Item | None:
        table, key, new, holds = action
        if not holds:
            raise _failed("ConditionalCheckFailedException", "The conditional request failed")
        self._write(table, key, new)
        return new

    # Actions: (table, key, new item or None, condition held) ---------------------------------------

    def _put_action(self, request: Mapping[str, Any]) -> tuple[str, Item, Item | None, bool]:
        table, new = request["TableName"], dict(request["Item"])
        key = {PARTITION_KEY: new[PARTITION_KEY], SORT_KEY: new[SORT_KEY]}
        return table, key, new, self._holds(table, key, request)

    def _update_action(self, request: Mapping[str, Any]) -> tuple[str, Item, Item | None, bool]:
        table, key = request["TableName"], dict(request["Key"])
        holds = self._holds(table, key, request)
        new = dict(self._stored(table, key) or key)
        _apply_update(
            new,
            request["UpdateExpression"],
            _Request(request.get("ExpressionAttributeNames"), request.get("ExpressionAttributeValues")),
        )
        return table, key, new, holds

    def _delete_action(self, request: Mapping[str, Any]) -> tuple[str, Item, Item | None, bool]:
        table, key = request["TableName"], dict(request["Key"])
        return table, key, None, self._holds(table, key, request)

    def _check_action(self, request: Mapping[str, Any]) -> tuple[str, Item, Item | None, bool]:
        table, key = request["TableName"], dict(request["Key"])
        return table, key, self._stored(table, key), self._holds(table, key, request)

    def _holds(self, table: str, key: Mapping[str, Any], request: Mapping[str, Any]) -> bool:
        if table not in self._tables:
            return True  # the sink's table: unconditional puts only
        names, values = request.get("ExpressionAttributeNames"), request.get("ExpressionAttributeValues")
        return _check(self._stored(table, key), request.get("ConditionExpression"), _Request(names, values))

    # Several items ---------------------------------------------------------------------------------

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]], **unused: Any) -> dict[str, Any]:
        """Every condition checked first; all writes applied, or none (TransactionCanceledException)."""
        builders = {
            "Put": self._put_action,
            "Update": self._update_action,
            "Delete": self._delete_action,
            "ConditionCheck": self._check_action,
        }
        actions: list[tuple[str, tuple[str, Item, Item | None, bool]]] = []
        for entry in TransactItems:
            (kind, request), *_others = entry.items()
            actions.append((kind, builders[kind](request)))
        if not all(action[3] for _kind, action in actions):
            reasons = [
                {"Code": "None" if action[3] else "ConditionalCheckFailed"} for _kind, action in actions
            ]
            raise _failed(
                "TransactionCanceledException", "Transaction cancelled", CancellationReasons=reasons
            )
        for kind, (table, key, new, _held) in actions:
            if kind != "ConditionCheck":
                self._write(table, key, new)
        return {}

    def batch_write_item(self, *, RequestItems: dict[str, list[dict[str, Any]]], **_: Any) -> dict[str, Any]:
        for table, requests in RequestItems.items():
            for request in requests:
                if "PutRequest" in request:
                    new = dict(request["PutRequest"]["Item"])
                    self._write(table, {PARTITION_KEY: new[PARTITION_KEY], SORT_KEY: new[SORT_KEY]}, new)
                else:
                    self._write(table, request["DeleteRequest"]["Key"], None)
        return {"UnprocessedItems": {}}

    # Queries ---------------------------------------------------------------------------------------

    def get_paginator(self, operation: str) -> _Paginator:
        if operation != "query":
            raise ValueError(f"only query pages: {operation}")
        return _Paginator(self)

    def query(self, **request: Any) -> dict[str, Any]:
        """A key condition (and filter) over one partition, or over an index's items, in sort-key order."""
        table = request["TableName"]
        values = _Request(request.get("ExpressionAttributeNames"), request.get("ExpressionAttributeValues"))
        condition = _condition(request["KeyConditionExpression"])
        index = request.get("IndexName")
        if index is None:
            pk = values.value(condition.tree[1][3] if condition.tree[0] == "and" else condition.tree[3])
            candidates = list(self._tables[table].get(pk, {}).values())
            order = SORT_KEY
        else:
            partition, order = self._indexes[table][index]
            indexed = self._index_items.setdefault(table, {})
            candidates = indexed.get(index)  # type: ignore[assignment]
            if candidates is None:
                candidates = indexed[index] = [
                    item
                    for items in self._tables[table].values()
                    for item in items.values()
                    if partition in item and order in item
                ]
        found = [item for item in candidates if values.holds(condition.tree, item)]
        found = [item for item in found if _check(item, request.get("FilterExpression"), values)]
        found.sort(key=lambda item: _plain_value(item[order]))
        return {"Items": [dict(item) for item in found]}
