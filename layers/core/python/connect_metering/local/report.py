"""The simulate command's outputs: a progress bar on a terminal (tqdm), the text table, the PNG chart and
the self-contained HTML report (the chart embedded; Jinja2 templates in ``templates/``, autoescaping
every echoed value)."""

from __future__ import annotations

import base64
import html
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TextIO, TypeVar

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from tqdm import tqdm

from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_MINUTE, from_ms, iso_ms
from connect_metering.local.ground_truth import CompanyResult, Outcome
from connect_metering.local.scenario import Scenario

MAX_SERIES = 16  # more company / environment pairs than this: one series per company


# Progress -------------------------------------------------------------------------------------------


class Progress:
    """One tqdm bar per phase on stderr (done/total, rate and time left), redrawn in place; silent when
    disabled. ``update`` takes the count done so far in the phase."""

    def __init__(self, stream: TextIO | None, *, interval_s: float = 0.1) -> None:
        self._stream = stream
        self._interval = interval_s
        self._bar: tqdm[Any] | None = None
        self._total = 1

    @classmethod
    def for_stderr(cls) -> Progress:
        """Enabled only when stderr is a terminal: quiet in pipes, logs and CI."""
        return cls(sys.stderr if sys.stderr.isatty() else None)

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def phase(self, name: str, total: int) -> None:
        self.done()
        self._total = max(total, 1)
        if self._stream is None:
            return
        self._bar = tqdm(
            total=self._total,
            desc=f"{name:<11}",
            file=self._stream,
            mininterval=self._interval,
            dynamic_ncols=True,
        )

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def done(self) -> None:
        """Draw the current phase complete and keep its line."""
        if self._bar is not None:
            self._bar.update(self._total - self._bar.n)
            self._bar.close()
            self._bar = None


# Text -----------------------------------------------------------------------------------------------


def duration(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} {count}" for status, count in sorted(counts.items())) or "-"


class CompanyFigures(Protocol):
    """What both commands know of a company: simulate's CompanyResult, replay's ReplayCompany."""

    @property
    def alias(self) -> str: ...
    @property
    def environments(self) -> int: ...
    @property
    def unbilled_ms(self) -> int: ...
    @property
    def records_by_status(self) -> dict[str, int]: ...


Row = TypeVar("Row", contravariant=True)


@dataclass(frozen=True)
class Column(Generic[Row]):
    """A column of a per-company table: its header and how a company's cell is written."""

    header: str
    cell: Callable[[Row], str]


def build_table(columns: Sequence[Column[Row]], items: Iterable[Row]) -> tuple[list[str], list[list[str]]]:
    """The one table builder of simulate and replay: headers, then one row of cells per item."""
    return [column.header for column in columns], [
        [column.cell(item) for column in columns] for item in items
    ]


# The columns that mean the same in both commands' tables.
COMPANY: Column[CompanyFigures] = Column("company", lambda company: company.alias)
ENVIRONMENTS: Column[CompanyFigures] = Column("envs", lambda company: str(company.environments))
UNBILLED: Column[CompanyFigures] = Column("unbilled", lambda company: duration(company.unbilled_ms))
RECORDS_BY_STATUS: Column[CompanyFigures] = Column(
    "records by status", lambda company: statuses(company.records_by_status)
)

SIMULATE_COLUMNS: list[Column[CompanyResult]] = [
    COMPANY,
    Column("scenario", lambda company: company.role),
    ENVIRONMENTS,
    Column("billable (truth)", lambda company: duration(company.billable_ms)),
    UNBILLED,
    Column("billed (accepted)", lambda company: _billed(company, company.billed)),
    Column("ground truth", lambda company: _billed(company, company.expected)),
    RECORDS_BY_STATUS,
    Column("quarantined", lambda company: str(company.quarantined)),
    Column("match", lambda company: "yes" if company.matches else "NO"),
]
COMPANY_HEADERS = [column.header for column in SIMULATE_COLUMNS]


def company_rows(outcome: Outcome) -> list[list[str]]:
    return build_table(SIMULATE_COLUMNS, outcome.companies)[1]


