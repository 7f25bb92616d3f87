"""The replay benchmark (issue 12 section 1): lines per CPU second of ``replay --engine core`` from 10,000
lines up, how that speed holds as the lines grow (the ratio of lines/s at the largest size to lines/s at
100,000), the peak memory of the largest run, and the handlers engine's lines per CPU second beside it.

The stream is 200 agents (10 companies of 20, one usage subscription and one environment each) working
8-hour shifts every day (``traffic.shift_events``: status changes, breaks, heartbeats, Offline heartbeats
after logout), as many days as the size needs: a bigger size is a longer stretch of time at the same
load, so linear time means the engine's cost per line does not grow with the history it holds. Each
size is written to files first, then replayed in a child process of its own, which measures its CPU
time around the replay alone and its own peak RSS.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connect_metering.domain.instants import parse_iso_ms, to_ms
from connect_metering.local.traffic import Shift, eventbridge_envelope, shift_events

if TYPE_CHECKING:
    from connect_metering.local.bench import Figure

COMPANIES = 10
AGENTS_PER_COMPANY = 20
START = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
LARGEST_SIZE = 10_000_000
HANDLERS_SIZE = 5_000
LINEARITY_BASE = 100_000
TEMPLATE_DAYS = 3
TARGET_LINES_PER_CPU_SECOND = 50_000
TARGET_LINEARITY = 0.8
TARGET_PEAK_MB = 2048


@dataclass(frozen=True)
class ReplayMeasure:
    engine: str
    lines: int
    cpu_seconds: float
    peak_rss_mb: float

    @property
    def lines_per_cpu_second(self) -> float:
        return self.lines / max(self.cpu_seconds, 1e-9)


def _instance(company: int) -> str:
    return (
        f"arn:aws:connect:us-east-1:{210000000000 + company}:instance/bbbbbbbb-0000-4000-8000-{company:012d}"
    )


def registry() -> dict[str, Any]:
    return {
        "companies": [
            {
                "alias": f"bench{company:02d}",
                "subscriptions": [
                    {
                        "customer_aws_account_id": str(310000000000 + company),
                        "license_arn": f"arn:aws:license-manager::123456789012:license:l-bench{company:04d}",
                        "pricing": "usage",
                        "started": START.isoformat(),
                    }
                ],
                "environments": [{"name": "prod", "instance_arn": _instance(company)}],
            }
            for company in range(COMPANIES)
        ]
    }


def _day_lines(day: int, rng: random.Random) -> list[tuple[datetime, str]]:
    """Every line of one day, in arrival order: each agent's shift (starting between 06:00 and 10:00)."""
    lines: list[tuple[datetime, str]] = []
    base = START + timedelta(days=day)
    for company in range(COMPANIES):
        for agent in range(AGENTS_PER_COMPANY):
            start = base + timedelta(hours=6, minutes=rng.randint(0, 240))
            shift = Shift(
                _instance(company), f"agent-{company:02d}-{agent:03d}", start, start + timedelta(hours=8)
            )
            for event in shift_events(shift, rng):
                arrival = datetime.fromisoformat(event["EventTimestamp"]) + timedelta(
                    seconds=rng.uniform(0.5, 3)
                )
                lines.append((arrival, json.dumps(eventbridge_envelope(event, arrived=arrival))))
    lines.sort(key=lambda pair: pair[0])
    return lines


def _day_blocks(count: int, seed: int) -> Iterator[str]:
    """The stream's text, a day at a time (``count`` lines in all, each ending with a newline).

    ``TEMPLATE_DAYS`` days are generated (``_day_lines``: shifts end before midnight, so a day's lines
    name that date only); every later day is one of them with its dates rewritten, so a stream of ten
    million lines takes a minute to write instead of half an hour, and still holds no two equal events
    (the EventIds carry the date)."""
    rng = random.Random(seed)
    templates: list[tuple[datetime, str]] = []
    written, day = 0, 0
    while written < count:
        if day < TEMPLATE_DAYS:
            block = "".join(body + "\n" for _, body in _day_lines(day, rng))
            templates.append((START + timedelta(days=day), block))
        else:
            template_date, template = templates[day % TEMPLATE_DAYS]
            date = START + timedelta(days=day)
            block = template.replace(f"{template_date:%Y-%m-%d}T", f"{date:%Y-%m-%d}T").replace(
                f"-{template_date:%Y%m%d}", f"-{date:%Y%m%d}"
            )
        lines = block.count("\n")
        if written + lines > count:
            block = "".join(block.splitlines(keepends=True)[: count - written])
            lines = count - written
        written += lines
        day += 1
        yield block


