"""The Marketplace simulator under real boto3 clients: each AWS rule it must enforce, one by one."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.loaders import create_loader
from botocore.serialize import create_serializer
from mypy_boto3_marketplace_entitlement import MarketplaceEntitlementServiceClient
from mypy_boto3_marketplace_entitlement.type_defs import EntitlementTypeDef, GetEntitlementsResultTypeDef
from mypy_boto3_meteringmarketplace import MarketplaceMeteringClient
from mypy_boto3_meteringmarketplace.type_defs import (
    BatchMeterUsageResultTypeDef,
    UsageAllocationTypeDef,
    UsageRecordTypeDef,
)

from connect_metering.local.marketplace_sim import (
    DECIMAL_QUANTITY,
    ENTITLEMENT_FILTER_KEYS,
    MAX_QUANTITY,
    FaultPlan,
    MarketplaceSimulator,
    Outage,
    OutageError,
    Revocation,
    decode_request_body,
)
from connect_metering.local.replay import BadInput, load_faults

pytestmark = pytest.mark.integration

METERING = "meteringmarketplace"
ENTITLEMENT = "marketplace-entitlement"
PRODUCT = "prod-7qk2vd3x1example"
ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
LICENCE = "arn:aws:license-manager::294406891311:license:l-0a1b2c3d4e5f60718"
OTHER_LICENCE = "arn:aws:license-manager::294406891311:license:l-ffffffffffffffff"
LEGACY_CUSTOMER = "cust-LEGACY0001"
STARTED = datetime(2025, 3, 4, 2, 30, tzinfo=UTC)
NOW = datetime(2025, 3, 4, 12, 10, tzinfo=UTC)
LAST_HOUR = datetime(2025, 3, 4, 11, 0, tzinfo=UTC)


class VirtualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class VirtualMonotonic:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


@dataclass
class Marketplace:
    sim: MarketplaceSimulator
    clock: VirtualClock
    monotonic: VirtualMonotonic
    metering: MarketplaceMeteringClient
    entitlement: MarketplaceEntitlementServiceClient


def make_marketplace(faults: FaultPlan | None = None) -> Marketplace:
    clock, monotonic = VirtualClock(NOW), VirtualMonotonic()
    sim = MarketplaceSimulator(product_code=PRODUCT, clock=clock, monotonic=monotonic, faults=faults)
    sim.add_subscription(customer_aws_account_id=ACCOUNT, license_arn=LICENCE, started=STARTED)
    sim.add_subscription(
        customer_identifier=LEGACY_CUSTOMER, customer_aws_account_id=OTHER_ACCOUNT, started=STARTED
    )
    metering: MarketplaceMeteringClient = boto3.client("meteringmarketplace", region_name="us-east-1")
    entitlement: MarketplaceEntitlementServiceClient = boto3.client(
        "marketplace-entitlement", region_name="us-east-1"
    )
    return Marketplace(sim, clock, monotonic, sim.attach(metering), sim.attach(entitlement))


@pytest.fixture
def mp() -> Iterator[Marketplace]:
    yield make_marketplace()


def record(
    quantity: int = 7,
    *,
    hour: datetime = LAST_HOUR,
    dimension: str = "agent_minutes",
    account: str | None = ACCOUNT,
    licence: str | None = LICENCE,
    customer: str | None = None,
    allocations: list[UsageAllocationTypeDef] | None = None,
) -> UsageRecordTypeDef:
    usage: UsageRecordTypeDef = {"Timestamp": hour, "Dimension": dimension, "Quantity": quantity}
    if account is not None:
        usage["CustomerAWSAccountId"] = account
    if licence is not None:
        usage["LicenseArn"] = licence
    if customer is not None:
        usage["CustomerIdentifier"] = customer
    if allocations is not None:
        usage["UsageAllocations"] = allocations
    return usage


def legacy_record(quantity: int = 7, *, hour: datetime = LAST_HOUR) -> UsageRecordTypeDef:
    return record(quantity, hour=hour, account=None, licence=None, customer=LEGACY_CUSTOMER)


def env(name: str, quantity: int) -> UsageAllocationTypeDef:
    return {"AllocatedUsageQuantity": quantity, "Tags": [{"Key": "environment", "Value": name}]}


def meter(mp: Marketplace, *records: UsageRecordTypeDef) -> BatchMeterUsageResultTypeDef:
    return mp.metering.batch_meter_usage(UsageRecords=list(records))


def statuses(result: BatchMeterUsageResultTypeDef) -> list[str]:
    return [outcome["Status"] for outcome in result["Results"]]


def metering_model() -> dict[str, Any]:
    """The metering service model file shipped in the installed botocore (the SDK the product uses)."""
    model: dict[str, Any] = create_loader().load_service_model(METERING, "service-2")
    return model


def entitlement_model() -> dict[str, Any]:
    model: dict[str, Any] = create_loader().load_service_model(ENTITLEMENT, "service-2")
    return model


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error.get("Code", ""), error.get("Message", "")


# --------------------------------------------------------------------------------------------
# BatchMeterUsage: acceptance, echo, first write wins
# --------------------------------------------------------------------------------------------
def test_accepted_record_is_echoed_and_lands_in_the_ledger(mp: Marketplace) -> None:
    sent = record(7, allocations=[env("prod", 5), env("dev", 2)])
    result = meter(mp, sent)

    (outcome,) = result["Results"]
    assert outcome["Status"] == "Success"
    assert outcome["MeteringRecordId"]
    assert outcome["UsageRecord"]["Timestamp"] == LAST_HOUR
    assert outcome["UsageRecord"]["LicenseArn"] == LICENCE
    assert outcome["UsageRecord"]["UsageAllocations"] == sent["UsageAllocations"]
    assert result["UnprocessedRecords"] == []
    (entry,) = mp.sim.ledger.accepted(license_arn=LICENCE, dimension="agent_minutes")
    assert (entry.metering_record_id, entry.hour, entry.quantity) == (
        outcome["MeteringRecordId"],
        LAST_HOUR,
        7,
    )
    assert (entry.customer_aws_account_id, entry.accepted_at) == (ACCOUNT, NOW)
    assert mp.sim.ledger.quantity_by_tag("environment") == {"prod": 5, "dev": 2}


def test_timestamp_is_floored_to_its_hour_for_deduplication(mp: Marketplace) -> None:
    first = meter(mp, record(3, hour=LAST_HOUR + timedelta(minutes=5)))
    second = meter(mp, record(3, hour=LAST_HOUR + timedelta(minutes=40)))

    assert statuses(first) == statuses(second) == ["Success"]
    assert first["Results"][0]["MeteringRecordId"] == second["Results"][0]["MeteringRecordId"]
    assert [entry.hour for entry in mp.sim.ledger] == [LAST_HOUR]


def test_identical_repeat_returns_the_same_metering_record_id_and_is_not_billed_twice(
    mp: Marketplace,
) -> None:
    first = meter(mp, record(7, allocations=[env("prod", 7)]))
    again = meter(mp, record(7, allocations=[env("prod", 7)]))

    assert statuses(again) == ["Success"]
    assert again["Results"][0]["MeteringRecordId"] == first["Results"][0]["MeteringRecordId"]
    assert len(mp.sim.ledger) == 1
    assert mp.sim.ledger.total_quantity(license_arn=LICENCE) == 7


@pytest.mark.parametrize(
    ("first", "repeat"),
    [
        (record(7), record(8)),
        (record(7), record(6)),
        (record(7, allocations=[env("prod", 7)]), record(8, allocations=[env("prod", 8)])),
    ],
    ids=["larger", "smaller", "larger-allocated"],
)
def test_a_different_record_for_an_accepted_hour_is_a_duplicate(
    mp: Marketplace, first: UsageRecordTypeDef, repeat: UsageRecordTypeDef
) -> None:
    meter(mp, first)
    result = meter(mp, repeat)

    assert statuses(result) == ["DuplicateRecord"]
    assert "MeteringRecordId" not in result["Results"][0]
    assert "already accepted" in mp.sim.refusals[-1].reason
    assert mp.sim.ledger.total_quantity() == 7


@pytest.mark.parametrize(
    ("first", "repeat"),
    [
        (record(7, allocations=[env("prod", 7)]), record(7, allocations=[env("dev", 7)])),
        (record(7, allocations=[env("prod", 7)]), record(7)),
        (record(7), record(7, allocations=[env("prod", 4), env("dev", 3)])),
    ],
    ids=["other-allocations", "allocations-dropped", "allocations-added"],
)
def test_the_same_quantity_again_is_success_whatever_the_allocations(
    mp: Marketplace, first: UsageRecordTypeDef, repeat: UsageRecordTypeDef
) -> None:
    """The model: DuplicateRecord is "the same customer, dimension, and time, but a different quantity";
    BatchMeterUsage: "Identical requests are idempotent". Allocations are not part of the comparison."""
    accepted = meter(mp, first)
    again = meter(mp, repeat)

    assert statuses(again) == ["Success"]
    assert again["Results"][0]["MeteringRecordId"] == accepted["Results"][0]["MeteringRecordId"]
    assert len(mp.sim.ledger) == 1
    assert mp.sim.refusals == []


def test_same_hour_on_another_dimension_is_a_separate_record(mp: Marketplace) -> None:
    result = meter(mp, record(7), record(2, dimension="overage_agents"))

    assert statuses(result) == ["Success", "Success"]
    assert mp.sim.ledger.total_quantity(dimension="overage_agents") == 2


def test_legacy_customer_identifier_with_product_code_is_accepted(mp: Marketplace) -> None:
    result = mp.metering.batch_meter_usage(ProductCode=PRODUCT, UsageRecords=[legacy_record(4)])

    assert statuses(result) == ["Success"]
    (entry,) = mp.sim.ledger.accepted(customer_identifier=LEGACY_CUSTOMER)
    assert (entry.product_code, entry.quantity, entry.license_arn) == (PRODUCT, 4, None)


# --------------------------------------------------------------------------------------------
# BatchMeterUsage: whole-call validation
# --------------------------------------------------------------------------------------------
def test_an_empty_batch_is_answered_with_empty_results(mp: Marketplace) -> None:
    assert metering_model()["shapes"]["UsageRecordList"] == {
        "type": "list",
        "member": {"shape": "UsageRecord"},
        "max": 25,
        "min": 0,
    }
    result = mp.metering.batch_meter_usage(UsageRecords=[])

    assert (result["Results"], result["UnprocessedRecords"]) == ([], [])


@pytest.mark.parametrize("count", [26])
def test_batch_size_above_25_is_refused(mp: Marketplace, count: int) -> None:
    records = [record(1, hour=LAST_HOUR - timedelta(hours=index % 5)) for index in range(count)]
    with pytest.raises(ClientError) as excinfo:
        mp.metering.batch_meter_usage(UsageRecords=records)

    code, message = error_of(excinfo)
    assert code == "ValidationException"
    assert f"{count} records" in message
    assert len(mp.sim.ledger) == 0


def test_twenty_five_records_are_accepted() -> None:
    mp = make_marketplace()
    result = meter(mp, *batch_of_licences(mp, 25))

    assert statuses(result) == ["Success"] * 25
    assert len(mp.sim.ledger) == 25


def test_request_of_one_megabyte_or_more_is_refused(mp: Marketplace) -> None:
    long_value = "v" * 250
    allocations: list[UsageAllocationTypeDef] = [
        {"AllocatedUsageQuantity": 1, "Tags": [{"Key": f"k{index}", "Value": long_value}]}
        for index in range(2500)
    ]
    records = [
        record(2500, hour=LAST_HOUR - timedelta(hours=hour), allocations=allocations) for hour in range(2)
    ]
    with pytest.raises(ClientError) as excinfo:
        meter(mp, *records)

    code, message = error_of(excinfo)
    assert code == "ValidationException"
    assert "1 MB" in message


def test_licence_records_must_not_be_sent_with_a_product_code(mp: Marketplace) -> None:
    with pytest.raises(ClientError) as excinfo:
        mp.metering.batch_meter_usage(ProductCode=PRODUCT, UsageRecords=[legacy_record(), record()])

    code, message = error_of(excinfo)
    assert code == "ValidationException"
    assert "UsageRecords[1]" in message and "ProductCode" in message
    assert len(mp.sim.ledger) == 0


def test_wrong_product_code_is_refused(mp: Marketplace) -> None:
    with pytest.raises(mp.metering.exceptions.InvalidProductCodeException) as excinfo:
        mp.metering.batch_meter_usage(ProductCode="prod-someoneelse", UsageRecords=[legacy_record()])

    assert "prod-someoneelse" in excinfo.value.response["Error"]["Message"]


def test_customer_identifier_records_need_the_product_code(mp: Marketplace) -> None:
    with pytest.raises(mp.metering.exceptions.InvalidProductCodeException) as excinfo:
        meter(mp, legacy_record())

    assert "UsageRecords[0]" in excinfo.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("bad_record", "error_code", "says"),
    [
        (record(customer=LEGACY_CUSTOMER), "InvalidCustomerIdentifierException", "mutually exclusive"),
        (record(account=None, licence=None), "InvalidCustomerIdentifierException", "names no customer"),
        (record(account=None), "InvalidCustomerIdentifierException", "names no customer"),
        (record(licence=None), "InvalidLicenseException", "needs its LicenseArn"),
        (record(licence="not-an-arn"), "InvalidLicenseException", "LicenseArn"),
        (record(account="12ab"), "InvalidCustomerIdentifierException", "CustomerAWSAccountId"),
        (record(account=OTHER_ACCOUNT), "InvalidLicenseException", "does not belong"),
    ],
    ids=[
        "both-identities",
        "no-identity",
        "licence-without-account",
        "account-without-licence",
        "malformed-licence",
        "malformed-account",
        "licence-of-another-account",
    ],
)
def test_a_record_names_its_customer_exactly_one_way(
    mp: Marketplace, bad_record: UsageRecordTypeDef, error_code: str, says: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        meter(mp, record(1, hour=LAST_HOUR - timedelta(hours=1)), bad_record)

    code, message = error_of(excinfo)
    assert code == error_code
    assert "UsageRecords[1]" in message and says in message
    assert len(mp.sim.ledger) == 0


def test_unknown_dimension_is_refused(mp: Marketplace) -> None:
    with pytest.raises(mp.metering.exceptions.InvalidUsageDimensionException) as excinfo:
        meter(mp, record(dimension="agent_hours"))

    assert "'agent_hours'" in excinfo.value.response["Error"]["Message"]


@pytest.mark.parametrize(("quantity", "accepted"), [(0, True), (2_147_483_647, True), (2_147_483_648, False)])
def test_quantity_is_an_integer_from_0_to_2147483647(mp: Marketplace, quantity: int, accepted: bool) -> None:
    if accepted:
        assert statuses(meter(mp, record(quantity))) == ["Success"]
        assert mp.sim.ledger.total_quantity() == quantity
        return
    with pytest.raises(ClientError) as excinfo:
        meter(mp, record(quantity))
    code, message = error_of(excinfo)
    assert code == "ValidationException" and "Quantity" in message


def test_missing_quantity_defaults_to_zero(mp: Marketplace) -> None:
    usage: UsageRecordTypeDef = {
        "Timestamp": LAST_HOUR,
        "Dimension": "agent_minutes",
        "CustomerAWSAccountId": ACCOUNT,
        "LicenseArn": LICENCE,
    }
    assert statuses(meter(mp, usage)) == ["Success"]
    assert mp.sim.ledger.entries[0].quantity == 0


@pytest.mark.parametrize(
    ("allocations", "quantity", "error_code", "says"),
    [
        ([env("prod", 5), env("dev", 1)], 7, "InvalidUsageAllocationsException", "add up to 6"),
        ([env(f"e{index}", 0) for index in range(2501)], 0, "InvalidUsageAllocationsException", "2501"),
        (
            [
                {
                    "AllocatedUsageQuantity": 7,
                    "Tags": [{"Key": f"k{index}", "Value": "v"} for index in range(6)],
                }
            ],
            7,
            "InvalidTagException",
            "6 tags",
        ),
        ([env("prod|blue", 7)], 7, "InvalidTagException", "Value"),
        (
            [{"AllocatedUsageQuantity": 7, "Tags": [{"Key": "k{x}", "Value": "v"}]}],
            7,
            "InvalidTagException",
            "Key",
        ),
        ([env("v" * 257, 7)], 7, "InvalidTagException", "length 257"),
        (
            [{"AllocatedUsageQuantity": 7, "Tags": [{"Key": "k", "Value": "a"}, {"Key": "k", "Value": "b"}]}],
            7,
            "InvalidTagException",
            "repeats",
        ),
    ],
    ids=[
        "sum-mismatch",
        "too-many-allocations",
        "six-tags",
        "bad-value",
        "bad-key",
        "long-value",
        "repeated-key",
    ],
)
def test_usage_allocations_follow_the_model(
    mp: Marketplace, allocations: list[UsageAllocationTypeDef], quantity: int, error_code: str, says: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        meter(mp, record(quantity, allocations=allocations))

    code, message = error_of(excinfo)
    assert code == error_code
    assert "UsageRecords[0]" in message and says in message


def test_allocation_limits_are_inclusive(mp: Marketplace) -> None:
    five_tags: UsageAllocationTypeDef = {
        "AllocatedUsageQuantity": 1,
        "Tags": [{"Key": f"key-{index}", "Value": "a+b =c.d_e:f/g@h"} for index in range(5)],
    }
    many = [env(f"env{index}", 1) for index in range(2499)]
    result = meter(mp, record(2500, allocations=[five_tags, *many]))

    assert statuses(result) == ["Success"]
    assert len(mp.sim.ledger.entries[0].allocations) == 2500


@pytest.mark.parametrize(
    ("age", "in_window"),
    [
        (timedelta(hours=6) - timedelta(seconds=1), True),
        (timedelta(hours=6), False),
        (timedelta(hours=9), False),
        (-timedelta(seconds=1), False),
    ],
    ids=["just-inside", "exactly-six-hours", "too-old", "future"],
)
def test_one_out_of_window_timestamp_fails_the_whole_call(
    mp: Marketplace, age: timedelta, in_window: bool
) -> None:
    probe = record(3, hour=NOW - age, dimension="overage_agents")
    if in_window:
        assert statuses(meter(mp, record(1), probe)) == ["Success", "Success"]
        return
    with pytest.raises(mp.metering.exceptions.TimestampOutOfBoundsException) as excinfo:
        meter(mp, record(1), probe)

    assert "UsageRecords[1]" in excinfo.value.response["Error"]["Message"]
    assert len(mp.sim.ledger) == 0, "the valid record in the same call must not be applied"


# --------------------------------------------------------------------------------------------
# BatchMeterUsage: CustomerNotSubscribed
# --------------------------------------------------------------------------------------------
def test_unknown_licence_or_customer_is_not_subscribed(mp: Marketplace) -> None:
    licence_result = meter(mp, record(licence=OTHER_LICENCE))
    customer_result = mp.metering.batch_meter_usage(
        ProductCode=PRODUCT, UsageRecords=[record(account=None, licence=None, customer="cust-NOBODY")]
    )

    assert statuses(licence_result) == statuses(customer_result) == ["CustomerNotSubscribed"]
    assert "MeteringRecordId" not in licence_result["Results"][0]
    assert len(mp.sim.ledger) == 0


def test_licence_of_another_product_is_not_subscribed(mp: Marketplace) -> None:
    mp.sim.add_subscription(
        customer_aws_account_id=ACCOUNT, license_arn=OTHER_LICENCE, product_code="prod-other", started=STARTED
    )
    assert statuses(meter(mp, record(licence=OTHER_LICENCE))) == ["CustomerNotSubscribed"]


def invalid_licence(mp: Marketplace, *records: UsageRecordTypeDef) -> str:
    """Send ``records``; the call must be refused whole with InvalidLicenseException. Its message."""
    before = len(mp.sim.ledger)
    with pytest.raises(mp.metering.exceptions.InvalidLicenseException) as excinfo:
        meter(mp, *records)
    assert len(mp.sim.ledger) == before, "no record of a refused call is applied"
    return excinfo.value.response["Error"]["Message"]


def test_invalid_licence_is_a_whole_call_error_of_batch_meter_usage_in_the_model() -> None:
    model = metering_model()
    errors = {error["shape"] for error in model["operations"]["BatchMeterUsage"]["errors"]}
    assert {"InvalidLicenseException", "TimestampOutOfBoundsException"} <= errors
    assert (
        "within the license activation period" in model["shapes"]["InvalidLicenseException"]["documentation"]
    )


def test_a_licence_record_before_the_licence_started_refuses_the_whole_call(mp: Marketplace) -> None:
    started = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
    mp.sim.add_subscription(customer_aws_account_id=ACCOUNT, license_arn=OTHER_LICENCE, started=started)

    for early in (datetime(2025, 3, 4, 9, 59, tzinfo=UTC), datetime(2025, 3, 4, 10, 0, tzinfo=UTC)):
        message = invalid_licence(mp, record(1), record(2, licence=OTHER_LICENCE, hour=early))
        assert "UsageRecords[1]" in message and "before the usage started" in message

    result = meter(mp, record(1), record(2, licence=OTHER_LICENCE, hour=started))
    assert statuses(result) == ["Success", "Success"]


def test_a_licence_that_has_not_started_yet_refuses_the_whole_call(mp: Marketplace) -> None:
    mp.sim.add_subscription(
        customer_aws_account_id=ACCOUNT, license_arn=OTHER_LICENCE, started=NOW + timedelta(minutes=10)
    )
    message = invalid_licence(mp, record(1), record(1, licence=OTHER_LICENCE, hour=NOW))
    assert "starts at" in message


def test_ended_licence_accepts_its_last_hours_for_one_hour_after_the_end(mp: Marketplace) -> None:
    ended = datetime(2025, 3, 4, 12, 25, tzinfo=UTC)
    mp.sim.end_subscription(license_arn=LICENCE, ended=ended)
    mp.clock.now = ended + timedelta(hours=1)

    assert statuses(meter(mp, record(4, hour=datetime(2025, 3, 4, 12, 0, tzinfo=UTC)))) == ["Success"]
    message = invalid_licence(
        mp,
        record(4, hour=datetime(2025, 3, 4, 11, 0, tzinfo=UTC)),
        record(5, hour=datetime(2025, 3, 4, 12, 25, tzinfo=UTC)),
    )
    assert "UsageRecords[1]" in message and "after the subscription ended" in message


def test_ended_licence_refuses_records_sent_more_than_one_hour_after_the_end(mp: Marketplace) -> None:
    ended = datetime(2025, 3, 4, 12, 25, tzinfo=UTC)
    mp.sim.end_subscription(license_arn=LICENCE, ended=ended)
    mp.clock.now = ended + timedelta(hours=1, milliseconds=1)

    message = invalid_licence(mp, record(4, hour=datetime(2025, 3, 4, 12, 0, tzinfo=UTC)))
    assert "more than 1 hour ago" in message


def test_end_on_a_whole_hour_excludes_that_hour(mp: Marketplace) -> None:
    mp.sim.end_subscription(license_arn=LICENCE, ended=datetime(2025, 3, 4, 12, 0, tzinfo=UTC))

    assert statuses(meter(mp, record(1, hour=LAST_HOUR))) == ["Success"]
    invalid_licence(mp, record(1, hour=datetime(2025, 3, 4, 12, 0, tzinfo=UTC)))


def test_ended_legacy_subscription_is_not_subscribed_per_record(mp: Marketplace) -> None:
    ended = datetime(2025, 3, 4, 12, 25, tzinfo=UTC)
    mp.sim.end_subscription(customer_identifier=LEGACY_CUSTOMER, ended=ended)
    mp.clock.now = ended + timedelta(minutes=30)

    result = mp.metering.batch_meter_usage(
        ProductCode=PRODUCT,
        UsageRecords=[legacy_record(4, hour=LAST_HOUR), legacy_record(5, hour=ended)],
    )
    assert statuses(result) == ["Success", "CustomerNotSubscribed"]

    mp.clock.now = ended + timedelta(hours=1, milliseconds=1)
    late = mp.metering.batch_meter_usage(
        ProductCode=PRODUCT, UsageRecords=[legacy_record(4, hour=datetime(2025, 3, 4, 12, 0, tzinfo=UTC))]
    )
    assert statuses(late) == ["CustomerNotSubscribed"]
    assert "more than 1 hour ago" in mp.sim.refusals[-1].reason


def test_legacy_subscription_not_started_yet_is_not_subscribed_per_record(mp: Marketplace) -> None:
    mp.sim.add_subscription(customer_identifier="cust-LATER", started=NOW + timedelta(minutes=10))
    result = mp.metering.batch_meter_usage(
        ProductCode=PRODUCT,
        UsageRecords=[
            legacy_record(1),
            record(1, account=None, licence=None, customer="cust-LATER", hour=NOW),
        ],
    )
    assert statuses(result) == ["Success", "CustomerNotSubscribed"]


def test_a_legacy_record_before_its_usage_started_is_timestamp_out_of_bounds(mp: Marketplace) -> None:
    """The model's UsageRecord.Timestamp: "Make sure the timestamp value is not before the start of the
    software usage"; an out-of-range Timestamp is TimestampOutOfBoundsException for the whole batch."""
    timestamp_doc = metering_model()["shapes"]["UsageRecord"]["members"]["Timestamp"]["documentation"]
    assert "not before the start of the software usage" in timestamp_doc
    started = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
    mp.sim.add_subscription(customer_identifier="cust-RECENT", started=started)

    def recent(hour: datetime) -> UsageRecordTypeDef:
        return record(1, account=None, licence=None, customer="cust-RECENT", hour=hour)

    with pytest.raises(mp.metering.exceptions.TimestampOutOfBoundsException) as excinfo:
        mp.metering.batch_meter_usage(
            ProductCode=PRODUCT, UsageRecords=[legacy_record(1), recent(started - timedelta(milliseconds=1))]
        )
    assert "UsageRecords[1]" in excinfo.value.response["Error"]["Message"]
    assert len(mp.sim.ledger) == 0
    accepted = mp.metering.batch_meter_usage(ProductCode=PRODUCT, UsageRecords=[recent(started)])
    assert statuses(accepted) == ["Success"]


