"""What `connect-metering replay` says when it has run: prices (``--price-*`` or R.json ``pricing``),
the per-company table (the same builder and columns as simulate's), loud warnings, a progress bar with
the time left while the recording is read (on a terminal only), and the report (report.html and
report.svg). The run itself (replay.py) only hands over its summary and the deliveries it reads."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from markupsafe import Markup

from connect_metering.domain.instants import MS_PER_HOUR, hour_floor, iso_ms
from connect_metering.local import report
from connect_metering.local.recordings import GZIP_MAGIC, RecordingError, recording_files
from connect_metering.local.replay_input import BadInput, Delivery, Registry
from connect_metering.local.replay_output import UNATTRIBUTED

PRICE_NAMES = ("price_per_minute", "price_per_overage_agent_hour")
CENT = Decimal("0.01")


# Prices ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pricing:
    """Dollars per accepted agent-minute (usage) and per accepted overage agent-hour (contracts); None:
    not priced. ``sources`` says where each price came from, for the table and the report."""

    price_per_minute: Decimal | None = None
    price_per_overage_agent_hour: Decimal | None = None
    sources: tuple[str, ...] = ()

    @property
    def priced(self) -> bool:
        return self.price_per_minute is not None or self.price_per_overage_agent_hour is not None

    def amount(self, minutes: int, overage_agent_hours: int) -> Decimal:
        """Exact (no rounding): the unpriced part counts 0 and is named by ``unpriced``."""
        total = Decimal(0)
        if self.price_per_minute is not None:
            total += minutes * self.price_per_minute
        if self.price_per_overage_agent_hour is not None:
            total += overage_agent_hours * self.price_per_overage_agent_hour
        return total

    def unpriced(self, minutes: int, overage_agent_hours: int) -> str:
        parts = []
        if minutes and self.price_per_minute is None:
            parts.append("minutes")
        if overage_agent_hours and self.price_per_overage_agent_hour is None:
            parts.append("overage")
        return " + ".join(parts)

    def describe(self) -> str:
        parts = []
        if self.price_per_minute is not None:
            parts.append(f"${self.price_per_minute} per agent-minute")
        if self.price_per_overage_agent_hour is not None:
            parts.append(f"${self.price_per_overage_agent_hour} per overage agent-hour")
        return ", ".join(parts) + f" ({'; '.join(self.sources)})"


def dollars(amount: Decimal) -> str:
    """For display only: rounded half-up to cents (the exact amounts are in summary.json)."""
    return f"${amount.quantize(CENT, rounding=ROUND_HALF_UP):,}"


def parse_price(value: object, where: str) -> Decimal:
    """A non-negative, finite number of dollars (``"0.004"``, ``0.3``), as an exact Decimal."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadInput(f"{where}: expected a price in dollars such as 0.004, got {value!r}")
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadInput(f"{where}: expected a price in dollars such as 0.004, got {value!r}") from None
    if not price.is_finite() or price < 0:
        raise BadInput(f"{where}: a price must be a finite number of dollars, 0 or more, got {value!r}")
    return price


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--price-per-minute",
        default=None,
        help="dollars per accepted agent-minute, e.g. 0.004 (overrides R.json pricing)",
    )
    parser.add_argument(
        "--price-per-overage-agent-hour",
        default=None,
        help="dollars per accepted contract overage agent-hour, e.g. 0.30 (overrides R.json pricing)",
    )


