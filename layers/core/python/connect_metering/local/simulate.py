"""`connect-metering simulate`: realistic traffic for several companies, its own ground truth, the replay.

    connect-metering simulate [--companies N] [--agents M] [--hours H] [--seed S] [--out DIR]
                              [--engine handlers|core]

Deterministic by seed. ``scenario`` generates the companies and every line of E.jsonl, ``ground_truth``
computes what the product must bill without the product's code and checks the replay against it, and
``report`` writes the table, the chart and the HTML page. This module is the command: it refuses a size
too large before any work, then generates, replays in-process with `Replay`, checks and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from connect_metering.domain.instants import iso_ms
from connect_metering.local import report
from connect_metering.local.ground_truth import (
    CompanyResult,
    EnvironmentResult,
    Outcome,
    attribute,
    check,
    contract_overage,
    hourly_ms,
    metered_hours,
    primary_at,
)
from connect_metering.local.scenario import (
    SEGMENT_GAP_MS,
    WINDOW_START,
    Generator,
    Scenario,
    Session,
    SubPlan,
    generate,
)

# The scenario and the ground truth, as the tests and callers of this command name them.
__all__ = [
    "DEFAULTS",
    "EXIT_BAD_INPUT",
    "EXIT_MATCH",
    "EXIT_MISMATCH",
    "LIMITS",
    "MAX_ESTIMATED_SECONDS",
    "SEGMENT_GAP_MS",
    "WINDOW_START",
    "CompanyResult",
    "EnvironmentResult",
    "Generator",
    "Outcome",
    "Scenario",
    "Session",
    "SubPlan",
    "add_arguments",
    "attribute",
    "check",
    "contract_overage",
    "estimate",
    "generate",
    "hourly_ms",
    "metered_hours",
    "primary_at",
    "run",
    "simulate",
]

EXIT_MATCH = 0
EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2

# Up to a month (31 days) of traffic; the replay-speed estimate below decides which sizes run.
LIMITS = {"companies": (1, 200), "agents": (2, 2000), "hours": (2, 744)}
DEFAULTS = {"companies": 6, "agents": 6, "hours": 10, "seed": 7}
ENGINES = ("handlers", "core")

# Replay speed measured on this 2-core machine (2026-11-22, `time connect-metering simulate`): about
# 2.5 ms per line with 30 agents (5 x 6) and 4.2 ms with 300 (10 x 30), metering included. Ingest costs
# one DynamoDB write per agent-hour present in a batch of 100 lines, so the time per line grows with the
# share of distinct agents in a batch: ms per line ~ 2.2 + 3.5 x share (a margin over the fit 2.0 + 3.0 x).
# A size whose estimate exceeds MAX_ESTIMATED_SECONDS is refused before any work.
MS_PER_LINE_BASE = 2.2
MS_PER_LINE_PER_DISTINCT_SHARE = 3.5
# The core engine (``replay --engine core``) on the same machine (2026-11-28): a 10 x 20 agents x 48 h
# scenario, 76,444 lines, in 17.6 CPU s, 0.23 ms per line with metering and the summary; with a margin.
CORE_MS_PER_LINE = 0.3
STARTUP_SECONDS = 6.0
MAX_ESTIMATED_SECONDS = 20 * 60
# Lines per logged-in agent-hour: `traffic.shift_events` (a heartbeat or status change every ~107 s, the
# Offline heartbeats after a logout) plus duplicates, forgeries and malformed lines; measured 36.1.
LINES_PER_AGENT_HOUR = 37.0


# Estimate -------------------------------------------------------------------------------------------


def logged_in_hours(hours: int) -> float:
    """Expected logged-in hours of one agent over the window, from `_segments`' distributions."""
    total = 0.0
    for day in range(math.ceil(hours / 24)):
        available = min(24.0, hours - 24.0 * day)
        room = available - min(3.0, 0.3 * available) / 2 - 0.25
        total += 0.675 * min(8.0, room) if room * 0.5 >= 1 / 3 else 0.0
    return total