# --------------------------------------------------------------------------------------------
# Throttling and outages
# --------------------------------------------------------------------------------------------
def test_the_eleventh_call_in_one_second_is_throttled_and_not_applied(mp: Marketplace) -> None:
    hours = [LAST_HOUR - timedelta(hours=offset) for offset in range(4)]
    step = 1 / 16  # exact in binary floating point, so the window edge is exact
    for index in range(10):
        mp.monotonic.seconds = 1000 + (index + 1) * step
        meter(mp, record(1, hour=hours[index % 4]))

    mp.monotonic.seconds = 1000 + 11 * step
    with pytest.raises(mp.metering.exceptions.ThrottlingException):
        meter(mp, record(1, dimension="overage_agents"))
    assert mp.sim.ledger.accepted(dimension="overage_agents") == []
    assert mp.entitlement.get_entitlements(ProductCode=PRODUCT)["Entitlements"] == [], (
        "other operations unaffected"
    )

    mp.monotonic.seconds = 1001 + step - step / 2
    with pytest.raises(mp.metering.exceptions.ThrottlingException):
        meter(mp, record(1, dimension="overage_agents"))
    mp.monotonic.seconds = 1001 + step  # exactly 1 s after the first call: it has left the window
    assert statuses(meter(mp, record(1, dimension="overage_agents"))) == ["Success"]
    counters = mp.sim.counter("BatchMeterUsage")
    assert (counters.calls, counters.throttled, counters.succeeded) == (13, 2, 11)


