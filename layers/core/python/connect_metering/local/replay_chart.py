"""Replay's chart (report.svg): small multiples, one panel per company in its own colour, of what was
billed per hour (or per few hours on a long run) from summary.json's ``hourly`` figures.

Minutes billed in an hour's record that happened in an earlier hour (late events, or minutes moved out of
a record that left the acceptance window) are drawn hatched and labelled as such, beside the minutes that
happened in each period (a line), so a catch-up reads as what it is and not as a spike. Contract overage
is drawn in its own unit (agent-hours, right axis). Text stays text in the SVG (escaped by matplotlib);
every series has an ``id`` naming its company's panel (``company-<n>-...``)."""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_MINUTE, from_ms, parse_iso_ms

MAX_PANELS = 48  # more companies than this: the largest 47 and one panel for all the others
MAX_PERIODS = 96
PERIOD_HOURS = (1, 2, 3, 4, 6, 8, 12, 24, 48, 72, 168)


@dataclass
class CompanySeries:
    """One company's hourly figures (ms epoch hour -> value) and what the chart derives from them."""

    alias: str
    happened_ms: dict[int, int] = field(default_factory=dict)
    billed: dict[int, int] = field(default_factory=dict)
    overage: dict[int, int] = field(default_factory=dict)

    @property
    def weight(self) -> int:
        return (
            sum(self.billed.values())
            + sum(self.happened_ms.values()) // MS_PER_MINUTE
            + sum(self.overage.values())
        )

    def late(self) -> dict[int, int]:
        """Minutes in an hour's record beyond those that happened in the hour (with the carry of the
        fractions of a minute, BILLING.md section 5): minutes of earlier hours, billed late."""
        late: dict[int, int] = {}
        cumulative = 0
        for hour in sorted({*self.happened_ms, *self.billed}):
            before = cumulative // MS_PER_MINUTE
            cumulative += self.happened_ms.get(hour, 0)
            due = cumulative // MS_PER_MINUTE - before
            extra = self.billed.get(hour, 0) - due
            if extra > 0:
                late[hour] = extra
        return late

    def absorb(self, other: CompanySeries) -> None:
        for mine, theirs in (
            (self.happened_ms, other.happened_ms),
            (self.billed, other.billed),
            (self.overage, other.overage),
        ):
            for hour, value in theirs.items():
                mine[hour] = mine.get(hour, 0) + value


def series_of(summary: Mapping[str, Any]) -> list[CompanySeries]:
    result = []
    for alias, entry in summary.get("companies", {}).items():
        series = CompanySeries(str(alias))
        for hour_iso, figures in (entry.get("hourly") or {}).items():
            hour = parse_iso_ms(hour_iso, field="hourly")
            series.happened_ms[hour] = int(figures.get("billable_ms", 0))
            series.billed[hour] = int(figures.get("minutes_accepted", 0))
            series.overage[hour] = int(figures.get("overage_agents_accepted", 0))
        result.append(series)
    return result


def panels(summary: Mapping[str, Any]) -> list[CompanySeries]:
    """One per company, in summary order; past MAX_PANELS the largest keep theirs and the rest share one
    (its late minutes then mix companies: each company's own are computed before they are summed)."""
    every = series_of(summary)
    if len(every) <= MAX_PANELS:
        return every
    kept = set(sorted(range(len(every)), key=lambda i: (-every[i].weight, i))[: MAX_PANELS - 1])
    others = CompanySeries(f"{len(every) - len(kept)} other companies")
    for index, series in enumerate(every):
        if index not in kept:
            others.absorb(series)
    return [every[i] for i in sorted(kept)] + [others]


def colour(index: int, count: int) -> tuple[float, float, float]:
    """Hues spread round the wheel, neighbours alternating in lightness: each company its own colour."""
    hue = index / max(count, 1)
    return colorsys.hsv_to_rgb(hue, 0.7, 0.85 if index % 2 == 0 else 0.6)


def period_hours(first: int, last: int) -> int:
    hours = (last - first) // MS_PER_HOUR + 1
    return next((step for step in PERIOD_HOURS if math.ceil(hours / step) <= MAX_PERIODS), PERIOD_HOURS[-1])


def _bucket(values: Mapping[int, float], edges: list[int]) -> list[float]:
    width = edges[1] - edges[0]
    result = [0.0] * (len(edges) - 1)
    for hour, value in values.items():
        index = (hour - edges[0]) // width
        if 0 <= index < len(result):
            result[index] += value
    return result


