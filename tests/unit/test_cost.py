"""The cost model of `connect-metering cost`: arithmetic, figures, validation (and, marked infra, that its
function memory sizes and fixed resources are those of the synthesized stacks)."""

from __future__ import annotations

import argparse
import json
import math
from datetime import date
from pathlib import Path

import pytest

from connect_metering import ingest_batching
from connect_metering.local import cost
from connect_metering.local.cli import build_parser

FIGURES = cost.Figures(
    ingest=(cost.IngestFigure(40, 0.37, 0.40),),
    ingest_reads_per_event=0.001,
    metering_requests_per_subscription_hour=3.0,
    source="test",
)


def load(**changes: float) -> cost.Load:
    values: dict[str, float] = {
        "agents": 1000,
        "hours_per_day": 8,
        "days_per_month": 22,
        "price_per_minute": 0.02,
        "companies": 40,
    }
    values.update(changes)
    return cost.Load(
        agents=int(values["agents"]),
        hours_per_day=values["hours_per_day"],
        days_per_month=values["days_per_month"],
        price_per_minute=values["price_per_minute"],
        companies=int(values["companies"]),
    )


def arguments(*argv: str) -> argparse.Namespace:
    return build_parser("cost").parse_args(["cost", *argv])


@pytest.mark.unit
def test_one_dated_price_table_for_us_east_1() -> None:
    assert date.fromisoformat(cost.PRICES_AS_OF)
    assert cost.PRICE_REGION == "us-east-1"
    assert all(price.usd > 0 and price.per > 0 for price in cost.PRICES.values())
    # every line of the model is priced from that one table
    model = cost.build_model(load(), FIGURES, 35.0)
    assert {line.price_key for line in [*model.variable, *model.fixed]} <= set(cost.PRICES)


@pytest.mark.unit
def test_price_arithmetic() -> None:
    assert cost.Price(1.00, 1e6, "events").cost(2_500_000) == pytest.approx(2.5)
    assert cost.Price(0.03, 1e4, "requests").cost(20_000) == pytest.approx(0.06)
    assert cost.PRICES["lambda_gb_second_arm64"].cost(1000) == pytest.approx(0.0133334)


@pytest.mark.unit
def test_revenue_and_share_of_revenue() -> None:
    model = cost.build_model(load(), FIGURES, 35.0)
    assert model.agent_hours == 1000 * 8 * 22
    # 1,000 agent-hours = 60,000 agent-minutes = $1,200 at $0.02
    assert model.revenue_per_month / model.agent_hours * 1000 == pytest.approx(1200.0)
    seller = sum(line.cost_per_month for line in [*model.variable, *model.fixed] if line.payer == "seller")
    assert model.seller_per_month == pytest.approx(seller)
    assert model.seller_share_of_revenue == pytest.approx(seller / model.revenue_per_month)
    assert 0 < model.seller_share_of_revenue < 0.01  # metering is a small fraction of what it bills


@pytest.mark.unit
def test_events_lines_follow_the_agent_hours() -> None:
    model = cost.build_model(load(), FIGURES, 35.0)
    events = model.agent_hours * 35.0
    by_item = {line.service: line for line in model.variable}
    assert by_item["EventBridge Pipe requests (forwarder)"].quantity_per_month == pytest.approx(events)
    assert by_item["EventBridge cross-account delivery to the seller"].payer == "customer"
    sqs = by_item["SQS requests: agent events (send, receive, delete)"]
    # one SendMessage per event, then a receive and a delete per 10 messages of each batch
    invocations = events / model.batch_size
    assert sqs.quantity_per_month == pytest.approx(
        events + invocations * 2 * math.ceil(model.batch_size / 10)
    )