def test_throttle_window_is_sliding_not_per_calendar_second(mp: Marketplace) -> None:
    mp.monotonic.seconds = 10.9
    for _ in range(10):
        mp.metering.resolve_customer(RegistrationToken=mp.sim.issue_token(license_arn=LICENCE))
    mp.monotonic.seconds = 11.5  # a new calendar second, but the same sliding second
    with pytest.raises(mp.metering.exceptions.ThrottlingException):
        mp.metering.resolve_customer(RegistrationToken=mp.sim.issue_token(license_arn=LICENCE))
    mp.monotonic.seconds = 11.9
    assert mp.metering.resolve_customer(RegistrationToken=mp.sim.issue_token(license_arn=LICENCE))[
        "LicenseArn"
    ]


@pytest.mark.parametrize("error", ["ThrottlingException", "InternalServiceErrorException"])
def test_outage_fails_every_operation_inside_its_half_open_window(error: OutageError) -> None:
    start, end = NOW + timedelta(minutes=5), NOW + timedelta(minutes=20)
    mp = make_marketplace(FaultPlan(outages=(Outage(start, end, error),)))
    token = mp.sim.issue_token(license_arn=LICENCE, ttl=timedelta(hours=2))

    mp.clock.now = start - timedelta(milliseconds=1)
    assert statuses(meter(mp, record(1, hour=LAST_HOUR - timedelta(hours=1)))) == ["Success"]

    mp.clock.now = start
    calls: list[Callable[[], object]] = [
        lambda: meter(mp, record(1)),
        lambda: mp.metering.resolve_customer(RegistrationToken=token),
        lambda: mp.entitlement.get_entitlements(ProductCode=PRODUCT),
    ]
    for call in calls:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo)[0] == error
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == (
            500 if error == "InternalServiceErrorException" else 400
        )
    assert len(mp.sim.ledger) == 1
    assert mp.sim.counter("BatchMeterUsage").faulted == 1

    mp.clock.now = end
    assert statuses(meter(mp, record(1))) == ["Success"]