def _billed(company: CompanyResult, value: int) -> str:
    if company.unit == "minutes":
        return f"{value:,} min"
    return f"{value:,} overage agent-h"


def render_text(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    table = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[column]) for row in table) for column in range(len(headers))]
    lines = []
    for number, row in enumerate(table):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def text_table(scenario: Scenario, outcome: Outcome) -> str:
    header = (
        f"simulate: {scenario.companies} companies x {scenario.agents} agents, {scenario.hours} h from "
        f"{iso_ms(scenario.window_start_ms)}, seed {scenario.seed}"
    )
    footer = (
        f"quarantined without a company: {outcome.unattributed_observed} "
        f"(generated {outcome.unattributed_expected})"
    )
    return f"{header}\n\n{render_text(COMPANY_HEADERS, company_rows(outcome))}\n{footer}"


# Chart ----------------------------------------------------------------------------------------------


def _grouping(
    truth: dict[tuple[str, str, int], float], order: list[str]
) -> tuple[list[tuple[str, str]], Callable[[str, str], str]]:
    """The chart's series: one per company / environment when they are few, else one per company (the
    largest ones; the rest summed as "others"). Returns the series (company, label) in stacking order
    and the function naming the series of a (company, environment)."""
    pairs = sorted({(company, env) for company, env, _ in truth}, key=lambda p: (order.index(p[0]), p[1]))
    if len(pairs) <= MAX_SERIES:
        return [(company, f"{company} / {env}") for company, env in pairs], lambda c, e: f"{c} / {e}"
    totals: dict[str, float] = defaultdict(float)
    for (company, _, _), value in truth.items():
        totals[company] += value
    top = sorted(totals, key=lambda company: (-totals[company], company))[: MAX_SERIES - 1]
    kept = sorted(top, key=order.index)
    series = [(company, company) for company in kept]
    if len(totals) > len(kept):
        series.append(("", "others"))
    chosen = set(kept)
    return series, lambda company, _env: company if company in chosen else "others"


def _colour(base: tuple[float, float, float], shade: int) -> tuple[float, float, float]:
    """The company's hue; each further environment of the company a lighter shade of it."""
    mix = min(0.65, 0.3 * shade)
    red, green, blue = base
    return (red + (1 - red) * mix, green + (1 - green) * mix, blue + (1 - blue) * mix)


