"""Ingest use case: one forwarded agent event in, accepted (stored once) or quarantined (kept with why).

BILLING.md section 2. Transient storage failures raise, so the SQS record is reported as failed and
redelivered; everything else ends in a definite outcome and never fails the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from connect_metering.adapters.activity_table import encode_event
from connect_metering.domain.agent_events import (
    AgentEvent,
    Envelope,
    Quarantined,
    QuarantinedEvent,
    QuarantineReason,
    check_sender,
    is_late,
    parse_agent_event,
    parse_envelope,
)
from connect_metering.domain.instants import hour_floor
from connect_metering.domain.tenancy import Environment


class EnvironmentLookup(Protocol):
    def environment_for_instance(self, instance_arn: str) -> Environment | None: ...


class ActivityCounter(Protocol):
    def count_activity(self, alias: str, environment: str, events: int) -> None: ...


class ActivityStore(Protocol):
    def add_events(self, events: Sequence[AgentEvent], *, late_at_ms: int | None) -> set[str]: ...


class QuarantineStore(Protocol):
    def keep(self, event: QuarantinedEvent) -> None: ...


class AcceptedEventHook(Protocol):
    def after_accepted(self, environment: Environment, envelope: Envelope) -> bool: ...


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class Message:
    """One SQS record: ``received_ms`` stands in for the arrival time only when the envelope is unreadable."""

    message_id: str
    body: str
    received_ms: int


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: Outcome
    company: str | None = None
    environment: str | None = None
    agent_arn: str | None = None
    late: bool = False
    reason: QuarantineReason | None = None


class CachedEnvironmentLookup:
    """Instance -> environment, cached in the Lambda container: a busy instance costs one read per TTL.
    Unknown instances are cached for less time, so a newly added environment is picked up quickly."""

    def __init__(
        self,
        source: EnvironmentLookup,
        *,
        monotonic: Callable[[], float],
        ttl_seconds: float = 60.0,
        unknown_ttl_seconds: float = 10.0,
    ) -> None:
        self._source = source
        self._monotonic = monotonic
        self._ttl = ttl_seconds
        self._unknown_ttl = unknown_ttl_seconds
        self._entries: dict[str, tuple[float, Environment | None]] = {}

    def environment_for_instance(self, instance_arn: str) -> Environment | None:
        now = self._monotonic()
        cached = self._entries.get(instance_arn)
        if cached is not None and now < cached[0]:
            return cached[1]
        environment = self._source.environment_for_instance(instance_arn)
        expires = now + (self._ttl if environment is not None else self._unknown_ttl)
        self._entries[instance_arn] = (expires, environment)
        return environment


class IngestService:
    def __init__(
        self,
        *,
        environments: EnvironmentLookup,
        activity: ActivityStore,
        quarantine: QuarantineStore,
        grace_ms: int,
        counter: ActivityCounter | None = None,
        claims: AcceptedEventHook | None = None,
    ) -> None:
        self._counter = counter
        self._claims = claims
        self._environments = environments
        self._activity = activity
        self._quarantine = quarantine
        self._grace_ms = grace_ms

    def ingest_batch(self, messages: Sequence[Message]) -> dict[str, IngestResult | Exception]:
        """Every message -> its result, or the storage error that must fail it (SQS redelivers it).

        Accepted events are grouped by (instance, agent, hour) and each group is stored with one write,
        whose answer also tells which events were already stored: the duplicates."""
        results: dict[str, IngestResult | Exception] = {}
        groups: dict[tuple[str, int], list[tuple[str, AgentEvent, int, Environment]]] = defaultdict(list)
        admitted: dict[str, tuple[Envelope, Environment]] = {}
        for message in messages:
            try:
                envelope, event, environment = self._admit(message)
            except Quarantined as rejection:
                results[message.message_id] = self._keep_safely(message, rejection)
                continue
            admitted[message.message_id] = (envelope, environment)
            key = (event.agent_arn, hour_floor(event.ts_ms))
            groups[key].append((message.message_id, event, envelope.arrival_ms, environment))
        stored_by_environment: dict[tuple[str, str], list[str]] = defaultdict(list)
        for members in groups.values():
            late_arrivals = [
                arrival for _, event, arrival, _ in members if is_late(event, arrival, self._grace_ms)
            ]
            try:
                new = self._activity.add_events(
                    [event for _, event, _, _ in members], late_at_ms=max(late_arrivals, default=None)
                )
            except Exception as error:
                results.update((message_id, error) for message_id, *_ in members)
                continue
            for message_id, event, arrival, environment in members:
                encoding = encode_event(event)
                first_copy = encoding in new
                new.discard(encoding)
                results[message_id] = IngestResult(
                    outcome=Outcome.ACCEPTED if first_copy else Outcome.DUPLICATE,
                    company=environment.company_alias,
                    environment=environment.name,
                    agent_arn=event.agent_arn,
                    late=first_copy and is_late(event, arrival, self._grace_ms),
                )
            stored_by_environment[(members[0][3].company_alias, members[0][3].name)] += [
                m[0] for m in members
            ]
        self._count(stored_by_environment, results)
        self._verify_claims(admitted, results)
        return results

    def _verify_claims(
        self,
        admitted: Mapping[str, tuple[Envelope, Environment]],
        results: dict[str, IngestResult | Exception],
    ) -> None:
        """Accepted events (and duplicates of them, so a redelivery retries a failed verification) may
        prove their environment's account claim. A storage error fails the record: SQS brings it back."""
        if self._claims is None:
            return
        for message_id, (envelope, environment) in admitted.items():
            result = results.get(message_id)
            if not isinstance(result, IngestResult) or result.outcome is Outcome.QUARANTINED:
                continue
            try:
                self._claims.after_accepted(environment, envelope)
            except Exception as error:
                results[message_id] = error

    def _count(
        self, stored: Mapping[tuple[str, str], list[str]], results: dict[str, IngestResult | Exception]
    ) -> None:
        """One counter write per environment and batch, after its events are stored (so the meter never
        trusts a count whose events it could not read yet), counting every event tried, duplicates too:
        over-counting only costs the meter a read. If it fails, those records come back (harmless)."""
        if self._counter is None:
            return
        for (company, environment), message_ids in stored.items():
            try:
                self._counter.count_activity(company, environment, len(message_ids))
            except Exception as error:
                results.update((message_id, error) for message_id in message_ids)

    def _admit(self, message: Message) -> tuple[Envelope, AgentEvent, Environment]:
        """BILLING.md section 2: parse, check the sender, find the environment; else Quarantined."""
        envelope = parse_envelope(message.body)
        try:
            event = parse_agent_event(envelope.detail)
            check_sender(envelope, event)
            environment = self._environments.environment_for_instance(event.instance.arn)
            if environment is None:
                raise Quarantined(
                    QuarantineReason.UNKNOWN_INSTANCE,
                    "InstanceARN is not a registered environment",
                    instance_arn=event.instance.arn,
                )
        except Quarantined as rejection:
            # What EventBridge vouched for is kept with the rejection, for the audit trail.
            rejection.account, rejection.arrival_ms = envelope.account, envelope.arrival_ms
            raise
        return envelope, event, environment

    def _keep_safely(self, message: Message, rejection: Quarantined) -> IngestResult | Exception:
        try:
            return self._keep(message, rejection)
        except Exception as error:
            return error

    def _keep(self, message: Message, rejection: Quarantined) -> IngestResult:
        company = None
        if rejection.instance_arn is not None and rejection.reason is not QuarantineReason.UNKNOWN_INSTANCE:
            owner = self._environments.environment_for_instance(rejection.instance_arn)
            company = owner.company_alias if owner else None
        self._quarantine.keep(
            QuarantinedEvent(
                message_id=message.message_id,
                arrival_ms=rejection.arrival_ms if rejection.arrival_ms is not None else message.received_ms,
                reason=rejection.reason.value,
                message=rejection.message,
                body=message.body,
                account=rejection.account,
                instance_arn=rejection.instance_arn,
                company=company,
            )
        )
        return IngestResult(outcome=Outcome.QUARANTINED, company=company, reason=rejection.reason)