def test_outage_errors_are_the_modeled_exceptions() -> None:
    mp = make_marketplace(
        FaultPlan(outages=(Outage(NOW, NOW + timedelta(hours=1), "InternalServiceErrorException"),))
    )
    with pytest.raises(mp.metering.exceptions.InternalServiceErrorException):
        meter(mp, record())
    with pytest.raises(mp.entitlement.exceptions.InternalServiceErrorException):
        mp.entitlement.get_entitlements(ProductCode=PRODUCT)


# --------------------------------------------------------------------------------------------
# UnprocessedRecords
# --------------------------------------------------------------------------------------------
def batch_of_licences(mp: Marketplace, count: int) -> list[UsageRecordTypeDef]:
    records = []
    for index in range(count):
        licence = f"arn:aws:license-manager::294406891311:license:l-{index:016x}"
        account = f"{900000000000 + index}"
        mp.sim.add_subscription(customer_aws_account_id=account, license_arn=licence, started=STARTED)
        records.append(record(index + 1, account=account, licence=licence))
    return records


def unprocessed_licences(result: BatchMeterUsageResultTypeDef) -> list[str]:
    return [usage.get("LicenseArn", "") for usage in result["UnprocessedRecords"]]


def test_unprocessed_records_are_returned_not_applied_and_processed_on_retry() -> None:
    mp = make_marketplace(FaultPlan(seed=7, unprocessed_rate=0.5))
    records = batch_of_licences(mp, 20)

    first = meter(mp, *records)
    left = unprocessed_licences(first)
    assert 0 < len(left) < 20
    assert len(first["Results"]) + len(left) == 20
    assert {entry.license_arn for entry in mp.sim.ledger}.isdisjoint(left)
    assert mp.sim.counter("BatchMeterUsage").unprocessed_records == len(left)

    pending = [usage for usage in records if usage["LicenseArn"] in left]
    for _ in range(30):
        if not pending:
            break
        retry = meter(mp, *pending)
        assert set(statuses(retry)) <= {"Success"}
        pending = [usage for usage in pending if usage["LicenseArn"] in unprocessed_licences(retry)]
    assert pending == []
    assert mp.sim.ledger.total_quantity() == sum(range(1, 21))