def render_chart(path: Path, outcome: Outcome, scenario: Scenario) -> None:
    """Two panels of stacked bars per hour, one colour per company (shades per environment): the ground
    truth's agent-minutes, and the agent-minutes AWS Marketplace accepted, by the hour of their record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    truth = {key: ms / MS_PER_MINUTE for key, ms in outcome.hourly_truth.items()}
    billed = {key: float(minutes) for key, minutes in outcome.hourly_billed.items()}
    order = [plan.alias for plan in scenario.plans]
    series, name_of = _grouping({**billed, **truth}, order)
    palette = [to_rgb(colour) for colour in plt.get_cmap("tab10").colors]  # type: ignore[attr-defined]
    colours: list[tuple[float, float, float]] = []
    shades: dict[str, int] = defaultdict(int)
    for company, _ in series:
        base = palette[order.index(company) % len(palette)] if company else (0.6, 0.6, 0.6)
        colours.append(_colour(base, shades[company]))
        shades[company] += 1
    hours_seen = [hour for (_, _, hour) in (*truth, *billed)]
    first = min([scenario.window_start_ms - MS_PER_HOUR, *hours_seen])
    last = max([scenario.window_end_ms, *hours_seen])
    hours = list(range(first, last + 1, MS_PER_HOUR))
    positions = list(range(len(hours)))

    def stacked(values: dict[tuple[str, str, int], float]) -> dict[str, dict[int, float]]:
        result: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for (company, environment, hour), value in values.items():
            result[name_of(company, environment)][hour] += value
        return result

    figure, axes = plt.subplots(2, 1, figsize=(13, 8), sharex=True, constrained_layout=True)
    panels = [
        (axes[0], stacked(truth), "Ground truth: agent-minutes logged in, per hour"),
        (axes[1], stacked(billed), "Accepted by AWS Marketplace: agent_minutes, by the hour of the record"),
    ]
    for axis, values_by_series, title in panels:
        bottom = [0.0] * len(hours)
        for (_, label), colour in zip(series, colours, strict=True):
            values = [values_by_series.get(label, {}).get(hour, 0.0) for hour in hours]
            axis.bar(
                positions,
                values,
                bottom=bottom,
                width=0.8,
                color=colour,
                label=label,
                edgecolor="white",
                linewidth=0.3,
            )
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        axis.set_title(title, loc="left", fontsize=11)
        axis.set_ylabel("agent-minutes")
        axis.grid(axis="y", alpha=0.3)
        axis.set_axisbelow(True)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].legend(
        handles[::-1],
        labels[::-1],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="company / environment",
    )
    step = max(1, len(hours) // 24)
    axes[1].set_xticks(positions[::step])
    axes[1].set_xticklabels(
        [from_ms(hour).strftime("%d %H:00") for hour in hours[::step]], rotation=45, ha="right", fontsize=8
    )
    axes[1].set_xlabel("hour (UTC)")
    figure.suptitle(
        f"connect-metering simulate: {scenario.companies} companies x {scenario.agents} agents, "
        f"{scenario.hours} h, seed {scenario.seed} (contract usage is billed as overage, not minutes)",
        fontsize=10,
    )
    figure.savefig(path, dpi=100)
    plt.close(figure)


# HTML -----------------------------------------------------------------------------------------------


def _escape(value: object) -> Markup:
    """Every echoed value, escaped as ``html.escape`` spells it (``&quot;``, ``&#x27;``); a table already
    rendered (Markup) goes in as it is."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))  # noqa: S704 - escaped by html.escape


# Autoescaping on for every template; ``finalize`` only chooses the spelling of the entities.
TEMPLATES = Environment(
    loader=PackageLoader("connect_metering.local", "templates"),
    autoescape=True,
    finalize=_escape,
    keep_trailing_newline=True,
    undefined=StrictUndefined,
)


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, caption: str = "") -> Markup:
    page = TEMPLATES.get_template("table.html").render(headers=headers, rows=rows, caption=caption)
    return Markup(page)  # noqa: S704 - rendered by the autoescaping template


# The billing rules document of a source checkout (the report links it when it is there).
BILLING_RULES = Path(__file__).resolve().parents[5] / "docs" / "billing.md"

CHECKS = (
    "Checked against the simulator's own ground truth (computed from the sessions it generated, not with "
    "the product's code), per the billing rules (docs/billing.md): accepted agent_minutes per subscription and environment = "
    "floor(billable time / 60 s) over the run; contract overage per hour = max(0, N - L); one accepted "
    "record per active hour of each subscription; events accepted, duplicate and quarantined as generated; "
    "billable and unbilled time per environment in the replay summary."
)


def render_html(
    *,
    title: str,
    verdict: str,
    matches: bool,
    parameters: Sequence[tuple[str, object]],
    png: bytes,
    png_name: str,
    tables: Sequence[Markup],
    problems: Sequence[str],
    files: Sequence[str],
) -> str:
    """A self-contained page; every value is escaped by the template, ``tables`` come from html_table."""
    return TEMPLATES.get_template("report.html").render(
        title=title,
        verdict=verdict,
        matches=matches,
        parameters=parameters,
        checks=CHECKS,
        rules_uri=BILLING_RULES.as_uri() if BILLING_RULES.is_file() else "",
        image=base64.b64encode(png).decode("ascii"),
        png_name=png_name,
        tables=tables,
        problems=problems,
        files=files,
    )


def render_replay_html(
    *,
    title: str,
    warnings: Sequence[str],
    parameters: Sequence[tuple[str, object]],
    svg: str,
    chart_name: str,
    tables: Sequence[Markup],
    files: Sequence[str],
) -> str:
    """Replay's self-contained page: the warnings as a banner first, the chart (an SVG image, so nothing
    in it runs), the tables from html_table; every value escaped by the template."""
    return TEMPLATES.get_template("replay.html").render(
        title=title,
        warnings=warnings,
        parameters=parameters,
        image=base64.b64encode(svg.encode("utf-8")).decode("ascii"),
        chart_name=chart_name,
        tables=tables,
        files=files,
    )