def resolve_pricing(arguments: argparse.Namespace, registry: Registry, registry_path: Path) -> Pricing:
    """Each price from its flag, else from R.json ``pricing``; checked before anything is written."""
    document = registry.pricing or {}
    for name in document:
        if name not in PRICE_NAMES:
            raise BadInput(
                f"{registry_path}: pricing.{name}: unknown price (use price_per_minute or "
                "price_per_overage_agent_hour)"
            )
    prices: dict[str, Decimal | None] = {}
    sources = []
    for name in PRICE_NAMES:
        flag = getattr(arguments, name, None)
        if flag is not None:
            prices[name] = parse_price(flag, f"argument --{name.replace('_', '-')}")
            sources.append(f"--{name.replace('_', '-')}")
        elif document.get(name) is not None:
            prices[name] = parse_price(document[name], f"{registry_path}: pricing.{name}")
            sources.append(f"R.json pricing.{name}")
        else:
            prices[name] = None
    return Pricing(prices["price_per_minute"], prices["price_per_overage_agent_hour"], tuple(sources))


# The per-company table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayCompany:
    """A company's line of replay's table, from summary.json."""

    alias: str
    name: str
    environments: int
    billable_ms: int
    unbilled_ms: int
    minutes: int
    overage_agent_hours: int
    records_by_status: dict[str, int]
    quarantined: dict[str, int]
    amount: Decimal | None = None
    unpriced: str = ""


def companies(summary: Mapping[str, Any], pricing: Pricing) -> list[ReplayCompany]:
    rows = []
    for alias, entry in summary.get("companies", {}).items():
        environments = entry.get("environments", {})
        minutes = int(entry.get("minutes_accepted", 0))
        overage = int(entry.get("overage_agent_hours_accepted", 0))
        rows.append(
            ReplayCompany(
                alias=alias,
                name=str(entry.get("name", "")),
                environments=len(environments),
                billable_ms=sum(int(env.get("billable_ms", 0)) for env in environments.values()),
                unbilled_ms=sum(int(env.get("unbilled_ms", 0)) for env in environments.values()),
                minutes=minutes,
                overage_agent_hours=overage,
                records_by_status=dict(entry.get("records_by_status", {})),
                quarantined=dict(entry.get("quarantined", {})),
                amount=pricing.amount(minutes, overage) if pricing.priced else None,
                unpriced=pricing.unpriced(minutes, overage) if pricing.priced else "",
            )
        )
    return rows


def total(rows: Iterable[ReplayCompany]) -> ReplayCompany:
    rows = list(rows)
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for row in rows:
        statuses.update(row.records_by_status)
        reasons.update(row.quarantined)
    amounts = [row.amount for row in rows if row.amount is not None]
    return ReplayCompany(
        alias="total",
        name="",
        environments=sum(row.environments for row in rows),
        billable_ms=sum(row.billable_ms for row in rows),
        unbilled_ms=sum(row.unbilled_ms for row in rows),
        minutes=sum(row.minutes for row in rows),
        overage_agent_hours=sum(row.overage_agent_hours for row in rows),
        records_by_status=dict(statuses),
        quarantined=dict(reasons),
        amount=sum(amounts, Decimal(0)) if amounts else None,
        unpriced=" + ".join(
            sorted({part for row in rows if row.unpriced for part in row.unpriced.split(" + ")})
        ),
    )


def _amount(row: ReplayCompany) -> str:
    if row.amount is None:
        return "-"
    return dollars(row.amount) + (f" + {row.unpriced} unpriced" if row.unpriced else "")


REPLAY_COLUMNS: list[report.Column[ReplayCompany]] = [
    report.COMPANY,
    report.ENVIRONMENTS,
    report.Column("billable time", lambda row: report.duration(row.billable_ms)),
    report.UNBILLED,
    report.Column("minutes billed", lambda row: f"{row.minutes:,}"),
    report.Column("overage agent-h", lambda row: f"{row.overage_agent_hours:,}"),
    report.RECORDS_BY_STATUS,
    report.Column("quarantined by reason", lambda row: report.statuses(row.quarantined)),
]
AMOUNT = report.Column("amount", _amount)


