"""What to send AWS Marketplace for an hour, and how the per-company metering state evolves; the meter
work item (``MeterRequest``), what the worker reads of a company (``CompanySnapshot``) and what one
commit stores (``MeterCommit``).

BILLING.md sections 4-7, pure: the worker loads usage views and state, these functions decide the
records, the worker stores them before it sends them (write-ahead), then stores the outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from connect_metering.domain.activity import Checkpoint
from connect_metering.domain.instants import MS_PER_HOUR, from_ms, iso_ms, parse_iso_ms, to_ms
from connect_metering.domain.quantity import hour_quantity, usage_allocations
from connect_metering.domain.tenancy import (
    Company,
    Environment,
    PricingModel,
    Subscription,
    primary_subscription,
)

# The result of a record kept as accepted when it left the acceptance window with its answer lost.
UNCONFIRMED = "Unconfirmed"


class RecordStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    NOT_SUBSCRIBED = "not_subscribed"
    EXPIRED = "expired"


# Statuses whose minutes count in B(s, e) (BILLING.md section 5).
COUNTED = frozenset({RecordStatus.PENDING, RecordStatus.ACCEPTED})


@dataclass(frozen=True)
class MeteringRecord:
    """One (subscription, dimension, hour) record of the write-ahead ledger. ``usage_record`` is the exact
    UsageRecord sent, every time (Timestamp as ISO-8601); ``allocations`` are its minutes per environment."""

    company: str
    subscription_key: str
    dimension: str
    hour_ms: int
    usage_record: Mapping[str, Any]
    allocations: Mapping[str, int]
    product_code: str | None = None
    status: RecordStatus = RecordStatus.PENDING
    result: str | None = None
    metering_record_id: str | None = None
    attempts: int = 0
    # Sent, outcome not stored yet (set before each call); sticky once an outcome was lost to a crash.
    in_flight: bool = False
    possibly_accepted: bool = False

    @property
    def quantity(self) -> int:
        return int(self.usage_record["Quantity"])

    @property
    def key(self) -> str:
        return f"{self.subscription_key}|{self.dimension}|{self.hour_ms}"

    @property
    def is_legacy(self) -> bool:
        """Legacy (CustomerIdentifier) records are sent with the ProductCode, in calls of their own."""
        return "CustomerIdentifier" in self.usage_record

    def settled(
        self, status: RecordStatus, result: str, metering_record_id: str | None = None
    ) -> MeteringRecord:
        return replace(
            self,
            status=status,
            result=result,
            metering_record_id=metering_record_id or self.metering_record_id,
            attempts=self.attempts + 1,
            in_flight=False,
        )

    def sending(self) -> MeteringRecord:
        """About to be sent (marked before the call, so a lost answer is noticed)."""
        return replace(self, in_flight=True)

    def recovered(self) -> MeteringRecord:
        """Loaded by a new run. Still in flight means the previous attempt's answer was lost (the worker
        died after the call): AWS may hold the record, and that stays known."""
        return replace(self, possibly_accepted=self.possibly_accepted or self.in_flight)

    def after_known_failure(self) -> MeteringRecord:
        return replace(self, in_flight=False, attempts=self.attempts + 1)

    def refused(self, result: str) -> MeteringRecord:
        """Refused with a call of its own (``Error:<code>``): known not accepted, still pending and
        counted in B until it is accepted or leaves the window (BILLING.md section 6)."""
        return replace(self, result=result, in_flight=False, attempts=self.attempts + 1)

    def expire(self) -> MeteringRecord:
        """Past the acceptance window. Known never accepted: EXPIRED, its minutes leave B and flow into the
        next record. Possibly accepted by a call whose answer was lost: counted as accepted, unconfirmed
        (alarmed), because moving its minutes could bill them twice."""
        if self.in_flight or self.possibly_accepted:
            return self.settled(RecordStatus.ACCEPTED, UNCONFIRMED)
        return self.settled(RecordStatus.EXPIRED, "Expired")

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "subscription": self.subscription_key,
            "dimension": self.dimension,
            "hour": iso_ms(self.hour_ms),
            "usage_record": dict(self.usage_record),
            "allocations": dict(self.allocations),
            "product_code": self.product_code,
            "status": self.status.value,
            "result": self.result,
            "metering_record_id": self.metering_record_id,
            "attempts": self.attempts,
            "in_flight": self.in_flight,
            "possibly_accepted": self.possibly_accepted,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> MeteringRecord:
        usage_record = dict(document["usage_record"])
        return cls(
            company=document["company"],
            subscription_key=document["subscription"],
            dimension=document["dimension"],
            hour_ms=parse_iso_ms(document["hour"], field="hour"),
            usage_record=usage_record,
            allocations={name: int(value) for name, value in document["allocations"].items()},
            product_code=document.get("product_code"),
            status=RecordStatus(document["status"]),
            result=document.get("result"),
            metering_record_id=document.get("metering_record_id"),
            attempts=int(document.get("attempts", 0)),
            in_flight=bool(document.get("in_flight", False)),
            possibly_accepted=bool(document.get("possibly_accepted", False)),
        )


@dataclass
class SubscriptionProgress:
    """``through_ms``: the last hour with a record (or decided to need none); ``billed``: B(s, e) in
    minutes per environment (accepted + pending records); ``final``: final metering done."""

    through_ms: int | None = None
    billed: dict[str, int] = field(default_factory=dict)
    final: bool = False


@dataclass
class IdleEnvironment:
    """An environment whose checkpoint at ``boundary_ms`` has nobody logged in and no stored event at or
    after it, as of ingest's event count ``events_seen``: while that count does not move, later hours add
    no billable time and the checkpoint is rebuilt from this without reading the environment."""

    boundary_ms: int
    events_seen: int
    billed_ms: dict[str, int]
    unbilled_ms: int


@dataclass
class CompanyMeterState:
    """The worker's per-company state, stored as versioned JSON beside the company."""

    subscriptions: dict[str, SubscriptionProgress] = field(default_factory=dict)
    checkpoint_through_ms: int | None = None
    idle: dict[str, IdleEnvironment] = field(default_factory=dict)

    def progress(self, key: str) -> SubscriptionProgress:
        return self.subscriptions.setdefault(key, SubscriptionProgress())

    def to_json(self) -> str:
        return json.dumps(
            {
                "subscriptions": {
                    key: {"through": p.through_ms, "billed": p.billed, "final": p.final}
                    for key, p in sorted(self.subscriptions.items())
                },
                "checkpoint_through": self.checkpoint_through_ms,
                "idle": {
                    name: {
                        "boundary": idle.boundary_ms,
                        "events_seen": idle.events_seen,
                        "billed": idle.billed_ms,
                        "unbilled": idle.unbilled_ms,
                    }
                    for name, idle in sorted(self.idle.items())
                },
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> CompanyMeterState:
        if not text:
            return cls()
        document = json.loads(text)
        return cls(
            subscriptions={
                key: SubscriptionProgress(
                    through_ms=value.get("through"),
                    billed={env: int(minutes) for env, minutes in value.get("billed", {}).items()},
                    final=bool(value.get("final", False)),
                )
                for key, value in document.get("subscriptions", {}).items()
            },
            checkpoint_through_ms=document.get("checkpoint_through"),
            idle={
                name: IdleEnvironment(
                    boundary_ms=int(value["boundary"]),
                    events_seen=int(value["events_seen"]),
                    billed_ms={key: int(ms) for key, ms in value["billed"].items()},
                    unbilled_ms=int(value["unbilled"]),
                )
                for name, value in document.get("idle", {}).items()
            },
        )

    def count(self, record: MeteringRecord, sign: int) -> None:
        """Add (sign=1) or remove (sign=-1) a record's minutes from B(s, e)."""
        billed = self.progress(record.subscription_key).billed
        for environment, minutes in record.allocations.items():
            billed[environment] = billed.get(environment, 0) + sign * minutes


def active_in_hour(subscription: Subscription, hour_ms: int) -> bool:
    """Active at some instant of [H, H + 1 h) (BILLING.md section 6: one record per such hour)."""
    if subscription.started is None or to_ms(subscription.started) >= hour_ms + MS_PER_HOUR:
        return False
    until = subscription.active_until()
    return until is None or (to_ms(until) > hour_ms and to_ms(until) > to_ms(subscription.started))


def overage_payer(subscriptions: Sequence[Subscription], hour_ms: int) -> tuple[Subscription | None, int]:
    """BILLING.md sections 7 and 9: the contract primary at instant H pays the hour's overage, with
    L(H) = licensed agents of the contract subscriptions active then. If no subscription is active at
    instant H but one becomes active later in the hour, the primary at that first instant pays (so a
    contract that starts mid-hour still gets its hourly record, section 6)."""
    contracts = [sub for sub in subscriptions if sub.pricing is PricingModel.CONTRACT and sub.started]
    instants = sorted(
        {hour_ms}
        | {
            to_ms(sub.started)
            for sub in contracts
            if sub.started and hour_ms < to_ms(sub.started) < hour_ms + MS_PER_HOUR
        }
    )
    for instant in instants:
        moment = from_ms(instant)
        payer = primary_subscription(contracts, moment)
        if payer is not None:
            licensed = sum(
                sub.entitlements.licensed_agents or 0 for sub in contracts if sub.is_active_at(moment)
            )
            return payer, licensed
    return None, 0


def record_timestamp_ms(subscription: Subscription, hour_ms: int) -> int:
    """max(H, started), in whole milliseconds never before ``started`` (BILLING.md section 5)."""
    if subscription.started is None:
        return hour_ms
    started_ms = to_ms(subscription.started)
    if from_ms(started_ms) < subscription.started:
        started_ms += 1  # a sub-millisecond start: the first whole millisecond after it
    return max(hour_ms, started_ms)


def usage_record(
    subscription: Subscription,
    *,
    dimension: str,
    hour_ms: int,
    quantities: Mapping[str, int],
    tag_key: str | None,
) -> dict[str, Any]:
    """The exact UsageRecord: identity, Timestamp, Dimension, Quantity and, when Quantity > 0 and a tag
    key is given, one allocation per environment with Q > 0 (BILLING.md sections 5 and 9).

    Timestamp = max(H, the subscription's ``started``): BatchMeterUsage refuses a usage timestamp before
    the start of the software usage. The record still belongs to hour H (its key, B and the ledger)."""
    allocations: list[dict[str, Any]] = []
    if tag_key is None:
        quantity = sum(quantities.values())
    else:
        quantity, allocations = usage_allocations(quantities, tag_key=tag_key)
    record: dict[str, Any] = {
        "Timestamp": iso_ms(record_timestamp_ms(subscription, hour_ms)),
        **subscription.identity.usage_record_identity(),
        "Dimension": dimension,
        "Quantity": quantity,
    }
    if allocations:
        record["UsageAllocations"] = allocations
    return record


def plan_usage_record(
    subscription: Subscription,
    *,
    hour_ms: int,
    totals_ms: Mapping[str, int],
    billed: Mapping[str, int],
    dimension: str,
    tag_key: str,
) -> MeteringRecord:
    """Q(s, e, H) = max(0, floor(T(s, e, H) / 60 s) - B(s, e)) per environment (BILLING.md section 5)."""
    quantities = {
        environment: hour_quantity(total, billed.get(environment, 0))
        for environment, total in totals_ms.items()
    }
    record = usage_record(
        subscription, dimension=dimension, hour_ms=hour_ms, quantities=quantities, tag_key=tag_key
    )
    return MeteringRecord(
        company=subscription.company_alias,
        subscription_key=subscription.key,
        dimension=dimension,
        hour_ms=hour_ms,
        usage_record=record,
        allocations={environment: q for environment, q in quantities.items() if q > 0},
        product_code=subscription.identity.product_code if subscription.identity.is_legacy else None,
    )


def plan_overage_record(
    payer: Subscription, *, hour_ms: int, agents: int, licensed: int, dimension: str
) -> MeteringRecord:
    """Quantity = max(0, N(H) - L(H)) on the overage dimension, no allocations (BILLING.md section 7)."""
    quantity = max(0, agents - licensed)
    record = usage_record(
        payer, dimension=dimension, hour_ms=hour_ms, quantities={"": quantity}, tag_key=None
    )
    return MeteringRecord(
        company=payer.company_alias,
        subscription_key=payer.key,
        dimension=dimension,
        hour_ms=hour_ms,
        usage_record=record,
        allocations={},
        product_code=payer.identity.product_code if payer.identity.is_legacy else None,
    )


def is_expired(record: MeteringRecord, now_ms: int, max_record_age_ms: int) -> bool:
    """Marketplace refuses a Timestamp 6 h old or more: such a record is no longer sent (section 6)."""
    return now_ms - record.hour_ms >= max_record_age_ms


def hours_between(first_ms: int, last_ms: int) -> Iterable[int]:
    return range(first_ms, last_ms + 1, MS_PER_HOUR)


@dataclass(frozen=True)
class CompanySnapshot:
    """Everything the metering worker reads of one company in one query: its subscriptions and
    environments, its metering state (JSON) and version, its pending records (JSON), and how many events
    ingest stored per environment."""

    company: Company
    subscriptions: list[Subscription]
    environments: list[Environment]
    meter_state: str | None
    meter_version: int
    pending_records: list[str]
    activity_counts: dict[str, int]


@dataclass(frozen=True)
class MeterCommit:
    """One company's unit of work for the meter store: new records (write-ahead), outcomes that change B,
    the state that counts them, conditioned on the state still being at ``version``, and checkpoints."""

    company: str
    version: int
    state: CompanyMeterState
    new_records: Sequence[MeteringRecord] = ()
    settled: Sequence[MeteringRecord] = ()
    checkpoints: Sequence[Checkpoint] = ()


@dataclass(frozen=True)
class MeterRequest:
    """``hourly``: meter every hour due through ``through_ms``; ``final``: a subscription ended at ``at_ms``."""

    company: str
    kind: str
    through_ms: int
    subscription: str | None = None
    recompute_from: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"kind": self.kind, "company": self.company}
        if self.kind == "final":
            document.update(subscription=self.subscription, at=iso_ms(self.through_ms))
        else:
            document["through"] = iso_ms(self.through_ms)
            if self.recompute_from:
                document["recompute_from"] = {arn: iso_ms(hour) for arn, hour in self.recompute_from.items()}
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> MeterRequest:
        kind = document.get("kind")
        if kind == "final":
            return cls(
                company=str(document["company"]),
                kind="final",
                through_ms=parse_iso_ms(str(document["at"]), field="at"),
                subscription=str(document["subscription"]),
            )
        if kind == "hourly":
            return cls(
                company=str(document["company"]),
                kind="hourly",
                through_ms=parse_iso_ms(str(document["through"]), field="through"),
                recompute_from={
                    str(arn): parse_iso_ms(str(hour), field="recompute_from")
                    for arn, hour in dict(document.get("recompute_from", {})).items()
                },
            )
        raise ValueError(f"kind: {kind!r} is not 'hourly' or 'final'")
