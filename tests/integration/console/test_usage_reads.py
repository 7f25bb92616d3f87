"""The usage page reads only the months it shows: the ledger query is bounded by key, so a record of an
older month is never read (DynamoDB's ScannedCount, the items a query reads, proves it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from connect_metering.adapters.console_store import DynamoUsageReader
from connect_metering.domain.console_usage import month_of, previous_month
from connect_metering.domain.instants import to_ms
from tests.integration.console.conftest import LEDGER, T0, TENANCY, ConsoleWorld
from tests.integration.console.test_console_handler import _ledger_record
from tests.integration.console.test_tenant_isolation import subscribe

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:No application metrics")]


def test_only_the_shown_months_are_read(console: ConsoleWorld) -> None:
    subscribe(console, "acme", "l-acme")
    this_month = month_of(T0)
    last_month = previous_month(this_month)
    shown = {1: 11, 24 * 25: 22}  # an hour ago (November), 25 days ago (October)
    hidden = {24 * 60: 900, 24 * 400: 901}  # September, and the year before
    for hours_ago, minutes in {**shown, **hidden}.items():
        _ledger_record(console, "acme", "license#l-acme", hours_ago, {"acme-prod": minutes})
    assert to_ms(T0 - timedelta(hours=24 * 25)) >= last_month.first_ms  # the fixture's months, as meant

    tables: list[str] = []
    read: list[int] = []

    def note_table(params: dict[str, Any], **_: Any) -> None:
        tables.append(str(params["TableName"]))

    def count_read(parsed: dict[str, Any], **_: Any) -> None:
        read.append(int(parsed.get("ScannedCount", 0)))

    console.dynamodb.meta.events.register("before-parameter-build.dynamodb.Query", note_table)
    console.dynamodb.meta.events.register("after-call.dynamodb.Query", count_read)
    reader = DynamoUsageReader(tenancy_table=TENANCY, ledger_table=LEDGER, client=console.dynamodb)
    records = reader.records("acme", last_month.first_ms, this_month.end_ms)

    assert sorted(record.quantity for record in records) == [11, 22]
    ledger_reads = [count for table, count in zip(tables, read, strict=True) if table == LEDGER]
    assert ledger_reads, "no ledger query was seen"
    assert sum(ledger_reads) == len(shown), "the ledger query read items outside the months shown"


def test_the_range_is_whole_hours_end_exclusive(console: ConsoleWorld) -> None:
    subscribe(console, "acme", "l-acme")
    for hours_ago in (0, 1, 2, 3):
        _ledger_record(console, "acme", "license#l-acme", hours_ago, {"acme-prod": 10 + hours_ago})
    reader = DynamoUsageReader(tenancy_table=TENANCY, ledger_table=LEDGER, client=console.dynamodb)
    records = reader.records("acme", to_ms(T0 - timedelta(hours=2)), to_ms(T0))
    assert sorted(record.quantity for record in records) == [11, 12]
    assert reader.records("acme", to_ms(T0), to_ms(T0)) == []