def test_unprocessed_choice_is_deterministic_by_seed_and_independent_of_other_calls() -> None:
    def first_answer(seed: int, warm_up: bool) -> list[str]:
        mp = make_marketplace(FaultPlan(seed=seed, unprocessed_rate=0.4))
        records = batch_of_licences(mp, 20)
        if warm_up:
            meter(mp, record(1, hour=LAST_HOUR - timedelta(hours=2)))
            mp.metering.batch_meter_usage(ProductCode=PRODUCT, UsageRecords=[legacy_record()])
        return unprocessed_licences(meter(mp, *records))

    baseline = first_answer(3, warm_up=False)
    assert baseline == first_answer(3, warm_up=False)
    assert baseline == first_answer(3, warm_up=True)
    assert baseline != first_answer(4, warm_up=False)


def test_unprocessed_rate_one_never_processes() -> None:
    mp = make_marketplace(FaultPlan(unprocessed_rate=1.0))
    for _ in range(3):
        result = meter(mp, record())
        assert (result["Results"], len(result["UnprocessedRecords"])) == ([], 1)
    assert len(mp.sim.ledger) == 0


# --------------------------------------------------------------------------------------------
# ResolveCustomer
# --------------------------------------------------------------------------------------------
def test_resolve_customer_for_a_new_product_has_no_customer_identifier(mp: Marketplace) -> None:
    token = mp.sim.issue_token(customer_aws_account_id=ACCOUNT, license_arn=LICENCE)

    first = mp.metering.resolve_customer(RegistrationToken=token)
    again = mp.metering.resolve_customer(RegistrationToken=token)

    assert (first["CustomerAWSAccountId"], first["LicenseArn"], first["ProductCode"]) == (
        ACCOUNT,
        LICENCE,
        PRODUCT,
    )
    assert "CustomerIdentifier" not in first
    assert again["LicenseArn"] == LICENCE


def test_resolve_customer_for_a_legacy_product_returns_the_customer_identifier(mp: Marketplace) -> None:
    answer = mp.metering.resolve_customer(
        RegistrationToken=mp.sim.issue_token(customer_identifier=LEGACY_CUSTOMER)
    )

    assert (answer["CustomerIdentifier"], answer["CustomerAWSAccountId"]) == (LEGACY_CUSTOMER, OTHER_ACCOUNT)
    assert "LicenseArn" not in answer


@pytest.mark.parametrize("token", ["", "not-a-token", "x" * 500, "\u00e9\u00e8"])
def test_unknown_or_garbled_token_is_invalid(mp: Marketplace, token: str) -> None:
    mp.sim.issue_token(license_arn=LICENCE)
    with pytest.raises(mp.metering.exceptions.InvalidTokenException):
        mp.metering.resolve_customer(RegistrationToken=token)


def test_token_expires_after_its_ttl(mp: Marketplace) -> None:
    token = mp.sim.issue_token(license_arn=LICENCE, ttl=timedelta(minutes=30))
    mp.clock.advance(timedelta(minutes=29, seconds=59))
    assert mp.metering.resolve_customer(RegistrationToken=token)["LicenseArn"] == LICENCE

    mp.clock.advance(timedelta(seconds=1))
    with pytest.raises(mp.metering.exceptions.ExpiredTokenException):
        mp.metering.resolve_customer(RegistrationToken=token)


def test_expired_token_helper_gives_an_expired_token(mp: Marketplace) -> None:
    with pytest.raises(mp.metering.exceptions.ExpiredTokenException) as excinfo:
        mp.metering.resolve_customer(RegistrationToken=mp.sim.expired_token(license_arn=LICENCE))
    assert "expired" in excinfo.value.response["Error"]["Message"]


# --------------------------------------------------------------------------------------------
# GetEntitlements
# --------------------------------------------------------------------------------------------
EXPIRES = datetime(2026, 3, 4, 0, 0, tzinfo=UTC)


def add_contracts(mp: Marketplace, count: int) -> None:
    for index in range(count):
        licence = f"arn:aws:license-manager::294406891311:license:l-{index:016x}"
        account = f"{900000000000 + index}"
        mp.sim.add_subscription(customer_aws_account_id=account, license_arn=licence, started=STARTED)
        mp.sim.set_entitlement(
            license_arn=licence,
            customer_aws_account_id=account,
            customer_identifier=None,
            dimension="licensed_agents",
            value=index + 1,
            expiration=EXPIRES,
        )


def all_pages(mp: Marketplace, page_size: int, **request: Any) -> tuple[list[EntitlementTypeDef], int]:
    entitlements: list[EntitlementTypeDef] = []
    empty_pages_with_token = 0
    page: GetEntitlementsResultTypeDef = mp.entitlement.get_entitlements(
        ProductCode=PRODUCT, MaxResults=page_size, **request
    )
    for _ in range(200):
        mp.monotonic.seconds += 0.1  # a well-behaved caller stays under 10 calls/s
        entitlements += page["Entitlements"]
        if "NextToken" not in page:
            return entitlements, empty_pages_with_token
        empty_pages_with_token += not page["Entitlements"]
        page = mp.entitlement.get_entitlements(
            ProductCode=PRODUCT, MaxResults=page_size, NextToken=page["NextToken"], **request
        )
    raise AssertionError("paging never ended")


def test_entitlement_has_the_aws_shape(mp: Marketplace) -> None:
    mp.sim.set_entitlement(
        license_arn=LICENCE,
        customer_aws_account_id=None,
        customer_identifier=None,
        dimension="licensed_agents",
        value=40,
        expiration=EXPIRES,
    )
    mp.sim.set_entitlement(
        license_arn=None,
        customer_aws_account_id=None,
        customer_identifier=LEGACY_CUSTOMER,
        dimension="licensed_agents",
        value=5,
        expiration=None,
    )

    new_style, legacy = mp.entitlement.get_entitlements(ProductCode=PRODUCT)["Entitlements"]

    assert new_style == {
        "ProductCode": PRODUCT,
        "Dimension": "licensed_agents",
        "CustomerAWSAccountId": ACCOUNT,
        "LicenseArn": LICENCE,
        "Value": {"IntegerValue": 40},
        "ExpirationDate": EXPIRES,
    }
    assert legacy["CustomerIdentifier"] == LEGACY_CUSTOMER
    assert "ExpirationDate" not in legacy and "LicenseArn" not in legacy


def test_set_entitlement_replaces_the_value_of_that_dimension(mp: Marketplace) -> None:
    for value in (10, 12):
        mp.sim.set_entitlement(
            license_arn=LICENCE,
            customer_aws_account_id=ACCOUNT,
            customer_identifier=None,
            dimension="licensed_agents",
            value=value,
            expiration=EXPIRES,
        )
    (only,) = mp.entitlement.get_entitlements(ProductCode=PRODUCT)["Entitlements"]
    assert only["Value"] == {"IntegerValue": 12}


def test_filters_combine_keys_with_and_and_values_with_or(mp: Marketplace) -> None:
    add_contracts(mp, 5)
    mp.sim.set_entitlement(
        license_arn=f"arn:aws:license-manager::294406891311:license:l-{1:016x}",
        customer_aws_account_id=None,
        customer_identifier=None,
        dimension="support_tier",
        value=2,
        expiration=None,
    )
    wanted = [f"{900000000000 + index}" for index in (1, 3)]

    both, _ = all_pages(mp, 25, Filter={"CUSTOMER_AWS_ACCOUNT_ID": wanted})
    licensed, _ = all_pages(
        mp, 25, Filter={"CUSTOMER_AWS_ACCOUNT_ID": wanted, "DIMENSION": ["licensed_agents"]}
    )

    assert len(both) == 3
    assert sorted(entitlement["Value"]["IntegerValue"] for entitlement in licensed) == [2, 4]


