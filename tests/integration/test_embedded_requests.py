"""The product's own DynamoDB requests answer on embedded AWS with every speed-up exactly as on moto
with none (local/embedded_fast.py, embedded_expressions.py, embedded_validation.py): the same items,
the same conditional-check failures with the same old item, the same ReturnValues, the same validation
errors, also when a remembered expression meets other names or values."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connect_metering.local import embedded
from connect_metering.local.embedded import ACTIVITY_TABLE, TENANCY_TABLE, EmbeddedAws
from tests.conftest import environment_restored
from tests.integration.test_embedded_fast import recorder

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 2, tzinfo=UTC)
SPEED_UPS = (
    "direct_dynamodb",
    "cached_expression_parsing",
    "remembered_condition_shapes",
    "remembered_node_kinds",
    "lean_update_validation",
    "planned_tree_copies",
    "remembered_text_checks",
    "constant_user_agent",
    "indexed_reserved_words",
    "cheaper_request_ids",
)
ADD_EVENTS = "ADD ev :events SET expires_at = :expires"
ROOM_LEFT = "attribute_not_exists(ev) OR size(ev) <= :most"


def exercise(aws: EmbeddedAws) -> list[Any]:
    """Ingest's agent-hour writes up to a full hour (a conditional failure returning the old set), its
    counters, and one expression text met with other names and values: each answer as botocore gave it."""
    answers: list[Any] = []
    call = recorder(aws.dynamodb, answers)
    hour_key = {"pk": {"S": "arn:instance#2026-11-02"}, "sk": {"S": "09#E#agent-1"}}
    for batch, most in ((["a", "b"], 3), (["c"], 2), (["d", "e"], 1), (["d"], 3), (["f"], 0)):
        call(
            "update_item",
            TableName=ACTIVITY_TABLE,
            Key=hour_key,
            UpdateExpression=ADD_EVENTS,
            ConditionExpression=ROOM_LEFT,
            ExpressionAttributeValues={
                ":events": {"SS": batch},
                ":most": {"N": str(most)},
                ":expires": {"N": "1790000000"},
            },
            ReturnValues="ALL_OLD",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    for events in (3, 4):
        call(
            "update_item",
            TableName=TENANCY_TABLE,
            Key={"pk": {"S": "company#alpha"}, "sk": {"S": "activity#prod"}},
            UpdateExpression="ADD events :events SET environment = :environment",
            ExpressionAttributeValues={":events": {"N": str(events)}, ":environment": {"S": "prod"}},
            ReturnValues="UPDATED_NEW",
        )
    for names in (
        {"#a": "x", "#b": "y"},
        {"#a": "x", "#b": "x"},
        {"#a": "pk", "#b": "q"},
        {"#a": "z", "#b": "r"},
    ):
        call(  # the same text: passes, overlaps, names a key attribute, passes again
            "update_item",
            TableName=TENANCY_TABLE,
            Key={"pk": {"S": "company#alpha"}, "sk": {"S": "meta"}},
            UpdateExpression="SET #a = :v, #b = :w",
            ConditionExpression="attribute_not_exists(#b) OR #b <> :w",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":v": {"S": "1"}, ":w": {"S": "2"}},
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    try:  # a remembered condition with one of its values missing: moto raises, unanswered
        call(
            "update_item",
            TableName=ACTIVITY_TABLE,
            Key=hour_key,
            UpdateExpression=ADD_EVENTS,
            ConditionExpression=ROOM_LEFT,
            ExpressionAttributeValues={":events": {"SS": ["g"]}, ":expires": {"N": "1"}},
        )
    except KeyError as error:
        answers.append({"raised": repr(error)})
    call(
        "query",
        TableName=ACTIVITY_TABLE,
        KeyConditionExpression="pk = :pk",
        FilterExpression="size(ev) > :few",
        ExpressionAttributeValues={":pk": hour_key["pk"], ":few": {"N": "1"}},
    )
    call("get_item", TableName=ACTIVITY_TABLE, Key=hour_key)
    return answers


def test_the_product_s_requests_answer_as_on_moto_without_speed_ups(monkeypatch: pytest.MonkeyPatch) -> None:
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        fast = exercise(aws)
    for speed_up in SPEED_UPS:
        monkeypatch.setattr(embedded, speed_up, contextlib.nullcontext)
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        plain = exercise(aws)
    assert fast == plain
    codes = [answer.get("Error", {}).get("Code") for answer in fast]
    assert codes[:5] == [
        None,
        None,
        "ConditionalCheckFailedException",
        None,
        "ConditionalCheckFailedException",
    ]
    assert fast[2]["Item"]["ev"] == {"SS": ["a", "b", "c"]}  # the set that left no room
    assert fast[3]["Attributes"]["ev"] == {"SS": ["a", "b", "c"]}  # ALL_OLD before adding "d"
    assert fast[6]["Attributes"] == {"events": {"N": "7"}}  # UPDATED_NEW: the environment did not change
    assert codes[7:11] == [None, "ValidationException", "ValidationException", None]
    assert fast[11] == {"raised": "KeyError(':most')"}
    assert fast[-1]["Item"]["ev"] == {"SS": ["a", "b", "c", "d"]}


def test_request_ids_keep_moto_s_form_and_reserved_words_are_refused() -> None:
    with environment_restored(), EmbeddedAws(product_code="p", start=START) as aws:
        ids = {
            aws.dynamodb.get_item(TableName=TENANCY_TABLE, Key={"pk": {"S": "a"}, "sk": {"S": "b"}})[
                "ResponseMetadata"
            ]["RequestId"]
            for _ in range(3)
        }
        assert len(ids) == 3
        assert all(re.fullmatch("[A-Za-z0-9]{52}", found) for found in ids)
        with pytest.raises(ClientError) as refused:
            aws.dynamodb.update_item(
                TableName=TENANCY_TABLE,
                Key={"pk": {"S": "a"}, "sk": {"S": "b"}},
                UpdateExpression="SET size = :v",
                ExpressionAttributeValues={":v": {"S": "x"}},
            )
        assert "reserved keyword" in refused.value.response["Error"]["Message"]
