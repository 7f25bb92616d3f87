"""TenancyStore in MeteringStack: on-demand, PITR, deletion protection, KMS CMK, RETAIN, sparse GSI."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.template_helpers import resource_with_prefix

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_table_is_on_demand_with_pitr_and_deletion_protection(metering: Template) -> None:
    metering.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "DeletionProtectionEnabled": True,
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        },
    )


def test_table_and_its_key_are_retained(metering_json: dict[str, Any]) -> None:
    _, table = resource_with_prefix(metering_json, "AWS::DynamoDB::Table", "Tenancy")
    _, key = resource_with_prefix(metering_json, "AWS::KMS::Key", "Tenancy")
    for resource in (table, key):
        assert resource["DeletionPolicy"] == "Retain"
        assert resource["UpdateReplacePolicy"] == "Retain"


def test_table_is_encrypted_with_a_rotating_customer_managed_key(metering_json: dict[str, Any]) -> None:
    key_id, key = resource_with_prefix(metering_json, "AWS::KMS::Key", "Tenancy")
    _, table = resource_with_prefix(metering_json, "AWS::DynamoDB::Table", "Tenancy")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert table["Properties"]["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
    }


def test_sparse_active_subscriptions_index(metering: Template) -> None:
    metering.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "AttributeDefinitions": Match.array_with(
                [
                    {"AttributeName": "meter_shard", "AttributeType": "S"},
                    {"AttributeName": "started", "AttributeType": "S"},
                ]
            ),
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "active-subscriptions",
                    "KeySchema": [
                        {"AttributeName": "meter_shard", "KeyType": "HASH"},
                        {"AttributeName": "started", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        },
    )