def render_svg(summary: Mapping[str, Any], title: str) -> str:
    """The chart as an SVG document (text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = panels(summary)
    hours = [
        hour
        for series in chosen
        for values in (series.happened_ms, series.billed, series.overage)
        for hour in values
    ]
    if not hours:
        until = summary.get("until")
        hours = [parse_iso_ms(until, field="until") if isinstance(until, str) else 0]
    first, last = min(hours), max(hours)
    step = period_hours(first, last) * MS_PER_HOUR
    edges = [first + number * step for number in range((last - first) // step + 2)]
    columns = 1 if len(chosen) <= 1 else 2 if len(chosen) <= 4 else 4 if len(chosen) <= 16 else 6
    rows = max(1, math.ceil(len(chosen) / columns))
    style: Any = {"svg.fonttype": "none", "svg.hashsalt": "connect-metering", "text.parse_math": False}
    with plt.rc_context(style):
        figure, axes = plt.subplots(
            rows,
            columns,
            figsize=(3.6 * columns + 1, 2.3 * rows + 1.6),
            squeeze=False,
            constrained_layout=True,
        )
        for index, series in enumerate(chosen):
            _panel(axes[index // columns][index % columns], series, index, len(chosen), edges)
        for index in range(len(chosen), rows * columns):
            axes[index // columns][index % columns].set_visible(False)
        late_label = (
            "late: happened in an earlier hour, billed in hour H"
            if step == MS_PER_HOUR
            else "late: happened in an earlier hour, billed in a later one"
        )
        _legend(figure, late_label)
        figure.suptitle(
            f"{title}: per {step // MS_PER_HOUR} h, from {from_ms(edges[0]):%Y-%m-%d %H:00} UTC", fontsize=11
        )
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(figure)
    return buffer.getvalue()


def _panel(axis: Any, series: CompanySeries, index: int, count: int, edges: list[int]) -> None:
    import numpy as np

    hue = colour(index, count)
    positions = np.array([(edge - edges[0]) / MS_PER_HOUR for edge in edges])
    late = _bucket(series.late(), edges)
    billed = _bucket(series.billed, edges)
    on_time = np.array([total - extra for total, extra in zip(billed, late, strict=True)])
    happened = np.array(_bucket({h: ms / MS_PER_MINUTE for h, ms in series.happened_ms.items()}, edges))
    prefix = f"company-{index}"
    axis.stairs(on_time, positions, fill=True, color=hue, gid=f"{prefix}-billed")
    axis.stairs(
        on_time + np.array(late),
        positions,
        baseline=on_time,
        fill=True,
        facecolor=(*hue, 0.25),
        edgecolor=hue,
        hatch="////",
        linewidth=0,
        gid=f"{prefix}-late",
    )
    axis.stairs(happened, positions, color="black", linewidth=0.8, gid=f"{prefix}-happened")
    axis.set_ylabel("agent-minutes", fontsize=7)
    minutes, overage = sum(series.billed.values()), sum(series.overage.values())
    caption = f"{series.alias}: {minutes:,} min"
    if overage:
        twin = axis.twinx()
        twin.stairs(
            np.array(_bucket(series.overage, edges)),
            positions,
            color="dimgrey",
            linestyle="--",
            linewidth=1.2,
            gid=f"{prefix}-overage",
        )
        twin.set_ylabel("overage agent-h", fontsize=7)
        twin.tick_params(labelsize=6)
        caption += f", {overage:,} overage agent-h"
    axis.set_title(caption, fontsize=8, loc="left", color=hue)
    axis.tick_params(labelsize=6)
    axis.set_xlim(positions[0], positions[-1])
    ticks = list(range(0, len(edges), max(1, (len(edges) - 1) // 3)))
    axis.set_xticks([positions[tick] for tick in ticks])
    axis.set_xticklabels([f"{from_ms(edges[tick]):%d %H}h" for tick in ticks])
    axis.grid(axis="y", alpha=0.3)


def _legend(figure: Any, late_label: str) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grey = (0.45, 0.45, 0.45)
    handles = [
        Patch(facecolor=grey, label="billed in the hour it happened (company colour)"),
        Patch(facecolor=(*grey, 0.25), edgecolor=grey, hatch="////", label=late_label),
        Line2D([], [], color="black", linewidth=0.8, label="agent-minutes that happened (billable time)"),
        Line2D([], [], color="dimgrey", linestyle="--", label="contract overage, agent-hours (right axis)"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
