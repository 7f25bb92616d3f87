"""The cost model of `connect-metering cost`: ONE dated table of AWS list prices (PRICES, us-east-1,
without free tiers, written down from the public pricing pages on PRICES_AS_OF: check them before quoting
a figure), everything else the model assumes in one place (ASSUMPTIONS), and the monthly cost lines of
a load computed from them and the bench's request counts.

The ingest side is taken from what is measured or deployed, never retyped here: how the queue batches
events from connect_metering/ingest_batching.py (the constants the event source mapping is deployed
with), the DynamoDB writes and write units per accepted event from the bench's ``"ingest"`` figures at
each fan-out it measured, and at least the write units of the worse of its ``"ingest_profiles"``
(``ingest_writes`` says why)."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connect_metering import ingest_batching

# --- ONE dated price table ----------------------------------------------------------------------------
# AWS list prices, us-east-1, as read from the public pricing pages on PRICES_AS_OF (no free tier, no
# Savings Plans, first volume tier). They change: check them at https://aws.amazon.com/<service>/pricing/
# before relying on a figure.
PRICES_AS_OF = "2026-11-22"
PRICE_REGION = "us-east-1"


@dataclass(frozen=True)
class Price:
    usd: float
    per: float
    unit: str

    def cost(self, quantity: float) -> float:
        return quantity / self.per * self.usd

    def label(self) -> str:
        amount = "$" + f"{self.usd:.10f}".rstrip("0").rstrip(".")
        return f"{amount} / {self.unit}" if self.per == 1 else f"{amount} / {self.per:,.0f} {self.unit}"


PRICES: dict[str, Price] = {
    "eventbridge_custom_event": Price(1.00, 1e6, "events (64 KB chunks)"),
    "eventbridge_cross_account": Price(1.00, 1e6, "events delivered (charged to the sender)"),
    "pipes_request": Price(0.40, 1e6, "requests (64 KB chunks)"),
    "kinesis_put_payload_unit": Price(0.014, 1e6, "PUT payload units (25 KB)"),
    "kinesis_shard_hour": Price(0.015, 1, "shard-hour"),
    "sqs_request": Price(0.40, 1e6, "requests (standard, 64 KB chunks)"),
    "lambda_request": Price(0.20, 1e6, "requests"),
    "lambda_gb_second_arm64": Price(0.0000133334, 1, "GB-second (arm64)"),
    "dynamodb_write_request_unit": Price(0.625, 1e6, "write request units (on-demand)"),
    "dynamodb_read_request_unit": Price(0.125, 1e6, "read request units (on-demand)"),
    "dynamodb_storage_gb_month": Price(0.25, 1, "GB-month"),
    "logs_ingestion_gb": Price(0.50, 1, "GB ingested"),
    "logs_storage_gb_month": Price(0.03, 1, "GB-month"),
    "cloudwatch_metric_month": Price(0.30, 1, "metric-month"),
    "cloudwatch_alarm_month": Price(0.10, 1, "alarm-month"),
    "cloudwatch_dashboard_month": Price(3.00, 1, "dashboard-month"),
    "kms_key_month": Price(1.00, 1, "key-month"),
    "kms_request": Price(0.03, 1e4, "requests"),
    "waf_web_acl_month": Price(5.00, 1, "web ACL-month"),
    "waf_rule_month": Price(1.00, 1, "rule-month"),
}

# --- What the model assumes besides prices (one place) ------------------------------------------------
# Memory of each function, from infra: MeteringFunction's default (infra/constructs/lambda_runtime.py)
# for the seller's functions, the forwarder decoder's own setting (infra/constructs/forwarder.py).
FUNCTION_MEMORY_MB = {"ingest": 512, "meter_dispatch": 512, "meter_worker": 512, "forwarder_decoder": 128}
# Fixed resources of the seller's stack (MeteringStack): alarms, dashboard, customer-managed KMS keys.
FIXED_RESOURCES = {"alarms": 24, "dashboards": 1, "kms_keys": 6}
# The registration edge: one CloudFront web ACL with its one rate-based rule. Its requests ($0.60 per
# million) and CloudFront's are sign-ups, a few a month: nothing next to these.
EDGE_RESOURCES = {"web_acls": 1, "waf_rules": 1}
ASSUMPTIONS: dict[str, float] = {
    # a forwarded agent event as the ingest Lambda receives it (SQS record around the EventBridge
    # envelope): what fills the 6 MB payload (connect_metering/ingest_batching.py)
    "ingest_record_bytes": 2048,
    "sqs_messages_per_receive": 10,  # SQS ReceiveMessage / DeleteMessageBatch return or take 10 at most
    "forwarder_batch_size": 10,  # infra/constructs/forwarder.py BATCH_SIZE
    "worker_batch_companies": 100,  # infra/constructs/metering.py WORKER_BATCH_SIZE
    "worker_calls_per_second": 4,  # each worker paces BatchMeterUsage at 4 calls/s
    "records_per_call": 25,  # BatchMeterUsage limit
    "dynamodb_request_ms": 6.0,  # one in-region DynamoDB request, sequential, warm
    "ingest_base_ms": 15.0,  # parse and check a batch, warm container
    "decoder_ms": 3.0,  # the forwarder's 10-line decoder per batch of 10
    "dispatcher_ms": 300.0,  # one hourly dispatch (index queries, enqueue)
    "worker_base_ms": 50.0,  # per worker invocation
    "log_bytes_per_invocation": 600,  # START/END/REPORT lines and one EMF metrics document
    "log_retention_months": 3,  # infra/constructs/lambda_runtime.py LOG_RETENTION (THREE_MONTHS)
    "activity_item_key_bytes": 200,  # pk, sk, attribute names of an agent-hour item
    "encoded_event_bytes": 56,  # "ts|kind|offline|EventId" with a 36-character EventId
    "metering_reads_per_item": 2,  # an agent-hour item is read by its hour and the next one's window
    "metering_wru_per_request": 2,  # metering writes are transactional (2 WRU per KB): conservative
    "custom_metrics": 25,  # metric name and dimension pairs the handlers emit (EMF)
    "polled_queues": 3,  # agent events, meter work, subscription lifecycle: Lambda pollers
    "idle_receives_per_queue_month": 5 * 3 * 60 * 730,  # 5 long-polling pollers, 20 s waits
    "kms_requests_per_queue_month": 2 * 12 * 730,  # data keys reused 5 min, sender and receiver
    "agents_per_company": 25,  # default of --companies: ceil(agents / 25)
}
# -----------------------------------------------------------------------------------------------------

# Ingest write units per accepted event of the worse ingest profile (bench ``"ingest_profiles"``: heartbeat-
# only agents and busy agents, see local/ingest_profiles.py), used when no bench file gives them. Measured
# on 2026-11-28 by ``ingest_profiles.measure_ingest_profiles()`` (what `connect-metering bench` runs: 200
# agents of each profile over a whole hour): heartbeat_only 4,830 units for 7,967 accepted events (0.606),
# busy 11,377 for 27,172 (0.419).
DEFAULT_PROFILE_WCU_PER_EVENT = 0.606
METERING_TARGET = 3.0  # bench target for DynamoDB requests per subscription-hour (used when not measured)
INGEST_READS_TARGET = 0.05  # bench target for ingest reads per event (used when not measured)


@dataclass(frozen=True)
class IngestFigure:
    """What the bench measured for one environment of ``agents`` agents, in the deployed batches."""

    agents: int
    writes_per_event: float
    wcu_per_event: float


@dataclass(frozen=True)
class Figures:
    """Request counts from `bench`: the ingest figures at every fan-out it measured, and the write units
    per accepted event of the worse of its ingest profiles (None: not known, the fan-out figures alone)."""

    ingest: tuple[IngestFigure, ...]
    ingest_reads_per_event: float
    metering_requests_per_subscription_hour: float
    source: str
    profile_wcu_per_event: float | None = None

    def __post_init__(self) -> None:
        if not self.ingest:
            raise ValueError("no ingest figure")

    def ingest_at(self, agents: float) -> IngestFigure:
        """The measured figures at ``agents``, linear between the fan-outs measured, the nearest one's
        outside them."""
        ordered = sorted(self.ingest, key=lambda figure: figure.agents)
        if agents <= ordered[0].agents:
            return ordered[0]
        for low, high in itertools.pairwise(ordered):
            if agents <= high.agents:
                share = (agents - low.agents) / (high.agents - low.agents)
                return IngestFigure(
                    round(agents),
                    low.writes_per_event + share * (high.writes_per_event - low.writes_per_event),
                    low.wcu_per_event + share * (high.wcu_per_event - low.wcu_per_event),
                )
        return ordered[-1]


@dataclass(frozen=True)
class Load:
    agents: int
    hours_per_day: float
    days_per_month: float
    price_per_minute: float
    companies: int

    @property
    def agent_hours_per_month(self) -> float:
        return self.agents * self.hours_per_day * self.days_per_month


@dataclass(frozen=True)
class CostLine:
    payer: str  # "seller" or "customer"
    service: str
    quantity_per_month: float
    price_key: str

    @property
    def cost_per_month(self) -> float:
        return PRICES[self.price_key].cost(self.quantity_per_month)


@dataclass
class CostModel:
    load: Load
    figures: Figures
    events_per_agent_hour: float
    batch_size: float
    writes_per_event: float
    wcu_per_event: float
    variable: list[CostLine] = field(default_factory=list)
    fixed: list[CostLine] = field(default_factory=list)

    @property
    def agent_hours(self) -> float:
        return self.load.agent_hours_per_month

    def per_thousand(self, line: CostLine) -> float:
        return line.cost_per_month / self.agent_hours * 1000

    def total(self, lines: list[CostLine], payer: str) -> float:
        return sum(line.cost_per_month for line in lines if line.payer == payer)

    @property
    def revenue_per_month(self) -> float:
        return self.agent_hours * 60 * self.load.price_per_minute

    @property
    def seller_per_month(self) -> float:
        return self.total(self.variable, "seller") + self.total(self.fixed, "seller")

    @property
    def seller_share_of_revenue(self) -> float:
        return self.seller_per_month / self.revenue_per_month


def events_per_agent_hour(*, shifts: int = 200, seed: int = 3) -> float:
    """Events of `traffic.shift_events` per logged-in agent-hour (8 h shifts, Offline heartbeats after
    the logout included: the forwarder passes them on too)."""
    from connect_metering.local.traffic import Shift, shift_events

    rng = random.Random(seed)
    start = datetime(2026, 11, 2, 8, tzinfo=UTC)
    events = 0
    for number in range(shifts):
        shift = Shift(
            "arn:aws:connect:us-east-1:111122223333:instance/x",
            f"a{number}",
            start,
            start + timedelta(hours=8),
        )
        events += sum(1 for _ in shift_events(shift, rng))
    return events / (shifts * 8)


def distinct_share(agents: float, batch: float) -> float:
    """Expected distinct agents in a batch of ``batch`` events drawn evenly from ``agents`` agents, per
    event: the ingest's writes per event when every agent-hour of a batch costs one write."""
    if agents <= 1:
        return 1.0 / batch
    return agents * (1 - float((1 - 1 / agents) ** batch)) / batch


