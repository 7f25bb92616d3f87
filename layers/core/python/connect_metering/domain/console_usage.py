"""What the console's usage page shows: the company's metered quantities per UTC day and environment, for
this month and the last, read from the write-ahead ledger's records (pure: records and ``now`` in).

A record counts when it is accepted by AWS Marketplace or pending (written, about to be sent), as the
billed minutes B(s, e) do (BILLING.md section 5); records Marketplace refused are left out. A record's
``allocations`` give its quantity per environment; a record without them (contract overage, billed to
the company as a whole) is shown under ``COMPANY_WIDE``. Hours after the last metered hour of the month
are "not metered yet": the hourly job bills each hour some minutes after it ends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from connect_metering.domain.instants import MS_PER_HOUR, from_ms, to_ms
from connect_metering.domain.metering import COUNTED, MeteringRecord

COMPANY_WIDE = "(whole company)"


@dataclass(frozen=True, slots=True)
class Month:
    first_ms: int
    end_ms: int  # exclusive

    @property
    def label(self) -> str:
        return from_ms(self.first_ms).strftime("%B %Y")

    @property
    def key(self) -> str:
        return from_ms(self.first_ms).strftime("%Y-%m")

    def holds(self, epoch_ms: int) -> bool:
        return self.first_ms <= epoch_ms < self.end_ms


def month_of(moment: datetime) -> Month:
    first = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    return Month(to_ms(first), to_ms(following))


def previous_month(month: Month) -> Month:
    return month_of(from_ms(month.first_ms - 1))


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: str  # YYYY-MM-DD, UTC
    environment: str
    dimension: str
    quantity: int


@dataclass(frozen=True, slots=True)
class MonthUsage:
    month: Month
    rows: tuple[UsageRow, ...]
    # From this hour (ms) to the month's end or now, nothing is metered yet; None: all of it is.
    unmetered_from_ms: int | None

    def total(self, dimension: str) -> int:
        return sum(row.quantity for row in self.rows if row.dimension == dimension)

    def per_day(self, dimension: str) -> dict[str, int]:
        days: dict[str, int] = defaultdict(int)
        for row in self.rows:
            if row.dimension == dimension:
                days[row.day] += row.quantity
        return dict(sorted(days.items()))

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(sorted({row.dimension for row in self.rows}))


def month_usage(
    records: Iterable[MeteringRecord],
    month: Month,
    *,
    now: datetime,
    metered_through_ms: Mapping[str, int | None],
) -> MonthUsage:
    """The month's rows (sorted by day, environment, dimension) and where its unmetered hours start.

    ``metered_through_ms`` is each subscription's last metered hour (the meter's state); the month is
    metered up to the earliest of them, and up to now at most."""
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for record in records:
        if record.status not in COUNTED or not month.holds(record.hour_ms):
            continue
        day = from_ms(record.hour_ms).strftime("%Y-%m-%d")
        shares = record.allocations or {COMPANY_WIDE: record.quantity}
        for environment, quantity in shares.items():
            if quantity:  # an hour metered at zero is no usage to list
                totals[(day, environment, record.dimension)] += quantity
    rows = tuple(
        UsageRow(day=day, environment=environment, dimension=dimension, quantity=quantity)
        for (day, environment, dimension), quantity in sorted(totals.items())
    )
    return MonthUsage(month, rows, _unmetered_from(month, now, metered_through_ms))


def _unmetered_from(month: Month, now: datetime, through: Mapping[str, int | None]) -> int | None:
    now_hour = to_ms(now) // MS_PER_HOUR * MS_PER_HOUR
    horizon = min(month.end_ms, now_hour)
    if horizon <= month.first_ms:
        return None
    metered = [value for value in through.values() if value is not None]
    next_hour = min(metered) + MS_PER_HOUR if metered else month.first_ms
    start = max(next_hour, month.first_ms)
    return start if start < horizon else None


def usage_csv_rows(months: Iterable[MonthUsage]) -> list[list[str]]:
    """The CSV download: a header and one line per day, environment and dimension."""
    lines = [["month", "day", "environment", "dimension", "quantity"]]
    for usage in months:
        lines.extend(
            [usage.month.key, row.day, row.environment, row.dimension, str(row.quantity)]
            for row in usage.rows
        )
    return lines