def company_table(summary: Mapping[str, Any], pricing: Pricing) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: one per company, then the totals; the amount column when priced."""
    rows = companies(summary, pricing)
    columns = [*REPLAY_COLUMNS, AMOUNT] if pricing.priced else REPLAY_COLUMNS
    return report.build_table(columns, [*rows, total(rows)])


def unattributed_line(summary: Mapping[str, Any]) -> str:
    reasons = summary.get("quarantined_unattributed") or {}
    return f"quarantined without a company: {sum(reasons.values()):,} ({report.statuses(reasons)})"


def text_table(summary: Mapping[str, Any], pricing: Pricing, lines_read: int) -> str:
    header = (
        f"replay until {summary.get('until', '?')}: {len(summary.get('companies', {}))} companies, "
        f"{lines_read:,} items read, {summary.get('records_sent', 0):,} record results, "
        f"{summary.get('marketplace_calls', 0):,} BatchMeterUsage calls"
    )
    table = report.render_text(*company_table(summary, pricing))
    footer = [unattributed_line(summary)]
    if pricing.priced:
        footer.append(f"prices: {pricing.describe()}; amounts rounded half-up to cents for display")
    return "\n".join([header, "", table, *footer])


# Reading the recording: progress and the last event ------------------------------------------------------


def _expected_bytes(path: Path) -> int:
    """The bytes of text a file holds: its size, or for gzip the uncompressed size its trailer gives
    (modulo 4 GiB, as gzip stores it)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            if handle.read(2) != GZIP_MAGIC or size < 18:
                return size
            handle.seek(-4, 2)
            return max(int.from_bytes(handle.read(4), "little"), size)
    except OSError:
        return size


