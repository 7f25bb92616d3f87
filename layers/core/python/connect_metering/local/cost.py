"""`connect-metering cost`: what running the metering costs on AWS for a load, per 1,000 agent-hours and
as a share of the revenue it bills.

    connect-metering cost --agents N [--hours-per-day H] [--price-per-minute P] [--days-per-month D]
                          [--companies C] [--bench FILE]

Request counts come from `connect-metering bench` (``--bench FILE``, which must exist, else
``build/bench.json`` when it exists: the writes and write units per event at each fan-out it measured,
and the write units per event of its two ingest profiles, heartbeat-only and busy agents, of which the
model charges at least the worse; otherwise the ingest figures are measured here with
``bench.measure_ingest``, about 10 s, the profiles' write units are the built-in figure of a measured
run (cost_model.DEFAULT_PROFILE_WCU_PER_EVENT), and the metering figure is the bench target). Ingest batches are those of the deployed event source
(connect_metering/ingest_batching.py). Events per agent-hour come from the traffic model the simulator and the
bench use (`traffic.shift_events`). Unit prices are in ONE dated table (cost_model.PRICES): AWS list prices
for us-east-1, without free tiers, written down from the public pricing pages on PRICES_AS_OF; check
them before quoting a figure. Everything else the model assumes (latencies, log bytes) is in
cost_model.ASSUMPTIONS, also in one place.

Who pays what: the forwarder (Kinesis agent event stream, EventBridge Pipe and its decoder Lambda, the
customer's bus and the cross-account delivery, which EventBridge charges to the sending account) runs
in the customer's account and is billed to the customer; everything from the seller's bus on (the SQS
queue, the Lambdas, DynamoDB, CloudWatch, KMS) is the seller's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from connect_metering.local.cost_model import (
    ASSUMPTIONS,
    DEFAULT_PROFILE_WCU_PER_EVENT,
    EDGE_RESOURCES,
    FIXED_RESOURCES,
    FUNCTION_MEMORY_MB,
    INGEST_READS_TARGET,
    METERING_TARGET,
    PRICE_REGION,
    PRICES,
    PRICES_AS_OF,
    CostLine,
    CostModel,
    Figures,
    IngestFigure,
    Load,
    Price,
    build_model,
    distinct_share,
    events_per_agent_hour,
    ingest_batch,
    item_wru,
)

# The model, as callers of the command name it.
__all__ = [
    "ASSUMPTIONS",
    "DEFAULT_PROFILE_WCU_PER_EVENT",
    "EDGE_RESOURCES",
    "EXIT_BAD_INPUT",
    "FIXED_RESOURCES",
    "FUNCTION_MEMORY_MB",
    "INGEST_READS_TARGET",
    "METERING_TARGET",
    "PRICES",
    "PRICES_AS_OF",
    "PRICE_REGION",
    "CostLine",
    "CostModel",
    "Figures",
    "IngestFigure",
    "Load",
    "Price",
    "add_arguments",
    "as_dict",
    "build_model",
    "distinct_share",
    "events_per_agent_hour",
    "figures_from_bench",
    "ingest_batch",
    "item_wru",
    "run",
]

EXIT_BAD_INPUT = 2
DEFAULT_BENCH = Path("build/bench.json")


# Figures ------------------------------------------------------------------------------------------


class BenchFileError(Exception):
    pass


def _read_bench(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchFileError(f"{path}: no such file (write it with `connect-metering bench`)") from None
    except (OSError, ValueError) as error:
        raise BenchFileError(f"{path}: not a bench figures file ({error})") from None
    if not isinstance(document, dict):
        raise BenchFileError(f'{path}: not a `connect-metering bench --out` file (no "ingest" list)')
    return document


def _ingest(path: Path, document: dict[str, Any]) -> tuple[IngestFigure, ...]:
    try:
        measured = tuple(
            IngestFigure(int(item["agents"]), float(item["writes_per_event"]), float(item["wcu_per_event"]))
            for item in document["ingest"]
        )
    except (KeyError, TypeError, ValueError) as error:
        raise BenchFileError(f'{path}: no usable "ingest" figures ({error!r})') from None
    if not measured or any(figure.agents < 1 or figure.writes_per_event <= 0 for figure in measured):
        raise BenchFileError(f'{path}: no usable "ingest" figures')
    return measured


def _named_figures(path: Path, document: dict[str, Any]) -> dict[str, float]:
    try:
        return {str(item["name"]): float(item["value"]) for item in document.get("figures", [])}
    except (KeyError, TypeError, ValueError) as error:
        raise BenchFileError(f'{path}: unreadable "figures" ({error!r})') from None


def _worst_profile_wcu(path: Path, document: dict[str, Any]) -> float | None:
    """The larger write units per accepted event of the bench's ``"ingest_profiles"`` (None: absent)."""
    profiles = document.get("ingest_profiles")
    if profiles is None:
        return None
    try:
        values = [float(item["wcu_per_event"]) for item in profiles]
    except (KeyError, TypeError, ValueError) as error:
        raise BenchFileError(f'{path}: no usable "ingest_profiles" figures ({error!r})') from None
    if not values or any(not math.isfinite(value) or value <= 0 for value in values):
        raise BenchFileError(f'{path}: no usable "ingest_profiles" figures')
    return max(values)


def figures_from_bench(path: Path) -> Figures:
    """The request counts in a `connect-metering bench --out` JSON file: writes and write units per
    accepted event at each fan-out from its ``"ingest"`` list, the metering requests from ``"metering"``,
    the ingest reads from its ``"figures"`` when present (otherwise their bench targets, said in the
    source)."""
    document = _read_bench(path)
    ingest = _ingest(path, document)
    by_name = _named_figures(path, document)
    notes = []
    reads = by_name.get("ingest DynamoDB reads per event")
    if reads is None:
        reads = INGEST_READS_TARGET
        notes.append(f"ingest reads: the bench target {INGEST_READS_TARGET:g} per event")
    metering_section = document.get("metering")
    metering = (
        metering_section.get("requests_per_subscription_hour") if isinstance(metering_section, dict) else None
    )
    if metering is None:
        metering = by_name.get("metering: DynamoDB requests per subscription-hour")
    if metering is None:
        metering = METERING_TARGET
        notes.append(f"metering: the bench target {METERING_TARGET:g}")
    profile_wcu = _worst_profile_wcu(path, document)
    if profile_wcu is None:
        profile_wcu = DEFAULT_PROFILE_WCU_PER_EVENT
        notes.append(f"ingest profiles: the built-in {DEFAULT_PROFILE_WCU_PER_EVENT:g} WCU per event")
    fan_outs = ", ".join(f"{figure.agents:,}" for figure in ingest)
    source = "; ".join([f"{path} (bench; ingest at {fan_outs} agents)", *notes])
    return Figures(ingest, reads, float(metering), source, profile_wcu)


def measured_figures() -> Figures:
    """Measures the ingest figures now (~10 s, embedded AWS, one environment of 40 agents in the deployed
    batches); the metering figure is the bench target."""
    from connect_metering.local.bench import measure_ingest

    measure = measure_ingest()
    return Figures(
        (IngestFigure(measure.agents, measure.writes_per_event, measure.wcu_per_event),),
        measure.reads / measure.events,
        METERING_TARGET,
        f"measured now with bench.measure_ingest at {measure.agents} agents (no bench file); "
        f"ingest profiles: the built-in {DEFAULT_PROFILE_WCU_PER_EVENT:g} WCU per event; "
        f"metering: the bench target {METERING_TARGET:g} requests per subscription-hour",
        DEFAULT_PROFILE_WCU_PER_EVENT,
    )


# Output -------------------------------------------------------------------------------------------


def _money(value: float) -> str:
    if value == 0:
        return "$0"
    if abs(value) < 1:
        return f"${value:.3g}" if abs(value) >= 1e-4 else f"${value:.1e}"
    return f"${value:,.2f}"


def _quantity(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def render(model: CostModel) -> str:
    load, per_k = model.load, model.agent_hours / 1000
    lines = [
        f"cost: {load.agents:,} agents x {load.hours_per_day:g} h/day x {load.days_per_month:g} days = "
        f"{model.agent_hours:,.0f} agent-hours/month; {load.companies:,} companies (one subscription and "
        "one environment each)",
        f"traffic: {model.events_per_agent_hour:.1f} events per agent-hour (traffic model); ingest batches of "
        f"{model.batch_size:,.1f} events (deployed window and size); {model.writes_per_event:.3f} DynamoDB "
        f"writes and {model.wcu_per_event:.3f} write units per event (bench at this fan-out, or more "
        "when agents outnumber a batch; write units at least the worse ingest profile's)",
        f"request counts: {model.figures.source}",
        "",
        "| payer | item | quantity / 1,000 agent-hours | unit price | USD / 1,000 agent-hours |",
        "| --- | --- | --- | --- | --- |",
    ]
    ordered = [
        line
        for payer in ("seller", "customer")
        for line in [*model.variable, *model.fixed]
        if line.payer == payer
    ]
    for line in ordered:
        lines.append(
            f"| {line.payer} | {line.service} | {_quantity(line.quantity_per_month / per_k)} | "
            f"{PRICES[line.price_key].label()} | {_money(model.per_thousand(line))} |"
        )
    seller_variable = model.total(model.variable, "seller")
    seller_fixed = model.total(model.fixed, "seller")
    customer = model.total(model.variable, "customer") + model.total(model.fixed, "customer")
    revenue = model.revenue_per_month
    lines += [
        "",
        "| total | USD / 1,000 agent-hours | USD / month |",
        "| --- | --- | --- |",
        f"| seller, variable (grows with agent-hours) | {_money(seller_variable / per_k)} | {_money(seller_variable)} |",
        f"| seller, per subscription-hour and fixed | {_money(seller_fixed / per_k)} | {_money(seller_fixed)} |",
        f"| seller, all | {_money(model.seller_per_month / per_k)} | {_money(model.seller_per_month)} |",
        f"| customer (forwarder, in each customer account) | {_money(customer / per_k)} | {_money(customer)} |",
        f"| revenue at ${load.price_per_minute:g}/agent-minute | {_money(revenue / per_k)} | {_money(revenue)} |",
        "",
        f"Seller's AWS cost = {model.seller_share_of_revenue:.3%} of the revenue "
        f"(variable part alone {seller_variable / revenue:.3%}); the customer's forwarder adds "
        f"{customer / revenue:.3%} of it to the customer's own AWS bill. AWS Marketplace's listing fee is not included.",
        f"Prices: AWS list prices, {PRICE_REGION}, as of {PRICES_AS_OF}, without free tiers: to be checked "
        "against aws.amazon.com/pricing before quoting. Latencies and log sizes are assumptions (cost.ASSUMPTIONS).",
    ]
    return "\n".join(lines)


# Command line -------------------------------------------------------------------------------------

LIMITS: dict[str, tuple[float, float]] = {
    "agents": (1, 10_000_000),
    "hours_per_day": (0, 24),
    "price_per_minute": (0, 100),
    "days_per_month": (1, 31),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", required=True, help="agents (1 to 10,000,000)")
    parser.add_argument(
        "--hours-per-day", default="8", help="hours each agent is logged in per day (default 8)"
    )
    parser.add_argument(
        "--price-per-minute",
        default="0.02",
        help="the listing's price per agent-minute in USD (default 0.02)",
    )
    parser.add_argument("--days-per-month", default="22", help="working days per month (default 22)")
    parser.add_argument(
        "--companies",
        default=None,
        help="companies (subscriptions) sharing the agents (default: agents / 25)",
    )
    parser.add_argument(
        "--bench",
        type=Path,
        default=None,
        help=f"figures of `connect-metering bench` (default {DEFAULT_BENCH}, measured now when that is "
        "absent; a file named here must exist)",
    )


class BadArgument(Exception):
    pass


def _number(name: str, text: object, *, whole: bool = False) -> float:
    option = "--" + name.replace("_", "-")
    low, high = LIMITS[name]
    try:
        value = float(str(text))
    except ValueError:
        raise BadArgument(f"argument {option}: expected a number, got {text!r}") from None
    if not math.isfinite(value) or (whole and value != int(value)):
        raise BadArgument(f"argument {option}: expected a {'whole ' if whole else ''}number, got {text!r}")
    if whole and not low <= value <= high:
        raise BadArgument(f"argument {option}: must be between {low:,.0f} and {high:,.0f}, got {text}")
    if not whole and not low < value <= high:
        raise BadArgument(f"argument {option}: must be more than {low:g} and at most {high:g}, got {text}")
    return value


def parse_load(arguments: argparse.Namespace) -> Load:
    agents = int(_number("agents", arguments.agents, whole=True))
    hours = _number("hours_per_day", arguments.hours_per_day)
    price = _number("price_per_minute", arguments.price_per_minute)
    days = _number("days_per_month", arguments.days_per_month)
    if arguments.companies is None:
        companies = math.ceil(agents / ASSUMPTIONS["agents_per_company"])
    else:
        try:
            companies = int(str(arguments.companies))
        except ValueError:
            raise BadArgument(
                f"argument --companies: expected a whole number, got {arguments.companies!r}"
            ) from None
        if not 1 <= companies <= agents:
            raise BadArgument(
                f"argument --companies: must be between 1 and --agents ({agents:,}), got {companies}"
            )
    return Load(agents, hours, days, price, companies)


def run(arguments: argparse.Namespace) -> int:
    try:
        load = parse_load(arguments)
    except BadArgument as error:
        print(f"cost: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    named: Path | None = arguments.bench
    if named is not None and not named.is_file():
        print(f"cost: argument --bench: {named}: no such bench figures file", file=sys.stderr)
        return EXIT_BAD_INPUT
    bench = named or DEFAULT_BENCH
    if bench.exists():
        try:
            figures = figures_from_bench(bench)
        except BenchFileError as error:
            print(f"cost: argument --bench: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
    else:
        print(f"cost: {bench} not found: measuring the ingest figures (about 10 s)...", file=sys.stderr)
        figures = measured_figures()
    print(render(build_model(load, figures, events_per_agent_hour())))
    return 0


def as_dict(model: CostModel) -> dict[str, Any]:
    """The model's figures, for callers that want numbers rather than the table."""
    return {
        "agent_hours_per_month": model.agent_hours,
        "revenue_per_month": model.revenue_per_month,
        "seller_per_month": model.seller_per_month,
        "seller_share_of_revenue": model.seller_share_of_revenue,
        "lines": [
            {
                "payer": line.payer,
                "item": line.service,
                "quantity_per_month": line.quantity_per_month,
                "usd_per_month": line.cost_per_month,
                "usd_per_1000_agent_hours": model.per_thousand(line),
            }
            for line in [*model.variable, *model.fixed]
        ],
    }
