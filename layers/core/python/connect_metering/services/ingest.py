"""Ingest use case: one forwarded agent event in, accepted (stored once) or quarantined (kept with why).

BILLING.md section 2. Transient storage failures raise, so the SQS record is reported as failed and
redelivered; everything else ends in a definite outcome and never fails the batch.

Quarantine keeps a bounded, PII-free record (``audit_record``) per rejected message when the sender is
a registered environment's own account: its forwarder is broken, and its owner may ask why. Anything
else (no registered environment named, an account naming another's instance, an agent-hour past its
bound) is an anonymous or abusive flood: it is kept as one counter per (sender account, reason, hour),
written once per batch, and one sample per (sender account, hour), so a flood costs a bounded number
of items however many events it sends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from connect_metering.domain.activity import AddedEvents, EventStored
from connect_metering.domain.agent_events import (
    MAX_EVENTS_PER_AGENT_HOUR,
    NOT_DECODED,
    UNKNOWN_SENDER,
    AgentEvent,
    Envelope,
    Quarantined,
    QuarantinedEvent,
    QuarantineReason,
    QuarantineTally,
    audit_record,
    check_sender,
    check_timestamp,
    claimed_instance,
    metering_instant_ms,
    parse_agent_event,
    parse_envelope,
)
from connect_metering.domain.instants import MS_PER_HOUR, hour_floor
from connect_metering.domain.tenancy import Environment, InstanceArn


class EnvironmentLookup(Protocol):
    def environment_for_instance(self, instance_arn: str) -> Environment | None: ...


class ActivityCounter(Protocol):
    def count_activity(self, alias: str, environment: str, events: int) -> None: ...


class ActivityStore(Protocol):
    def add_events(self, events: Sequence[AgentEvent], *, late_at_ms: int | None) -> AddedEvents: ...


class QuarantineStore(Protocol):
    def keep(self, event: QuarantinedEvent) -> None: ...

    def count(self, tally: QuarantineTally, events: int, *, company: str | None) -> None: ...

    def keep_sample(self, event: QuarantinedEvent) -> None: ...


class AcceptedEventHook(Protocol):
    def awaits_proof(self, environment: Environment) -> bool: ...

    def after_accepted(self, environment: Environment, envelope: Envelope) -> bool: ...


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


class Message(NamedTuple):
    """One SQS record: ``received_ms`` stands in for the arrival time only when the envelope is unreadable.
    A named tuple (immutable, and cheap to make: the replay makes one per line)."""

    message_id: str
    body: str
    received_ms: int
    # ``json.loads(body)``, when the caller has it already (the replay's reader): not decoded twice.
    document: Any = NOT_DECODED
    # When the event source took the record from the queue (epoch ms; 0 if unknown). An event whose
    # envelope is dated before its hour's metering instant but is stored after it missed that metering
    # all the same: it is late (``_known_ms``).
    polled_ms: int = 0


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: Outcome
    company: str | None = None
    environment: str | None = None
    agent_arn: str | None = None
    late: bool = False
    reason: QuarantineReason | None = None
    # The envelope's account (EventBridge's word), for the per-sender volume metric; None if unreadable.
    sender: str | None = None


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


# One admitted message: the message, its envelope, its event and the environment the event's instance is.
_Admitted = tuple[Message, Envelope, AgentEvent, Environment]
# How many distinct results ``IngestService`` shares before it starts afresh.
_MAX_SHARED_RESULTS = 10_000


class IngestService:
    def __init__(
        self,
        *,
        environments: EnvironmentLookup,
        activity: ActivityStore,
        quarantine: QuarantineStore,
        grace_ms: int,
        max_event_age_ms: int,
        counter: ActivityCounter | None = None,
        claims: AcceptedEventHook | None = None,
    ) -> None:
        self._counter = counter
        self._claims = claims
        self._environments = environments
        self._activity = activity
        self._quarantine = quarantine
        self._grace_ms = grace_ms
        self._max_event_age_ms = max_event_age_ms
        # (sender account, hour) whose sample this container already wrote: a flood then costs one
        # counter write per batch and no sample writes. Cleared when it grows; a miss is one more write.
        self._sampled: set[tuple[str, int]] = set()
        # The results of accepted events, by their fields: they are frozen, and an agent's events of a
        # batch mostly share one, so each is made once. Cleared when it grows.
        self._shared: dict[tuple[Outcome, str, str, str, bool, str], IngestResult] = {}

    def ingest_batch(self, messages: Sequence[Message]) -> dict[str, IngestResult | Exception]:
        """Every message -> its result, or the storage error that must fail it (SQS redelivers it).

        Accepted events are grouped by (instance, agent, hour) and each group is stored with one write,
        whose answer also tells which events were already stored (the duplicates) and which found the
        agent-hour full (rule 6). Rejections are kept last, together, so a flood costs few writes."""
        results: dict[str, IngestResult | Exception] = {}
        rejected: list[tuple[Message, Quarantined]] = []
        groups: dict[tuple[str, int], list[_Admitted]] = {}
        # The admitted messages whose environment's claim an event may prove (``_verify_claims``).
        proofs: dict[str, tuple[Envelope, Environment]] = {}
        awaits_proof = None if self._claims is None else self._claims.awaits_proof
        admit = self._admit
        for message in messages:
            try:
                envelope, event, environment = admit(message)
            except Quarantined as rejection:
                rejected.append((message, rejection))
                continue
            if awaits_proof is not None and awaits_proof(environment):
                proofs[message.message_id] = (envelope, environment)
            key = (event.agent_arn, event.ts_ms - event.ts_ms % MS_PER_HOUR)
            group = groups.get(key)
            if group is None:
                groups[key] = [(message, envelope, event, environment)]
            else:
                group.append((message, envelope, event, environment))
        refused: list[tuple[str, Quarantined]] = []
        stored = self._store(groups, results, refused)
        if refused:
            by_id = {message.message_id: message for message in messages}
            rejected += [(by_id[message_id], rejection) for message_id, rejection in refused]
        self._count(stored, results)
        self._verify_claims(proofs, results)
        self._keep_rejected(rejected, results)
        return results

    def _store(
        self,
        groups: Mapping[tuple[str, int], list[_Admitted]],
        results: dict[str, IngestResult | Exception],
        refused: list[tuple[str, Quarantined]],
    ) -> dict[tuple[str, str], list[str]]:
        """Each agent-hour's events with one write; the stored messages by environment (for ``_count``).
        An agent-hour is marked late at its latest arrival when that one came after the hour was metered
        (then it is the latest of the late ones)."""
        stored_by_environment: dict[tuple[str, str], list[str]] = {}
        for (_, hour_ms), members in groups.items():
            # Late: arrived at or after its hour was metered (BILLING.md section 9: an event arriving
            # exactly at the metering instant is ingested after it), so it is billed in a later record.
            late_from_ms = metering_instant_ms(hour_ms, self._grace_ms)
            latest_ms = max([_known_ms(member[0], member[1]) for member in members])
            try:
                added = self._activity.add_events(
                    [member[2] for member in members],
                    late_at_ms=latest_ms if latest_ms >= late_from_ms else None,
                )
            except Exception as error:
                results.update((member[0].message_id, error) for member in members)
                continue
            for (message, envelope, event, environment), outcome in zip(members, added.outcomes, strict=True):
                if outcome is EventStored.REFUSED:
                    refused.append((message.message_id, _too_many_events(event, envelope)))
                    continue
                first_copy = outcome is EventStored.NEW
                results[message.message_id] = self._result(
                    Outcome.ACCEPTED if first_copy else Outcome.DUPLICATE,
                    environment,
                    event.agent_arn,
                    first_copy and _known_ms(message, envelope) >= late_from_ms,
                    envelope.account,
                )
                where = (environment.company_alias, environment.name)
                stored_ids = stored_by_environment.get(where)
                if stored_ids is None:
                    stored_by_environment[where] = [message.message_id]
                else:
                    stored_ids.append(message.message_id)
        return stored_by_environment

    def _result(
        self, outcome: Outcome, environment: Environment, agent_arn: str, late: bool, sender: str
    ) -> IngestResult:
        """The result of an accepted (or duplicate) event, shared with every equal one."""
        key = (outcome, environment.company_alias, environment.name, agent_arn, late, sender)
        result = self._shared.get(key)
        if result is None:
            if len(self._shared) >= _MAX_SHARED_RESULTS:
                self._shared.clear()
            result = self._shared[key] = IngestResult(
                outcome=outcome,
                company=environment.company_alias,
                environment=environment.name,
                agent_arn=agent_arn,
                late=late,
                sender=sender,
            )
        return result

    def _verify_claims(
        self,
        proofs: Mapping[str, tuple[Envelope, Environment]],
        results: dict[str, IngestResult | Exception],
    ) -> None:
        """Accepted events (and duplicates of them, so a redelivery retries a failed verification) may
        prove their environment's account claim: those of ``proofs``, the admitted messages whose
        environment awaits a proof (``AcceptedEventHook.awaits_proof``; for any other the hook does
        nothing). A storage error fails the record: SQS brings it back."""
        if self._claims is None:
            return
        for message_id, (envelope, environment) in proofs.items():
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
        """BILLING.md section 2 rules 1 to 5 in order (rule 6 needs the store); else Quarantined."""
        envelope = parse_envelope(message.body, document=message.document)
        try:
            event = parse_agent_event(envelope.detail)
            environment = self._environments.environment_for_instance(event.instance.arn)
            if environment is None:
                raise Quarantined(
                    QuarantineReason.UNKNOWN_INSTANCE,
                    "InstanceARN is not a registered environment",
                    instance_arn=event.instance.arn,
                )
            check_sender(envelope, event)
            check_timestamp(envelope, event, max_event_age_ms=self._max_event_age_ms)
        except Quarantined as rejection:
            # What EventBridge vouched for is kept with the rejection, for the audit trail.
            rejection.account, rejection.arrival_ms = envelope.account, envelope.arrival_ms
            rejection.detail = envelope.detail
            raise
        return envelope, event, environment

    def _keep_rejected(
        self, rejected: Sequence[tuple[Message, Quarantined]], results: dict[str, IngestResult | Exception]
    ) -> None:
        """A record per message from registered senders; counters and a sample for everyone else.
        A failed write fails its messages (redelivered), so a counter may count a message twice: it
        measures a flood, it bills nothing."""
        tallies: dict[QuarantineTally, list[str]] = defaultdict(list)
        tally_companies: dict[QuarantineTally, str] = {}
        samples: dict[tuple[str, int], tuple[str, QuarantinedEvent]] = {}
        for message, rejection in rejected:
            if rejection.instance_arn is None:
                rejection.instance_arn = claimed_instance(rejection.detail)
            company = self._company_named(rejection)
            record = audit_record(
                rejection,
                message_id=message.message_id,
                body=message.body,
                received_ms=message.received_ms,
                company=company,
            )
            # Only a well-formed, supported event is held against the company it names; a malformed
            # one's instance is just text (its record still names the owner, for the owner's audit).
            results[message.message_id] = IngestResult(
                outcome=Outcome.QUARANTINED,
                company=None if rejection.reason in MALFORMED else company,
                reason=rejection.reason,
                sender=rejection.account,
            )
            if _from_registered_sender(rejection, company):
                try:
                    self._quarantine.keep(record)
                except Exception as error:
                    results[message.message_id] = error
                continue
            account = rejection.account or UNKNOWN_SENDER
            hour_ms = hour_floor(record.arrival_ms)
            tally = QuarantineTally(account, rejection.reason.value, hour_ms)
            tallies[tally].append(message.message_id)
            if company is not None:
                tally_companies.setdefault(tally, company)
            samples.setdefault((account, hour_ms), (message.message_id, record))
        self._count_tallies(tallies, tally_companies, results)
        self._keep_samples(samples, results)

    def _count_tallies(
        self,
        tallies: Mapping[QuarantineTally, list[str]],
        companies: Mapping[QuarantineTally, str],
        results: dict[str, IngestResult | Exception],
    ) -> None:
        for tally, message_ids in tallies.items():
            try:
                self._quarantine.count(tally, len(message_ids), company=companies.get(tally))
            except Exception as error:
                results.update((message_id, error) for message_id in message_ids)

    def _keep_samples(
        self,
        samples: Mapping[tuple[str, int], tuple[str, QuarantinedEvent]],
        results: dict[str, IngestResult | Exception],
    ) -> None:
        """One sample per (sender account, hour), written once per container (``_sampled``)."""
        for key, (message_id, record) in samples.items():
            if key in self._sampled:
                continue
            try:
                self._quarantine.keep_sample(record)
            except Exception as error:
                results[message_id] = error
                continue
            if len(self._sampled) >= 10_000:
                self._sampled.clear()
            self._sampled.add(key)

    def _company_named(self, rejection: Quarantined) -> str | None:
        """The company whose registered instance the rejected event names (kept for its audit)."""
        if rejection.instance_arn is None or rejection.reason is QuarantineReason.UNKNOWN_INSTANCE:
            return None
        owner = self._environments.environment_for_instance(rejection.instance_arn)
        return owner.company_alias if owner else None


MALFORMED = frozenset(
    {QuarantineReason.TOO_LARGE, QuarantineReason.UNPARSEABLE, QuarantineReason.UNSUPPORTED_TYPE}
)


def _known_ms(message: Message, envelope: Envelope) -> int:
    """When the product could know the event: its arrival (the envelope's time, BILLING.md section 9),
    or when it was taken from the queue if that is later. Either at or after its hour's metering
    instant makes it late: a replayed archive out of order, or a record still in flight when the hour
    was metered, is billed in a later record instead of never."""
    polled_ms = message.polled_ms
    return polled_ms if polled_ms > envelope.arrival_ms else envelope.arrival_ms


def _too_many_events(event: AgentEvent, envelope: Envelope) -> Quarantined:
    return Quarantined(
        QuarantineReason.TOO_MANY_EVENTS,
        f"the agent already has {MAX_EVENTS_PER_AGENT_HOUR} accepted events in this hour",
        instance_arn=event.instance.arn,
        account=envelope.account,
        arrival_ms=envelope.arrival_ms,
        detail=envelope.detail,
    )


def _from_registered_sender(rejection: Quarantined, company: str | None) -> bool:
    """Sent by the account of the registered instance it names, and not a flood past rule 6: worth a
    record per message. EventBridge sets the sender account, so nobody else can earn that."""
    if company is None or rejection.instance_arn is None:
        return False
    if rejection.reason is QuarantineReason.TOO_MANY_EVENTS:
        return False
    return rejection.account == InstanceArn.parse(rejection.instance_arn).account_id
