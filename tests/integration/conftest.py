"""Embedded AWS for handler and adapter tests: moto, one fresh account per test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.adapters.tenancy_table import create_tenancy_table

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


@pytest.fixture
def ingest_tables(
    monkeypatch: pytest.MonkeyPatch, dynamodb: DynamoDBClient, tenancy: DynamoTenancyStore
) -> None:
    """The ingest Lambda's tables on moto and its settings aimed at them, with a fresh service."""
    from connect_metering.adapters.activity_table import create_activity_table
    from connect_metering.adapters.quarantine_table import create_quarantine_table
    from connect_metering.settings import load_settings
    from functions.ingest import handler

    create_activity_table(dynamodb, "activity-test")
    create_quarantine_table(dynamodb, "quarantine-test")
    monkeypatch.setenv("TENANCY_TABLE", TENANCY_TABLE)
    monkeypatch.setenv("ACTIVITY_TABLE", "activity-test")
    monkeypatch.setenv("QUARANTINE_TABLE", "quarantine-test")
    load_settings.cache_clear()
    handler.ingest_service.cache_clear()


@pytest.fixture
def serializable_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each request (a TransactWriteItems included) atomically; moto's in-memory backend
    does not under threads (a write can change a dict another request is iterating). One lock around
    every embedded request restores the service's guarantee, so concurrency tests exercise our
    conditions, not moto's thread safety."""
    lock = threading.Lock()
    original = BotocoreStubber.__call__

    def atomic(self: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", atomic)
