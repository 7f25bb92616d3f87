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

from connect_metering.domain.tenancy import Company, Environment, Subscription, build
from connect_metering.local.bench_core import session_core_events_per_second
from connect_metering.local.embedded import EmbeddedAws, drain
from connect_metering.local.lambdas import REPO_ROOT, handler_module
from connect_metering.local.traffic import Shift, eventbridge_envelope, shift_events, sqs_batch

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
READ_OPERATIONS = ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems")
SQS_BATCH_SIZE = 100
WORKER_BATCH = 100
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
            ingest.metrics.clear_metrics()  # in-process: Lambda would flush them after each batch
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


def metering_requests(*, subscriptions: int = 1000, active_share: float = 0.3, seed: int = 5) -> list[Figure]:
    """An hour of metering for ``subscriptions`` companies (one usage subscription and one environment each,
    ``active_share`` of them with agents logged in): BatchMeterUsage calls against the minimum, and
    DynamoDB requests per subscription-hour in a steady hour (the second one: the first also looks for
    checkpoints that do not exist yet)."""
    rng = random.Random(seed)
    with EmbeddedAws(product_code="bench", start=START) as aws:
        events: list[str] = []
        for number in range(subscriptions):
            alias, account = f"co{number:06d}", f"{100000000000 + number}"
            licence = f"arn:aws:license-manager::123456789012:license:l-{number:08d}"
            arn = f"arn:aws:connect:us-east-1:{account}:instance/aaaaaaaa-0000-4000-8000-{number:012d}"
            aws.tenancy.create_company(Company(alias=alias))
            subscription = build(
                Subscription,
                company_alias=alias,
                identity={"customer_aws_account_id": account, "license_arn": licence},
                pricing="usage",
            )
            aws.tenancy.add_subscription(subscription)
            aws.tenancy.save_subscription(subscription.model_copy(update={"started": START}))
            aws.tenancy.add_environment(
                build(Environment, company_alias=alias, name="prod", instance_arn=arn)
            )
            aws.marketplace.add_subscription(
                customer_aws_account_id=account, license_arn=licence, started=START
            )
            if rng.random() < active_share:
                shift = Shift(
                    arn,
                    f"agent-{number}",
                    START + timedelta(minutes=rng.randint(0, 30)),
                    START + timedelta(hours=2, minutes=30),
                )
                events += [
                    json.dumps(eventbridge_envelope(e, arrived=_at(e))) for e in shift_events(shift, rng)
                ]
        ingest = handler_module("ingest")
        ingest.ingest_service.cache_clear()
        for first in range(0, len(events), SQS_BATCH_SIZE):
            ingest.handle_batch(sqs_batch(events[first : first + SQS_BATCH_SIZE], first_message=first))
            ingest.metrics.clear_metrics()
        dispatcher = handler_module("meter_dispatch")
        dispatcher.dispatcher.cache_clear()
        worker_module = handler_module("meter_worker")
        clock = aws.clock
        worker = worker_module.build_worker(
            now_ms=lambda: int(clock.now().timestamp() * 1000),
            monotonic=clock.monotonic,
            sleep=clock.sleep,
            rng=random.Random(seed),
            metering=aws.metering,
        )
        measured: dict[str, float] = {}
        for hour in (1, 2):
            instant = START + timedelta(hours=hour, minutes=10)
            clock.advance_to(instant)
            aws.requests.counts.clear()
            calls_before = aws.marketplace.counter("BatchMeterUsage").calls
            paced_from = clock.monotonic()
            dispatcher.dispatch({"time": instant.isoformat()})
            work = drain(aws, aws.meter_queue_url)
            for first in range(0, len(work), WORKER_BATCH):
                worker_module.handle_batch({"Records": work[first : first + WORKER_BATCH]}, meter=worker)
            worker_module.metrics.clear_metrics()
            measured = {
                "calls": aws.marketplace.counter("BatchMeterUsage").calls - calls_before,
                "dynamodb": aws.requests.total("dynamodb"),
                "paced_seconds": clock.monotonic() - paced_from,
            }
        records = subscriptions
        minimum = -(-records // 25)
        throttled = aws.marketplace.counter("BatchMeterUsage").throttled
    ratio = measured["calls"] / minimum
    per_hour = measured["dynamodb"] / subscriptions
    # Two workers run in parallel (reserved concurrency), each at its own pace.
    hour_seconds = measured["paced_seconds"] / 2
    return [
        Figure("metering: subscriptions metered in an hour", subscriptions, "subscriptions", "", None),
        Figure(
            "metering: BatchMeterUsage calls / ceil(records / 25)",
            ratio,
            "ratio",
            "1.00",
            abs(ratio - 1) < 1e-9,
        ),
        Figure(
            "metering: DynamoDB requests per subscription-hour", per_hour, "requests", "<= 3", per_hour <= 3
        ),
        Figure("metering: throttled BatchMeterUsage calls", throttled, "calls", "0", throttled == 0),
        Figure(
            "metering: time to send the hour at the paced rate (2 workers x 4 calls/s)",
            hour_seconds,
            "s",
            "< 3600 and < 10 calls/s",
            hour_seconds < 3600,
        ),
    ]


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["EventTimestamp"]).replace("Z", "+00:00")) + timedelta(seconds=2)


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


