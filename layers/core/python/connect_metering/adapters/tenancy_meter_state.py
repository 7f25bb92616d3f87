"""The meter's items in a company's partition of the tenancy table:

    COMPANY#<alias>   #METER     the metering worker's state (versioned JSON)
    COMPANY#<alias>   PENDING#…  a ledger record not yet settled with AWS Marketplace
    COMPANY#<alias>   ACT#<env>  how many agent events ingest stored for the environment

``#METER`` and ``PENDING#`` are written by the meter's unit of work (adapters/meter_store.py), in the
same transaction as the ledger; ``ACT#`` by ingest, here. They are read with the company's tenancy items
in one query (``DynamoTenancyStore.load_company``), decoded by ``meter_items``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connect_metering.adapters.tenancy_keys import (
    ACTIVITY_PREFIX,
    METER_SK,
    PENDING_PREFIX,
    SORT_KEY,
    activity_sk,
    company_pk,
)
from connect_metering.adapters.tenancy_table import TenancyTable, item, key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class MeterItems:
    """What a company's partition says for the meter: its state and version (0: never committed), the
    ingest counters per environment, and the pending ledger records (as stored JSON, oldest first)."""

    state: str | None = None
    version: int = 0
    activity_counts: dict[str, int] = field(default_factory=dict)
    pending_records: list[str] = field(default_factory=list)


def meter_items(partition: Iterable[Mapping[str, Any]]) -> MeterItems:
    """The meter's items among a company partition's (plain) items, in sort-key order."""
    state: str | None = None
    version = 0
    counts: dict[str, int] = {}
    pending: list[str] = []
    for stored in partition:
        sort_key = str(stored[SORT_KEY])
        if sort_key == METER_SK:
            state, version = str(stored["state"]), int(stored["version"])
        elif sort_key.startswith(ACTIVITY_PREFIX):
            counts[str(stored["environment"])] = int(stored["events"])
        elif sort_key.startswith(PENDING_PREFIX):
            pending.append(str(stored["record"]))
    return MeterItems(state=state, version=version, activity_counts=counts, pending_records=pending)


class DynamoMeterStateStore:
    """Ingest's side of the meter state: the per-environment event counters."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = TenancyTable(table_name, client)

    def count_activity(self, alias: str, environment: str, events: int) -> None:
        """Ingest's signal to the meter: ``events`` more were stored (or retried) for the environment."""
        self._table.client.update_item(
            TableName=self._table.name,
            Key=key(company_pk(alias), activity_sk(environment)),
            UpdateExpression="ADD events :events SET environment = :environment",
            ExpressionAttributeValues=item({":events": events, ":environment": environment}),
        )
