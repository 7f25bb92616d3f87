"""A BatchMeterUsage UsageRecord read off the wire and validated as botocore's model and AWS's
documentation constrain it (identity, dimension, quantity, allocations and their tags): any violation
is the error answer that refuses the whole call."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from connect_metering.domain.instants import hour_floor
from connect_metering.local.marketplace_sim.wire import (
    Buyer,
    Json,
    MarketplaceError,
    MeteringRules,
    Product,
    licence_id,
    validation_error,
)

MAX_QUANTITY = 2_147_483_647
MAX_ALLOCATIONS = 2500
MAX_TAGS_PER_ALLOCATION = 5
QuantityKind = Literal["whole", "decimal"]
# botocore's UsageQuantityAsDecimalString / AllocatedUsageQuantityAsDecimalString (max length 17).
DECIMAL_QUANTITY = re.compile(r"(0|[1-9][0-9]{0,9})(\.[0-9]{1,6})?")
ALLOCATION_ERROR = "InvalidUsageAllocationsException"


@dataclass(frozen=True)
class Allocation:
    """``quantity`` is the whole part of ``exact_quantity`` (they differ only for a fractional
    AllocatedUsageQuantityAsDecimal, which this product never sends)."""

    quantity: int
    tags: tuple[tuple[str, str], ...]
    exact_quantity: Decimal = Decimal(0)

    def tag(self, key: str) -> str | None:
        return next((value for tag_key, value in self.tags if tag_key == key), None)


@dataclass(frozen=True)
class UsageRecord:
    """One validated UsageRecord of a BatchMeterUsage call; ``wire`` is the record as received."""

    index: int
    wire: Json
    timestamp_ms: int
    dimension: str
    quantity: Decimal
    allocations: tuple[Allocation, ...]
    buyer: Buyer

    @property
    def hour_ms(self) -> int:
        return hour_floor(self.timestamp_ms)

    def fault_identity(self, product_code: str) -> str:
        licence = self.buyer.license_arn
        who = licence_id(licence) if licence else f"{product_code}/{self.buyer.customer_identifier}"
        return f"{who}|{self.dimension}|{self.hour_ms}"


class UsageRecordParser:
    """Reads the UsageRecords of one product with the model's constraints."""

    def __init__(self, rules: MeteringRules, product: Product) -> None:
        self._rules = rules
        self._product = product

    def parse(self, index: int, raw: object, product_code: object) -> UsageRecord:
        where = f"UsageRecords[{index}]"
        if not isinstance(raw, dict):
            raise validation_error(f"{where} is not an object")
        buyer = self._buyer(where, raw)
        if buyer.customer_identifier is not None and product_code is None:
            raise MarketplaceError(
                "InvalidProductCodeException",
                f"{where} identifies the customer by CustomerIdentifier, which needs ProductCode",
            )
        dimension = self._dimension(where, raw.get("Dimension"))
        quantity, kind = quantity_of(raw, "Quantity", "QuantityAsDecimal", where, "ValidationException")
        allocations = self._allocations(raw, quantity, kind, where)
        return UsageRecord(
            index=index,
            wire=raw,
            timestamp_ms=timestamp_ms(raw.get("Timestamp"), f"{where}.Timestamp"),
            dimension=dimension,
            quantity=quantity,
            allocations=allocations,
            buyer=buyer,
        )

    def _dimension(self, where: str, dimension: object) -> str:
        problem = self._rules.dimension.violation(dimension)
        if problem:
            raise validation_error(f"{where}.Dimension: {problem}")
        if dimension not in self._product.dimensions:
            raise MarketplaceError(
                "InvalidUsageDimensionException",
                f"{where}.Dimension {dimension!r} is not a dimension of {self._product.code} "
                f"(known: {', '.join(sorted(self._product.dimensions))})",
            )
        return str(dimension)

    def _buyer(self, where: str, raw: Json) -> Buyer:
        customer_identifier = raw.get("CustomerIdentifier")
        account = raw.get("CustomerAWSAccountId")
        licence = raw.get("LicenseArn")
        if customer_identifier is not None and (account is not None or licence is not None):
            raise MarketplaceError(
                "InvalidCustomerIdentifierException",
                f"{where}: CustomerIdentifier and CustomerAWSAccountId/LicenseArn are mutually exclusive",
            )
        if customer_identifier is not None:
            problem = self._rules.customer_identifier.violation(customer_identifier)
            if problem or customer_identifier == "":
                raise MarketplaceError(
                    "InvalidCustomerIdentifierException",
                    f"{where}.CustomerIdentifier: {problem or 'is empty'}",
                )
            return Buyer(customer_identifier=customer_identifier)
        return self._licence_buyer(where, account, licence)

    def _licence_buyer(self, where: str, account: object, licence: object) -> Buyer:
        if account is None:
            raise MarketplaceError(
                "InvalidCustomerIdentifierException",
                f"{where} names no customer: send CustomerAWSAccountId + LicenseArn "
                "(or legacy CustomerIdentifier)",
            )
        problem = self._rules.account_id.violation(account)
        if problem:
            raise MarketplaceError(
                "InvalidCustomerIdentifierException", f"{where}.CustomerAWSAccountId: {problem}"
            )
        if licence is None:
            raise MarketplaceError(
                "InvalidLicenseException", f"{where}: CustomerAWSAccountId needs its LicenseArn"
            )
        problem = self._rules.license_arn.violation(licence)
        if problem:
            raise MarketplaceError("InvalidLicenseException", f"{where}.LicenseArn: {problem}")
        return Buyer(customer_aws_account_id=str(account), license_arn=str(licence))

    def _allocations(
        self, raw: Json, quantity: Decimal, kind: QuantityKind | None, where: str
    ) -> tuple[Allocation, ...]:
        raw_allocations = raw.get("UsageAllocations")
        if raw_allocations is None:
            return ()
        if not isinstance(raw_allocations, list) or not 1 <= len(raw_allocations) <= MAX_ALLOCATIONS:
            count = len(raw_allocations) if isinstance(raw_allocations, list) else 0
            raise MarketplaceError(
                ALLOCATION_ERROR,
                f"{where}.UsageAllocations has {count} entries; 1 to {MAX_ALLOCATIONS} are allowed",
            )
        allocations = tuple(
            self._allocation(allocation, f"{where}.UsageAllocations[{position}]", kind)
            for position, allocation in enumerate(raw_allocations)
        )
        allocated = sum((allocation.exact_quantity for allocation in allocations), Decimal(0))
        if allocated != quantity:
            raise MarketplaceError(
                ALLOCATION_ERROR,
                f"{where}: UsageAllocations add up to {allocated} but Quantity is {quantity}",
            )
        return allocations

    def _allocation(self, raw: object, where: str, record_kind: QuantityKind | None) -> Allocation:
        if not isinstance(raw, dict):
            raise MarketplaceError(ALLOCATION_ERROR, f"{where} is not an object")
        quantity, kind = quantity_of(
            raw, "AllocatedUsageQuantity", "AllocatedUsageQuantityAsDecimal", where, ALLOCATION_ERROR
        )
        if kind is None:
            raise MarketplaceError(
                ALLOCATION_ERROR,
                f"{where}: give exactly one of AllocatedUsageQuantity or AllocatedUsageQuantityAsDecimal",
            )
        if record_kind is not None and kind != record_kind:
            raise MarketplaceError(
                ALLOCATION_ERROR,
                f"{where}: the record's quantity is a {record_kind} number but this allocation's is a {kind} "
                "one (AllocatedUsageQuantity goes with Quantity, AllocatedUsageQuantityAsDecimal with "
                "QuantityAsDecimal)",
            )
        raw_tags = raw.get("Tags")
        if (
            raw_tags is None
        ):  # the model: "For the bucket of items with no tags, this parameter can be left out."
            return Allocation(quantity=int(quantity), tags=(), exact_quantity=quantity)
        return Allocation(quantity=int(quantity), tags=self._tags(raw_tags, where), exact_quantity=quantity)

    def _tags(self, raw_tags: object, where: str) -> tuple[tuple[str, str], ...]:
        if not isinstance(raw_tags, list) or len(raw_tags) > MAX_TAGS_PER_ALLOCATION or raw_tags == []:
            count = len(raw_tags) if isinstance(raw_tags, list) else 0
            raise MarketplaceError(
                "InvalidTagException",
                f"{where}.Tags has {count} tags; 1 to {MAX_TAGS_PER_ALLOCATION} are allowed",
            )
        tags = tuple(self._tag(tag, f"{where}.Tags[{position}]") for position, tag in enumerate(raw_tags))
        keys = [key for key, _ in tags]
        if len(set(keys)) != len(keys):
            raise MarketplaceError("InvalidTagException", f"{where}.Tags repeats a Key: {keys}")
        return tuple(sorted(tags))

    def _tag(self, raw: object, where: str) -> tuple[str, str]:
        if not isinstance(raw, dict):
            raise MarketplaceError("InvalidTagException", f"{where} is not an object")
        key, value = raw.get("Key"), raw.get("Value")
        for name, rule, candidate in (
            ("Key", self._rules.tag_key, key),
            ("Value", self._rules.tag_value, value),
        ):
            problem = rule.violation(candidate)
            if problem:
                raise MarketplaceError("InvalidTagException", f"{where}.{name}: {problem}")
        return str(key), str(value)