@pytest.mark.unit
def test_variable_cost_per_thousand_agent_hours_does_not_depend_on_the_days() -> None:
    one = cost.build_model(load(days_per_month=10), FIGURES, 35.0)
    two = cost.build_model(load(days_per_month=20), FIGURES, 35.0)
    for first, second in zip(one.variable, two.variable, strict=True):
        assert second.cost_per_month == pytest.approx(2 * first.cost_per_month)
        assert two.per_thousand(second) == pytest.approx(one.per_thousand(first))
    # the fixed part is spread over more agent-hours
    fixed_one = one.total(one.fixed, "seller") / one.agent_hours
    fixed_two = two.total(two.fixed, "seller") / two.agent_hours
    assert fixed_two == pytest.approx(fixed_one / 2)


@pytest.mark.unit
def test_ingest_batches_are_the_deployed_ones_and_writes_approach_one_per_event() -> None:
    window = ingest_batching.BATCHING_WINDOW_SECONDS
    one = cost.build_model(load(agents=1, companies=1), FIGURES, 35.0)
    small = cost.build_model(load(agents=10, companies=1), FIGURES, 35.0)
    # batches close on the payload: writes approach one per event as agents outnumber a batch by far
    large = cost.build_model(load(agents=1_000_000, companies=40_000), FIGURES, 35.0)
    # what arrives in the deployed batching window ...
    assert small.batch_size == pytest.approx(10 * 35.0 / 3600 * window)
    assert one.batch_size == max(1.0, 35.0 / 3600 * window)
    # ... up to the batch size and the Lambda payload
    fits = ingest_batching.LAMBDA_PAYLOAD_LIMIT_BYTES // cost.ASSUMPTIONS["ingest_record_bytes"]
    assert large.batch_size == min(ingest_batching.BATCH_SIZE, fits)
    assert cost.ingest_batch(1_000_000, 35.0) == large.batch_size
    # one agent: its events of a window share one write, which the bench measures at its 40 agents
    assert one.writes_per_event == pytest.approx(max(0.37, 1 / one.batch_size))
    assert large.writes_per_event == pytest.approx(1.0, abs=0.01)
    assert large.writes_per_event == pytest.approx(cost.distinct_share(1_000_000, large.batch_size))
    # each write costs the write units the bench measured per write
    assert large.wcu_per_event == pytest.approx(large.writes_per_event * 0.40 / 0.37)
    # the bench's own scenario: 40 agents, batches of 100 -> its measured 0.37 writes per event
    assert cost.distinct_share(40, 100) == pytest.approx(0.368, abs=0.005)
    assert cost.distinct_share(1, 50) == pytest.approx(1 / 50)


BENCH_INGEST = [
    {"agents": 40, "writes_per_event": 0.30, "wcu_per_event": 0.33},
    {"agents": 200, "writes_per_event": 0.40, "wcu_per_event": 0.45},
    {"agents": 2000, "writes_per_event": 0.58, "wcu_per_event": 0.70},
]


@pytest.mark.unit
def test_ingest_figures_follow_the_bench_fan_outs() -> None:
    figures = cost.Figures(
        ingest=tuple(cost.IngestFigure(**item) for item in BENCH_INGEST),  # type: ignore[arg-type]
        ingest_reads_per_event=0.001,
        metering_requests_per_subscription_hour=3.0,
        source="test",
    )
    assert figures.ingest_at(10) == cost.IngestFigure(40, 0.30, 0.33)  # below: the smallest fan-out
    assert figures.ingest_at(200) == cost.IngestFigure(200, 0.40, 0.45)
    between = figures.ingest_at(1100)  # half way from 200 to 2,000
    assert (between.writes_per_event, between.wcu_per_event) == pytest.approx((0.49, 0.575))
    assert figures.ingest_at(50_000) == cost.IngestFigure(2000, 0.58, 0.70)  # above: the largest
    # the model charges the measured write units, not an item size it assumes
    model = cost.build_model(load(agents=200, companies=8), figures, 35.0)
    assert model.writes_per_event == pytest.approx(0.40)
    assert model.wcu_per_event == pytest.approx(0.45)
    by_item = {line.service: line for line in model.variable}
    wcu = by_item["DynamoDB write units (ingest: one UpdateItem per agent-hour per batch)"]
    assert wcu.quantity_per_month == pytest.approx(model.agent_hours * 35.0 * 0.45)
    with pytest.raises(ValueError, match="no ingest figure"):
        cost.Figures((), 0.0, 3.0, "test")