def item_wru(events_per_hour: float) -> float:
    """Average write units of one ingest UpdateItem: the agent-hour item grows as its events arrive, and
    an update costs ceil(max(old, new) size / 1 KB)."""
    count = max(1, round(events_per_hour))
    key, each = ASSUMPTIONS["activity_item_key_bytes"], ASSUMPTIONS["encoded_event_bytes"]
    return sum(math.ceil((key + k * each) / 1024) for k in range(1, count + 1)) / count


def ingest_batch(agents: float, per_agent_hour: float) -> float:
    """Records in an ingest invocation while ``agents`` agents send: what arrives in the deployed batching
    window, up to the batch size and the Lambda payload (connect_metering/ingest_batching.py)."""
    rate = agents * per_agent_hour / 3600  # events/s while everyone works
    fits = ingest_batching.LAMBDA_PAYLOAD_LIMIT_BYTES // ASSUMPTIONS["ingest_record_bytes"]
    most = min(ingest_batching.BATCH_SIZE, fits)
    return min(most, max(1.0, rate * ingest_batching.BATCHING_WINDOW_SECONDS))


def ingest_writes(load: Load, figures: Figures, batch: float) -> tuple[float, float]:
    """DynamoDB writes and write units per accepted event: the bench's at this many agents; past the
    fan-outs it measured, no fewer writes than one per distinct agent in a batch (each write's units as
    measured). The write units are at least those of the worse ingest profile when it is known."""
    measured = figures.ingest_at(load.agents)
    writes = max(measured.writes_per_event, distinct_share(load.agents, batch))
    wcu = writes * measured.wcu_per_event / measured.writes_per_event
    if figures.profile_wcu_per_event is None:
        return writes, wcu
    # The model does not know how busy the load's agents are, so it charges the worse of the two ingest
    # profiles (heartbeat-only, a contact every two minutes): while batches close on the batching window,
    # an agent-hour's writes depend on its own events alone, so any mix of idle and busy agents costs, per
    # event, between the two. The mixed-traffic figure at this fan-out wins when it is worse (batches that
    # close on the payload, at thousands of agents, hold fewer events of each agent).
    return writes, max(wcu, figures.profile_wcu_per_event)