def write_stream(folder: Path, lines: int, seed: int = 5) -> int:
    """R.json and E.jsonl of ``lines`` lines in ``folder``; the ``--until`` instant (epoch ms): two hours
    after the last arrival."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "R.json").write_text(json.dumps(registry()), encoding="utf-8")
    last = ""
    with (folder / "E.jsonl").open("w", encoding="utf-8") as handle:
        for block in _day_blocks(lines, seed):
            handle.write(block)
            last = block
    final = json.loads(last.rstrip("\n").rsplit("\n", 1)[-1]) if last else None
    last_ms = parse_iso_ms(final["time"]) if final else to_ms(START)
    return last_ms + 2 * 3_600_000


def measure_in_process(folder: Path, until_ms: int, engine: str) -> dict[str, float]:
    """Replay the folder's stream here; CPU seconds of the replay alone and this process's peak RSS."""
    import contextlib
    import io

    from connect_metering.local.replay import Replay, load_faults, load_registry, read_events

    started = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        Replay(load_registry(folder / "R.json"), load_faults(None), folder / engine, engine).run(
            read_events(folder / "E.jsonl"), until_ms
        )
    cpu = time.process_time() - started
    return {"cpu_seconds": cpu, "peak_rss_mb": own_peak_rss_mb()}


def own_peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program: Linux's VmHWM, which belongs to
    the address space ``exec`` created. ``ru_maxrss`` would not do: Linux carries it over from the
    parent through fork and exec, so a child would report the bench's own peak when it is higher."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(work: Path, lines: int, engine: str, progress: Callable[[str], None]) -> ReplayMeasure:
    """Write a stream of ``lines`` lines and replay it with ``engine`` in a child process."""
    folder = work / f"{engine}-{lines}"
    until_ms = write_stream(folder, lines)
    progress(f"replay {engine}: {lines:,} lines written, replaying")
    code = (
        "import json, sys; from pathlib import Path; "
        "from connect_metering.local.bench_replay import measure_in_process; "
        "print(json.dumps(measure_in_process(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])))"
    )
    child = subprocess.run(  # noqa: S603 - this very interpreter on this package's own code
        [sys.executable, "-c", code, str(folder), str(until_ms), engine],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"replay benchmark at {lines} lines failed: {child.stderr.strip()[-2000:]}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    (folder / "E.jsonl").unlink()  # the largest is gigabytes
    measured = ReplayMeasure(engine, lines, figures["cpu_seconds"], figures["peak_rss_mb"])
    progress(
        f"replay {engine}: {lines:,} lines in {measured.cpu_seconds:,.1f} CPU s "
        f"({measured.lines_per_cpu_second:,.0f} lines/CPU s), peak RSS {measured.peak_rss_mb:,.0f} MB"
    )
    return measured


def replay_sizes(largest: int) -> list[int]:
    """10,000, 100,000, 1,000,000 ... up to ``largest`` (a size of its own when not a power of ten)."""
    sizes = [size for size in (*DEFAULT_SIZES, LARGEST_SIZE) if size <= largest]
    return sizes if largest in sizes else [*sizes, largest]


def run_replay_bench(work: Path, largest: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """The ``replay`` section of ``bench --out``."""
    core = [measure(work, lines, "core", progress) for lines in replay_sizes(largest)]
    handlers = measure(work, HANDLERS_SIZE, "handlers", progress)
    by_lines = {m.lines: m for m in core}
    base = by_lines.get(LINEARITY_BASE, core[0])
    return {
        "core": [{"lines": m.lines, "lines_per_cpu_second": m.lines_per_cpu_second} for m in core],
        "linearity": core[-1].lines_per_cpu_second / base.lines_per_cpu_second,
        "linearity_sizes": [base.lines, core[-1].lines],
        "peak_memory_mb": core[-1].peak_rss_mb,
        "peak_memory_lines": core[-1].lines,
        "handlers_lines_per_cpu_second": handlers.lines_per_cpu_second,
        "handlers_lines": handlers.lines,
    }


def replay_section(
    work: Path, largest: int, progress: Callable[[str], None]
) -> tuple[list[Figure], dict[str, Any]]:
    """The replay figures (issue 12 section 1): ``bench_replay`` measures, this states the targets."""
    from connect_metering.local.bench import Figure

    section = run_replay_bench(work, largest, progress)
    figures = [
        Figure(
            f"replay --engine core, {entry['lines']:,} lines (one core)",
            entry["lines_per_cpu_second"],
            "lines/CPU s",
            f">= {TARGET_LINES_PER_CPU_SECOND}",
            entry["lines_per_cpu_second"] >= TARGET_LINES_PER_CPU_SECOND,
        )
        for entry in section["core"]
    ]
    low, high = section["linearity_sizes"]
    figures += [
        Figure(
            f"replay --engine core, lines/s at {high:,} / at {low:,} lines",
            section["linearity"],
            "ratio",
            f">= {TARGET_LINEARITY}",
            section["linearity"] >= TARGET_LINEARITY,
        ),
        Figure(
            f"replay --engine core, peak memory at {section['peak_memory_lines']:,} lines",
            section["peak_memory_mb"],
            "MB",
            f"< {TARGET_PEAK_MB} (at 10,000,000 lines)",
            section["peak_memory_mb"] < TARGET_PEAK_MB,
        ),
        Figure(
            f"replay --engine handlers, {section['handlers_lines']:,} lines (one core)",
            section["handlers_lines_per_cpu_second"],
            "lines/CPU s",
            "",
            None,
        ),
    ]
    return figures, section