def estimate(companies: int, agents: int, hours: int, *, engine: str = "handlers") -> tuple[int, float]:
    """(lines, seconds) expected for a size, from the measured replay speed: computed before any work."""
    lines = int(companies * agents * logged_in_hours(hours) * LINES_PER_AGENT_HOUR)
    if engine == "core":
        return lines, STARTUP_SECONDS + lines * CORE_MS_PER_LINE / 1000
    concurrent = max(1.0, companies * agents * 0.8)
    share = concurrent * (1 - (1 - 1 / concurrent) ** 100) / 100 if concurrent > 1 else 0.01
    ms_per_line = MS_PER_LINE_BASE + MS_PER_LINE_PER_DISTINCT_SHARE * share
    return lines, STARTUP_SECONDS + lines * ms_per_line / 1000


# Command line ---------------------------------------------------------------------------------------


def _bounded(name: str) -> Callable[[str], int]:
    low, high = LIMITS[name]

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**63 - 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, what in (
        ("companies", "companies"),
        ("agents", "agents per company"),
        ("hours", "hours of traffic"),
    ):
        low, high = LIMITS[name]
        parser.add_argument(
            f"--{name}",
            type=_bounded(name),
            default=DEFAULTS[name],
            help=f"{what} ({low}-{high}, default {DEFAULTS[name]})",
        )
    parser.add_argument(
        "--seed", type=_seed, default=DEFAULTS["seed"], help=f"random seed (default {DEFAULTS['seed']})"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/simulate"),
        help="output folder (R.json, E.jsonl, records.jsonl, summary.json, truth.json, report.png, report.html)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="handlers",
        help="replay engine: handlers (the Lambda handlers on embedded AWS, the reference) or core (the same "
        "services on in-memory stores, for large sizes up to a month)",
    )


def _writable(path: Path) -> str | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        return error.strerror or str(error)
    return None


def _counting(deliveries: Iterator[Any], tick: Callable[[int], None]) -> Iterator[Any]:
    count = 0
    for delivery in deliveries:
        yield delivery
        count += 1
        if count % 50 == 0:
            tick(count)
    tick(count)


def run(arguments: argparse.Namespace) -> int:
    companies, agents, hours, seed = arguments.companies, arguments.agents, arguments.hours, arguments.seed
    engine = getattr(arguments, "engine", "handlers")
    events, seconds = estimate(companies, agents, hours, engine=engine)
    if seconds > MAX_ESTIMATED_SECONDS:
        print(_too_large(companies, agents, hours, engine, events, seconds), file=sys.stderr)
        return EXIT_BAD_INPUT
    out: Path = arguments.out
    problem = _writable(out)
    if problem is not None:
        print(f"simulate: argument --out: cannot write to {out}: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return simulate(companies, agents, hours, seed, out, report.Progress.for_stderr(), engine=engine)


def _too_large(companies: int, agents: int, hours: int, engine: str, lines: int, seconds: float) -> str:
    if engine == "core":
        speed = f"{1000 / CORE_MS_PER_LINE:,.0f} lines/s with --engine core"
    else:
        speed = (
            f"{1000 / (MS_PER_LINE_BASE + MS_PER_LINE_PER_DISTINCT_SHARE):.0f} to "
            f"{1000 / MS_PER_LINE_BASE:.0f} lines/s"
        )
    hint = "" if engine == "core" else " or --engine core"
    return (
        f"simulate: --companies {companies} x --agents {agents} x --hours {hours} is about "
        f"{lines:,} lines to replay: about {seconds / 60:,.0f} min at the replay speed measured on a "
        f"2-core machine ({speed}), over the {MAX_ESTIMATED_SECONDS // 60} min limit; use "
        f"fewer companies, agents or hours{hint}"
    )


def simulate(
    companies: int,
    agents: int,
    hours: int,
    seed: int,
    out: Path,
    progress: Any,
    *,
    quiet_handlers: bool = True,
    engine: str = "handlers",
) -> int:
    # The replay brings the embedded AWS (moto): imported when a simulation runs, not to generate.
    from connect_metering.local.replay import FaultsFile, Replay, load_registry, read_events

    started = time.perf_counter()
    progress.phase("generating", companies)
    scenario = Generator(companies, agents, hours, seed).run(progress.update)
    (out / "R.json").write_text(json.dumps(scenario.registry(), indent=2) + "\n", encoding="utf-8")
    with (out / "E.jsonl").open("w", encoding="utf-8") as handle:
        for line in scenario.lines:
            handle.write(line.body + "\n")
    generated = time.perf_counter()

    progress.phase("replaying", len(scenario.lines))
    registry = load_registry(out / "R.json")
    saved = dict(os.environ)
    try:
        # The handlers' single_metric EMF lines ignore POWERTOOLS_METRICS_DISABLED: keep stdout readable.
        with contextlib.redirect_stdout(io.StringIO()) if quiet_handlers else contextlib.nullcontext():
            summary = Replay(registry, FaultsFile(), out, engine).run(
                _counting(read_events(out / "E.jsonl"), progress.update), scenario.until_ms
            )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    replayed = time.perf_counter()

    progress.phase("checking", 1)
    records = [
        json.loads(text) for text in (out / "records.jsonl").read_text(encoding="utf-8").splitlines() if text
    ]
    outcome = check(scenario, records, summary)
    _write_truth(out / "truth.json", scenario, outcome)
    progress.update(1)

    progress.phase("reporting", 2)
    timings = {
        "generate_s": generated - started,
        "replay_s": replayed - generated,
        "lines": len(scenario.lines),
        "events_per_s": len(scenario.lines) / max(replayed - generated, 1e-9),
    }
    paths = report.write_report(out, scenario, outcome, summary, timings, progress.update)
    progress.done()

    print(report.text_table(scenario, outcome))
    print()
    print(
        f"{len(scenario.lines):,} lines replayed in {timings['replay_s']:.1f} s "
        f"({timings['events_per_s']:,.0f}/s), until {iso_ms(scenario.until_ms)}; "
        f"{summary.get('records_sent', 0)} record results, {summary.get('marketplace_calls', 0)} "
        "BatchMeterUsage calls"
    )
    if outcome.matches:
        print("Billing matches the ground truth (docs/billing.md) for every company.")
    else:
        print(
            "MISMATCH: the product's billing differs from the ground truth. Reproduce with: "
            f"connect-metering simulate --companies {companies} --agents {agents} --hours {hours} --seed {seed}"
            f" --engine {engine}"
        )
        for problem in outcome.global_problems:
            print(f"  - {problem}")
        for company in outcome.companies:
            for problem in company.problems:
                print(f"  - {company.alias}: {problem}")
    print(f"Report: {paths['html']} (chart: {paths['png']})")
    if report.BILLING_RULES.is_file():
        print(f"Billing rules checked: {report.BILLING_RULES}")
    return EXIT_MATCH if outcome.matches else EXIT_MISMATCH


def _write_truth(path: Path, scenario: Scenario, outcome: Outcome) -> None:
    document = {
        "seed": scenario.seed,
        "until": iso_ms(scenario.until_ms),
        "companies": {
            plan.alias: {
                "role": plan.role,
                "attributed_ms": {
                    f"{key or 'unbilled'} / {env}": ms
                    for (key, env), ms in sorted(
                        attribute(
                            [s for s in scenario.sessions if s.company == plan.alias], plan.subscriptions
                        ).items(),
                        key=lambda item: (item[0][0] or "", item[0][1]),
                    )
                },
                "sessions": len([s for s in scenario.sessions if s.company == plan.alias]),
            }
            for plan in scenario.plans
        },
        "expected": {
            "events_accepted": dict(scenario.expected.accepted),
            "duplicates": dict(scenario.expected.duplicates),
            "quarantined": dict(scenario.expected.quarantined),
            "quarantined_unattributed": scenario.expected.unattributed,
            "lines_arriving_10_s_or_more_after_their_event": scenario.expected.late_lines,
        },
        "matches": outcome.matches,
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
