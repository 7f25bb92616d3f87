"""The audit trail's one way to keep a change: logged, then stored; a store that fails never fails the
change (it has been made by then) and is logged as not stored."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from connect_metering.adapters.audit_table import DynamoAuditLog
from connect_metering.domain.audit import AuditEntry

ENTRY = AuditEntry(
    company_alias="acme",
    at=datetime(2026, 11, 2, 9, tzinfo=UTC),
    request_id="req-1",
    caller="console:sub-1",
    route="POST /console/environments",
    target="env:main",
    outcome="environment_added",
    status=303,
)


class Client:
    def __init__(self, failure: Exception | None = None) -> None:
        self.items: list[dict[str, Any]] = []
        self.failure = failure

    def put_item(self, *, TableName: str, Item: dict[str, Any]) -> None:
        if self.failure is not None:
            raise self.failure
        self.items.append(Item)


def test_a_change_is_logged_then_stored(caplog: pytest.LogCaptureFixture) -> None:
    client = Client()
    with caplog.at_level(logging.INFO, logger="audit-test"):
        DynamoAuditLog("tenancy", client).keep(ENTRY, logging.getLogger("audit-test"), "console change")  # type: ignore[arg-type]
    assert [record.getMessage() for record in caplog.records] == ["console change"]
    assert client.items[0]["pk"] == {"S": "AUDIT#acme"}
    assert client.items[0]["outcome"] == {"S": "environment_added"}


def test_a_store_that_fails_is_logged_and_never_fails_the_change(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(failure=RuntimeError("table unavailable"))
    with caplog.at_level(logging.INFO, logger="audit-test"):
        DynamoAuditLog("tenancy", client).keep(ENTRY, logging.getLogger("audit-test"), "admin change")  # type: ignore[arg-type]
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("INFO", "admin change"),
        ("ERROR", "audit item not stored"),
    ]
    assert caplog.records[1].error == "RuntimeError"  # type: ignore[attr-defined]
