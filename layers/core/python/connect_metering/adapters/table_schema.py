"""Creating the product's tables outside AWS (local runtime and tests): every table has string keys
``pk``/``sk``, on-demand billing, at most one index and optionally a TTL, as the CDK stack defines them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str
    sort_key_type: Literal["S", "N"] = "S"
    projection: Literal["ALL", "KEYS_ONLY"] = "ALL"


def create_table(
    client: DynamoDBClient, table_name: str, *, index: Index | None = None, ttl_attribute: str | None = None
) -> None:
    attributes: dict[str, Literal["S", "N"]] = {"pk": "S", "sk": "S"}
    extra: dict[str, Any] = {}
    if index is not None:
        attributes |= {index.partition_key: "S", index.sort_key: index.sort_key_type}
        extra["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": index.projection},
            }
        ]
    client.create_table(
        TableName=table_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": kind} for name, kind in attributes.items()
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        **extra,
    )
    if ttl_attribute is not None:
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )
