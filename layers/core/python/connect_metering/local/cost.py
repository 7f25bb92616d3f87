"""`connect-metering cost`: what running the metering costs on AWS for a load, per 1,000 agent-hours and
as a share of the revenue it bills.

    connect-metering cost --agents N [--hours-per-day H] [--price-per-minute P] [--days-per-month D]
                          [--companies C] [--bench FILE]

Request counts come from `connect-metering bench` (``--bench FILE``, which must exist, else
``build/bench.json`` when it exists; otherwise the ingest figures are measured here with ``bench.ingest_requests_per_event``, about 10 s, and the metering
figure is the bench target). Events per agent-hour come from the traffic model the simulator and the
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
    EDGE_RESOURCES,
    FIXED_RESOURCES,
    FUNCTION_MEMORY_MB,
    METERING_TARGET,
    PRICE_REGION,
    PRICES,
    PRICES_AS_OF,
    CostLine,
    CostModel,
    Figures,
    Load,
    Price,
    build_model,
    distinct_share,
    events_per_agent_hour,
    item_wru,
)

# The model, as callers of the command name it.
__all__ = [
    "ASSUMPTIONS",
    "EDGE_RESOURCES",
    "EXIT_BAD_INPUT",
    "FIXED_RESOURCES",
    "FUNCTION_MEMORY_MB",
    "METERING_TARGET",
    "PRICES",
    "PRICES_AS_OF",
    "PRICE_REGION",
    "CostLine",
    "CostModel",
    "Figures",
    "Load",
    "Price",
    "add_arguments",
    "as_dict",
    "build_model",
    "distinct_share",
    "events_per_agent_hour",
    "figures_from_bench",
    "item_wru",
    "run",
]

EXIT_BAD_INPUT = 2
DEFAULT_BENCH = Path("build/bench.json")


# Figures ------------------------------------------------------------------------------------------


class BenchFileError(Exception):
    pass


def figures_from_bench(path: Path) -> Figures:
    """The request counts in a `connect-metering bench --out` JSON file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(document, dict):  # `bench --out` writes its figures under "figures"
            document = document["figures"]
        by_name = {str(item["name"]): float(item["value"]) for item in document}
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise BenchFileError(f"{path}: not a bench figures file ({error})") from None
    try:
        writes = by_name["ingest DynamoDB writes per accepted event"]
        reads = by_name["ingest DynamoDB reads per event"]
    except KeyError as missing:
        raise BenchFileError(f"{path}: no figure {missing}") from None
    metering = by_name.get("metering: DynamoDB requests per subscription-hour")
    source = f"{path} (bench)"
    if metering is None:
        metering, source = METERING_TARGET, f"{source}; metering: the bench target {METERING_TARGET:g}"
    return Figures(writes, reads, metering, source)


def measured_figures() -> Figures:
    """Measures the ingest figures now (~10 s, embedded AWS); the metering figure is the bench target."""
    from connect_metering.local.bench import ingest_requests_per_event

    by_name = {figure.name: figure.value for figure in ingest_requests_per_event()}
    return Figures(
        by_name["ingest DynamoDB writes per accepted event"],
        by_name["ingest DynamoDB reads per event"],
        METERING_TARGET,
        "measured now with bench.ingest_requests_per_event (no bench file); "
        f"metering: the bench target {METERING_TARGET:g} requests per subscription-hour",
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
        f"{model.batch_size:,.1f} events; {model.writes_per_event:.3f} DynamoDB writes per event "
        f"(bench {model.figures.ingest_writes_per_event:.3f}, or more when agents outnumber a batch)",
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
