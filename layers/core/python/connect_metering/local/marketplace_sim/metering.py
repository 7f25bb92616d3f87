"""BatchMeterUsage: the whole-call checks (size, product code, timestamps, licence owner and activation,
legacy usage start), then per record: left unprocessed (a fault), CustomerNotSubscribed, DuplicateRecord
(same hour, another quantity) or Success, with the ledger keeping what was accepted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from connect_metering.domain.instants import from_ms, iso_ms, to_ms
from connect_metering.local.marketplace_sim.faults import (
    DeterministicIds,
    FaultPlan,
    OperationCounters,
    fraction,
)
from connect_metering.local.marketplace_sim.ledger import Ledger, LedgerEntry, Refusal
from connect_metering.local.marketplace_sim.registration import SubscriptionBook
from connect_metering.local.marketplace_sim.usage_records import UsageRecord, UsageRecordParser
from connect_metering.local.marketplace_sim.wire import (
    Call,
    Json,
    MarketplaceError,
    Product,
    validation_error,
)

MAX_RECORDS_PER_CALL = 25
MAX_REQUEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class AcceptedRecord:
    metering_record_id: str
    quantity: Decimal

    def same_quantity(self, record: UsageRecord) -> bool:
        # AWS: DuplicateRecord is "the same customer, dimension, and time, but a different quantity";
        # quantities compare by value (17, "17.0" and "17.00" are one quantity); allocations play no part.
        return self.quantity == record.quantity


@dataclass(frozen=True)
class MeteringParts:
    """What metering shares with the rest of the simulator."""

    product: Product
    book: SubscriptionBook
    parser: UsageRecordParser
    ids: DeterministicIds
    faults: Callable[[], FaultPlan]
    counters: dict[str, OperationCounters]
    ledger: Ledger
    refusals: list[Refusal]


class Metering:
    def __init__(self, parts: MeteringParts, acceptance_window: timedelta) -> None:
        self._parts = parts
        self._book = parts.book
        self.acceptance_window = acceptance_window
        self._accepted: dict[tuple[str, str, int], AcceptedRecord] = {}
        self._attempts: dict[str, int] = defaultdict(int)

    def batch_meter_usage(self, call: Call) -> Json:
        records = self._validate_batch(call)
        counters = self._parts.counters[call.operation]
        results: list[Json] = []
        unprocessed: list[Json] = []
        for record in records:
            if self._left_unprocessed(record):
                counters.unprocessed_records += 1
                unprocessed.append(record.wire)
            else:
                results.append(self._meter(record, call.now))
        return {"Results": results, "UnprocessedRecords": unprocessed}

    # Whole-call checks: any failure refuses the entire batch, as AWS does --------------------------

    def _validate_batch(self, call: Call) -> list[UsageRecord]:
        if call.body_size >= MAX_REQUEST_BYTES:
            raise validation_error(
                f"BatchMeterUsage request is {call.body_size} bytes; it must be less than 1 MB"
            )
        raw_records = call.body.get("UsageRecords")
        # The model's UsageRecordList is 0..25 records: an empty batch is answered with empty results.
        if not isinstance(raw_records, list) or len(raw_records) > MAX_RECORDS_PER_CALL:
            count = len(raw_records) if isinstance(raw_records, list) else 0
            raise validation_error(
                f"UsageRecords has {count} records; BatchMeterUsage takes 0 to {MAX_RECORDS_PER_CALL}"
            )
        product_code = call.body.get("ProductCode")
        self._check_product_code(product_code, raw_records)
        records = [
            self._parts.parser.parse(index, raw, product_code) for index, raw in enumerate(raw_records)
        ]
        for record in records:
            self._check_timestamp(record, call.now)
            self._check_licence_owner(record)
            self._check_licence_activation(record, call.now)
            self._check_usage_start(record, call.now)
        return records

    def _check_product_code(self, product_code: object, raw_records: list[Any]) -> None:
        licensed = [
            index for index, raw in enumerate(raw_records) if isinstance(raw, dict) and "LicenseArn" in raw
        ]
        if product_code is not None and licensed:
            raise validation_error(
                f"UsageRecords[{licensed[0]}] carries LicenseArn: records identified by LicenseArn "
                "must be sent without ProductCode (the licence names the product)"
            )
        if product_code is not None and product_code != self._parts.product.code:
            raise MarketplaceError(
                "InvalidProductCodeException", f"ProductCode {product_code!r} is not this seller's product"
            )

    def _check_timestamp(self, record: UsageRecord, now: datetime) -> None:
        now_ms = to_ms(now)
        oldest_ms = now_ms - int(self.acceptance_window.total_seconds() * 1000)
        where = f"UsageRecords[{record.index}].Timestamp {iso_ms(record.timestamp_ms)}"
        if record.timestamp_ms > now_ms:
            raise MarketplaceError(
                "TimestampOutOfBoundsException", f"{where} is in the future (now {iso_ms(now_ms)})"
            )
        # AWS: "Usage records aren't accepted 6 hours or more after an event."
        if record.timestamp_ms <= oldest_ms:
            raise MarketplaceError(
                "TimestampOutOfBoundsException",
                f"{where} is {self.acceptance_window} or more before now ({iso_ms(now_ms)}); "
                "the whole batch is refused",
            )

    def _check_licence_owner(self, record: UsageRecord) -> None:
        subscription = self._book.find(record.buyer.license_arn, None)
        if subscription is None or record.buyer.license_arn is None:
            return
        if subscription.buyer.customer_aws_account_id != record.buyer.customer_aws_account_id:
            raise MarketplaceError(
                "InvalidLicenseException",
                f"UsageRecords[{record.index}]: LicenseArn {record.buyer.license_arn} does not belong to "
                f"CustomerAWSAccountId {record.buyer.customer_aws_account_id}",
            )

    def _check_licence_activation(self, record: UsageRecord, now: datetime) -> None:
        """A licence record outside its licence's activation period refuses the whole call (the model's
        InvalidLicenseException: "usage is within the license activation period")."""
        licence = record.buyer.license_arn
        if licence is None:
            return
        where = f"UsageRecords[{record.index}]: LicenseArn {licence}"
        revocation = self._parts.faults().revocation(licence, now)
        if revocation is not None:
            raise MarketplaceError(
                "InvalidLicenseException", f"{where} was revoked at {iso_ms(to_ms(revocation.at))}"
            )
        subscription = self._book.find(licence, None)
        if subscription is None or subscription.product_code != self._parts.product.code:
            return  # unknown licence: that record is answered CustomerNotSubscribed
        reason = subscription.inactive_reason(record.timestamp_ms, to_ms(now))
        if reason is not None:
            raise MarketplaceError("InvalidLicenseException", f"{where} is not active: {reason}")

    def _check_usage_start(self, record: UsageRecord, now: datetime) -> None:
        """A legacy record timestamped before its subscription's usage started refuses the whole call:
        the Timestamp "must not be before the start of the software usage", and an out-of-range
        Timestamp is TimestampOutOfBoundsException for the whole batch."""
        if record.buyer.customer_identifier is None:
            return
        subscription = self._book.find(None, record.buyer.customer_identifier)
        if subscription is None or subscription.started_ms is None or to_ms(now) < subscription.started_ms:
            return  # not subscribed (yet): that record is answered CustomerNotSubscribed
        if record.timestamp_ms < subscription.started_ms:
            raise MarketplaceError(
                "TimestampOutOfBoundsException",
                f"UsageRecords[{record.index}].Timestamp {iso_ms(record.timestamp_ms)} is before the "
                f"subscription's usage started ({iso_ms(subscription.started_ms)}); the whole batch is refused",
            )

    # Per record -----------------------------------------------------------------------------------

    def _left_unprocessed(self, record: UsageRecord) -> bool:
        identity = record.fault_identity(self._parts.product.code)
        self._attempts[identity] += 1
        faults = self._parts.faults()
        rate = faults.unprocessed_rate
        return rate > 0 and fraction(faults.seed, "unprocessed", identity, self._attempts[identity]) < rate

    def _meter(self, record: UsageRecord, now: datetime) -> Json:
        subscription = self._book.find(record.buyer.license_arn, record.buyer.customer_identifier)
        if subscription is None or subscription.product_code != self._parts.product.code:
            return self._refuse(record, now, "CustomerNotSubscribed", "no subscription to this product")
        # Licence records outside their activation period never get here (whole-call refusal).
        reason = subscription.inactive_reason(record.timestamp_ms, to_ms(now))
        if reason is not None:
            return self._refuse(record, now, "CustomerNotSubscribed", reason)
        key = (subscription.key, record.dimension, record.hour_ms)
        earlier = self._accepted.get(key)
        if earlier is not None and not earlier.same_quantity(record):
            reason = f"hour already accepted as {earlier.metering_record_id} with quantity {earlier.quantity}"
            return self._refuse(record, now, "DuplicateRecord", reason)
        accepted = earlier or self._accept(record, key, now)
        return {
            "UsageRecord": record.wire,
            "MeteringRecordId": accepted.metering_record_id,
            "Status": "Success",
        }

    def _accept(self, record: UsageRecord, key: tuple[str, str, int], now: datetime) -> AcceptedRecord:
        accepted = AcceptedRecord(self._parts.ids.uuid("metering-record"), record.quantity)
        self._accepted[key] = accepted
        self._parts.ledger.append(
            LedgerEntry(
                metering_record_id=accepted.metering_record_id,
                customer_aws_account_id=record.buyer.customer_aws_account_id,
                license_arn=record.buyer.license_arn,
                customer_identifier=record.buyer.customer_identifier,
                product_code=self._parts.product.code,
                dimension=record.dimension,
                hour=from_ms(record.hour_ms),
                quantity=int(record.quantity),
                allocations=record.allocations,
                accepted_at=now,
                exact_quantity=record.quantity,
            )
        )
        return accepted

    def _refuse(self, record: UsageRecord, now: datetime, status: str, reason: str) -> Json:
        # AWS gives no reason for a per-record status; keeping one makes failed tests explain themselves.
        self._parts.refusals.append(
            Refusal(now, status, f"UsageRecords[{record.index}]: {reason}", record.wire)
        )
        return {"UsageRecord": record.wire, "Status": status}