@pytest.mark.unit
def test_write_units_grow_with_the_agent_hour_item() -> None:
    # 200-byte key + 56 bytes per event: 14 events fit in 1 KB, up to 33 in 2 KB, the 34th needs 3 KB
    assert cost.item_wru(34) == pytest.approx((14 * 1 + 19 * 2 + 1 * 3) / 34)
    assert cost.item_wru(1) == 1


@pytest.mark.unit
def test_events_per_agent_hour_of_the_traffic_model() -> None:
    assert 30 < cost.events_per_agent_hour(shifts=20) < 40


@pytest.mark.unit
def test_figures_from_a_bench_file(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(
        json.dumps(
            {
                "ingest": BENCH_INGEST,
                "metering": {"subscriptions": 10, "requests_per_subscription_hour": 2.5},
                "figures": [
                    {"name": "ingest DynamoDB writes per accepted event", "value": 0.58, "unit": "requests"},
                    {"name": "ingest DynamoDB reads per event", "value": 0.002, "unit": "requests"},
                    {
                        "name": "metering: DynamoDB requests per subscription-hour",
                        "value": 9.0,  # the "metering" section wins
                        "unit": "requests",
                    },
                ],
            }
        )
    )
    figures = cost.figures_from_bench(path)
    assert figures.ingest == tuple(cost.IngestFigure(**item) for item in BENCH_INGEST)  # type: ignore[arg-type]
    assert figures.ingest_reads_per_event == 0.002
    assert figures.metering_requests_per_subscription_hour == 2.5
    assert str(path) in figures.source
    assert "target" not in figures.source


@pytest.mark.unit
def test_a_bench_file_without_the_metering_figure_uses_the_target(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(
        json.dumps(
            {
                "ingest": BENCH_INGEST,
                "figures": [
                    {"name": "ingest DynamoDB writes per accepted event", "value": 0.4},
                    {"name": "ingest DynamoDB reads per event", "value": 0.002},
                ],
            }
        )
    )
    figures = cost.figures_from_bench(path)
    assert figures.metering_requests_per_subscription_hour == cost.METERING_TARGET
    assert "target" in figures.source


@pytest.mark.unit
def test_a_bench_file_of_the_issue_schema_alone_uses_the_reads_target(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"ingest": BENCH_INGEST, "metering": {"requests_per_subscription_hour": 2.9}}))
    figures = cost.figures_from_bench(path)
    assert figures.ingest_reads_per_event == cost.INGEST_READS_TARGET
    assert figures.metering_requests_per_subscription_hour == 2.9
    assert "ingest reads: the bench target" in figures.source


@pytest.mark.unit
def test_a_missing_bench_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(cost.BenchFileError, match=r"absent\.json: no such file"):
        cost.figures_from_bench(path)