def test_paging_returns_everything_exactly_once() -> None:
    mp = make_marketplace()
    add_contracts(mp, 30)

    entitlements, empty = all_pages(mp, 7)

    assert empty == 0
    assert sorted(entitlement["Value"]["IntegerValue"] for entitlement in entitlements) == list(range(1, 31))


def test_empty_pages_still_carry_a_next_token_and_paging_must_go_on() -> None:
    mp = make_marketplace(FaultPlan(seed=11, empty_page_rate=0.5))
    add_contracts(mp, 30)

    entitlements, empty = all_pages(mp, 7)

    assert empty >= 1
    assert sorted(entitlement["Value"]["IntegerValue"] for entitlement in entitlements) == list(range(1, 31))
    assert (entitlements, empty) == all_pages(mp, 7), "same seed, same pages"


def test_max_results_above_25_is_invalid(mp: Marketplace) -> None:
    with pytest.raises(mp.entitlement.exceptions.InvalidParameterException) as excinfo:
        mp.entitlement.get_entitlements(ProductCode=PRODUCT, MaxResults=26)
    assert "MaxResults" in excinfo.value.response["Error"]["Message"]


@pytest.mark.parametrize("token", ["garbage", "eyJxIjoiIiwibyI6MCwicCI6MH0.0000", "a.b.c"])
def test_a_next_token_this_service_did_not_return_is_invalid(mp: Marketplace, token: str) -> None:
    with pytest.raises(mp.entitlement.exceptions.InvalidParameterException) as excinfo:
        mp.entitlement.get_entitlements(ProductCode=PRODUCT, NextToken=token)
    assert "NextToken" in excinfo.value.response["Error"]["Message"]


def test_a_next_token_is_bound_to_its_filter(mp: Marketplace) -> None:
    add_contracts(mp, 3)
    page = mp.entitlement.get_entitlements(ProductCode=PRODUCT, MaxResults=1)
    with pytest.raises(mp.entitlement.exceptions.InvalidParameterException):
        mp.entitlement.get_entitlements(
            ProductCode=PRODUCT, NextToken=page["NextToken"], Filter={"DIMENSION": ["licensed_agents"]}
        )


def test_get_entitlements_needs_this_product_code(mp: Marketplace) -> None:
    with pytest.raises(mp.entitlement.exceptions.InvalidParameterException) as excinfo:
        mp.entitlement.get_entitlements(ProductCode="prod-someoneelse")
    assert "prod-someoneelse" in excinfo.value.response["Error"]["Message"]


# --------------------------------------------------------------------------------------------
# Plugging in
# --------------------------------------------------------------------------------------------
def test_attach_refuses_other_services_and_entitlement_outside_us_east_1() -> None:
    sim = MarketplaceSimulator(product_code=PRODUCT)
    with pytest.raises(ValueError, match="cannot simulate"):
        sim.attach(boto3.client("sqs", region_name="us-east-1"))
    with pytest.raises(ValueError, match="us-east-1"):
        sim.attach(boto3.client("marketplace-entitlement", region_name="eu-west-1"))


def test_attaching_twice_answers_once(mp: Marketplace) -> None:
    mp.sim.attach(mp.metering)
    meter(mp, record())
    assert mp.sim.counter("BatchMeterUsage").calls == 1


def test_cbor_requests_are_read_too() -> None:
    """botocore picks the entitlement service's protocol; the simulator must read either one."""
    client = boto3.client("marketplace-entitlement", region_name="us-east-1")
    operation = client.meta.service_model.operation_model("GetEntitlements")
    request = create_serializer("smithy-rpc-v2-cbor").serialize_to_request(
        {"ProductCode": PRODUCT, "Filter": {"DIMENSION": ["licensed_agents"]}, "MaxResults": 5}, operation
    )

    body, size = decode_request_body(request)

    assert request["headers"]["Content-Type"] == "application/cbor"
    assert body == {"ProductCode": PRODUCT, "Filter": {"DIMENSION": ["licensed_agents"]}, "MaxResults": 5}
    assert size == len(request["body"])


# --------------------------------------------------------------------------------------------
# Licences are matched by licence id, in every spelling the model accepts
# --------------------------------------------------------------------------------------------
LICENCE_ID = "l-0a1b2c3d4e5f60718"
GLOBAL_SLASH = f"arn:aws:license-manager::294406891311:license/{LICENCE_ID}"
REGIONAL_COLON = f"arn:aws:license-manager:us-east-1:294406891311:license:{LICENCE_ID}"
EVENT_FORM = f"aws:license-manager:us-east-1:294406891311:{LICENCE_ID}"


def test_the_model_pattern_accepts_both_arn_spellings_and_not_the_event_form() -> None:
    pattern = re.compile(metering_model()["shapes"]["LicenseArn"]["pattern"])
    assert all(pattern.search(spelling) for spelling in (LICENCE, GLOBAL_SLASH, REGIONAL_COLON))
    assert not pattern.search(EVENT_FORM)


def test_every_arn_spelling_of_a_licence_meters_the_same_subscription(mp: Marketplace) -> None:
    first = meter(mp, record(7, licence=GLOBAL_SLASH))
    again = meter(mp, record(7, licence=REGIONAL_COLON))
    other = meter(mp, record(8, licence=LICENCE))

    assert statuses(first) == statuses(again) == ["Success"]
    assert again["Results"][0]["MeteringRecordId"] == first["Results"][0]["MeteringRecordId"]
    assert statuses(other) == ["DuplicateRecord"]
    assert again["Results"][0]["UsageRecord"]["LicenseArn"] == REGIONAL_COLON, "echoed as sent"
    assert len(mp.sim.ledger.accepted(license_arn=EVENT_FORM)) == 1


def test_a_licence_arn_outside_the_model_pattern_is_refused(mp: Marketplace) -> None:
    message = invalid_licence(mp, record(1, licence=EVENT_FORM))
    assert "LicenseArn" in message


def test_a_subscription_registered_in_the_event_form_matches_records_by_licence_id() -> None:
    mp = make_marketplace()
    licence_id = "l-00000000000000abc"
    mp.sim.add_subscription(
        customer_aws_account_id=OTHER_ACCOUNT,
        license_arn=f"aws:license-manager:us-east-1:294406891311:{licence_id}",
        started=STARTED,
    )
    arn = f"arn:aws:license-manager::294406891311:license:{licence_id}"
    assert statuses(meter(mp, record(3, account=OTHER_ACCOUNT, licence=arn))) == ["Success"]
    invalid_licence(mp, record(3, account=ACCOUNT, licence=arn, hour=LAST_HOUR - timedelta(hours=1)))


# --------------------------------------------------------------------------------------------
# Fault plan: revoked licences
# --------------------------------------------------------------------------------------------
def test_a_revoked_licence_refuses_every_call_that_carries_it_from_the_revocation() -> None:
    at = NOW + timedelta(minutes=5)
    mp = make_marketplace(FaultPlan(revoked=(Revocation(license_arn=GLOBAL_SLASH, at=at),)))

    mp.clock.now = at - timedelta(milliseconds=1)
    assert statuses(meter(mp, record(1, hour=LAST_HOUR - timedelta(hours=1)))) == ["Success"]

    mp.clock.now = at
    legacy = legacy_record(2)
    message = invalid_licence(
        mp, record(1, hour=LAST_HOUR), record(1, licence=REGIONAL_COLON, hour=LAST_HOUR)
    )
    assert "revoked" in message and "UsageRecords[0]" in message
    assert statuses(mp.metering.batch_meter_usage(ProductCode=PRODUCT, UsageRecords=[legacy])) == ["Success"]
    assert len(mp.sim.ledger) == 2


