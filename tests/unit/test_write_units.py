"""Write capacity units as DynamoDB bills them (local/write_units.py, used by `bench`)."""

from __future__ import annotations

from typing import Any

import pytest

from connect_metering.local.write_units import item_bytes, number_bytes, write_units

pytestmark = pytest.mark.unit


def test_an_update_costs_the_larger_of_before_and_after_in_whole_kilobytes() -> None:
    assert write_units(0, 1) == 1
    assert write_units(0, 1024) == 1
    assert write_units(0, 1025) == 2
    assert write_units(2049, 10) == 3  # a shrinking item is billed by its size before
    assert write_units(0, 0) == 1  # a write that finds nothing still costs one unit


def test_a_transactional_write_costs_twice() -> None:
    assert write_units(100, 1500, transactional=True) == 4


def test_item_size_counts_names_and_values() -> None:
    item: dict[str, Any] = {
        "pk": {"S": "abc"},  # 2 + 3
        "ev": {"SS": ["12345", "é"]},  # 2 + 5 + 2 (UTF-8)
        "doc": {"B": b"\x00\x01"},  # 3 + 2
        "n": {"N": "1200"},  # 1 + (2 significant digits -> 1 byte) + 1
        "ok": {"BOOL": True},  # 2 + 1
        "m": {"M": {"a": {"S": "x"}}},  # 1 + 3 + (1 + 1 + 1)
        "l": {"L": [{"N": "7"}, {"NULL": True}]},  # 1 + 3 + (1 + 2) + (1 + 1)
    }
    assert item_bytes(item) == 5 + 9 + 5 + 3 + 3 + 7 + 9
    assert item_bytes(None) == 0


@pytest.mark.parametrize(("text", "expected"), [("0", 1), ("7", 2), ("-12.50", 3), ("1767225600000", 5)])
def test_numbers_take_a_byte_per_two_significant_digits_plus_one(text: str, expected: int) -> None:
    """Leading and trailing zeros are not significant: 1767225600000 is 8 digits, 5 bytes."""
    assert number_bytes(text) == expected
