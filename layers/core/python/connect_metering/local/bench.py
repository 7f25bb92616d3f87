"""`connect-metering bench`: every performance figure the issues ask for, measured in one run.

Figures are counts and ratios wherever possible (requests per event, import time of the handler over the
import time of exactly the libraries it loads), because this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from connect_metering.domain.instants import to_ms
from connect_metering.domain.tenancy import Company, Environment, Subscription, build
from connect_metering.local.bench_imports import import_time_ratio
from connect_metering.local.bench_requests import CompanyRequests
from connect_metering.local.embedded import EmbeddedAws, drain
from connect_metering.local.lambdas import handler_module
from connect_metering.local.traffic import (
    DeployedBatches,
    Shift,
    eventbridge_envelope,
    shift_events,
    sqs_batch,
)

WRITE_OPERATIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
READ_OPERATIONS = ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems")
WORKER_BATCH = 100
START = datetime(2026, 11, 2, 8, tzinfo=UTC)


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str
    meets_target: bool | None


@dataclass(frozen=True)
class IngestMeasure:
    agents: int
    events: int
    accepted: int
    duplicates: int
    batches: int
    largest_batch: int
    largest_payload_bytes: int
    writes: int
    reads: int
    write_units: int

    @property
    def writes_per_event(self) -> float:
        return self.writes / self.accepted

    @property
    def wcu_per_event(self) -> float:
        return self.write_units / self.accepted


def agent_event_stream(agents: int, seed: int) -> list[tuple[datetime, str]]:
    """(arrival, SQS body) of ``agents`` agents of ONE environment, in arrival order: heartbeats, status
    changes, logouts, Offline heartbeats after logout, 1% duplicate deliveries, a few late ones."""
    rng = random.Random(seed)
    bodies: list[tuple[datetime, str]] = []
    for agent in range(agents):
        start = START + timedelta(minutes=rng.randint(0, 30))
        shift = Shift(
            BENCH_INSTANCE, f"agent-{agent:04d}", start, start + timedelta(hours=rng.uniform(1, 1.5))
        )
        for event in shift_events(shift, rng):
            arrival = datetime.fromisoformat(event["EventTimestamp"]) + timedelta(seconds=rng.uniform(0.5, 5))
            if rng.random() < 0.005:
                arrival += timedelta(hours=2)  # stuck in a retry: arrives after its hour was metered
            body = json.dumps(eventbridge_envelope(event, arrived=arrival))
            bodies.append((arrival, body))
            if rng.random() < 0.01:
                bodies.append((arrival + timedelta(seconds=30), body))  # Kinesis redelivery
    bodies.sort(key=lambda pair: pair[0])
    return bodies


def deployed_batches(stream: list[tuple[datetime, str]]) -> list[dict[str, Any]]:
    """The SQS events the deployed event source mapping would hand the ingest Lambda for this stream
    (``traffic.DeployedBatches``: the batch size, the batching window, the Lambda payload limit)."""
    gathering: DeployedBatches[str] = DeployedBatches()
    bodies: list[list[str]] = []
    for arrival, body in stream:
        bodies += gathering.add(body, body, to_ms(arrival))
    bodies.append(gathering.take())
    batches, first = [], 0
    for batch in filter(None, bodies):
        batches.append(sqs_batch(batch, first_message=first))
        first += len(batch)
    return batches


BENCH_INSTANCE = "arn:aws:connect:us-east-1:111122220000:instance/aaaaaaaa-0000-4000-8000-000000000000"


def measure_ingest(
    *, agents: int = 40, seed: int = 11, stream: list[tuple[datetime, str]] | None = None
) -> IngestMeasure:
    """DynamoDB requests and write units of the ingest handler over one environment's stream (``stream``
    of ``agents`` agents of BENCH_INSTANCE, else ``agent_event_stream``), in the batches the deployed
    event source delivers."""
    batches = deployed_batches(agent_event_stream(agents, seed) if stream is None else stream)
    with EmbeddedAws(product_code="bench", start=START) as aws:
        aws.tenancy.create_company(Company(alias="bench"))
        aws.tenancy.add_environment(
            build(Environment, company_alias="bench", name="env", instance_arn=BENCH_INSTANCE)
        )
        ingest = handler_module("ingest")
        ingest.ingest_service.cache_clear()
        aws.requests.counts.clear()
        units = aws.count_write_units()
        outcomes: Counter[str] = Counter()
        for batch in batches:
            response, results = ingest.handle_batch(batch)
            if response["batchItemFailures"]:
                raise RuntimeError(f"ingest failed records: {response['batchItemFailures']}")
            outcomes.update(result.outcome.value for result in results)
            ingest.metrics.clear_metrics()  # in-process: Lambda would flush them after each batch
        writes = aws.requests.total("dynamodb", WRITE_OPERATIONS)
        reads = aws.requests.total("dynamodb", READ_OPERATIONS)
    return IngestMeasure(
        agents=agents,
        events=sum(len(batch["Records"]) for batch in batches),
        accepted=outcomes["accepted"],
        duplicates=outcomes["duplicate"],
        batches=len(batches),
        largest_batch=max(len(batch["Records"]) for batch in batches),
        largest_payload_bytes=max(len(json.dumps(batch)) for batch in batches),
        writes=writes,
        reads=reads,
        write_units=units.units,
    )


def ingest_requests_per_event(*, agents: int = 40, seed: int = 11) -> list[Figure]:
    """The ingest figures of one fan-out (``cost`` reads the writes and reads per event)."""
    measure = measure_ingest(agents=agents, seed=seed)
    return ingest_figures([measure], cost_figures=measure)


def ingest_figures(measures: list[IngestMeasure], *, cost_figures: IngestMeasure) -> list[Figure]:
    figures = []
    for m in measures:
        figures += [
            Figure(
                f"ingest, {m.agents:,} agents: writes per accepted event",
                m.writes_per_event,
                "requests",
                "<= 0.6",
                m.writes_per_event <= 0.6,
            ),
            Figure(
                f"ingest, {m.agents:,} agents: write units per accepted event",
                m.wcu_per_event,
                "WCU",
                "<= 1.0",
                m.wcu_per_event <= 1.0,
            ),
            Figure(f"ingest, {m.agents:,} agents: largest batch", m.largest_batch, "records", "", None),
        ]
    m = cost_figures
    return [
        *figures,
        Figure("ingest events (stream size)", m.events, "events", "", None),
        Figure("ingest duplicates detected", m.duplicates, "events", "", None),
        Figure(
            "ingest DynamoDB writes per accepted event",
            m.writes_per_event,
            "requests",
            "<= 0.6",
            m.writes_per_event <= 0.6,
        ),
        Figure(
            "ingest DynamoDB reads per event",
            m.reads / m.events,
            "requests",
            "<= 0.05",
            m.reads / m.events <= 0.05,
        ),
    ]


def measure_metering(
    *, subscriptions: int = 1000, active_share: float = 0.3, seed: int = 5
) -> tuple[MeteringMeasure, int]:
    """An hour of metering for ``subscriptions`` companies (one usage subscription and one environment each,
    ``active_share`` of them with agents logged in): BatchMeterUsage calls against the minimum, and
    DynamoDB requests per subscription-hour in a steady hour (the second one: the first also looks for
    checkpoints that do not exist yet), on average and separately for the companies whose agents were
    logged in during the hour and for the idle ones (``bench_requests``: each request charged to the
    companies it names, the dispatcher's pro rata to all)."""
    rng = random.Random(seed)
    with EmbeddedAws(product_code="bench", start=START) as aws:
        events: list[tuple[datetime, str]] = []
        active: list[str] = []
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
                active.append(alias)
                shift = Shift(
                    arn,
                    f"agent-{number}",
                    START + timedelta(minutes=rng.randint(0, 30)),
                    START + timedelta(hours=2, minutes=30),
                )
                events += [
                    (_at(e), json.dumps(eventbridge_envelope(e, arrived=_at(e))))
                    for e in shift_events(shift, rng)
                ]
        _progress(f"metering: {subscriptions:,} companies stored")
        _progress(f"metering: {_ingest_all(events):,} agent events ingested")
        dispatcher = handler_module("meter_dispatch")
        dispatcher.dispatcher.cache_clear()
        worker_module = handler_module("meter_worker")
        by_company = CompanyRequests(BENCH_COMPANY_IDS, _bench_company)
        by_company.watch(boto3._get_default_session().events)  # the dispatcher's and worker's clients
        clock = aws.clock
        worker = worker_module.build_worker(
            now_ms=lambda: int(clock.now().timestamp() * 1000),
            monotonic=clock.monotonic,
            sleep=clock.sleep,
            rng=random.Random(seed),
            metering=aws.metering,
        )
        measured = MeteringMeasure(0, 0, 0, 0, 0.0, 0, 0.0, 0.0, 0.0)
        for hour in (1, 2):
            instant = START + timedelta(hours=hour, minutes=10)
            clock.advance_to(instant)
            aws.requests.counts.clear()
            by_company.clear()
            calls_before = len(aws.marketplace.calls)
            dispatched_at = clock.monotonic()
            dispatcher.dispatch({"time": instant.isoformat()})
            work = drain(aws, aws.meter_queue_url)
            for first in range(0, len(work), WORKER_BATCH):
                worker_module.handle_batch({"Records": work[first : first + WORKER_BATCH]}, meter=worker)
                # In-process: Lambda would flush them after each batch; kept, Powertools would print
                # them as EMF each time 100 gathered (megabytes of JSON at 10,000 companies).
                worker_module.metrics.clear_metrics()
            dispatcher.metrics.clear_metrics()
            calls = [at for name, at in aws.marketplace.calls[calls_before:] if name == "BatchMeterUsage"]
            sent = aws.marketplace.ledger.accepted(hour=instant.replace(minute=0) - timedelta(hours=1))
            measured = MeteringMeasure(
                subscriptions=len({entry.identity for entry in sent}),
                records=len(sent),
                calls=len(calls),
                max_calls_in_one_second=most_calls_in_one_second(calls),
                seconds_to_send=(max(calls) - dispatched_at) if calls else 0.0,
                dynamodb_requests=aws.requests.total("dynamodb"),
                requests_per_subscription_hour=aws.requests.total("dynamodb") / subscriptions,
                requests_per_active_subscription_hour=by_company.per_company(active, subscriptions),
                requests_per_idle_subscription_hour=by_company.per_company(
                    sorted(set(_bench_aliases(subscriptions)) - set(active)), subscriptions
                ),
            )
            _progress(f"metering: hour {hour} metered")
            if by_company.requests != measured.dynamodb_requests:
                raise RuntimeError(
                    f"{by_company.requests} requests attributed of {measured.dynamodb_requests}"
                )
        throttled = aws.marketplace.counter("BatchMeterUsage").throttled
    return measured, throttled


def _ingest_all(events: list[tuple[datetime, str]]) -> int:
    """Every event through the ingest handler in the deployed batches; the stream (hundreds of MB at
    10,000 companies) is emptied and let go batch by batch, not held through the metering."""
    ingest = handler_module("ingest")
    ingest.ingest_service.cache_clear()
    count, batches = len(events), deployed_batches(sorted(events, key=lambda pair: pair[0]))
    events.clear()
    batches.reverse()
    while batches:
        ingest.handle_batch(batches.pop())
        ingest.metrics.clear_metrics()  # in-process: Lambda would flush them after each batch
    return count


def metering_figures(measured: MeteringMeasure, throttled: int) -> list[Figure]:
    ratio = measured.calls_ratio
    per_hour = measured.requests_per_subscription_hour
    active = measured.requests_per_active_subscription_hour
    return [
        Figure(
            "metering: subscriptions metered in an hour", measured.subscriptions, "subscriptions", "", None
        ),
        Figure("metering: records sent for the hour", measured.records, "records", "", None),
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
        Figure(
            "metering: DynamoDB requests per subscription-hour, company with agents active",
            active,
            "requests",
            "<= 3",
            active <= 3,
        ),
        Figure(
            "metering: DynamoDB requests per subscription-hour, idle company",
            measured.requests_per_idle_subscription_hour,
            "requests",
            "",
            None,
        ),
        Figure("metering: throttled BatchMeterUsage calls", throttled, "calls", "0", throttled == 0),
        Figure(
            "metering: most BatchMeterUsage calls in one second",
            measured.max_calls_in_one_second,
            "calls",
            "<= 9",
            measured.max_calls_in_one_second <= 9,
        ),
        Figure(
            "metering: time to send the hour (virtual clock, from the dispatch)",
            measured.seconds_to_send,
            "s",
            "< 3600",
            measured.seconds_to_send < 3600,
        ),
    ]


@dataclass(frozen=True)
class MeteringMeasure:
    subscriptions: int
    records: int
    calls: int
    max_calls_in_one_second: int
    seconds_to_send: float
    dynamodb_requests: int
    requests_per_subscription_hour: float
    # Per subscription-hour of the companies whose agents were logged in during the hour, and of the
    # others: each DynamoDB request charged to the companies it names (a batch by its entries), the
    # requests that name none (the dispatcher's index and late-event queries) shared pro rata by all.
    requests_per_active_subscription_hour: float
    requests_per_idle_subscription_hour: float

    @property
    def calls_ratio(self) -> float:
        return self.calls / max(1, -(-self.records // 25))


# The identifiers measure_metering gives company N: its alias, its instance ARN's tail, its licence id.
BENCH_COMPANY_IDS = re.compile(r"co\d{6}|8000-\d{12}|l-\d{8}")


def _bench_company(identifier: str) -> str:
    return f"co{int(identifier.rsplit('-', 1)[-1].removeprefix('co')):06d}"


def _bench_aliases(subscriptions: int) -> list[str]:
    return [f"co{number:06d}" for number in range(subscriptions)]


def most_calls_in_one_second(times: list[float]) -> int:
    """The most calls in any window (t - 1 s, t], as Marketplace's limit counts them."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["EventTimestamp"]).replace("Z", "+00:00")) + timedelta(seconds=2)


def handler_import_ratio(function: str = "ingest", rounds: int = 7, *, with_target: bool = True) -> Figure:
    """Median import time of the handler over the median import time of the very libraries its import
    loads (each in a fresh interpreter, alternating), so the ratio is the cost of the project's code."""
    ratio = import_time_ratio(f"functions.{function}.handler", rounds)
    name = f"{function} handler import / its libraries' import"
    if not with_target:
        return Figure(name, ratio, "ratio", "", None)
    return Figure(name, ratio, "ratio", "<= 1.25", ratio <= 1.25)


def _progress(line: str) -> None:
    """A long run says what it has measured so far, and the CPU spent up to then by this process and
    by the children it waited for (stderr; stdout is the table)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = f"{own.ru_utime + own.ru_stime:,.1f} s CPU, children {children.ru_utime + children.ru_stime:,.1f} s"
    print(f"bench [{cpu}]: {line}", file=sys.stderr, flush=True)


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
    parser.add_argument(
        "--replay-lines",
        type=int,
        default=1_000_000,
        help="largest stream of the replay section (10000..10000000; default 1000000 keeps the bench "
        "to minutes: 10000000 is the issue's size, 44 min of wall time here under load; 0 skips the section)",
    )
    parser.add_argument("--replay-only", action="store_true", help="measure the replay section alone")
    parser.add_argument(
        "--jobs",
        type=int,
        choices=(1, 2),
        default=2,
        help="processes at a time: 2 (default) measures metering beside the other sections, 1 one after "
        "the other; the figures are the same either way (counts, ratios and each process's own CPU time)",
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
    replay_lines = getattr(arguments, "replay_lines", 0)
    if replay_lines and not 10_000 <= replay_lines <= 10_000_000:
        print("bench: --replay-lines must be 0 or between 10000 and 10000000", file=sys.stderr)
        return 2
    from connect_metering.local.bench_run import BenchPlan, run_bench

    plan = BenchPlan(
        subscriptions=0 if getattr(arguments, "replay_only", False) else arguments.subscriptions,
        replay_lines=replay_lines,
        replay_work=out.parent / "bench-replay",
        jobs=getattr(arguments, "jobs", 2),
    )
    figures, document = run_bench(plan)
    print(render_table(figures))
    out.write_text(json.dumps(document, indent=2) + "\n")
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
