"""`connect-metering bench`: every performance figure the issues ask for, measured in one run.

Figures are counts and ratios wherever possible (requests per event, import time of the handler over the
import time of exactly the libraries it loads), because this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connect_metering.domain.tenancy import Company, Environment, build
from connect_metering.local.bench_core import session_core_events_per_second
from connect_metering.local.embedded import EmbeddedAws
from connect_metering.local.lambdas import REPO_ROOT, handler_module
from connect_metering.local.traffic import Shift, eventbridge_envelope, shift_events, sqs_batch

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
READ_OPERATIONS = ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems")
SQS_BATCH_SIZE = 100
START = datetime(2026, 11, 2, 8, tzinfo=UTC)


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str
    meets_target: bool | None


def ingest_requests_per_event(*, agents: int = 40, seed: int = 11) -> list[Figure]:
    """DynamoDB requests of the ingest handler over a realistic stream (heartbeats, status changes,
    logouts, Offline heartbeats after logout, 1% duplicate deliveries, a few late ones)."""
    rng = random.Random(seed)
    instances = [
        f"arn:aws:connect:us-east-1:11112222{index:04d}:instance/aaaaaaaa-0000-4000-8000-{index:012d}"
        for index in range(3)
    ]
    bodies: list[tuple[datetime, str]] = []
    for agent in range(agents):
        instance = instances[agent % len(instances)]
        start = START + timedelta(minutes=rng.randint(0, 90))
        shift = Shift(instance, f"agent-{agent:04d}", start, start + timedelta(hours=rng.uniform(2, 4)))
        for event in shift_events(shift, rng):
            arrival = datetime.fromisoformat(event["EventTimestamp"]) + timedelta(seconds=rng.uniform(0.5, 5))
            if rng.random() < 0.005:
                arrival += timedelta(hours=2)  # stuck in a retry: arrives after its hour was metered
            body = json.dumps(eventbridge_envelope(event, arrived=arrival))
            bodies.append((arrival, body))
            if rng.random() < 0.01:
                bodies.append((arrival + timedelta(seconds=30), body))  # Kinesis redelivery
    bodies.sort(key=lambda pair: pair[0])
    with EmbeddedAws(product_code="bench", start=START) as aws:
        aws.tenancy.create_company(Company(alias="bench"))
        for index, instance in enumerate(instances):
            aws.tenancy.add_environment(
                build(Environment, company_alias="bench", name=f"env{index}", instance_arn=instance)
            )
        ingest = handler_module("ingest")
        ingest.ingest_service.cache_clear()
        aws.requests.counts.clear()
        outcomes: Counter[str] = Counter()
        for first in range(0, len(bodies), SQS_BATCH_SIZE):
            batch = [body for _, body in bodies[first : first + SQS_BATCH_SIZE]]
            response, results = ingest.handle_batch(sqs_batch(batch, first_message=first))
            if response["batchItemFailures"]:
                raise RuntimeError(f"ingest failed records: {response['batchItemFailures']}")
            outcomes.update(result.outcome.value for result in results)
        ingest.metrics.clear_metrics()
        writes = aws.requests.total("dynamodb", WRITE_OPERATIONS)
        reads = aws.requests.total("dynamodb", READ_OPERATIONS)
    events = len(bodies)
    accepted = outcomes["accepted"]
    return [
        Figure("ingest events (stream size)", events, "events", "", None),
        Figure("ingest duplicates detected", outcomes["duplicate"], "events", "", None),
        Figure(
            "ingest DynamoDB writes per accepted event",
            writes / accepted,
            "requests",
            "<= 1.0",
            writes / accepted <= 1.0,
        ),
        Figure(
            "ingest DynamoDB reads per event", reads / events, "requests", "<= 0.05", reads / events <= 0.05
        ),
    ]


_IMPORT_PROBE = """
import sys, time, json
before = set(sys.modules)
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
own = ("connect_metering", "functions")
loaded = [name for name in sys.modules if name not in before and not name.startswith(own)]
print(json.dumps({{"seconds": elapsed, "libraries": loaded}}))
"""

_LIBRARY_PROBE = """
import sys, time, json, importlib
names = json.loads(sys.argv[1])
start = time.perf_counter()
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def _probe(code: str, *arguments: str) -> dict[str, Any]:
    environment = {
        "POWERTOOLS_TRACE_DISABLED": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    completed = subprocess.run(  # noqa: S603 - our own interpreter and probe code
        [sys.executable, "-c", code, *arguments],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**environment, "PATH": "/usr/bin:/bin"},
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def handler_import_ratio(function: str = "ingest", rounds: int = 7) -> Figure:
    """Median import time of the handler over the median import time of the very libraries its import
    loads (each in a fresh interpreter, alternating), so the ratio is the cost of the project's code."""
    handler_times: list[float] = []
    library_times: list[float] = []
    for _ in range(rounds):
        handler = _probe(_IMPORT_PROBE.format(module=f"functions.{function}.handler"))
        handler_times.append(handler["seconds"])
        library_times.append(_probe(_LIBRARY_PROBE, json.dumps(handler["libraries"]))["seconds"])
    ratio = statistics.median(handler_times) / statistics.median(library_times)
    return Figure(
        f"{function} handler import / its libraries' import", ratio, "ratio", "<= 1.25", ratio <= 1.25
    )


def run_bench() -> list[Figure]:
    core = session_core_events_per_second()
    return [
        *ingest_requests_per_event(),
        handler_import_ratio("ingest"),
        Figure("session core throughput (one core)", core, "events/s", ">= 100000", core >= 100_000),
    ]


def render_table(figures: list[Figure]) -> str:
    lines = ["| figure | value | target | met |", "| --- | --- | --- | --- |"]
    for figure in figures:
        value = f"{figure.value:,.0f}" if figure.value >= 100 else f"{figure.value:.3f}"
        met = "" if figure.meets_target is None else ("yes" if figure.meets_target else "NO")
        lines.append(f"| {figure.name} | {value} {figure.unit} | {figure.target} | {met} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("build/bench.json"), help="JSON file of the figures")


def run(arguments: argparse.Namespace) -> int:
    out: Path = arguments.out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    except OSError as error:
        print(f"bench: cannot write {out}: {error.strerror}", file=sys.stderr)
        return 2
    figures = run_bench()
    print(render_table(figures))
    out.write_text(json.dumps([asdict(figure) for figure in figures], indent=2) + "\n")
    print(f"\nFigures written to {out}")
    return 0 if all(figure.meets_target is not False for figure in figures) else 1