def handler_import_ratio(function: str = "ingest", rounds: int = 7, *, with_target: bool = True) -> Figure:
    """Median import time of the handler over the median import time of the very libraries its import
    loads (each in a fresh interpreter, alternating), so the ratio is the cost of the project's code."""
    handler_times: list[float] = []
    library_times: list[float] = []
    for _ in range(rounds):
        handler = _probe(_IMPORT_PROBE.format(module=f"functions.{function}.handler"))
        handler_times.append(handler["seconds"])
        library_times.append(_probe(_LIBRARY_PROBE, json.dumps(handler["libraries"]))["seconds"])
    ratio = statistics.median(handler_times) / statistics.median(library_times)
    name = f"{function} handler import / its libraries' import"
    if not with_target:
        return Figure(name, ratio, "ratio", "", None)
    return Figure(name, ratio, "ratio", "<= 1.25", ratio <= 1.25)


def run_bench(subscriptions: int = 1000) -> list[Figure]:
    core = session_core_events_per_second()
    return [
        *ingest_requests_per_event(),
        handler_import_ratio("ingest"),
        # Not a target of the issues: shown because the worker's cold start delays an hour's metering.
        handler_import_ratio("meter_worker", with_target=False),
        Figure("session core throughput (one core)", core, "events/s", ">= 100000", core >= 100_000),
        *metering_requests(subscriptions=subscriptions),
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
    parser.add_argument(
        "--subscriptions", type=int, default=1000, help="subscriptions metered in the metering benchmark"
    )
    parser.add_argument(
        "--readme", type=Path, default=None, help="rewrite this file's performance section with the figures"
    )


def run(arguments: argparse.Namespace) -> int:
    out: Path = arguments.out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    except OSError as error:
        print(f"bench: cannot write {out}: {error.strerror}", file=sys.stderr)
        return 2
    if not 1 <= arguments.subscriptions <= 20_000:
        print("bench: --subscriptions must be between 1 and 20000", file=sys.stderr)
        return 2
    figures = run_bench(arguments.subscriptions)
    print(render_table(figures))
    out.write_text(json.dumps([asdict(figure) for figure in figures], indent=2) + "\n")
    print(f"\nFigures written to {out}")
    if arguments.readme is not None:
        update_readme(arguments.readme, render_table(figures), arguments.subscriptions)
        print(f"Performance section of {arguments.readme} rewritten")
    return 0 if all(figure.meets_target is not False for figure in figures) else 1


README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def update_readme(path: Path, table: str, subscriptions: int) -> None:
    """Replace what stands between the bench markers with the table just measured."""
    text = path.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{path}: no {README_START} ... {README_END} section to rewrite")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    command = f"connect-metering bench --subscriptions {subscriptions} --readme {path.name}"
    body = f"\nMeasured by `{command}` (one run, this machine):\n\n{table}\n"
    path.write_text(head + README_START + body + README_END + tail, encoding="utf-8")