def timestamp_ms(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise validation_error(f"{where} must be a timestamp, got {value!r}")
    return round(value * 1000)


def quantity_of(
    raw: Json, integer_field: str, decimal_field: str, where: str, error: str
) -> tuple[Decimal, QuantityKind | None]:
    """The quantity of a record or allocation, exactly, and which field gave it (None: neither did).

    The model: the integer field is an Integer 0..2147483647, the decimal field a string matching
    UsageQuantityAsDecimalString (up to 6 decimals); never both."""
    if integer_field in raw and decimal_field in raw:
        raise MarketplaceError(error, f"{where}: send {integer_field} or {decimal_field}, not both")
    if decimal_field in raw:
        text = raw[decimal_field]
        if not isinstance(text, str) or not DECIMAL_QUANTITY.fullmatch(text):
            raise MarketplaceError(
                error, f"{where}.{decimal_field} {text!r} does not match {DECIMAL_QUANTITY.pattern}"
            )
        return Decimal(text), "decimal"
    if integer_field not in raw:
        return Decimal(0), None
    value = raw[integer_field]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUANTITY:
        raise MarketplaceError(
            error, f"{where}.{integer_field} {value!r} must be an integer 0..{MAX_QUANTITY}"
        )
    return Decimal(value), "whole"
