"""Which forwarded agent events count (BILLING.md section 2), decided on values alone.

An SQS message body is the EventBridge envelope the forwarder produced; its ``detail`` is the Amazon
Connect agent event unchanged, its ``account`` and ``time`` were set by EventBridge. Everything here is
pure: the instance lookup and the clock are the caller's. A rejected event raises ``Quarantined`` with a
reason and a message naming the field; the caller keeps it for audit and goes on with the batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from connect_metering.domain.instants import MS_PER_HOUR, InstantError, hour_floor, parse_iso_ms
from connect_metering.domain.sessions import (
    UNKNOWN_STATUS_START_MS,
    AgentEventPoint,
    EventKind,
    offline_from_agent_event,
    status_start_from_agent_event,
)
from connect_metering.domain.tenancy import (
    ACCOUNT_ID_PATTERN,
    MAX_RESOURCES_READ,
    InstanceArn,
    TenancyError,
)

FORWARDER_SOURCE = "connect-metering.forwarder"
AGENT_EVENT_DETAIL_TYPE = "Amazon Connect Agent Event"
# Agent events are a few KB; EventBridge allows 256 KB. Anything past this is not an agent event.
MAX_BODY_BYTES = 64 * 1024
# Pipes' own limit on one resource; a longer one is no verification resource and is not read.
MAX_RESOURCE_LENGTH = 1600
# Connect and EventBridge clocks may differ by seconds; an event stamped further ahead than this is refused.
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
MAX_EVENT_ID_LENGTH = 256


class QuarantineReason(StrEnum):
    UNPARSEABLE = "unparseable"
    UNSUPPORTED_TYPE = "unsupported_type"
    UNKNOWN_INSTANCE = "unknown_instance"
    ACCOUNT_MISMATCH = "account_mismatch"
    TOO_LARGE = "too_large"
    FUTURE_TIMESTAMP = "future_timestamp"


class Quarantined(Exception):
    """The event is kept for audit with this reason, counted, never billed."""

    def __init__(
        self,
        reason: QuarantineReason,
        message: str,
        *,
        instance_arn: str | None = None,
        account: str | None = None,
        arrival_ms: int | None = None,
    ) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message
        self.instance_arn = instance_arn
        self.account = account
        self.arrival_ms = arrival_ms


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    """A rejected event as kept for audit: the whole body, the reason, and who it claims to be."""

    message_id: str
    arrival_ms: int
    reason: str
    message: str
    body: str
    account: str | None = None
    instance_arn: str | None = None
    company: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """What EventBridge vouches for: the sender's account and the arrival time."""

    account: str
    arrival_ms: int
    detail: Mapping[str, Any]
    # The envelope's ``resources`` (strings only, the first few): where the forwarder puts the
    # environment's verification code.
    resources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """An agent event that parsed: the fields billing reads, nothing personal (no names, no usernames)."""

    event_id: str
    kind: EventKind
    ts_ms: int
    agent_arn: str
    instance: InstanceArn
    aws_account_id: str
    offline: bool
    status_start_ms: int = UNKNOWN_STATUS_START_MS

    @property
    def agent_id(self) -> str:
        return self.agent_arn.rsplit("/agent/", 1)[1]

    @property
    def point(self) -> AgentEventPoint:
        return AgentEventPoint(self.ts_ms, self.kind, self.event_id, self.offline, self.status_start_ms)


