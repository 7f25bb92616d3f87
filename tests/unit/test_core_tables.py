"""The core engine's in-memory tables answer the adapters' requests as DynamoDB does: conditions, updates,
all-or-nothing transactions with their cancellation reasons, queries in sort-key order, the sparse index,
and writes to another table handed to the sink. An expression they do not understand raises."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from connect_metering.local.core_tables import InMemoryTables

S = "S"


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {S: pk}, "sk": {S: sk}}


@pytest.fixture
def tables() -> tuple[InMemoryTables, list[tuple[str, Any, Any]]]:
    sunk: list[tuple[str, Any, Any]] = []
    return InMemoryTables({"t": {"by-shard": ("shard", "started")}}, sink=lambda *w: sunk.append(w)), sunk


def test_conditional_put_refuses_an_existing_item(tables: Any) -> None:
    client, _ = tables
    item = {**key("a", "b"), "n": {"N": "1"}}
    client.put_item(TableName="t", Item=item, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ClientError) as refused:
        client.put_item(TableName="t", Item=item, ConditionExpression="attribute_not_exists(pk)")
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert client.get_item(TableName="t", Key=key("a", "b"))["Item"]["n"] == {"N": "1"}


def test_comparisons_names_and_missing_attributes(tables: Any) -> None:
    client, _ = tables
    client.put_item(TableName="t", Item={**key("a", "b"), "v": {"N": "3"}, "w": {S: "x"}})
    values = {":three": {"N": "3"}, ":x": {S: "x"}, ":two": {"N": "2"}}
    for condition, holds in [
        ("#v = :three AND w = :x", True),
        ("#v > :two AND (attribute_not_exists(z) OR z = :x)", True),
        ("#v < :two OR w <> :x", False),
        ("z = :x", False),  # a missing attribute compares false
        ("size(w) <= :two", True),
    ]:
        request = {
            "TableName": "t",
            "Key": key("a", "b"),
            "UpdateExpression": "SET touched = :x",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#v": "v"},
            "ExpressionAttributeValues": values,
        }
        if holds:
            client.update_item(**request)
        else:
            with pytest.raises(ClientError):
                client.update_item(**request)


def test_updates_set_add_remove_and_if_not_exists(tables: Any) -> None:
    client, _ = tables
    client.update_item(
        TableName="t",
        Key=key("a", "b"),
        UpdateExpression="ADD events :n, ev :set SET first = if_not_exists(first, :at), gone = :at",
        ExpressionAttributeValues={":n": {"N": "2"}, ":set": {"SS": ["b", "a"]}, ":at": {S: "t1"}},
    )
    answer = client.update_item(
        TableName="t",
        Key=key("a", "b"),
        UpdateExpression="ADD events :n, ev :set SET first = if_not_exists(first, :at) REMOVE gone",
        ExpressionAttributeValues={":n": {"N": "3"}, ":set": {"SS": ["c", "a"]}, ":at": {S: "t2"}},
        ReturnValues="ALL_NEW",
    )
    stored = answer["Attributes"]
    assert stored["events"] == {"N": "5"}
    assert stored["ev"] == {"SS": ["a", "b", "c"]}
    assert stored["first"] == {S: "t1"} and "gone" not in stored


def test_a_transaction_writes_all_or_nothing_and_names_the_failed_action(tables: Any) -> None:
    client, sunk = tables
    client.put_item(TableName="t", Item={**key("a", "state"), "version": {"N": "1"}})
    actions = [
        {
            "Put": {
                "TableName": "t",
                "Item": {**key("a", "state"), "version": {"N": "2"}},
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": {":v": {"N": "7"}},
            }
        },
        {"Put": {"TableName": "t", "Item": key("a", "record")}},
        {"Put": {"TableName": "activity", "Item": {**key("i#d", "00#C"), "doc": {"B": b"x"}}}},
    ]
    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(TransactItems=actions)
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in cancelled.value.response["CancellationReasons"]] == [
        "ConditionalCheckFailed",
        "None",
        "None",
    ]
    assert client.get_item(TableName="t", Key=key("a", "record")) == {} and not sunk
    actions[0]["Put"]["ExpressionAttributeValues"] = {":v": {"N": "1"}}
    client.transact_write_items(TransactItems=actions)
    assert client.get_item(TableName="t", Key=key("a", "state"))["Item"]["version"] == {"N": "2"}
    assert [table for table, _, _ in sunk] == ["activity"]


def test_queries_in_sort_key_order_with_prefix_range_and_index(tables: Any) -> None:
    client, _ = tables
    for sk in ("b#2", "a#1", "b#1", "c"):
        client.put_item(TableName="t", Item=key("p", sk))
    client.put_item(TableName="t", Item={**key("q", "s1"), "shard": {S: "0"}, "started": {S: "2026-02"}})
    client.put_item(TableName="t", Item={**key("r", "s2"), "shard": {S: "0"}, "started": {S: "2026-01"}})
    client.put_item(TableName="t", Item={**key("s", "s3"), "shard": {S: "1"}, "started": {S: "2026-01"}})

    def sks(**request: Any) -> list[str]:
        pages = client.get_paginator("query").paginate(TableName="t", **request)
        return [item["sk"][S] for page in pages for item in page["Items"]]

    assert sks(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {S: "p"}}) == [
        "a#1",
        "b#1",
        "b#2",
        "c",
    ]
    assert sks(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :b)",
        ExpressionAttributeValues={":pk": {S: "p"}, ":b": {S: "b#"}},
    ) == ["b#1", "b#2"]
    assert sks(
        KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
        ExpressionAttributeValues={":pk": {S: "p"}, ":low": {S: "a"}, ":high": {S: "b#1"}},
    ) == ["a#1", "b#1"]
    assert sks(
        IndexName="by-shard",
        KeyConditionExpression="shard = :shard AND started < :before",
        FilterExpression="attribute_not_exists(ended) OR ended > :from",
        ExpressionAttributeValues={":shard": {S: "0"}, ":before": {S: "2027"}, ":from": {S: "2025"}},
    ) == ["s2", "s1"]


def test_an_expression_it_does_not_understand_raises(tables: Any) -> None:
    client, _ = tables
    with pytest.raises(ValueError, match="not understood"):
        client.put_item(TableName="t", Item=key("a", "b"), ConditionExpression="contains(x, :y)")
    with pytest.raises(ValueError, match="not understood"):
        client.update_item(
            TableName="t",
            Key=key("a", "b"),
            UpdateExpression="SET n = n + :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
