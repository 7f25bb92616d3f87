"""The embedded runtime's cheaper DynamoDB path (local/embedded_fast.py) answers exactly as moto's HTTP
path does, applies each request once, counts it once, and its parsing caches never mix expressions."""

from __future__ import annotations

import contextlib
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


def exercise(aws: EmbeddedAws) -> list[Any]:
    """Every item operation the product makes, successes and failures, as botocore returned them."""
    client = aws.dynamodb
    answers: list[Any] = []

    def call(operation: str, **parameters: Any) -> None:
        try:
            response = getattr(client, operation)(**parameters)
        except ClientError as error:
            response = error.response
        response.pop("ResponseMetadata", None)
        answers.append(response)

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
