"""The metering worker's unit of work on DynamoDB: the write-ahead ledger, the per-company state and the
hourly checkpoints, written together.

    ledger table   pk = SUB#<subscription key>   sk = <dimension>#<hour ISO>      one record, forever
    tenancy table  pk = COMPANY#<alias>          sk = #METER                       state (versioned JSON)
    tenancy table  pk = COMPANY#<alias>          sk = PENDING#<hour>#<key>#<dim>   while a record is pending
    activity table pk = <instance>#<day>         sk = <HH>#C                       checkpoint at hour HH

``commit`` stores new records (each only if absent: a stored record is never rewritten, so every retry
sends the same record), their pending markers, the state that counts their minutes, and checkpoints, in
one TransactWriteItems whose condition on the state's version makes a second, concurrent run of the same
company fail instead of billing twice. ``settle`` stores outcomes after the call to Marketplace.

Checkpoints are stored in the activity table's layout and encoding (``encode_checkpoint`` there, beside
the ``decode_checkpoint`` its reads use): the worker hands over ``EnvironmentCheckpoint``s, never bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from connect_metering.adapters.activity_table import EXPIRES_AT, encode_checkpoint
from connect_metering.adapters.activity_table import expires_at as activity_expires_at
from connect_metering.adapters.activity_table import partition_key as activity_partition
from connect_metering.adapters.table_schema import create_table
from connect_metering.adapters.tenancy_keys import METER_SK, company_pk, pending_record_sk
from connect_metering.domain.activity import Checkpoint
from connect_metering.domain.instants import MS_PER_HOUR, iso_ms
from connect_metering.domain.metering import CompanyMeterState, MeterCommit, MeteringRecord, RecordStatus
from connect_metering.domain.usage import EnvironmentCheckpoint

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# DynamoDB allows 100 actions per transaction; one is always the state.
MAX_TRANSACTION_ITEMS = 100
BATCH_WRITE_ITEMS = 25
# DynamoDB's bound on a transaction's total size is 4 MB; the estimate (``_wire_bytes``) counts more than
# DynamoDB does, and the margin keeps a group clear of it.
TRANSACTION_BYTES = 3_500_000


class ConcurrentMeterRun(Exception):
    """Another run of the same company committed first; this one stops before sending anything."""


def ledger_key(record: MeteringRecord) -> dict[str, Any]:
    return {
        "pk": {"S": f"SUB#{record.subscription_key}"},
        "sk": {"S": f"{record.dimension}#{iso_ms(record.hour_ms)}"},
    }


def marker_key(record: MeteringRecord) -> dict[str, Any]:
    return {
        "pk": {"S": company_pk(record.company)},
        "sk": {"S": pending_record_sk(iso_ms(record.hour_ms), record.subscription_key, record.dimension)},
    }


class DynamoMeterStore:
    def __init__(
        self,
        *,
        tenancy_table: str,
        ledger_table: str,
        activity_table: str,
        client: DynamoDBClient,
        encode: Callable[[EnvironmentCheckpoint], bytes] = encode_checkpoint,
    ) -> None:
        """``encode``: the checkpoint codec's encoder (a store in memory may pass one that also
        remembers what it encoded, so that reading the document back needs no decoding)."""
        self._tenancy = tenancy_table
        self._ledger = ledger_table
        self._activity = activity_table
        self._client = client
        self._encode = encode

    def commit(
        self,
        company: str,
        *,
        version: int,
        state: CompanyMeterState,
        new_records: Sequence[MeteringRecord],
        settled: Sequence[MeteringRecord] = (),
        checkpoints: Sequence[Checkpoint] = (),
    ) -> int:
        """Write the records and outcomes atomically with the state that counts them: one transaction,
        so B(s, e) can never disagree with the stored records. Checkpoints ride along when they fit;
        otherwise they are written first (they are idempotent, and the state only points at them once
        they exist). Returns the new version; raises ConcurrentMeterRun on a version clash."""
        work = MeterCommit(company, version, state, new_records, settled, checkpoints)
        records = self._record_actions(work)
        if 1 + len(records) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{len(records) // 2} records in one commit: commit hour by hour")
        riding = [self._checkpoint(checkpoint) for checkpoint in checkpoints]
        if 1 + len(records) + len(riding) > MAX_TRANSACTION_ITEMS:
            puts = [(self._activity, {"PutRequest": {"Item": action["Put"]["Item"]}}) for action in riding]
            for first in range(0, len(puts), BATCH_WRITE_ITEMS):
                self._batch_write(puts[first : first + BATCH_WRITE_ITEMS])
            riding = []
        self._transact([self._state(company, version, state), *records, *riding])
        return version + 1

    def commit_together(self, commits: Sequence[MeterCommit]) -> list[int | Exception]:
        """Several companies' commits in as few transactions as they fit in (100 actions, 4 MB): each
        company's writes stay atomic with its state and conditioned on its version, and a transaction is
        all or nothing, so grouping changes the number of requests, never what is stored. A company
        whose condition fails gets ConcurrentMeterRun and the others are retried without it; one that
        fails otherwise, or does not fit a shared transaction, commits on its own (``commit``). Outcomes
        (the new version, or the error) are in the order of ``commits``."""
        outcomes: list[int | Exception] = [ValueError("not committed")] * len(commits)
        group: list[tuple[int, list[dict[str, Any]]]] = []
        size = 0
        for position, work in enumerate(commits):
            shareable = self._shareable_actions(work)
            if shareable is None:
                outcomes[position] = self._alone(work)
                continue
            actions, action_bytes = shareable
            if group and (
                sum(len(member) for _, member in group) + len(actions) > MAX_TRANSACTION_ITEMS
                or size + action_bytes > TRANSACTION_BYTES
                # a transaction may not write one item twice: a company's second run goes in the next
                or work.company in {commits[member].company for member, _ in group}
            ):
                self._transact_group(commits, group, outcomes)
                group, size = [], 0
            group.append((position, actions))
            size += action_bytes
        if group:
            self._transact_group(commits, group, outcomes)
        return outcomes

    def settle(self, records: Sequence[MeteringRecord]) -> None:
        """Store accepted outcomes: the ledger record with its status, and the pending marker removed.
        No state change (pending and accepted both count in B), so a batch write is enough."""
        requests: list[tuple[str, dict[str, Any]]] = []
        for record in records:
            if record.status is not RecordStatus.ACCEPTED:
                raise ValueError(f"settle: {record.key} is {record.status}; use commit for what changes B")
            requests.append((self._ledger, {"PutRequest": {"Item": self._ledger_item(record)}}))
            requests.append((self._tenancy, {"DeleteRequest": {"Key": marker_key(record)}}))
        for first in range(0, len(requests), BATCH_WRITE_ITEMS):
            self._batch_write(requests[first : first + BATCH_WRITE_ITEMS])

    def mark_in_flight(self, records: Sequence[MeteringRecord]) -> None:
        """Rewrite pending markers (a record's flags), a batch write: no count changes."""
        requests = [
            (self._tenancy, {"PutRequest": {"Item": self._marker_item(record)}}) for record in records
        ]
        for first in range(0, len(requests), BATCH_WRITE_ITEMS):
            self._batch_write(requests[first : first + BATCH_WRITE_ITEMS])

    def get_record(self, subscription_key: str, dimension: str, hour_ms: int) -> MeteringRecord | None:
        response = self._client.get_item(
            TableName=self._ledger,
            Key={"pk": {"S": f"SUB#{subscription_key}"}, "sk": {"S": f"{dimension}#{iso_ms(hour_ms)}"}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return MeteringRecord.from_json(json.loads(item["record"]["S"])) if item else None

    def records_of(self, subscription_key: str) -> list[MeteringRecord]:
        paginator = self._client.get_paginator("query")
        records: list[MeteringRecord] = []
        for page in paginator.paginate(
            TableName=self._ledger,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"SUB#{subscription_key}"}},
            ConsistentRead=True,
        ):
            records.extend(
                MeteringRecord.from_json(json.loads(item["record"]["S"])) for item in page["Items"]
            )
        return sorted(records, key=lambda record: (record.hour_ms, record.dimension))

    # Item shapes -----------------------------------------------------------------------------------

    def _state(self, company: str, version: int, state: CompanyMeterState) -> dict[str, Any]:
        condition = "attribute_not_exists(pk)" if version == 0 else "version = :version"
        put: dict[str, Any] = {
            "TableName": self._tenancy,
            "Item": {
                "pk": {"S": company_pk(company)},
                "sk": {"S": METER_SK},
                "state": {"S": state.to_json()},
                "version": {"N": str(version + 1)},
            },
            "ConditionExpression": condition,
        }
        if version:
            put["ExpressionAttributeValues"] = {":version": {"N": str(version)}}
        return {"Put": put}

    def _ledger_item(self, record: MeteringRecord) -> dict[str, Any]:
        item = {
            **ledger_key(record),
            "company": {"S": record.company},
            "status": {"S": record.status.value},
            "quantity": {"N": str(record.quantity)},
            "record": {"S": json.dumps(record.to_json(), separators=(",", ":"), sort_keys=True)},
        }
        if record.metering_record_id:
            item["metering_record_id"] = {"S": record.metering_record_id}
        return item

    def _new_record(self, record: MeteringRecord) -> list[dict[str, Any]]:
        return [
            {
                "Put": {
                    "TableName": self._ledger,
                    "Item": self._ledger_item(record),
                    # A stored record is never rewritten: retries send exactly what was stored.
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            },
            {"Put": {"TableName": self._tenancy, "Item": self._marker_item(record)}},
        ]

    def _marker_item(self, record: MeteringRecord) -> dict[str, Any]:
        return {
            **marker_key(record),
            "record": {"S": json.dumps(record.to_json(), separators=(",", ":"), sort_keys=True)},
        }

    def _settle_actions(self, record: MeteringRecord) -> list[dict[str, Any]]:
        if record.status is RecordStatus.PENDING:
            raise ValueError(f"settle: {record.key} is still pending")
        return [
            {"Put": {"TableName": self._ledger, "Item": self._ledger_item(record)}},
            {"Delete": {"TableName": self._tenancy, "Key": marker_key(record)}},
        ]

    def _checkpoint(self, checkpoint: Checkpoint) -> dict[str, Any]:
        if checkpoint.hour_ms % MS_PER_HOUR:
            raise ValueError(f"checkpoint hour {checkpoint.hour_ms} is not a whole hour")
        hour_of_day = (checkpoint.hour_ms // MS_PER_HOUR) % 24
        return {
            "Put": {
                "TableName": self._activity,
                "Item": {
                    "pk": {"S": activity_partition(checkpoint.instance_arn, checkpoint.hour_ms)},
                    "sk": {"S": f"{hour_of_day:02d}#C"},
                    "doc": {"B": self._encode(checkpoint.checkpoint)},
                    EXPIRES_AT: {"N": activity_expires_at(checkpoint.hour_ms)},
                },
            }
        }

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        try:
            self._client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except ClientError as error:
            reasons = error.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise ConcurrentMeterRun("another run of this company committed first") from None
            raise

    def _transact_group(
        self,
        commits: Sequence[MeterCommit],
        group: list[tuple[int, list[dict[str, Any]]]],
        outcomes: list[int | Exception],
    ) -> None:
        """One transaction for the group; on a cancellation, the companies whose actions it names are
        taken out (a failed state condition: ConcurrentMeterRun; anything else: committed alone) and the
        rest is tried again, so each try either commits or removes at least one company."""
        while group:
            together: list[Any] = [action for _, actions in group for action in actions]
            try:
                self._client.transact_write_items(TransactItems=together)
            except (BotoCoreError, ClientError) as error:
                group = self._after_cancellation(commits, group, outcomes, error)
                continue
            for position, _ in group:
                outcomes[position] = commits[position].version + 1
            return

    def _after_cancellation(
        self,
        commits: Sequence[MeterCommit],
        group: list[tuple[int, list[dict[str, Any]]]],
        outcomes: list[int | Exception],
        error: BotoCoreError | ClientError,
    ) -> list[tuple[int, list[dict[str, Any]]]]:
        """The members to try again after a failed group transaction. A cancellation names, action by
        action, why: a company whose state condition failed gets ConcurrentMeterRun, one whose actions
        failed otherwise commits alone, the others are kept. Without such an answer (no response, an
        error of the whole request, no action named) every member commits alone, with its own outcome,
        so each try removes at least one member."""
        response = error.response if isinstance(error, ClientError) else {}
        codes = [str(reason.get("Code", "None")) for reason in response.get("CancellationReasons", [])]
        if len(codes) != sum(len(actions) for _, actions in group) or all(code == "None" for code in codes):
            for position, _ in group:
                outcomes[position] = self._alone(commits[position])
            return []
        kept = []
        for position, actions in group:
            mine, codes = codes[: len(actions)], codes[len(actions) :]
            if mine[0] == "ConditionalCheckFailed":
                outcomes[position] = ConcurrentMeterRun("another run of this company committed first")
            elif any(code != "None" for code in mine):
                outcomes[position] = self._alone(commits[position])
            else:
                kept.append((position, actions))
        return kept

    def _alone(self, work: MeterCommit) -> int | Exception:
        try:
            return self.commit(
                work.company,
                version=work.version,
                state=work.state,
                new_records=work.new_records,
                settled=work.settled,
                checkpoints=work.checkpoints,
            )
        except Exception as error:  # the company's outcome: the others go on
            return error

    def _record_actions(self, work: MeterCommit) -> list[dict[str, Any]]:
        return [
            *(action for record in work.new_records for action in self._new_record(record)),
            *(action for record in work.settled for action in self._settle_actions(record)),
        ]

    def _shareable_actions(self, work: MeterCommit) -> tuple[list[dict[str, Any]], int] | None:
        """The company's whole commit as transaction actions (the state first) and their size, or None
        when it does not fit one transaction with its checkpoints riding along (``commit`` then writes
        them first)."""
        actions = [
            self._state(work.company, work.version, work.state),
            *self._record_actions(work),
            *(self._checkpoint(checkpoint) for checkpoint in work.checkpoints),
        ]
        size = sum(map(_wire_bytes, actions))
        if len(actions) > MAX_TRANSACTION_ITEMS or size > TRANSACTION_BYTES:
            return None
        return actions, size

    def _batch_write(self, requests: list[tuple[str, dict[str, Any]]]) -> None:
        pending: dict[str, list[dict[str, Any]]] = {}
        for table, request in requests:
            pending.setdefault(table, []).append(request)
        unprocessed: dict[str, Any] = pending
        for _ in range(8):
            if not unprocessed:
                return
            response = self._client.batch_write_item(RequestItems=unprocessed)
            unprocessed = response.get("UnprocessedItems", {})
        raise RuntimeError(f"DynamoDB left {sum(len(v) for v in unprocessed.values())} writes unprocessed")


def _wire_bytes(value: object) -> int:
    """An upper bound of an action's size as DynamoDB counts it (names and values; type tags and table
    names counted too), for the 4 MB bound of a transaction."""
    # The commonest first, with plain loops: this walks every attribute of a batch's commits.
    if isinstance(value, dict):
        total = 0
        for name, inner in value.items():
            total += len(name) + _wire_bytes(inner)
        return total
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, list):
        return sum(_wire_bytes(inner) for inner in value)
    return 8


def create_ledger_table(client: DynamoDBClient, table_name: str) -> None:
    """Same keys as infra/constructs/metering.py (local runtime and tests)."""
    create_table(client, table_name)