def parse_envelope(body: str | bytes) -> Envelope:
    """An SQS message body -> the EventBridge envelope of a forwarded agent event."""
    size = len(body.encode() if isinstance(body, str) else body)
    if size > MAX_BODY_BYTES:
        raise Quarantined(
            QuarantineReason.TOO_LARGE, f"message of {size} bytes exceeds {MAX_BODY_BYTES} bytes"
        )
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise Quarantined(QuarantineReason.UNPARSEABLE, f"body is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise Quarantined(QuarantineReason.UNPARSEABLE, "body is not a JSON object")
    if document.get("source") != FORWARDER_SOURCE or document.get("detail-type") != AGENT_EVENT_DETAIL_TYPE:
        raise Quarantined(
            QuarantineReason.UNPARSEABLE,
            f"envelope source/detail-type must be {FORWARDER_SOURCE!r}/{AGENT_EVENT_DETAIL_TYPE!r}",
        )
    account = document.get("account")
    if not isinstance(account, str) or ACCOUNT_ID_PATTERN.fullmatch(account) is None:
        raise Quarantined(
            QuarantineReason.UNPARSEABLE, f"envelope account {account!r} is not a 12-digit account id"
        )
    try:
        arrival_ms = parse_iso_ms(document.get("time"), field="envelope time")  # type: ignore[arg-type]
    except InstantError as error:
        raise Quarantined(QuarantineReason.UNPARSEABLE, str(error)) from None
    detail = document.get("detail")
    if not isinstance(detail, dict):
        raise Quarantined(QuarantineReason.UNPARSEABLE, "envelope detail is not a JSON object")
    resources = document.get("resources")
    return Envelope(
        account=account,
        arrival_ms=arrival_ms,
        detail=detail,
        resources=tuple(
            resource
            for resource in (resources[:MAX_RESOURCES_READ] if isinstance(resources, list) else ())
            if isinstance(resource, str) and len(resource) <= MAX_RESOURCE_LENGTH
        ),
    )


def _text(detail: Mapping[str, Any], name: str) -> str:
    value = detail.get(name)
    if not isinstance(value, str) or not value:
        shown = "missing" if value is None else f"{type(value).__name__} {value!r}"[:80]
        raise Quarantined(QuarantineReason.UNPARSEABLE, f"{name} must be a non-empty string, got {shown}")
    return value


def parse_agent_event(detail: Mapping[str, Any]) -> AgentEvent:
    """BILLING.md section 2 rule 1: the fields are present and well-formed."""
    event_id = _text(detail, "EventId")
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        raise Quarantined(
            QuarantineReason.UNPARSEABLE, f"EventId longer than {MAX_EVENT_ID_LENGTH} characters"
        )
    event_type = _text(detail, "EventType")
    try:
        kind = EventKind.from_event_type(event_type)
    except ValueError:
        raise Quarantined(
            QuarantineReason.UNSUPPORTED_TYPE,
            f"EventType {event_type[:40]!r} is not LOGIN, LOGOUT, STATE_CHANGE or HEART_BEAT (case-sensitive)",
        ) from None
    try:
        ts_ms = parse_iso_ms(_text(detail, "EventTimestamp"), field="EventTimestamp")
    except InstantError as error:
        raise Quarantined(QuarantineReason.UNPARSEABLE, str(error)[:200]) from None
    instance_arn = _text(detail, "InstanceARN")
    try:
        instance = InstanceArn.parse(instance_arn, field="InstanceARN")
    except TenancyError as error:
        raise Quarantined(QuarantineReason.UNPARSEABLE, str(error)[:200]) from None
    agent_arn = _text(detail, "AgentARN")
    prefix = f"{instance.arn}/agent/"
    agent_id = agent_arn[len(prefix) :]
    if not agent_arn.startswith(prefix) or not agent_id or "/" in agent_id or "#" in agent_id:
        raise Quarantined(
            QuarantineReason.UNPARSEABLE, "AgentARN is not an agent of InstanceARN", instance_arn=instance.arn
        )
    account_id = _text(detail, "AWSAccountId")
    if ACCOUNT_ID_PATTERN.fullmatch(account_id) is None:
        raise Quarantined(
            QuarantineReason.UNPARSEABLE, f"AWSAccountId {account_id[:20]!r} is not a 12-digit account id"
        )
    return AgentEvent(
        event_id=event_id,
        kind=kind,
        ts_ms=ts_ms,
        agent_arn=agent_arn,
        instance=instance,
        aws_account_id=account_id,
        offline=offline_from_agent_event(detail),
        status_start_ms=status_start_from_agent_event(detail),
    )


def check_sender(envelope: Envelope, event: AgentEvent) -> None:
    """BILLING.md section 2 rule 3: envelope ``account`` == ``AWSAccountId`` == the instance's account.
    The envelope account is set by EventBridge, so a sender cannot bill its events to another company."""
    if not envelope.account == event.aws_account_id == event.instance.account_id:
        raise Quarantined(
            QuarantineReason.ACCOUNT_MISMATCH,
            f"sent from account {envelope.account}, AWSAccountId {event.aws_account_id}, "
            f"instance account {event.instance.account_id}: all three must be equal",
            instance_arn=event.instance.arn,
        )
    if event.ts_ms - envelope.arrival_ms > MAX_FUTURE_SKEW_MS:
        raise Quarantined(
            QuarantineReason.FUTURE_TIMESTAMP,
            f"EventTimestamp is {(event.ts_ms - envelope.arrival_ms) // 1000} s after its arrival",
            instance_arn=event.instance.arn,
        )


def metering_instant_ms(hour_ms: int, grace_ms: int) -> int:
    """BILLING.md section 6: hour H is metered at H + 1 h + grace."""
    return hour_ms + MS_PER_HOUR + grace_ms


def is_late(event: AgentEvent, arrival_ms: int, grace_ms: int) -> bool:
    """Arrived at or after its hour was metered (section 9: an event arriving exactly at the metering
    instant is ingested after it), so it is billed in a later record."""
    return arrival_ms >= metering_instant_ms(hour_floor(event.ts_ms), grace_ms)
