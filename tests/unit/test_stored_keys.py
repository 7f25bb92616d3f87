"""Every stored key that holds a date or an hour is total: four-digit years, read back exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

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