def test_revocation_needs_an_aware_instant() -> None:
    with pytest.raises(ValueError, match=r"Revocation\.at"):
        Revocation(license_arn=LICENCE, at=datetime(2025, 3, 4, 12, 0))


# --------------------------------------------------------------------------------------------
# DisabledApiException
# --------------------------------------------------------------------------------------------
def test_disabled_api_outage_answers_the_operations_that_model_it() -> None:
    metering = metering_model()["operations"]
    entitlement = entitlement_model()["operations"]
    modeled = {
        name: {error["shape"] for error in operation["errors"]}
        for name, operation in (*metering.items(), *entitlement.items())
    }
    assert "DisabledApiException" in modeled["BatchMeterUsage"]
    assert "DisabledApiException" in modeled["ResolveCustomer"]
    assert "DisabledApiException" not in modeled["GetEntitlements"]

    mp = make_marketplace(FaultPlan(outages=(Outage(NOW, NOW + timedelta(hours=1), "DisabledApiException"),)))
    token = mp.sim.issue_token(license_arn=LICENCE)
    with pytest.raises(mp.metering.exceptions.DisabledApiException):
        meter(mp, record())
    with pytest.raises(mp.metering.exceptions.DisabledApiException) as excinfo:
        mp.metering.resolve_customer(RegistrationToken=token)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert mp.entitlement.get_entitlements(ProductCode=PRODUCT)["Entitlements"] == []
    assert len(mp.sim.ledger) == 0


# --------------------------------------------------------------------------------------------
# UsageAllocations: Tags optional
# --------------------------------------------------------------------------------------------
def test_an_allocation_may_leave_out_its_tags(mp: Marketplace) -> None:
    allocation_shape = metering_model()["shapes"]["UsageAllocation"]
    assert "Tags" not in allocation_shape.get("required", [])

    untagged: UsageAllocationTypeDef = {"AllocatedUsageQuantity": 3}
    result = meter(mp, record(7, allocations=[untagged, env("prod", 4)]))

    assert statuses(result) == ["Success"]
    assert sorted(allocation.tags for allocation in mp.sim.ledger.entries[0].allocations) == [
        (),
        (("environment", "prod"),),
    ]


def test_an_empty_tag_list_is_refused(mp: Marketplace) -> None:
    assert metering_model()["shapes"]["TagList"]["min"] == 1
    client = unvalidated_client(mp)
    with pytest.raises(client.exceptions.InvalidTagException):
        client.batch_meter_usage(
            UsageRecords=[record(1, allocations=[{"AllocatedUsageQuantity": 1, "Tags": []}])]
        )


# --------------------------------------------------------------------------------------------
# Quantities: Integer or decimal string, never mixed
# --------------------------------------------------------------------------------------------
def raw_record(**fields: Any) -> UsageRecordTypeDef:
    """A record with fields the installed type stubs predate (QuantityAsDecimal...)."""
    usage: dict[str, Any] = {
        "Timestamp": LAST_HOUR,
        "Dimension": "agent_minutes",
        "CustomerAWSAccountId": ACCOUNT,
        "LicenseArn": LICENCE,
        **fields,
    }
    return cast(UsageRecordTypeDef, usage)


def unvalidated_client(mp: Marketplace) -> MarketplaceMeteringClient:
    """A client that sends what it is given, as a caller without botocore's checks reaches AWS."""
    client: MarketplaceMeteringClient = boto3.client(
        "meteringmarketplace", region_name="us-east-1", config=Config(parameter_validation=False)
    )
    return mp.sim.attach(client)


def test_quantity_shapes_come_from_the_model() -> None:
    shapes = metering_model()["shapes"]
    assert shapes["UsageQuantity"] == {"type": "integer", "max": MAX_QUANTITY, "min": 0}
    assert shapes["AllocatedUsageQuantity"] == {"type": "integer", "max": MAX_QUANTITY, "min": 0}
    for name in ("UsageQuantityAsDecimalString", "AllocatedUsageQuantityAsDecimalString"):
        assert shapes[name]["pattern"].strip("^$") == DECIMAL_QUANTITY.pattern
    documentation = shapes["UsageRecord"]["members"]["UsageAllocations"]["documentation"]
    assert "Allocations must use the same type of quantity as the usage record" in documentation


@pytest.mark.parametrize(
    ("usage", "error_code", "says"),
    [
        (
            raw_record(Quantity=7, UsageAllocations=[{"AllocatedUsageQuantityAsDecimal": "7", "Tags": []}]),
            "InvalidUsageAllocationsException",
            "whole",
        ),
        (
            raw_record(QuantityAsDecimal="7", UsageAllocations=[{"AllocatedUsageQuantity": 7}]),
            "InvalidUsageAllocationsException",
            "decimal",
        ),
        (raw_record(Quantity=7, QuantityAsDecimal="7"), "ValidationException", "not both"),
        (
            raw_record(
                Quantity=7,
                UsageAllocations=[{"AllocatedUsageQuantity": 7, "AllocatedUsageQuantityAsDecimal": "7"}],
            ),
            "InvalidUsageAllocationsException",
            "not both",
        ),
        (
            raw_record(Quantity=7, UsageAllocations=[{"Tags": [{"Key": "environment", "Value": "prod"}]}]),
            "InvalidUsageAllocationsException",
            "exactly one",
        ),
        (raw_record(Quantity=1.5), "ValidationException", "integer"),
        (raw_record(Quantity="7"), "ValidationException", "integer"),
        (raw_record(Quantity=True), "ValidationException", "integer"),
        (raw_record(Quantity=-1), "ValidationException", "integer"),
        (raw_record(QuantityAsDecimal="1.1234567"), "ValidationException", "QuantityAsDecimal"),
        (raw_record(QuantityAsDecimal="07"), "ValidationException", "QuantityAsDecimal"),
        (raw_record(QuantityAsDecimal=7), "ValidationException", "QuantityAsDecimal"),
        (
            raw_record(
                Quantity=7,
                UsageAllocations=[{"AllocatedUsageQuantity": 3.5}, {"AllocatedUsageQuantity": 3.5}],
            ),
            "InvalidUsageAllocationsException",
            "integer",
        ),
    ],
    ids=[
        "whole-record-decimal-allocation",
        "decimal-record-whole-allocation",
        "both-record-quantities",
        "both-allocation-quantities",
        "allocation-without-quantity",
        "float-quantity",
        "string-quantity",
        "boolean-quantity",
        "negative-quantity",
        "seven-decimals",
        "leading-zero",
        "decimal-not-a-string",
        "float-allocations",
    ],
)
def test_quantities_of_the_wrong_type_are_refused(
    mp: Marketplace, usage: UsageRecordTypeDef, error_code: str, says: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        unvalidated_client(mp).batch_meter_usage(UsageRecords=[usage])

    code, message = error_of(excinfo)
    assert (code, "UsageRecords[0]" in message, says in message) == (error_code, True, True)
    assert len(mp.sim.ledger) == 0


def test_decimal_quantities_are_accepted_and_compared_by_value(mp: Marketplace) -> None:
    allocations = [
        {"AllocatedUsageQuantityAsDecimal": "1.25", "Tags": [{"Key": "environment", "Value": "prod"}]},
        {"AllocatedUsageQuantityAsDecimal": "0.25"},
    ]
    first = meter(mp, raw_record(QuantityAsDecimal="1.50", UsageAllocations=allocations))
    same_value = meter(mp, raw_record(QuantityAsDecimal="1.5"))
    other_value = meter(mp, raw_record(QuantityAsDecimal="1.500001"))
    whole = meter(mp, raw_record(QuantityAsDecimal="17.00", Dimension="overage_agents"))
    whole_again = meter(mp, raw_record(Quantity=17, Dimension="overage_agents"))

    assert statuses(first) == statuses(same_value) == ["Success"]
    assert statuses(other_value) == ["DuplicateRecord"]
    assert statuses(whole) == statuses(whole_again) == ["Success"]
    assert whole_again["Results"][0]["MeteringRecordId"] == whole["Results"][0]["MeteringRecordId"]
    fractional, seventeen = mp.sim.ledger.entries
    assert (fractional.exact_quantity, seventeen.exact_quantity, seventeen.quantity) == (
        Decimal("1.5"),
        Decimal(17),
        17,
    )


# --------------------------------------------------------------------------------------------
# GetEntitlements: customer filters, value types
# --------------------------------------------------------------------------------------------
def test_customer_identifier_and_account_filters_are_mutually_exclusive(mp: Marketplace) -> None:
    add_contracts(mp, 2)
    filter_names = entitlement_model()["shapes"]["GetEntitlementFilterName"]["enum"]
    assert sorted(filter_names) == sorted(ENTITLEMENT_FILTER_KEYS)

    with pytest.raises(mp.entitlement.exceptions.InvalidParameterException) as excinfo:
        mp.entitlement.get_entitlements(
            ProductCode=PRODUCT,
            Filter={"CUSTOMER_IDENTIFIER": [LEGACY_CUSTOMER], "CUSTOMER_AWS_ACCOUNT_ID": [ACCOUNT]},
        )
    assert "mutually exclusive" in excinfo.value.response["Error"]["Message"]

    licence = f"arn:aws:license-manager::294406891311:license:l-{1:016x}"
    by_licence = mp.entitlement.get_entitlements(
        ProductCode=PRODUCT,
        Filter={
            "CUSTOMER_AWS_ACCOUNT_ID": [f"{900000000001}"],
            "LICENSE_ARN": [licence.replace(":l-", "/l-")],
        },
    )
    assert [entitlement["Value"] for entitlement in by_licence["Entitlements"]] == [{"IntegerValue": 2}]
    legacy = mp.entitlement.get_entitlements(
        ProductCode=PRODUCT, Filter={"CUSTOMER_IDENTIFIER": [LEGACY_CUSTOMER], "LICENSE_ARN": [licence]}
    )
    assert legacy["Entitlements"] == []


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (40, {"IntegerValue": 40}),
        (2.5, {"DoubleValue": 2.5}),
        (True, {"BooleanValue": True}),
        (False, {"BooleanValue": False}),
        ("gold", {"StringValue": "gold"}),
    ],
    ids=["integer", "double", "true", "false", "string"],
)
def test_entitlement_values_of_every_type_come_back_as_aws_returns_them(
    mp: Marketplace, value: int | float | bool | str, wire: dict[str, Any]
) -> None:
    members = entitlement_model()["shapes"]["EntitlementValue"]["members"]
    assert set(members) == {"IntegerValue", "DoubleValue", "BooleanValue", "StringValue"}
    assert set(wire) <= set(members)

    mp.sim.set_entitlement(license_arn=LICENCE, dimension="support_tier", value=value)
    (only,) = mp.entitlement.get_entitlements(ProductCode=PRODUCT)["Entitlements"]
    assert only["Value"] == wire


