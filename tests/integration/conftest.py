"""Embedded AWS for handler and adapter tests: moto, one fresh account per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from connect_metering.adapters.tenancy_table import DynamoTenancyStore, create_tenancy_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TENANCY_TABLE = "tenancy-test"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None) -> DynamoDBClient:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def tenancy(dynamodb: DynamoDBClient) -> DynamoTenancyStore:
    create_tenancy_table(dynamodb, TENANCY_TABLE)
    return DynamoTenancyStore(TENANCY_TABLE, dynamodb)
