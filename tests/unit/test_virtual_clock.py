"""The local runtime's virtual clock: moved by instants or by epoch ms (settled when read), never back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connect_metering.domain.instants import from_ms, to_ms
from connect_metering.local.embedded import VirtualClock

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_move_in_epoch_ms_is_seen_by_the_next_read() -> None:
    clock = VirtualClock(T0)
    clock.advance_to_ms(to_ms(T0) + 1_500)
    clock.advance_to_ms(to_ms(T0) + 2_750)
    assert clock.now() == T0 + timedelta(milliseconds=2_750)
    assert clock.monotonic() == pytest.approx(2.75)


def test_the_clock_never_moves_back() -> None:
    clock = VirtualClock(T0)
    clock.advance_to_ms(to_ms(T0) + 5_000)
    clock.advance_to_ms(to_ms(T0) + 1_000)  # earlier than the move waiting to be read
    assert clock.now() == from_ms(to_ms(T0) + 5_000)
    clock.advance_to_ms(to_ms(T0) - 60_000)  # earlier than now
    assert clock.now() == from_ms(to_ms(T0) + 5_000)
    clock.advance_to(T0)
    assert clock.now() == from_ms(to_ms(T0) + 5_000)
    assert clock.monotonic() == pytest.approx(5.0)


def test_a_move_waiting_to_be_read_comes_before_a_later_instant() -> None:
    clock = VirtualClock(T0)
    clock.advance_to_ms(to_ms(T0) + 1_000)
    clock.advance_to(T0 + timedelta(seconds=3))
    clock.sleep(0.5)
    assert clock.now() == T0 + timedelta(seconds=3)
    assert clock.monotonic() == pytest.approx(3.5)
