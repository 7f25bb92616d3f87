"""Admin audit items in the tenancy table: ``AUDIT#<alias>`` / ``<time>#<request id>``, kept (no TTL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from boto3.dynamodb.types import TypeSerializer

from connect_metering.adapters.tenancy_keys import PARTITION_KEY, SORT_KEY
from connect_metering.domain.audit import AuditEntry

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serializer = TypeSerializer()


class ChangeLog(Protocol):
    """The handler's logger (Powertools ``Logger`` or ``logging.Logger``)."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...

    def error(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class DynamoAuditLog:
    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self._table = table_name
        self._client = client

    def record(self, entry: AuditEntry) -> None:
        item = {PARTITION_KEY: entry.partition, SORT_KEY: entry.sort_key, **entry.fields()}
        self._client.put_item(
            TableName=self._table,
            Item={name: _serializer.serialize(value) for name, value in item.items()},
        )

    def keep(self, entry: AuditEntry, log: ChangeLog, message: str) -> None:
        """Log the change as ``message``, then store it. The change is made by then: a store that fails is
        logged as such and never fails the request that made it."""
        log.info(message, extra={"audit": entry.fields()})
        try:
            self.record(entry)
        except Exception as error:
            log.error("audit item not stored", extra={"audit": entry.fields(), "error": type(error).__name__})