@pytest.mark.unit
@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "{}",
        '[{"name": "something else", "value": 1}]',
        # the list of figures an older bench wrote: no writes and write units per fan-out
        '[{"name": "ingest DynamoDB writes per accepted event", "value": 0.4}]',
        '{"ingest": []}',
        '{"ingest": [{"agents": 40, "writes_per_event": 0.4}]}',
        '{"ingest": [{"agents": 40, "writes_per_event": 0.4, "wcu_per_event": 0.4}], "figures": [1]}',
    ],
)
def test_an_unusable_bench_file_is_bad_input(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bench.json"
    path.write_text(content)
    assert cost.run(arguments("--agents", "100", "--bench", str(path))) == cost.EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "--bench" in error and str(path) in error


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--agents", "0"], "--agents"),
        (["--agents", "-5"], "--agents"),
        (["--agents", "abc"], "--agents"),
        (["--agents", "2.5"], "--agents"),
        (["--agents", "10000001"], "--agents"),
        (["--agents", "10", "--hours-per-day", "0"], "--hours-per-day"),
        (["--agents", "10", "--hours-per-day", "25"], "--hours-per-day"),
        (["--agents", "10", "--hours-per-day", "nan"], "--hours-per-day"),
        (["--agents", "10", "--price-per-minute", "-0.02"], "--price-per-minute"),
        (["--agents", "10", "--price-per-minute", "inf"], "--price-per-minute"),
        (["--agents", "10", "--price-per-minute", "free"], "--price-per-minute"),
        (["--agents", "10", "--days-per-month", "40"], "--days-per-month"),
        (["--agents", "10", "--companies", "11"], "--companies"),
        (["--agents", "10", "--companies", "0"], "--companies"),
    ],
)
def test_bad_input_exits_2_naming_the_argument(
    argv: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cost.run(arguments(*argv, "--bench", str(tmp_path / "absent.json")))
    assert result == cost.EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert f"argument {named}" in captured.err
    assert captured.out == ""  # refused before measuring or printing anything


@pytest.mark.unit
def test_agents_are_required() -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser("cost").parse_args(["cost"])
    assert exit_info.value.code == 2


@pytest.mark.unit
def test_run_prints_the_table_from_a_bench_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bench.json"
    path.write_text(
        json.dumps(
            {
                "ingest": BENCH_INGEST,
                "metering": {"requests_per_subscription_hour": 3.0},
                "figures": [{"name": "ingest DynamoDB reads per event", "value": 0.001}],
            }
        )
    )
    argv = ["--agents", "500", "--hours-per-day", "7.5", "--price-per-minute", "0.03", "--bench", str(path)]
    assert cost.run(arguments(*argv)) == 0
    out = capsys.readouterr().out
    assert "500 agents x 7.5 h/day x 22 days = 82,500 agent-hours/month" in out
    assert "| seller | DynamoDB write units (ingest" in out
    assert "revenue at $0.03/agent-minute | $1,800.00" in out  # per 1,000 agent-hours
    assert f"as of {cost.PRICES_AS_OF}" in out and "to be checked" in out
    assert str(path) in out


@pytest.mark.unit
def test_as_dict_totals() -> None:
    model = cost.build_model(load(), FIGURES, 35.0)
    document = cost.as_dict(model)
    assert sum(line["usd_per_month"] for line in document["lines"]) == pytest.approx(
        model.seller_per_month
        + model.total(model.variable, "customer")
        + model.total(model.fixed, "customer")
    )


@pytest.mark.infra
def test_memory_and_fixed_resources_are_those_of_the_stacks(tmp_path: Path) -> None:
    from infra.app import FORWARDER_STACK, METERING_STACK, build_app

    build_app(str(tmp_path)).synth()
    resources = {}
    for stack in (METERING_STACK, FORWARDER_STACK):
        template = json.loads((tmp_path / f"{stack}.template.json").read_text(encoding="utf-8"))
        resources.update(template["Resources"])
    memory = {
        logical_id: item["Properties"]["MemorySize"]
        for logical_id, item in resources.items()
        if item["Type"] == "AWS::Lambda::Function"
    }

    def memory_of(prefix: str) -> int:
        (value,) = [size for logical_id, size in memory.items() if logical_id.startswith(prefix)]
        return int(value)

    assert memory_of("IngestionIngestFunction") == cost.FUNCTION_MEMORY_MB["ingest"]
    assert memory_of("MeteringDispatcherFunction") == cost.FUNCTION_MEMORY_MB["meter_dispatch"]
    assert memory_of("MeteringWorkerFunction") == cost.FUNCTION_MEMORY_MB["meter_worker"]
    assert memory_of("ForwarderDecoder") == cost.FUNCTION_MEMORY_MB["forwarder_decoder"]
    architectures = {
        arch
        for item in resources.values()
        if item["Type"] == "AWS::Lambda::Function"
        for arch in item["Properties"]["Architectures"]
    }
    assert architectures == {"arm64"}

    def count(kind: str) -> int:
        return sum(1 for item in resources.values() if item["Type"] == kind)

    assert count("AWS::CloudWatch::Alarm") == cost.FIXED_RESOURCES["alarms"]
    assert count("AWS::CloudWatch::Dashboard") == cost.FIXED_RESOURCES["dashboards"]
    assert count("AWS::KMS::Key") == cost.FIXED_RESOURCES["kms_keys"]
    web_acls = [item for item in resources.values() if item["Type"] == "AWS::WAFv2::WebACL"]
    assert len(web_acls) == cost.EDGE_RESOURCES["web_acls"]
    assert sum(len(acl["Properties"]["Rules"]) for acl in web_acls) == cost.EDGE_RESOURCES["waf_rules"]


BENCH_PROFILES = [
    {"profile": "heartbeat_only", "agents": 200, "writes_per_event": 0.40, "wcu_per_event": 0.62},
    {"profile": "busy", "agents": 200, "writes_per_event": 0.12, "wcu_per_event": 0.42},
]


@pytest.mark.unit
def test_the_write_units_are_at_least_the_worse_ingest_profile() -> None:
    figures = cost.Figures(
        ingest=tuple(cost.IngestFigure(**item) for item in BENCH_INGEST),  # type: ignore[arg-type]
        ingest_reads_per_event=0.001,
        metering_requests_per_subscription_hour=3.0,
        source="test",
        profile_wcu_per_event=0.62,
    )
    model = cost.build_model(load(agents=200, companies=8), figures, 35.0)
    assert model.writes_per_event == pytest.approx(0.40)  # writes still from the fan-out figures
    assert model.wcu_per_event == pytest.approx(0.62)  # the profile's 0.62 over the fan-out's 0.45
    by_item = {line.service: line for line in model.variable}
    wcu = by_item["DynamoDB write units (ingest: one UpdateItem per agent-hour per batch)"]
    assert wcu.quantity_per_month == pytest.approx(model.agent_hours * 35.0 * 0.62)
    # where the fan-out figure is worse (batches closing on the payload), it is charged
    large = cost.build_model(load(agents=50_000, companies=2000), figures, 35.0)
    assert large.wcu_per_event == pytest.approx(large.writes_per_event * 0.70 / 0.58)
    assert large.wcu_per_event > 0.62


@pytest.mark.unit
def test_a_bench_file_gives_the_worse_ingest_profile(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"ingest": BENCH_INGEST, "ingest_profiles": BENCH_PROFILES}))
    assert cost.figures_from_bench(path).profile_wcu_per_event == 0.62
    assert "ingest profiles" not in cost.figures_from_bench(path).source


@pytest.mark.unit
def test_without_ingest_profiles_the_built_in_measured_figure_is_used(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"ingest": BENCH_INGEST}))
    figures = cost.figures_from_bench(path)
    assert figures.profile_wcu_per_event == cost.DEFAULT_PROFILE_WCU_PER_EVENT
    assert "ingest profiles: the built-in" in figures.source
    assert 0 < cost.DEFAULT_PROFILE_WCU_PER_EVENT <= 1.0  # the bench's target for both profiles


@pytest.mark.unit
@pytest.mark.parametrize(
    "profiles",
    [[], [{"profile": "busy"}], [{"profile": "busy", "wcu_per_event": -1}], "busy", [{"wcu_per_event": "x"}]],
)
def test_unusable_ingest_profiles_are_bad_input(tmp_path: Path, profiles: object) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"ingest": BENCH_INGEST, "ingest_profiles": profiles}))
    with pytest.raises(cost.BenchFileError, match="ingest_profiles"):
        cost.figures_from_bench(path)