# --------------------------------------------------------------------------------------------
# ResolveCustomer: Metadata.AgreementId
# --------------------------------------------------------------------------------------------
def test_resolve_customer_returns_every_member_of_the_model(mp: Marketplace) -> None:
    shapes = metering_model()["shapes"]
    assert set(shapes["ResolveCustomerResult"]["members"]) == {
        "CustomerIdentifier",
        "ProductCode",
        "CustomerAWSAccountId",
        "LicenseArn",
        "Metadata",
    }
    agreement_pattern = re.compile(shapes["AgreementId"]["pattern"])
    mp.sim.add_subscription(
        customer_aws_account_id=ACCOUNT,
        license_arn=OTHER_LICENCE,
        started=STARTED,
        agreement_id="agmt-OTHER1",
    )

    answer = cast(
        dict[str, Any],
        mp.metering.resolve_customer(RegistrationToken=mp.sim.issue_token(license_arn=LICENCE)),
    )
    chosen = cast(
        dict[str, Any],
        mp.metering.resolve_customer(RegistrationToken=mp.sim.issue_token(license_arn=OTHER_LICENCE)),
    )
    legacy = cast(
        dict[str, Any],
        mp.metering.resolve_customer(
            RegistrationToken=mp.sim.issue_token(customer_identifier=LEGACY_CUSTOMER)
        ),
    )

    assert {name: answer[name] for name in ("CustomerAWSAccountId", "LicenseArn", "ProductCode")} == {
        "CustomerAWSAccountId": ACCOUNT,
        "LicenseArn": LICENCE,
        "ProductCode": PRODUCT,
    }
    assert agreement_pattern.fullmatch(answer["Metadata"]["AgreementId"])
    assert answer["Metadata"]["AgreementId"].startswith("agmt-")
    assert chosen["Metadata"] == {"AgreementId": "agmt-OTHER1"}
    assert legacy["CustomerIdentifier"] == LEGACY_CUSTOMER and "AgreementId" in legacy["Metadata"]
    assert len({answer["Metadata"]["AgreementId"], legacy["Metadata"]["AgreementId"], "agmt-OTHER1"}) == 3


# --------------------------------------------------------------------------------------------
# Replay's F.json
# --------------------------------------------------------------------------------------------
def test_faults_file_reads_revoked_licences_and_disabled_api_outages(tmp_path: Path) -> None:
    path = tmp_path / "F.json"
    path.write_text(
        json.dumps(
            {
                "seed": 3,
                "outages": [
                    {
                        "start": "2025-03-04T12:00:00Z",
                        "end": "2025-03-04T13:00:00Z",
                        "error": "DisabledApiException",
                    }
                ],
                "revoked": [{"license_arn": EVENT_FORM, "at": "2025-03-04T12:30:00Z"}],
            }
        )
    )
    plan = load_faults(path).plan()

    assert plan.revoked == (Revocation(license_arn=EVENT_FORM, at=datetime(2025, 3, 4, 12, 30, tzinfo=UTC)),)
    assert plan.outages[0].error == "DisabledApiException"
    assert plan.revoked[0].revokes(LICENCE, datetime(2025, 3, 4, 12, 30, tzinfo=UTC))


@pytest.mark.parametrize(
    ("faults", "says"),
    [
        ({"revoked": [{"license_arn": LICENCE}]}, "revoked.0.at"),
        ({"revoked": [{"license_arn": LICENCE, "at": "2025-03-04T12:30:00"}]}, "revoked.0.at"),
        ({"revoked": [{"license_arn": "", "at": "2025-03-04T12:30:00Z"}]}, "revoked.0.license_arn"),
        ({"revoked": [{"license_arn": LICENCE, "at": "2025-03-04T12:30:00Z", "by": "x"}]}, "revoked.0.by"),
        ({"revoked": {"license_arn": LICENCE}}, "revoked"),
        (
            {"outages": [{"start": "2025-03-04T12:00:00Z", "end": "2025-03-04T13:00:00Z", "error": "Nope"}]},
            "outages.0.error",
        ),
        (
            {
                "outages": [
                    {
                        "start": "2025-03-04T13:00:00Z",
                        "end": "2025-03-04T12:00:00Z",
                        "error": "ThrottlingException",
                    }
                ]
            },
            "outages.0",
        ),
        ({"outages": [{"end": "2025-03-04T12:00:00Z", "error": "ThrottlingException"}]}, "outages.0.start"),
        ({"revocations": []}, "revocations"),
    ],
    ids=[
        "no-at",
        "naive-at",
        "empty-arn",
        "unknown-revoked-key",
        "not-a-list",
        "bad-error",
        "backwards",
        "no-start",
        "unknown-key",
    ],
)
def test_faults_file_names_the_bad_field(tmp_path: Path, faults: dict[str, Any], says: str) -> None:
    path = tmp_path / "F.json"
    path.write_text(json.dumps(faults))
    with pytest.raises(BadInput) as excinfo:
        load_faults(path)
    assert str(excinfo.value).startswith(f"{path}: {says}")
