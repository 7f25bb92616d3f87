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
from typing import Any, NamedTuple, Protocol, cast

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
from connect_metering.domain.common_messages import read_common_message
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


# One admitted message: its position in the batch, its envelope, its event and the environment the
# event's instance is.
_Admitted = tuple[int, Envelope, AgentEvent, Environment]
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
        """``ingest``'s results by message id (SQS gives each message of a batch its own id)."""
        return dict(zip([message.message_id for message in messages], self.ingest(messages), strict=True))

    def ingest(self, messages: Sequence[Message]) -> list[IngestResult | Exception]:
        """Every message's result, or the storage error that must fail it (SQS redelivers it), in order.

        Accepted events are grouped by (instance, agent, hour) and each group is stored with one write,
        whose answer also tells which events were already stored (the duplicates) and which found the
        agent-hour full (rule 6). Rejections are kept last, together, so a flood costs few writes."""
        results: list[IngestResult | Exception | None] = [None] * len(messages)
        rejected: list[tuple[int, Quarantined]] = []
        groups: dict[tuple[str, int], list[_Admitted]] = {}
        # The admitted messages whose environment's claim an event may prove (``_verify_claims``).
        proofs: list[tuple[int, Envelope, Environment]] = []
        awaits_proof = None if self._claims is None else self._claims.awaits_proof
        # ``awaits_proof`` of each environment asked, by identity (each is kept alive by its admitted
        # events meanwhile): nothing it reads changes before ``_verify_claims``, and a batch's events
        # share few environments (the same objects, from the lookup's cache).
        asked: dict[int, bool] = {}
        read, lookup = read_common_message, self._environments.environment_for_instance
        max_event_age_ms = self._max_event_age_ms
        for position, message in enumerate(messages):
            # The short way (a message of the common shape that passes rules 1, 2, 4 and 5), else the
            # long way (``_admit``), which names the first rule a message breaks.
            common = read(message.body, message.document, max_event_age_ms=max_event_age_ms)
            if common is not None and (found := lookup(common[2])) is not None:
                envelope, event, environment = common[0], common[1], found
            else:
                try:
                    envelope, event, environment = self._admit(message, common)
                except Quarantined as rejection:
                    rejected.append((position, rejection))
                    continue
            if awaits_proof is not None:
                awaits = asked.get(id(environment))
                if awaits is None:
                    awaits = asked[id(environment)] = awaits_proof(environment)
                if awaits:
                    proofs.append((position, envelope, environment))
            ts_ms = event.ts_ms
            key = (event.agent_arn, ts_ms - ts_ms % MS_PER_HOUR)
            group = groups.get(key)
            if group is None:
                groups[key] = [(position, envelope, event, environment)]
            else:
                group.append((position, envelope, event, environment))
        refused: list[tuple[int, Quarantined]] = []
        stored = self._store(groups, [message.polled_ms for message in messages], results, refused)
        rejected += refused
        self._count(stored, results)
        self._verify_claims(proofs, results)
        self._keep_rejected(messages, rejected, results)
        return cast(list[IngestResult | Exception], results)

    def _store(
        self,
        groups: Mapping[tuple[str, int], list[_Admitted]],
        polled: Sequence[int],
        results: list[IngestResult | Exception | None],
        refused: list[tuple[int, Quarantined]],
    ) -> dict[tuple[str, str], list[int]]:
        """Each agent-hour's events with one write; the stored messages by environment (for ``_count``).
        ``polled``: each message's ``polled_ms``, by position. An agent-hour is marked late at the latest
        instant one of its events became known (``_known_ms``) when that came after the hour was metered
        (then it is the latest of the late ones)."""
        stored_by_environment: dict[tuple[str, str], list[int]] = {}
        for (_, hour_ms), members in groups.items():
            # Late: arrived at or after its hour was metered (BILLING.md section 9: an event arriving
            # exactly at the metering instant is ingested after it), so it is billed in a later record.
            late_from_ms = metering_instant_ms(hour_ms, self._grace_ms)
            latest_ms = max([_known_ms(polled[member[0]], member[1]) for member in members])
            late = latest_ms >= late_from_ms
            try:
                added = self._activity.add_events(
                    [member[2] for member in members], late_at_ms=latest_ms if late else None
                )
            except Exception as error:
                for member in members:
                    results[member[0]] = error
                continue
            if late or not self._all_new_of_one_environment(
                members, added.outcomes, results, stored_by_environment
            ):
                self._settle(
                    members, added.outcomes, late_from_ms, polled, results, refused, stored_by_environment
                )
        return stored_by_environment

    def _all_new_of_one_environment(
        self,
        members: list[_Admitted],
        outcomes: list[EventStored],
        results: list[IngestResult | Exception | None],
        stored_by_environment: dict[tuple[str, str], list[int]],
    ) -> bool:
        """``_settle`` of an agent-hour none of whose events is late, when every event is new and of one
        environment (the common case): they share one result. False, having done nothing, otherwise."""
        _, envelope, event, environment = members[0]
        if outcomes.count(EventStored.NEW) != len(outcomes) or (
            len(members) > 1 and any(member[3] is not environment for member in members)
        ):
            return False
        # The agent and the sender are the group's (its agent's instance's account, by rule 4).
        result = self._result(Outcome.ACCEPTED, environment, event.agent_arn, False, envelope.account)
        positions = [member[0] for member in members]
        for position in positions:
            results[position] = result
        where = (environment.company_alias, environment.name)
        stored_positions = stored_by_environment.get(where)
        if stored_positions is None:
            stored_by_environment[where] = positions
        else:
            stored_positions += positions
        return True

    def _settle(
        self,
        members: list[_Admitted],
        outcomes: list[EventStored],
        late_from_ms: int,
        polled: Sequence[int],
        results: list[IngestResult | Exception | None],
        refused: list[tuple[int, Quarantined]],
        stored_by_environment: dict[tuple[str, str], list[int]],
    ) -> None:
        """Each event's result from its write's outcome: accepted (late when it became known at or after
        ``late_from_ms``: ``_known_ms``), duplicate, or refused (rule 6)."""
        for (position, envelope, event, environment), outcome in zip(members, outcomes, strict=True):
            if outcome is EventStored.REFUSED:
                refused.append((position, _too_many_events(event, envelope)))
                continue
            first_copy = outcome is EventStored.NEW
            results[position] = self._result(
                Outcome.ACCEPTED if first_copy else Outcome.DUPLICATE,
                environment,
                event.agent_arn,
                first_copy and _known_ms(polled[position], envelope) >= late_from_ms,
                envelope.account,
            )
            where = (environment.company_alias, environment.name)
            stored_positions = stored_by_environment.get(where)
            if stored_positions is None:
                stored_by_environment[where] = [position]
            else:
                stored_positions.append(position)

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
        proofs: Sequence[tuple[int, Envelope, Environment]],
        results: list[IngestResult | Exception | None],
    ) -> None:
        """Accepted events (and duplicates of them, so a redelivery retries a failed verification) may
        prove their environment's account claim: those of ``proofs``, the admitted messages whose
        environment awaits a proof (``AcceptedEventHook.awaits_proof``; for any other the hook does
        nothing). A storage error fails the record: SQS brings it back."""
        if self._claims is None:
            return
        for position, envelope, environment in proofs:
            result = results[position]
            if not isinstance(result, IngestResult) or result.outcome is Outcome.QUARANTINED:
                continue
            try:
                self._claims.after_accepted(environment, envelope)
            except Exception as error:
                results[position] = error

    def _count(
        self, stored: Mapping[tuple[str, str], list[int]], results: list[IngestResult | Exception | None]
    ) -> None:
        """One counter write per environment and batch, after its events are stored (so the meter never
        trusts a count whose events it could not read yet), counting every event tried, duplicates too:
        over-counting only costs the meter a read. If it fails, those records come back (harmless)."""
        if self._counter is None:
            return
        for (company, environment), positions in stored.items():
            try:
                self._counter.count_activity(company, environment, len(positions))
            except Exception as error:
                for position in positions:
                    results[position] = error

    def _admit(
        self, message: Message, common: tuple[Envelope, AgentEvent, str] | None
    ) -> tuple[Envelope, AgentEvent, Environment]:
        """BILLING.md section 2 rules 1 to 5 in order (rule 6 needs the store); else Quarantined.
        ``common``: the message read the short way (``read_common_message``), whose instance is then
        no registered environment's (rule 3); None when it was not of the common shape."""
        if common is None:
            return self._admit_generally(message)
        envelope, event, _ = common
        rejection = _unknown_instance(event)
        rejection.account, rejection.arrival_ms = envelope.account, envelope.arrival_ms
        rejection.detail = envelope.detail
        raise rejection

    def _admit_generally(self, message: Message) -> tuple[Envelope, AgentEvent, Environment]:
        envelope = parse_envelope(message.body, document=message.document)
        try:
            event = parse_agent_event(envelope.detail)
            environment = self._environments.environment_for_instance(event.instance.arn)
            if environment is None:
                raise _unknown_instance(event)
            check_sender(envelope, event)
            check_timestamp(envelope, event, max_event_age_ms=self._max_event_age_ms)
        except Quarantined as rejection:
            # What EventBridge vouched for is kept with the rejection, for the audit trail.
            rejection.account, rejection.arrival_ms = envelope.account, envelope.arrival_ms
            rejection.detail = envelope.detail
            raise
        return envelope, event, environment

    def _keep_rejected(
        self,
        messages: Sequence[Message],
        rejected: Sequence[tuple[int, Quarantined]],
        results: list[IngestResult | Exception | None],
    ) -> None:
        """A record per message from registered senders; counters and a sample for everyone else.
        A failed write fails its messages (redelivered), so a counter may count a message twice: it
        measures a flood, it bills nothing."""
        tallies: dict[QuarantineTally, list[int]] = defaultdict(list)
        tally_companies: dict[QuarantineTally, str] = {}
        samples: dict[tuple[str, int], tuple[int, QuarantinedEvent]] = {}
        for position, rejection in rejected:
            message = messages[position]
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
            results[position] = IngestResult(
                outcome=Outcome.QUARANTINED,
                company=None if rejection.reason in MALFORMED else company,
                reason=rejection.reason,
                sender=rejection.account,
            )
            if _from_registered_sender(rejection, company):
                try:
                    self._quarantine.keep(record)
                except Exception as error:
                    results[position] = error
                continue
            account = rejection.account or UNKNOWN_SENDER
            hour_ms = hour_floor(record.arrival_ms)
            tally = QuarantineTally(account, rejection.reason.value, hour_ms)
            tallies[tally].append(position)
            if company is not None:
                tally_companies.setdefault(tally, company)
            samples.setdefault((account, hour_ms), (position, record))
        self._count_tallies(tallies, tally_companies, results)
        self._keep_samples(samples, results)

    def _count_tallies(
        self,
        tallies: Mapping[QuarantineTally, list[int]],
        companies: Mapping[QuarantineTally, str],
        results: list[IngestResult | Exception | None],
    ) -> None:
        for tally, positions in tallies.items():
            try:
                self._quarantine.count(tally, len(positions), company=companies.get(tally))
            except Exception as error:
                for position in positions:
                    results[position] = error

    def _keep_samples(
        self,
        samples: Mapping[tuple[str, int], tuple[int, QuarantinedEvent]],
        results: list[IngestResult | Exception | None],
    ) -> None:
        """One sample per (sender account, hour), written once per container (``_sampled``)."""
        for key, (position, record) in samples.items():
            if key in self._sampled:
                continue
            try:
                self._quarantine.keep_sample(record)
            except Exception as error:
                results[position] = error
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


def _known_ms(polled_ms: int, envelope: Envelope) -> int:
    """When the product could know the event: its arrival (the envelope's time, BILLING.md section 9),
    or when it was taken from the queue if that is later. Either at or after its hour's metering
    instant makes it late: a replayed archive out of order, or a record still in flight when the hour
    was metered, is billed in a later record instead of never."""
    return polled_ms if polled_ms > envelope.arrival_ms else envelope.arrival_ms


def _unknown_instance(event: AgentEvent) -> Quarantined:
    return Quarantined(
        QuarantineReason.UNKNOWN_INSTANCE,
        "InstanceARN is not a registered environment",
        instance_arn=event.instance.arn,
    )


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
