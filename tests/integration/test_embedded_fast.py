"""The embedded runtime's cheaper DynamoDB path (local/embedded_fast.py) answers exactly as moto's HTTP
path does, applies each request once, counts it once, and its parsing caches never mix expressions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connect_metering.local import embedded
from connect_metering.local.embedded import ACTIVITY_TABLE, TENANCY_TABLE, EmbeddedAws
from tests.conftest import environment_restored

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 2, tzinfo=UTC)
KEY = {"pk": {"S": "company#alpha"}, "sk": {"S": "meta"}}


def recorder(client: Any, answers: list[Any]) -> Callable[..., None]:
    """``call(operation, **parameters)``: the client's answer, or its error's, appended to ``answers``
    without the metadata that differs between runs."""

    def call(operation: str, **parameters: Any) -> None:
        try:
            response = getattr(client, operation)(**parameters)
        except ClientError as error:
            response = error.response
        response.pop("ResponseMetadata", None)
        answers.append(response)

    return call


def exercise(aws: EmbeddedAws) -> list[Any]:
    """Every item operation the product makes, successes and failures, as botocore returned them."""
    client = aws.dynamodb
    answers: list[Any] = []
    call = recorder(client, answers)

    call("put_item", TableName=TENANCY_TABLE, Item={**KEY, "doc": {"B": b"\x00\xff"}, "n": {"N": "1"}})
    call("put_item", TableName=TENANCY_TABLE, Item=KEY, ConditionExpression="attribute_not_exists(pk)")
    call(
        "update_item",
        TableName=TENANCY_TABLE,
        Key=KEY,
        UpdateExpression="ADD n :one SET tags = :tags",
        ExpressionAttributeValues={":one": {"N": "1"}, ":tags": {"SS": ["b", "a"]}},
        ReturnValues="ALL_NEW",
    )
    call(
        "update_item",
        TableName=TENANCY_TABLE,
        Key=KEY,
        UpdateExpression="SET n = :n",
        ConditionExpression="n < :limit",
        ExpressionAttributeValues={":n": {"N": "9"}, ":limit": {"N": "0"}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    call("update_item", TableName=TENANCY_TABLE, Key=KEY, UpdateExpression="SET = :broken")
    call("get_item", TableName=TENANCY_TABLE, Key=KEY)
    call("get_item", TableName=TENANCY_TABLE, Key={"pk": {"S": "nobody"}, "sk": {"S": "meta"}})
    call(
        "batch_write_item",
        RequestItems={
            TENANCY_TABLE: [
                {"PutRequest": {"Item": {"pk": {"S": "company#alpha"}, "sk": {"S": f"env#{n}"}}}}
                for n in range(3)
            ]
        },
    )
    call(
        "query",
        TableName=TENANCY_TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :env)",
        ExpressionAttributeValues={":pk": {"S": "company#alpha"}, ":env": {"S": "env#"}},
        Limit=2,
    )
    call("batch_get_item", RequestItems={TENANCY_TABLE: {"Keys": [KEY]}})
    call(
        "transact_write_items",
        TransactItems=[
            {
                "Put": {
                    "TableName": TENANCY_TABLE,
                    "Item": {"pk": {"S": "company#bravo"}, "sk": {"S": "meta"}},
                }
            },
            {
                "ConditionCheck": {
                    "TableName": TENANCY_TABLE,
                    "Key": KEY,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ],
    )
    call("transact_get_items", TransactItems=[{"Get": {"TableName": TENANCY_TABLE, "Key": KEY}}])
    call("delete_item", TableName=TENANCY_TABLE, Key=KEY, ReturnValues="ALL_OLD")
    call("scan", TableName=TENANCY_TABLE)
    call("put_item", TableName="no-such-table", Item=KEY)
    return answers


def test_the_direct_path_answers_as_moto_s_http_path_does(monkeypatch: pytest.MonkeyPatch) -> None:
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        direct = exercise(aws)
        direct_counts = dict(aws.requests.counts)
    monkeypatch.setattr(embedded, "direct_dynamodb", contextlib.nullcontext)
    monkeypatch.setattr(embedded, "cached_expression_parsing", contextlib.nullcontext)
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        through_http = exercise(aws)
        http_counts = dict(aws.requests.counts)
    assert direct == through_http
    assert direct_counts == http_counts
    # the failures are there, as AWS answers them
    codes = [answer.get("Error", {}).get("Code") for answer in direct]
    assert codes.count("ConditionalCheckFailedException") == 2
    assert "ValidationException" in codes
    assert "TransactionCanceledException" in codes
    assert "ResourceNotFoundException" in codes
    assert direct[3]["Item"]["n"] == {"N": "2"}  # the item that failed the condition
    assert direct[5]["Item"]["doc"] == {"B": b"\x00\xff"}


def test_each_request_is_applied_once_and_counted_once() -> None:
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        for _ in range(3):
            aws.dynamodb.update_item(
                TableName=TENANCY_TABLE,
                Key=KEY,
                UpdateExpression="ADD n :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        assert aws.stored_item(TENANCY_TABLE, KEY) == {**KEY, "n": {"N": "3"}}
        assert aws.requests.total("dynamodb", ("UpdateItem",)) == 3


def test_update_expressions_of_the_same_shape_are_not_mixed() -> None:
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        for attribute, value in (("a", "1"), ("b", "2"), ("a", "3")):
            aws.dynamodb.update_item(
                TableName=TENANCY_TABLE,
                Key=KEY,
                UpdateExpression=f"SET {attribute} = :v",
                ExpressionAttributeValues={":v": {"N": value}},
            )
        assert aws.stored_item(TENANCY_TABLE, KEY) == {**KEY, "a": {"N": "3"}, "b": {"N": "2"}}


def test_a_remembered_condition_is_decided_on_each_request_s_values_and_item() -> None:
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        condition = "attribute_not_exists(ev) OR size(ev) <= :most"

        def add(events: list[str], most: int) -> None:
            aws.dynamodb.update_item(
                TableName=ACTIVITY_TABLE,
                Key={"pk": {"S": "hour"}, "sk": {"S": "agent"}},
                UpdateExpression="ADD ev :events",
                ConditionExpression=condition,
                ExpressionAttributeValues={":events": {"SS": events}, ":most": {"N": str(most)}},
            )

        add(["a", "b"], 0)  # no set yet: allowed
        add(["c"], 2)  # two stored, at most two: allowed
        with pytest.raises(ClientError) as failure:
            add(["d"], 2)  # three stored
        assert failure.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
        add(["d"], 3)
        # the same shape on another attribute is its own condition
        with pytest.raises(ClientError) as failure:
            aws.dynamodb.put_item(
                TableName=ACTIVITY_TABLE,
                Item={"pk": {"S": "hour"}, "sk": {"S": "agent"}},
                ConditionExpression="attribute_not_exists(sk)",
            )
        assert failure.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
        aws.dynamodb.put_item(
            TableName=ACTIVITY_TABLE,
            Item={"pk": {"S": "hour"}, "sk": {"S": "agent"}},
            ConditionExpression="attribute_not_exists(ev2)",
        )


def test_an_invalid_expression_fails_every_time() -> None:
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        for _ in range(2):
            with pytest.raises(ClientError) as failure:
                aws.dynamodb.update_item(
                    TableName=TENANCY_TABLE,
                    Key=KEY,
                    UpdateExpression="SET a = = :v",
                    ExpressionAttributeValues={":v": {"S": "x"}},
                )
            assert failure.value.response["Error"]["Code"] == "ValidationException"


def exercise_update_expressions(aws: EmbeddedAws) -> list[Any]:
    """Update expressions of every clause and function moto validates (names, nested paths, if_not_exists,
    list_append, arithmetic, REMOVE by index, DELETE from a set) with each ReturnValues, the validation
    failures moto raises from its walkers, a cancelled transaction that returns the failing item, and a
    query read page by page: each answer as botocore returned it."""
    client = aws.dynamodb
    answers: list[Any] = []
    call = recorder(client, answers)

    def update(expression: str, returns: str = "ALL_NEW", **parameters: Any) -> None:
        call(
            "update_item",
            TableName=TENANCY_TABLE,
            Key=KEY,
            UpdateExpression=expression,
            ReturnValues=returns,
            **parameters,
        )

    values = {":one": {"N": "1"}, ":zero": {"N": "0"}, ":list": {"L": [{"S": "x"}, {"N": "2"}]}}
    update(
        "SET #c = if_not_exists(#c, :zero) + :one",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":one": values[":one"], ":zero": values[":zero"]},
    )
    update(
        "SET #c = #c + :one, #l = list_append(if_not_exists(#l, :list), :list)",
        "UPDATED_NEW",
        ExpressionAttributeNames={"#c": "count", "#l": "log"},
        ExpressionAttributeValues={":one": values[":one"], ":list": values[":list"]},
    )
    update(
        "SET m = :m", "UPDATED_OLD", ExpressionAttributeValues={":m": {"M": {"in": {"M": {"x": {"S": "y"}}}}}}
    )
    update(
        "SET m.#in.z = :v, m.#in.x = :w",
        "ALL_OLD",
        ExpressionAttributeNames={"#in": "in"},
        ExpressionAttributeValues={":v": {"N": "5"}, ":w": {"S": "w"}},
    )
    update("REMOVE #l[0], m.#in.x", ExpressionAttributeNames={"#in": "in", "#l": "log"})
    update("ADD tags :t", ExpressionAttributeValues={":t": {"SS": ["a", "b", "c"]}})
    update("DELETE tags :t", "UPDATED_NEW", ExpressionAttributeValues={":t": {"SS": ["b"]}})
    update(
        "SET #c = #c - :one",
        "NONE",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":one": values[":one"]},
    )
    # validation failures raised by moto's walkers
    update("SET pk = :v", ExpressionAttributeValues={":v": {"S": "other"}})  # a key attribute
    update("SET a = :v", ExpressionAttributeValues={":w": {"S": "x"}})  # an undefined value
    update("SET a = :v, a = :w", ExpressionAttributeValues={":v": {"S": "x"}, ":w": {"S": "y"}})
    update(
        "SET m.#in = m.#in + :one",
        ExpressionAttributeNames={"#in": "in"},
        ExpressionAttributeValues={":one": values[":one"]},
    )  # a map plus a number
    update("SET nothere.x = :one", ExpressionAttributeValues={":one": values[":one"]})
    update("ADD n :one SET n = :one", ExpressionAttributeValues={":one": values[":one"]})
    call(
        "update_item",
        TableName=TENANCY_TABLE,
        Key=KEY,
        UpdateExpression="SET #c = :zero",
        ConditionExpression="#c > :one",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":one": {"N": "100"}, ":zero": values[":zero"]},
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    call(
        "transact_write_items",
        TransactItems=[
            {
                "Update": {
                    "TableName": TENANCY_TABLE,
                    "Key": {"pk": {"S": "company#bravo"}, "sk": {"S": "meta"}},
                    "UpdateExpression": "SET v = :one",
                    "ExpressionAttributeValues": {":one": values[":one"]},
                }
            },
            {
                "Update": {
                    "TableName": TENANCY_TABLE,
                    "Key": KEY,
                    "UpdateExpression": "SET #c = :zero",
                    "ConditionExpression": "attribute_not_exists(#c)",
                    "ExpressionAttributeNames": {"#c": "count"},
                    "ExpressionAttributeValues": {":zero": values[":zero"]},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ],
    )
    call("get_item", TableName=TENANCY_TABLE, Key={"pk": {"S": "company#bravo"}, "sk": {"S": "meta"}})
    for number in range(7):
        call(
            "put_item",
            TableName=TENANCY_TABLE,
            Item={"pk": {"S": "company#alpha"}, "sk": {"S": f"env#{number}"}, "b": {"B": bytes([number])}},
        )
    page: dict[str, Any] = {}
    while True:
        call(
            "query",
            TableName=TENANCY_TABLE,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :env)",
            ExpressionAttributeValues={":pk": {"S": "company#alpha"}, ":env": {"S": "env#"}},
            Limit=3,
            **page,
        )
        if "LastEvaluatedKey" not in answers[-1]:
            break
        page = {"ExclusiveStartKey": answers[-1]["LastEvaluatedKey"]}
    call("get_item", TableName=TENANCY_TABLE, Key=KEY)
    return answers


def test_update_expressions_answer_as_moto_does_without_any_speed_up(monkeypatch: pytest.MonkeyPatch) -> None:
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        fast = exercise_update_expressions(aws)
    for speed_up in (
        "direct_dynamodb",
        "cached_expression_parsing",
        "remembered_node_kinds",
        "lean_update_validation",
        "planned_tree_copies",
        "planned_tree_copies",
        "remembered_condition_shapes",
        "remembered_text_checks",
        "constant_user_agent",
    ):
        monkeypatch.setattr(embedded, speed_up, contextlib.nullcontext)
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        plain = exercise_update_expressions(aws)
    assert fast == plain
    codes = [answer.get("Error", {}).get("Code") for answer in fast]
    assert codes.count("ValidationException") == 6
    assert "ConditionalCheckFailedException" in codes
    cancelled = fast[codes.index("TransactionCanceledException")]
    assert cancelled["CancellationReasons"][1]["Item"]["count"] == {"N": "1"}
    assert fast[0]["Attributes"]["count"] == {"N": "1"}
    pages = [answer for answer in fast if "Count" in answer]
    assert [page["Count"] for page in pages] == [3, 3, 1]
    assert fast[-1]["Item"]["tags"] == {"SS": ["a", "c"]}


def test_the_syntax_tree_copy_is_moto_s_deep_copy() -> None:
    import copy

    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    from connect_metering.local.embedded_validation import copy_tree
    from tests.syntax_trees import assert_links_point_into, tree_shape

    for expression in (
        "ADD n :one SET tags = :tags",
        "SET #a = if_not_exists(#a, :z) + :one, b = list_append(b, :l) REMOVE c[1], d.e DELETE s :s",
    ):
        tree = UpdateExpressionParser.make(expression)
        copied = copy_tree(tree)
        assert tree_shape(copied) == tree_shape(copy.deepcopy(tree))
        assert copied is not tree
        assert_links_point_into(copied)