def write_report(
    out: Path,
    scenario: Scenario,
    outcome: Outcome,
    summary: dict[str, Any],
    timings: dict[str, float],
    tick: Callable[[int], None],
) -> dict[str, Path]:
    png_path, html_path = out / "report.png", out / "report.html"
    render_chart(png_path, outcome, scenario)
    tick(1)
    command = (
        f"connect-metering simulate --companies {scenario.companies} --agents {scenario.agents} "
        f"--hours {scenario.hours} --seed {scenario.seed}"
    )
    verdict = (
        "Billing matches the ground truth (docs/billing.md) for every company."
        if outcome.matches
        else f"MISMATCH: billing differs from the ground truth. Reproduce with: {command}"
    )
    environment_rows = [
        [
            env.company,
            env.name,
            env.region,
            env.account,
            duration(env.truth_ms),
            duration(env.unbilled_ms),
            "-" if env.product_ms is None else duration(env.product_ms),
            f"{env.minutes_accepted:,}",
            f"{env.minutes_expected:,}",
        ]
        for env in outcome.environments
    ]
    companies = summary.get("companies", {})
    event_rows = [
        [
            company.alias,
            f"{company.events_accepted:,}",
            f"{company.duplicates:,}",
            companies.get(company.alias, {}).get("late", 0),
            statuses(companies.get(company.alias, {}).get("quarantined") or {}),
        ]
        for company in outcome.companies
    ]
    event_rows.append(
        ["(no company)", "-", "-", "-", statuses(summary.get("quarantined_unattributed") or {})]
    )
    tables = [
        html_table(COMPANY_HEADERS, company_rows(outcome), caption="Per company"),
        html_table(
            [
                "company",
                "environment",
                "region",
                "account",
                "billable (truth)",
                "unbilled (truth)",
                "billable (replay summary)",
                "minutes accepted",
                "minutes expected",
            ],
            environment_rows,
            caption="Per environment (contract environments bill overage, not minutes)",
        ),
        html_table(
            ["company", "events accepted", "duplicates", "late (product's count)", "quarantined by reason"],
            event_rows,
            caption="Events",
        ),
    ]
    if outcome.contract_hours:
        tables.append(
            html_table(
                ["company", "hour (UTC)", "N agents", "L licensed", "overage expected", "overage accepted"],
                [
                    [company, iso_ms(hour)[:16], agents, licensed, want, "-" if got is None else got]
                    for company, hour, agents, licensed, want, got in outcome.contract_hours
                ],
                caption="Contract overage per hour (docs/billing.md section 7)",
            )
        )
    problems = [*outcome.global_problems]
    problems += [
        f"{company.alias}: {problem}" for company in outcome.companies for problem in company.problems
    ]
    page = render_html(
        title="connect-metering simulate",
        verdict=verdict,
        matches=outcome.matches,
        parameters=[
            ("command", command),
            ("window", f"{iso_ms(scenario.window_start_ms)} + {scenario.hours} h"),
            ("replayed until", iso_ms(scenario.until_ms)),
            ("lines in E.jsonl", f"{len(scenario.lines):,}"),
            ("replay", f"{timings['replay_s']:.1f} s ({timings['events_per_s']:,.0f} lines/s)"),
            ("records sent", summary.get("records_sent", 0)),
            ("BatchMeterUsage calls", summary.get("marketplace_calls", 0)),
        ],
        png=png_path.read_bytes(),
        png_name=png_path.name,
        tables=tables,
        problems=problems,
        files=[
            "R.json",
            "E.jsonl",
            "records.jsonl",
            "summary.json",
            "truth.json",
            png_path.name,
            html_path.name,
        ],
    )
    html_path.write_text(page, encoding="utf-8")
    tick(2)
    return {"png": png_path, "html": html_path}
