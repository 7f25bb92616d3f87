"""Every stored key that holds a date or an hour is total: four-digit years, read back exactly; and every
tenancy table key keeps the format items were stored with."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connect_metering.adapters import tenancy_keys as keys
from connect_metering.adapters.activity_table import parse_partition_key, partition_key
from connect_metering.domain.instants import iso_ms, parse_iso_ms, to_ms, utc_day

INSTANCE = "arn:aws:connect:us-east-1:111122223333:instance/aaaaaaaa-0000-4000-8000-000000000001"


@pytest.mark.parametrize("year", [1, 9, 99, 999, 1000, 1969, 2026, 9999])
def test_days_and_instants_have_four_digit_years_and_read_back(year: int) -> None:
    moment = to_ms(datetime(year, 6, 1, 7, 5, 3, 4000, tzinfo=UTC))
    assert iso_ms(moment) == f"{year:04d}-06-01T07:05:03.004Z"
    assert parse_iso_ms(iso_ms(moment)) == moment
    assert utc_day(moment) == f"{year:04d}-06-01"
    day_start = to_ms(datetime(year, 6, 1, tzinfo=UTC))
    assert partition_key(INSTANCE, moment) == f"{INSTANCE}#{year:04d}-06-01"
    assert parse_partition_key(partition_key(INSTANCE, moment)) == (INSTANCE, day_start)


@pytest.mark.parametrize("day", ["999-06-01", "0999-6-01", "0000-01-01", "2026-13-01", "2026-02-30", ""])
def test_a_day_key_that_is_not_a_date_is_refused(day: str) -> None:
    with pytest.raises(ValueError):
        parse_partition_key(f"{INSTANCE}#{day}")


def test_tenancy_keys_keep_their_stored_format() -> None:
    """Items already stored are found again: every tenancy key is pinned here, byte for byte."""
    arn = INSTANCE
    assert keys.company_pk("acme") == "COMPANY#acme"
    assert keys.account_pk("111122223333") == "ACCOUNT#111122223333"
    assert keys.subscription_claim_pk("license#l-1") == "SUBSCRIPTION#license#l-1"
    assert keys.instance_pk(arn) == f"INSTANCE#{arn}"
    assert keys.registration_pk("d1") == "REGISTRATION#d1"
    assert keys.token_pk("d2") == "TOKEN#d2"
    assert keys.lifecycle_pk("license#l-1") == "LIFECYCLE#license#l-1"
    assert keys.PARKED_PK == "LIFECYCLE#PARKED"
    assert keys.subscription_sk("license#l-1") == "SUB#license#l-1"
    assert keys.environment_sk("prod") == "ENV#prod"
    assert keys.buyer_sk("111122223333") == "BUYER#111122223333"
    assert keys.activity_sk("prod") == "ACT#prod"
    assert (
        keys.pending_record_sk("2026-11-01T09:00:00.000Z", "license#l-1", "AgentMinutes")
        == "PENDING#2026-11-01T09:00:00.000Z#license#l-1#AgentMinutes"
    )
    assert keys.parked_sk("2026-11-01T09:00:00Z", "license#l-1") == "2026-11-01T09:00:00Z#license#l-1"
    assert keys.event_sk("2026-11-01T09:00:00Z", "e-1") == "EVENT#2026-11-01T09:00:00Z#e-1"
    assert (keys.COMPANY_SK, keys.METER_SK, keys.CLAIM_SK, keys.INSTANCE_SK) == (
        "#COMPANY",
        "#METER",
        "#CLAIM",
        "#ENV",
    )
    assert (keys.REGISTRATION_SK, keys.TOKEN_SK, keys.PENDING_SK) == ("#REGISTRATION", "#USED", "#PENDING")
    assert (keys.PARTITION_KEY, keys.SORT_KEY, keys.TTL_ATTRIBUTE) == ("pk", "sk", "expires_at")
    assert (keys.ACTIVE_SUBSCRIPTIONS_INDEX, keys.INDEX_PARTITION_KEY, keys.INDEX_SORT_KEY) == (
        "active-subscriptions",
        "meter_shard",
        "started",
    )
    # crc32 of the key modulo 4, fixed: a subscription stays in the index shard it was written to.
    assert keys.index_shards() == ["shard#0", "shard#1", "shard#2", "shard#3"]
    assert [keys.index_shard(f"license#l-{n}") for n in (1, 2, 3)] == ["shard#0", "shard#2", "shard#0"]