def build_model(load: Load, figures: Figures, per_agent_hour: float) -> CostModel:
    a = ASSUMPTIONS
    agent_hours = load.agent_hours_per_month
    events = agent_hours * per_agent_hour
    batch = ingest_batch(load.agents, per_agent_hour)
    writes_per_event, wcu_per_event = ingest_writes(load, figures, batch)
    invocations = events / batch
    writes = events * writes_per_event
    ingest_seconds = invocations * a["ingest_base_ms"] / 1000 + writes * a["dynamodb_request_ms"] / 1000
    receives = invocations * 2 * math.ceil(batch / a["sqs_messages_per_receive"])  # receive + delete
    item_bytes = a["activity_item_key_bytes"] + per_agent_hour * a["encoded_event_bytes"]

    hours = 730.0  # every subscription gets a record every hour of the month, even at 0
    subscription_hours = load.companies * hours
    worker_invocations = math.ceil(load.companies / a["worker_batch_companies"]) * hours
    calls = math.ceil(load.companies / a["records_per_call"]) * hours
    metering_requests = subscription_hours * figures.metering_requests_per_subscription_hour
    worker_seconds = (
        worker_invocations * a["worker_base_ms"] / 1000
        + metering_requests * a["dynamodb_request_ms"] / 1000
        + calls / a["worker_calls_per_second"]
    )
    dispatcher_seconds = hours * a["dispatcher_ms"] / 1000
    gb = {name: mb / 1024 for name, mb in FUNCTION_MEMORY_MB.items()}
    log_gb = invocations * a["log_bytes_per_invocation"] / 1e9
    metering_log_gb = (worker_invocations + hours) * a["log_bytes_per_invocation"] / 1e9
    decoder_invocations = events / a["forwarder_batch_size"]

    variable = [
        CostLine(
            "customer", "Kinesis agent event stream: PUT payload units", events, "kinesis_put_payload_unit"
        ),
        CostLine("customer", "EventBridge Pipe requests (forwarder)", events, "pipes_request"),
        CostLine(
            "customer",
            "Lambda requests (forwarder decoder, batches of 10)",
            decoder_invocations,
            "lambda_request",
        ),
        CostLine(
            "customer",
            "Lambda GB-s (forwarder decoder, 128 MB arm64)",
            decoder_invocations * a["decoder_ms"] / 1000 * gb["forwarder_decoder"],
            "lambda_gb_second_arm64",
        ),
        CostLine("customer", "EventBridge custom events (customer bus)", events, "eventbridge_custom_event"),
        CostLine(
            "customer",
            "EventBridge cross-account delivery to the seller",
            events,
            "eventbridge_cross_account",
        ),
        CostLine(
            "seller", "SQS requests: agent events (send, receive, delete)", events + receives, "sqs_request"
        ),
        CostLine("seller", "Lambda requests (ingest)", invocations, "lambda_request"),
        CostLine(
            "seller",
            "Lambda GB-s (ingest, 512 MB arm64)",
            ingest_seconds * gb["ingest"],
            "lambda_gb_second_arm64",
        ),
        CostLine(
            "seller",
            "DynamoDB write units (ingest: one UpdateItem per agent-hour per batch)",
            events * wcu_per_event,
            "dynamodb_write_request_unit",
        ),
        CostLine(
            "seller",
            "DynamoDB read units (ingest tenancy lookups, cached 60 s)",
            events * figures.ingest_reads_per_event,
            "dynamodb_read_request_unit",
        ),
        CostLine(
            "seller",
            "DynamoDB read units (metering reads the stored events)",
            agent_hours * a["metering_reads_per_item"] * math.ceil(item_bytes / 4096),
            "dynamodb_read_request_unit",
        ),
        CostLine(
            "seller",
            "DynamoDB storage added (events kept, no TTL), first month",
            agent_hours * (item_bytes + 100) / 1e9,
            "dynamodb_storage_gb_month",
        ),
        CostLine("seller", "CloudWatch Logs ingestion (ingest)", log_gb, "logs_ingestion_gb"),
        CostLine(
            "seller",
            f"CloudWatch Logs storage (ingest, {a['log_retention_months']:.0f} months kept)",
            log_gb * a["log_retention_months"],
            "logs_storage_gb_month",
        ),
    ]
    fixed = [
        CostLine(
            "seller",
            "DynamoDB write units (hourly metering, per subscription-hour)",
            metering_requests * a["metering_wru_per_request"],
            "dynamodb_write_request_unit",
        ),
        CostLine(
            "seller",
            "SQS requests: meter work queue (send, receive, delete)",
            subscription_hours * 3 / a["sqs_messages_per_receive"],
            "sqs_request",
        ),
        CostLine(
            "seller", "Lambda requests (dispatcher, workers)", hours + worker_invocations, "lambda_request"
        ),
        CostLine(
            "seller",
            "Lambda GB-s (dispatcher, workers, 512 MB arm64)",
            dispatcher_seconds * gb["meter_dispatch"] + worker_seconds * gb["meter_worker"],
            "lambda_gb_second_arm64",
        ),
        CostLine(
            "seller", "CloudWatch Logs ingestion (dispatcher, workers)", metering_log_gb, "logs_ingestion_gb"
        ),
        CostLine(
            "seller",
            "CloudWatch Logs storage (dispatcher, workers)",
            metering_log_gb * a["log_retention_months"],
            "logs_storage_gb_month",
        ),
        CostLine(
            "seller",
            "SQS idle long polling (Lambda pollers on 3 queues)",
            a["polled_queues"] * a["idle_receives_per_queue_month"],
            "sqs_request",
        ),
        CostLine(
            "seller",
            "KMS requests (SQS data keys reused 5 min)",
            a["polled_queues"] * a["kms_requests_per_queue_month"],
            "kms_request",
        ),
        CostLine("seller", "KMS customer-managed keys", FIXED_RESOURCES["kms_keys"], "kms_key_month"),
        CostLine("seller", "CloudWatch alarms", FIXED_RESOURCES["alarms"], "cloudwatch_alarm_month"),
        CostLine(
            "seller", "CloudWatch dashboard", FIXED_RESOURCES["dashboards"], "cloudwatch_dashboard_month"
        ),
        CostLine("seller", "CloudWatch custom metrics (EMF)", a["custom_metrics"], "cloudwatch_metric_month"),
        CostLine("seller", "WAF web ACL (registration)", EDGE_RESOURCES["web_acls"], "waf_web_acl_month"),
        CostLine("seller", "WAF rule (rate per client)", EDGE_RESOURCES["waf_rules"], "waf_rule_month"),
        CostLine(
            "customer",
            "Kinesis agent event stream: 1 shard per environment",
            load.companies * hours,
            "kinesis_shard_hour",
        ),
    ]
    return CostModel(
        load=load,
        figures=figures,
        events_per_agent_hour=per_agent_hour,
        batch_size=batch,
        writes_per_event=writes_per_event,
        wcu_per_event=wcu_per_event,
        variable=variable,
        fixed=fixed,
    )