@dataclass
class InputWatch:
    """Follows the deliveries as the replay reads them: counts items and bytes, keeps the latest event
    time (for the ``--until`` warning) and, on a terminal, draws a progress bar with the time left at
    most every ``interval_s`` (the fraction done: whole files read plus the text read of the current
    one, against the files' sizes). Silent when ``stream`` is None."""

    files: list[tuple[str, int]]
    until_ms: int
    stream: TextIO | None = None
    interval_s: float = 0.5
    clock: Callable[[], float] = time.monotonic
    lines: int = 0
    latest_ms: int | None = None
    after_until: int = 0
    _file: int = 0
    _done_bytes: int = 0
    _current_bytes: int = 0
    _started: float = field(default=0.0)
    _drawn: float = field(default=0.0)

    @classmethod
    def for_events(cls, events: Path, until_ms: int, stream: TextIO | None = None) -> InputWatch:
        """The bar only when stderr is a terminal: pipes, CI logs and tests stay clean."""
        try:
            files = [(str(path), _expected_bytes(path)) for path in recording_files(events)]
        except (RecordingError, OSError):
            files = []  # read_events says what is wrong with them
        if stream is None and sys.stderr.isatty():
            stream = sys.stderr
        return cls(files, until_ms, stream)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def follow(self, deliveries: Iterator[Delivery]) -> Iterator[Delivery]:
        self._started = self._drawn = self.clock()
        for delivery in deliveries:
            self.advance(delivery)
            yield delivery
        self.finish()

    def advance(self, delivery: Delivery) -> None:
        self.lines += 1
        moment = delivery.event_ms if delivery.event_ms is not None else delivery.arrival_ms
        if moment is not None:
            if self.latest_ms is None or moment > self.latest_ms:
                self.latest_ms = moment
            if moment > self.until_ms:
                self.after_until += 1
        if self.stream is None:
            return
        self._count_bytes(delivery)
        if self.lines % 64 == 0 and (now := self.clock()) - self._drawn >= self.interval_s:
            self._drawn = now
            self.stream.write("\r" + self.status(now) + "\x1b[K")
            self.stream.flush()

    def _count_bytes(self, delivery: Delivery) -> None:
        while self._file + 1 < len(self.files) and not delivery.where.startswith(self.files[self._file][0]):
            self._done_bytes += self.files[self._file][1]
            self._current_bytes = 0
            self._file += 1
        self._current_bytes += len(delivery.body) + 1

    def fraction(self) -> float:
        if not self.files or not self.total_bytes:
            return 0.0
        current = min(self._current_bytes, self.files[self._file][1])
        return min(1.0, (self._done_bytes + current) / self.total_bytes)

    def status(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        done = self.fraction()
        text = f"replay: {self.lines:,} items read, {done:4.0%} of {self.total_bytes / 1e6:,.1f} MB"
        text += f", {self.lines / elapsed:,.0f} items/s"
        if done > 0.001:
            text += f", about {report.duration(int(elapsed * (1 - done) / done * 1000))} left"
        return text

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


# Warnings --------------------------------------------------------------------------------------------


def warnings(summary: Mapping[str, Any], registry: Registry, watch: InputWatch) -> list[str]:
    """What a user must not miss: most lines quarantined, lines after ``--until``, a subscription that
    ends before it starts. Shown on stderr and as a banner in the report."""
    found = [*_quarantine_warning(summary)]
    if watch.latest_ms is not None and watch.latest_ms > watch.until_ms:
        metered = hour_floor(watch.latest_ms) + MS_PER_HOUR + registry.policy.grace * 1000
        found.append(
            f"--until {iso_ms(watch.until_ms)} is before the last event ({iso_ms(watch.latest_ms)}): "
            f"{watch.after_until:,} item(s) dated after it are not billed; --until {iso_ms(metered)} "
            "meters the last event's hour"
        )
    for number, company in enumerate(registry.companies):
        for index, sub in enumerate(company.subscriptions):
            if sub.started is not None and sub.ended is not None and sub.ended < sub.started:
                who = sub.license_arn or sub.customer_identifier or sub.customer_aws_account_id
                found.append(
                    f"R.json companies.{number}.subscriptions.{index} ({company.alias}, {who}) ends at "
                    f"{sub.ended.isoformat()} before it starts at {sub.started.isoformat()}: it is never "
                    "active and bills nothing"
                )
    return found


def _quarantine_warning(summary: Mapping[str, Any]) -> list[str]:
    reasons: Counter[str] = Counter(summary.get("quarantined_unattributed") or {})
    delivered = sum(reasons.values())
    for entry in summary.get("companies", {}).values():
        reasons.update(entry.get("quarantined") or {})
        delivered += int(entry.get("events_accepted", 0)) + int(entry.get("duplicates", 0))
        delivered += sum((entry.get("quarantined") or {}).values())
    quarantined = sum(reasons.values())
    if quarantined * 2 <= delivered:
        return []
    top = ", ".join(f"{reason} {count:,}" for reason, count in reasons.most_common(3))
    return [
        f"most agent-event lines were quarantined: {quarantined:,} of {delivered:,} "
        f"({quarantined / delivered:.0%}; {top}): check the registry's instance ARNs and accounts and "
        "the recording's format (summary.json quarantined, quarantined_unattributed)"
    ]


# The report and what is printed ------------------------------------------------------------------------


def priced_summary(summary: Mapping[str, Any], pricing: Pricing, found: list[str]) -> dict[str, Any]:
    """summary.json with the prices, each company's exact amount (not rounded) and the warnings."""
    document = dict(summary)
    document["warnings"] = found
    if pricing.priced:
        rows = companies(summary, pricing)
        document["pricing"] = {
            "price_per_minute": None if pricing.price_per_minute is None else str(pricing.price_per_minute),
            "price_per_overage_agent_hour": (
                None
                if pricing.price_per_overage_agent_hour is None
                else str(pricing.price_per_overage_agent_hour)
            ),
            "sources": list(pricing.sources),
            "amounts": {row.alias: str(row.amount) for row in rows},
            "total": str(total(rows).amount),
        }
    return document


def html_tables(summary: Mapping[str, Any], pricing: Pricing) -> list[Markup]:
    environments = [
        [
            alias,
            name,
            report.duration(int(env.get("billable_ms", 0))),
            report.duration(int(env.get("unbilled_ms", 0))),
            f"{int(env.get('minutes_accepted', 0)):,}",
            report.statuses(env.get("records_by_status") or {}),
        ]
        for alias, entry in summary.get("companies", {}).items()
        for name, env in (entry.get("environments") or {}).items()
    ]
    events = [
        [
            alias,
            str(entry.get("name", "")),
            f"{int(entry.get('events_accepted', 0)):,}",
            f"{int(entry.get('duplicates', 0)):,}",
            f"{int(entry.get('late', 0)):,}",
            report.statuses(entry.get("quarantined") or {}),
        ]
        for alias, entry in summary.get("companies", {}).items()
    ]
    events.append(
        ["(no company)", "", "-", "-", "-", report.statuses(summary.get("quarantined_unattributed") or {})]
    )
    caption = "Per company" + (
        f" (prices: {pricing.describe()}; amounts rounded half-up to cents)" if pricing.priced else ""
    )
    return [
        report.html_table(*company_table(summary, pricing), caption=caption),
        report.html_table(
            ["company", "environment", "billable time", "unbilled", "minutes billed", "records by status"],
            environments,
            caption="Per environment (contract environments bill overage, not minutes)",
        ),
        report.html_table(
            ["company", "name", "events accepted", "duplicates", "late", "quarantined by reason"],
            events,
            caption="Events",
        ),
    ]


def command_line(arguments: argparse.Namespace) -> str:
    """The command that produced the report (shell-quoted), for the report's parameters."""
    words = ["connect-metering", "replay"]
    for name in ("registry", "events", "format", "until", "out", "faults", *PRICE_NAMES):
        value = getattr(arguments, name, None)
        if value is not None and not (name == "format" and value == "auto"):
            words += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(words)


def present(
    summary: Mapping[str, Any],
    arguments: argparse.Namespace,
    *,
    registry: Registry,
    pricing: Pricing,
    watch: InputWatch,
) -> dict[str, Any]:
    """After the run: the warnings on stderr, summary.json again with prices and warnings, report.html and
    report.svg published together, then the table on stdout. Returns the summary as written."""
    from connect_metering.local.output_files import publish, text
    from connect_metering.local.replay_chart import render_svg

    out: Path = arguments.out
    found = warnings(summary, registry, watch)
    document = priced_summary(summary, pricing, found)
    svg = render_svg(document, "connect-metering replay: billed per company")
    page = report.render_replay_html(
        title="connect-metering replay",
        warnings=found,
        parameters=[
            ("command", command_line(arguments)),
            ("replayed until", document.get("until", "")),
            ("items read", f"{watch.lines:,}"),
            ("records sent", document.get("records_sent", 0)),
            ("BatchMeterUsage calls", document.get("marketplace_calls", 0)),
            (
                "prices",
                pricing.describe()
                if pricing.priced
                else "none (give --price-per-minute, --price-per-overage-agent-hour or R.json pricing)",
            ),
        ],
        svg=svg,
        chart_name="report.svg",
        tables=html_tables(document, pricing),
        files=["records.jsonl", "summary.json", "report.svg", "report.html"],
    )
    publish(
        out,
        {
            "summary.json": text(json.dumps(document, indent=2, sort_keys=True) + "\n"),
            "report.svg": text(svg),
            "report.html": text(page),
        },
    )
    for warning in found:
        print(f"replay: WARNING: {warning}", file=sys.stderr)
    print(text_table(document, pricing, watch.lines))
    print(f"Report: {out / 'report.html'} (chart: {out / 'report.svg'}); figures: {out / 'summary.json'}")
    return document


__all__ = [
    "UNATTRIBUTED",
    "InputWatch",
    "Pricing",
    "ReplayCompany",
    "add_arguments",
    "company_table",
    "present",
    "resolve_pricing",
    "text_table",
    "warnings",
]
