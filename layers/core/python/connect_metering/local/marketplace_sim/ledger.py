"""What Marketplace accepted (the ledger a test reads the bill from) and what it refused, and why."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from connect_metering.local.marketplace_sim.usage_records import Allocation
from connect_metering.local.marketplace_sim.wire import Json, licence_id


@dataclass(frozen=True)
class LedgerEntry:
    metering_record_id: str
    customer_aws_account_id: str | None
    license_arn: str | None
    customer_identifier: str | None
    product_code: str
    dimension: str
    hour: datetime
    quantity: int
    allocations: tuple[Allocation, ...]
    accepted_at: datetime
    exact_quantity: Decimal = Decimal(0)

    @property
    def identity(self) -> str:
        if self.license_arn is not None:
            return f"{self.customer_aws_account_id}/{self.license_arn}"
        return f"{self.product_code}/{self.customer_identifier}"


class Ledger:
    """The records Marketplace accepted (``Success`` the first time), in acceptance order."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return tuple(self._entries)

    def append(self, entry: LedgerEntry) -> None:
        self._entries.append(entry)

    def accepted(
        self,
        *,
        dimension: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        customer_aws_account_id: str | None = None,
        hour: datetime | None = None,
    ) -> list[LedgerEntry]:
        wanted = {
            "dimension": dimension,
            "license_arn": license_arn,
            "customer_identifier": customer_identifier,
            "customer_aws_account_id": customer_aws_account_id,
            "hour": hour,
        }
        filters = {name: value for name, value in wanted.items() if value is not None}
        if license_arn is not None:
            filters["license_arn"] = licence_id(license_arn)
        return [
            entry
            for entry in self._entries
            if all(_ledger_field(entry, name) == value for name, value in filters.items())
        ]

    def total_quantity(
        self,
        *,
        dimension: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
        customer_aws_account_id: str | None = None,
    ) -> int:
        return sum(
            entry.quantity
            for entry in self.accepted(
                dimension=dimension,
                license_arn=license_arn,
                customer_identifier=customer_identifier,
                customer_aws_account_id=customer_aws_account_id,
            )
        )

    def quantity_by_tag(
        self,
        tag_key: str,
        *,
        dimension: str | None = None,
        license_arn: str | None = None,
        customer_identifier: str | None = None,
    ) -> dict[str, int]:
        """Allocated quantity per value of one tag (e.g. per ``environment``)."""
        totals: dict[str, int] = defaultdict(int)
        entries = self.accepted(
            dimension=dimension, license_arn=license_arn, customer_identifier=customer_identifier
        )
        for entry in entries:
            for allocation in entry.allocations:
                value = allocation.tag(tag_key)
                if value is not None:
                    totals[value] += allocation.quantity
        return dict(totals)


def _ledger_field(entry: LedgerEntry, name: str) -> object:
    value = getattr(entry, name)
    return licence_id(value) if name == "license_arn" and value is not None else value


@dataclass(frozen=True)
class Refusal:
    """A record answered CustomerNotSubscribed or DuplicateRecord, and why."""

    at: datetime
    status: str
    reason: str
    usage_record: Json
