"""The console's items in the tenancy table, and its read of the metering ledger.

    tenancy table  pk = CONSOLE#SESSION#<sha256 of session id>  sk = #        a signed-in session
    tenancy table  pk = CONSOLE#SIGNIN#<sha256 of user name>    sk = #        failed sign-ins
    tenancy table  pk = CONSOLE#SIGNIN#<sha256 of user name>    sk = REVOKED  sessions before this end
    ledger table   pk = SUB#<subscription key>   sk = <dimension>#<hour ISO>   (the meter's, read only)

Session items expire through the table's TTL as well, but a session is refused from its expiry on
whatever the TTL does (``ConsoleService.session`` checks the signed expiry; this store the item's
company). Only digests of session ids and user names are keys: the table never holds a cookie's secret.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connect_metering.adapters.tenancy_keys import METER_SK, TTL_ATTRIBUTE, company_pk
from connect_metering.adapters.tenancy_store import DynamoTenancyStore
from connect_metering.adapters.tenancy_table import TenancyTable, epoch_seconds, item, key, optional_instant
from connect_metering.domain.console import (
    NO_FAILURES,
    SESSION_LIFETIME,
    ConsoleSession,
    FailedSignIns,
    sign_in_name,
)
from connect_metering.domain.instants import MS_PER_HOUR, iso, iso_ms
from connect_metering.domain.metering import CompanyMeterState, MeteringRecord
from connect_metering.domain.registration import digest

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ITEM_SK = "#"
REVOKED_SK = "REVOKED"


def session_pk(session_id: str) -> str:
    return f"CONSOLE#SESSION#{digest(session_id)}"


def sign_in_pk(username: str) -> str:
    return f"CONSOLE#SIGNIN#{digest(username)}"


class DynamoConsoleStateStore:
    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = TenancyTable(table_name, client)

    def save_session(self, session: ConsoleSession) -> None:
        self._table.client.put_item(
            TableName=self._table.name,
            Item=item(
                {
                    "pk": session_pk(session.session_id),
                    "sk": ITEM_SK,
                    "company_alias": session.company_alias,
                    "expires": iso(session.expires),
                    TTL_ATTRIBUTE: epoch_seconds(session.expires),
                }
            ),
        )

    def session_exists(self, session: ConsoleSession) -> bool:
        stored = self._table.get(session_pk(session.session_id), ITEM_SK)
        if stored is None or stored.get("company_alias") != session.company_alias:
            return False
        revoked = self._table.get(sign_in_pk(sign_in_name(session.company_alias, session.email)), REVOKED_SK)
        revoked_at = optional_instant(revoked.get("at")) if revoked else None
        return revoked_at is None or session.started > revoked_at

    def revoke_sessions(self, username: str, at: datetime) -> None:
        """Every session of this administrator begun up to ``at`` ends (a removed administrator)."""
        self._table.client.put_item(
            TableName=self._table.name,
            Item=item(
                {
                    "pk": sign_in_pk(username),
                    "sk": REVOKED_SK,
                    "at": iso(at),
                    TTL_ATTRIBUTE: epoch_seconds(at + SESSION_LIFETIME) + 86_400,
                }
            ),
        )

    def delete_session(self, session: ConsoleSession) -> None:
        self._table.client.delete_item(
            TableName=self._table.name, Key=key(session_pk(session.session_id), ITEM_SK)
        )

    def failed_sign_ins(self, username: str) -> FailedSignIns:
        stored = self._table.get(sign_in_pk(username), ITEM_SK)
        if stored is None:
            return NO_FAILURES
        return FailedSignIns(int(stored.get("count", 0)), optional_instant(stored.get("last_failure")))

    def record_failed_sign_in(self, username: str, failures: FailedSignIns) -> None:
        values: dict[str, Any] = {"pk": sign_in_pk(username), "sk": ITEM_SK, "count": failures.count}
        if failures.last_failure is not None:
            values["last_failure"] = iso(failures.last_failure)
            values[TTL_ATTRIBUTE] = epoch_seconds(failures.last_failure) + 86_400
        self._table.client.put_item(TableName=self._table.name, Item=item(values))

    def clear_failed_sign_ins(self, username: str) -> None:
        self._table.client.delete_item(TableName=self._table.name, Key=key(sign_in_pk(username), ITEM_SK))


class DynamoUsageReader:
    """The company's ledger records and the meter's progress, read for the usage page.

    The ledger's sort key is ``<dimension>#<hour ISO>``, so the hours asked for are one key range per
    dimension billed: only the records of the months shown are read, never a subscription's whole history.
    """

    def __init__(
        self,
        *,
        tenancy_table: str,
        ledger_table: str,
        client: DynamoDBClient,
        dimensions: tuple[str, ...] = ("agent_minutes", "overage_agents"),
    ) -> None:
        self._tenancy = DynamoTenancyStore(tenancy_table, client)
        self._table = TenancyTable(tenancy_table, client)
        self._ledger = ledger_table
        self._client = client
        self._dimensions = dimensions

    def records(self, company_alias: str, first_hour_ms: int, end_hour_ms: int) -> list[MeteringRecord]:
        records: list[MeteringRecord] = []
        if end_hour_ms <= first_hour_ms:
            return records
        for subscription in self._tenancy.list_subscriptions(company_alias):
            for dimension in self._dimensions:
                records += self._subscription_records(subscription.key, dimension, first_hour_ms, end_hour_ms)
        return records

    def _subscription_records(
        self, subscription_key: str, dimension: str, first_ms: int, end_ms: int
    ) -> list[MeteringRecord]:
        paginator = self._client.get_paginator("query")
        records: list[MeteringRecord] = []
        # BETWEEN is inclusive: the last hour before ``end_ms`` is its upper bound (hours are whole).
        last_ms = (end_ms - 1) // MS_PER_HOUR * MS_PER_HOUR
        for page in paginator.paginate(
            TableName=self._ledger,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": {"S": f"SUB#{subscription_key}"},
                ":first": {"S": f"{dimension}#{iso_ms(first_ms)}"},
                ":last": {"S": f"{dimension}#{iso_ms(last_ms)}"},
            },
        ):
            for stored in page["Items"]:
                record = MeteringRecord.from_json(json.loads(stored["record"]["S"]))
                if first_ms <= record.hour_ms < end_ms:
                    records.append(record)
        return records

    def metered_through(self, company_alias: str) -> dict[str, int | None]:
        stored = self._table.get(company_pk(company_alias), METER_SK)
        state = CompanyMeterState.from_json(str(stored["state"]) if stored else None)
        return {key: progress.through_ms for key, progress in state.subscriptions.items()}
