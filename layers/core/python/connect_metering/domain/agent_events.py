"""Which forwarded agent events count (BILLING.md section 2), decided on values alone.

An SQS message body is the EventBridge envelope the forwarder produced; its ``detail`` is the Amazon
Connect agent event (whole, or reduced to the fields billing reads), its ``account`` and ``time`` were
set by EventBridge. Everything here is pure: the instance lookup, the stored counts and the clock are
the caller's. A rejected event raises ``Quarantined`` with a reason and a message naming the field; the
caller keeps a bounded, PII-free ``QuarantinedEvent`` for audit and goes on with the batch.

Rule order (BILLING.md section 2; the first broken rule is the reason): ``too_large`` is decided first,
on the body's size alone, so no rule ever reads more than 64 KiB of an event; then rules 1 to 6.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple, TypeGuard

from connect_metering.domain.instants import MS_PER_HOUR, InstantError, parse_iso_ms
from connect_metering.domain.sessions import (
    OFFLINE_STATUS_NAME,
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
# BILLING.md section 2 rule 1: EventId and AgentARN are ASCII of at most this many characters, so
# every key and set element built from them stays small (an AgentARN is part of a DynamoDB sort key).
MAX_IDENTIFIER_LENGTH = 256
# Rule 6: an agent's accepted events per hour stay below this; one a second is far beyond Connect.
MAX_EVENTS_PER_AGENT_HOUR = 3_600
# What a quarantine record keeps of attacker-controlled text (UTF-8 bytes per value).
MAX_KEPT_VALUE_BYTES = 200
MAX_KEPT_MESSAGE_BYTES = 400
MAX_KEPT_REDUCED_BYTES = 2_048
MAX_KEPT_EVENT_ID_CHARS = 64
# The sender account of a message whose envelope could not be read.
UNKNOWN_SENDER = "unknown"
BILLING_FIELDS = ("EventId", "EventType", "EventTimestamp", "AWSAccountId", "InstanceARN", "AgentARN")
AGENT_STATUS_FIELDS = ("ARN", "Name", "StartTimestamp")


class QuarantineReason(StrEnum):
    UNPARSEABLE = "unparseable"
    UNSUPPORTED_TYPE = "unsupported_type"
    UNKNOWN_INSTANCE = "unknown_instance"
    ACCOUNT_MISMATCH = "account_mismatch"
    TOO_LARGE = "too_large"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_OLD = "too_old"
    TOO_MANY_EVENTS = "too_many_events"


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
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message
        self.instance_arn = instance_arn
        self.account = account
        self.arrival_ms = arrival_ms
        # The agent event as far as it could be read: only its reduced form is ever kept.
        self.detail = detail


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    """A rejected event as kept for audit: bounded (a few KB whatever the body) and free of personal data.

    ``reduced`` is the JSON of the fields billing reads (``reduce_agent_event``), each value cut to
    ``MAX_KEPT_VALUE_BYTES``; the body itself is represented by its size and SHA-256 digest only, so
    names, usernames and contacts are never stored, and a copy the customer still holds can be matched."""

    message_id: str
    arrival_ms: int
    reason: str
    message: str
    body_bytes: int
    body_sha256: str
    reduced: str
    account: str | None = None
    instance_arn: str | None = None
    event_id: str | None = None
    company: str | None = None


@dataclass(frozen=True, slots=True)
class QuarantineTally:
    """Rejected messages of one sender account, reason and arrival hour, counted instead of kept."""

    account: str
    reason: str
    hour_ms: int


class Envelope(NamedTuple):
    """What EventBridge vouches for: the sender's account and the arrival time.

    A named tuple (immutable, as a frozen dataclass, and several times cheaper to make): one is made
    per message ingested."""

    account: str
    arrival_ms: int
    detail: Mapping[str, Any]
    # The envelope's ``resources`` (strings only, the first few): where the forwarder puts the
    # environment's verification code.
    resources: tuple[str, ...] = ()


class AgentEvent(NamedTuple):
    """An agent event that parsed: the fields billing reads, nothing personal (no names, no usernames).
    A named tuple, as ``Envelope``: one is made per message ingested."""

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


class _NotDecoded:
    """The body has not been decoded as JSON yet (``parse_envelope``'s default)."""


NOT_DECODED: Any = _NotDecoded()


def parse_envelope(body: str | bytes, *, document: Any = NOT_DECODED) -> Envelope:
    """An SQS message body -> the EventBridge envelope of a forwarded agent event.

    ``document``: the body already decoded, exactly ``json.loads(body)``'s value (a caller that read it
    to route it passes it on instead of decoding it twice); ``NOT_DECODED`` when it was not, or when
    decoding failed (the body is then decoded here, and refused as this decoding says)."""
    # An ASCII text's UTF-8 size is its length (the common case, with no copy made to count it).
    size = len(body) if not isinstance(body, str) or body.isascii() else len(body.encode())
    if size > MAX_BODY_BYTES:
        too_large = Quarantined(
            QuarantineReason.TOO_LARGE, f"message of {size} bytes exceeds {MAX_BODY_BYTES} bytes"
        )
        # Read only for the audit record (who sent it, its reduced fields); no rule depends on it.
        try:
            envelope = _readable_envelope(body)
        except Quarantined:
            envelope = None
        if envelope is not None:
            too_large.account, too_large.arrival_ms = envelope.account, envelope.arrival_ms
            too_large.detail = envelope.detail
        raise too_large
    if document is NOT_DECODED:
        return _readable_envelope(body)
    return _envelope_of(document)


def _readable_envelope(body: str | bytes) -> Envelope:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        # RecursionError: ``[[[[...]]]]`` nested past the interpreter's limit is not an event either.
        raise Quarantined(
            QuarantineReason.UNPARSEABLE, f"body is not JSON ({type(error).__name__})"
        ) from None
    return _envelope_of(document)


def _envelope_of(document: Any) -> Envelope:
    if not isinstance(document, dict):
        raise Quarantined(QuarantineReason.UNPARSEABLE, "body is not a JSON object")
    if document.get("source") != FORWARDER_SOURCE or document.get("detail-type") != AGENT_EVENT_DETAIL_TYPE:
        raise Quarantined(
            QuarantineReason.UNPARSEABLE,
            f"envelope source/detail-type must be {FORWARDER_SOURCE!r}/{AGENT_EVENT_DETAIL_TYPE!r}",
        )
    account = document.get("account")
    if not _is_account_id(account):
        raise Quarantined(
            QuarantineReason.UNPARSEABLE, f"envelope account {account!r} is not a 12-digit account id"
        )
    try:
        arrival_ms = parse_iso_ms(document.get("time"), field="envelope time")  # type: ignore[arg-type]
    except InstantError as error:
        raise Quarantined(QuarantineReason.UNPARSEABLE, str(error)) from None
    detail = document.get("detail")
    if not isinstance(detail, dict):
        raise Quarantined(
            QuarantineReason.UNPARSEABLE,
            "envelope detail is not a JSON object",
            account=account,
            arrival_ms=arrival_ms,
        )
    resources = document.get("resources")
    return Envelope(account, arrival_ms, detail, _resources(resources) if resources else ())


def _resources(resources: object) -> tuple[str, ...]:
    return tuple(
        resource
        for resource in (resources[:MAX_RESOURCES_READ] if isinstance(resources, list) else ())
        if isinstance(resource, str) and len(resource) <= MAX_RESOURCE_LENGTH
    )


def _text(detail: Mapping[str, Any], name: str) -> str:
    value = detail.get(name)
    if type(value) is str and value:
        return value
    if not isinstance(value, str) or not value:
        shown = "missing" if value is None else f"{type(value).__name__} {value!r}"[:80]
        raise Quarantined(QuarantineReason.UNPARSEABLE, f"{name} must be a non-empty string, got {shown}")
    return value


def _identifier(detail: Mapping[str, Any], name: str) -> str:
    """Rule 1's bound on identifiers: ASCII, at most ``MAX_IDENTIFIER_LENGTH`` characters."""
    value = _text(detail, name)
    if len(value) > MAX_IDENTIFIER_LENGTH or not value.isascii():
        raise Quarantined(
            QuarantineReason.UNPARSEABLE,
            f"{name} must be ASCII of at most {MAX_IDENTIFIER_LENGTH} characters "
            f"(got {len(value)} characters)",
        )
    return value


def _agent_of(detail: Mapping[str, Any], prefix: str, event_type: str) -> tuple[str, str, EventKind]:
    """The rest of rule 1 (AgentARN, AWSAccountId), then rule 2, once the instance (whose agents' ARNs
    start with ``prefix``) is known."""
    agent_arn = _identifier(detail, "AgentARN")
    agent_id = agent_arn[len(prefix) :]
    if not agent_arn.startswith(prefix) or not agent_id or "/" in agent_id or "#" in agent_id:
        raise Quarantined(QuarantineReason.UNPARSEABLE, "AgentARN is not an agent of InstanceARN")
    account_id = _text(detail, "AWSAccountId")
    # isascii: the pattern's \d also matches non-ASCII digits.
    if not account_id.isascii() or ACCOUNT_ID_PATTERN.fullmatch(account_id) is None:
        raise Quarantined(
            QuarantineReason.UNPARSEABLE,
            f"AWSAccountId {account_id[:20]!r} is not a 12-digit account id",
        )
    try:
        kind = EventKind.from_event_type(event_type)
    except ValueError:
        raise Quarantined(
            QuarantineReason.UNSUPPORTED_TYPE,
            f"EventType {event_type[:40]!r} is not LOGIN, LOGOUT, STATE_CHANGE or HEART_BEAT (case-sensitive)",
        ) from None
    return agent_arn, account_id, kind


@lru_cache(maxsize=4096)
def _instance_arn(text: str) -> tuple[InstanceArn, str]:
    """``InstanceArn.parse`` of an event's InstanceARN and the prefix of its agents' ARNs, remembered:
    a stream names few instances (a refused ARN raises, and is not remembered)."""
    instance = InstanceArn.parse(text, field="InstanceARN")
    return instance, f"{instance.arn}/agent/"


def parse_agent_event(detail: Mapping[str, Any]) -> AgentEvent:
    """BILLING.md section 2 rules 1 and 2: every field is present and well-formed (``unparseable``),
    then the type is one billing reads (``unsupported_type``): a malformed event of an unknown type is
    ``unparseable``, since rule 1 comes first.

    An event of the common shape (``_common_agent_event``) is read the short way; any other, and every
    event a rule refuses, the general way, which names the first broken rule."""
    if type(detail) is dict:
        event = _common_agent_event(detail)
        if event is not None:
            return event
    return _parsed_agent_event(detail)


def _parsed_agent_event(detail: Mapping[str, Any]) -> AgentEvent:
    """``parse_agent_event`` the general way: each rule checked in order, the first broken one raised."""
    event_id = _identifier(detail, "EventId")
    event_type = _text(detail, "EventType")
    try:
        ts_ms = parse_iso_ms(_text(detail, "EventTimestamp"), field="EventTimestamp")
    except InstantError as error:
        raise Quarantined(QuarantineReason.UNPARSEABLE, str(error)[:200]) from None
    instance_arn = _identifier(detail, "InstanceARN")
    try:
        instance, agent_prefix = _instance_arn(instance_arn)
    except TenancyError as error:
        raise Quarantined(QuarantineReason.UNPARSEABLE, str(error)[:200]) from None
    try:
        agent_arn, account_id, kind = _agent_of(detail, agent_prefix, event_type)
    except Quarantined as rejection:
        # The instance is known from here on: the rejection is kept against its owner.
        rejection.instance_arn = instance.arn
        raise
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


# The EventType names billing reads, to their kind (case-sensitive, as ``EventKind.from_event_type``).
_KIND_BY_TYPE: dict[str, EventKind] = {kind.name: kind for kind in EventKind}
# AWSAccountId values already found to be 12 ASCII digits; bounded.
_ACCOUNT_IDS: set[str] = set()
_MAX_ACCOUNT_IDS = 10_000


def _is_account_id(value: object) -> TypeGuard[str]:
    """``value`` is a string of 12 ASCII digits (``ACCOUNT_ID_PATTERN``), remembered for the few a
    stream names."""
    if not isinstance(value, str):
        return False
    if value in _ACCOUNT_IDS:
        return True
    if ACCOUNT_ID_PATTERN.fullmatch(value) is None:
        return False
    if len(_ACCOUNT_IDS) >= _MAX_ACCOUNT_IDS:
        _ACCOUNT_IDS.clear()
    _ACCOUNT_IDS.add(value)
    return True


def _is_identifier(value: object) -> TypeGuard[str]:
    """What ``_identifier`` accepts: a non-empty ASCII string of at most ``MAX_IDENTIFIER_LENGTH``."""
    return type(value) is str and 0 < len(value) <= MAX_IDENTIFIER_LENGTH and value.isascii()


def _common_agent_event(detail: dict[str, Any]) -> AgentEvent | None:
    """The event ``_parsed_agent_event`` gives, read with plain dict access, when every field is of the
    common shape and passes every rule the general way checks (rules 1 and 2); None for anything else,
    which the general way then reads (and refuses with the reason it finds).
    ``tests/unit/test_agent_event_fast_path.py`` holds the two to the same answer on mutated events."""
    try:
        event_id, event_type, stamp = detail["EventId"], detail["EventType"], detail["EventTimestamp"]
        instance_text, agent_arn, account_id = (
            detail["InstanceARN"],
            detail["AgentARN"],
            detail["AWSAccountId"],
        )
    except KeyError:
        return None
    if not _is_identifier(event_id) or type(event_type) is not str or type(stamp) is not str:
        return None
    kind = _KIND_BY_TYPE.get(event_type)
    if kind is None or not _is_account_id(account_id):
        return None
    instance = _agent_instance(agent_arn, instance_text)
    if instance is None:
        return None
    try:
        ts_ms = parse_iso_ms(stamp, field="EventTimestamp")
    except InstantError:
        return None
    status = _common_status(detail)
    offline, status_start_ms = (
        status
        if status is not None
        else (offline_from_agent_event(detail), status_start_from_agent_event(detail))
    )
    return AgentEvent(event_id, kind, ts_ms, agent_arn, instance, account_id, offline, status_start_ms)


# AgentARN -> (InstanceARN, its instance) for the agents already found to be agents of that instance
# (both identifiers within rule 1's bound, the ARN an agent of the instance): a stream names each agent
# again and again, and these checks depend on the two texts alone. Bounded, and emptied when full: in the
# ingest Lambda (512 MB) a sender inventing agents of its own instances, every ARN as long as rule 1
# allows, fills it to about 13 MB (tracemalloc, 1.3 KB an agent); a forgotten agent costs its checks again.
_AGENTS: dict[str, tuple[str, InstanceArn]] = {}
_MAX_AGENTS = 10_000


def _agent_instance(agent_arn: object, instance_text: object) -> InstanceArn | None:
    """The instance, when ``instance_text`` is a well-formed InstanceARN and ``agent_arn`` an agent of it,
    both within rule 1's bound on identifiers; None otherwise."""
    known = _AGENTS.get(agent_arn) if type(agent_arn) is str else None
    if known is not None and known[0] == instance_text:
        return known[1]
    if not (_is_identifier(instance_text) and _is_identifier(agent_arn)):
        return None
    try:
        instance, agent_prefix = _instance_arn(instance_text)
    except TenancyError:
        return None
    agent_id = agent_arn[len(agent_prefix) :]
    if not agent_arn.startswith(agent_prefix) or not agent_id or "/" in agent_id or "#" in agent_id:
        return None
    if len(_AGENTS) >= _MAX_AGENTS:
        _AGENTS.clear()
    _AGENTS[agent_arn] = (instance_text, instance)
    return instance


def _common_status(detail: dict[str, Any]) -> tuple[bool, int] | None:
    """(``offline_from_agent_event``, ``status_start_from_agent_event``) of an event whose snapshot and
    status are plain objects, read once; None for any other shape."""
    snapshot = detail.get("CurrentAgentSnapshot")
    status = snapshot.get("AgentStatus") if type(snapshot) is dict else None
    if type(status) is not dict:
        return None
    start = status.get("StartTimestamp")
    if not isinstance(start, str):
        return status.get("Name") == OFFLINE_STATUS_NAME, UNKNOWN_STATUS_START_MS
    try:
        start_ms = parse_iso_ms(start, field="AgentStatus.StartTimestamp")
    except InstantError:
        start_ms = UNKNOWN_STATUS_START_MS
    return status.get("Name") == OFFLINE_STATUS_NAME, start_ms


def claimed_instance(detail: Mapping[str, Any] | None) -> str | None:
    """The event's InstanceARN when it is a well-formed one, whatever else is wrong with the event:
    a rejection is then kept against that instance's owner (when the owner's account sent it)."""
    value = (detail or {}).get("InstanceARN")
    if not isinstance(value, str) or len(value) > MAX_IDENTIFIER_LENGTH or not value.isascii():
        return None
    try:
        return InstanceArn.parse(value).arn
    except TenancyError:
        return None


def check_sender(envelope: Envelope, event: AgentEvent) -> None:
    """BILLING.md section 2 rule 4: envelope ``account`` == ``AWSAccountId`` == the instance's account.
    The envelope account is set by EventBridge, so a sender cannot bill its events to another company."""
    if not envelope.account == event.aws_account_id == event.instance.account_id:
        raise Quarantined(
            QuarantineReason.ACCOUNT_MISMATCH,
            f"sent from account {envelope.account}, AWSAccountId {event.aws_account_id}, "
            f"instance account {event.instance.account_id}: all three must be equal",
            instance_arn=event.instance.arn,
        )


def check_timestamp(envelope: Envelope, event: AgentEvent, *, max_event_age_ms: int) -> None:
    """BILLING.md section 2 rule 5: stamped at most 300 s after its arrival and at most
    ``max_event_age`` before it. The lower bound keeps replayed or invented history (year 999, 1969)
    out of hours metered long ago, and every stored timestamp a 13-digit millisecond count."""
    ahead_ms = event.ts_ms - envelope.arrival_ms
    if ahead_ms > MAX_FUTURE_SKEW_MS:
        raise Quarantined(
            QuarantineReason.FUTURE_TIMESTAMP,
            f"EventTimestamp is {ahead_ms // 1000} s after its arrival",
            instance_arn=event.instance.arn,
        )
    if -ahead_ms > max_event_age_ms:
        raise Quarantined(
            QuarantineReason.TOO_OLD,
            f"EventTimestamp is {-ahead_ms // 1000} s before its arrival (max_event_age "
            f"{max_event_age_ms // 1000} s)",
            instance_arn=event.instance.arn,
        )


def split_at_hour_bound(stored: int, fresh: Sequence[str]) -> tuple[list[str], list[str]]:
    """BILLING.md section 2 rule 6 for one agent-hour holding ``stored`` accepted events: the ``fresh``
    events (new ones, in arrival order) that keep it under ``MAX_EVENTS_PER_AGENT_HOUR``, and the rest
    (``too_many_events``)."""
    room = max(0, MAX_EVENTS_PER_AGENT_HOUR - stored)
    return list(fresh[:room]), list(fresh[room:])


def _cut(text: str, max_bytes: int) -> str:
    """At most ``max_bytes`` of UTF-8, never splitting a character."""
    return text.encode()[:max_bytes].decode(errors="ignore")


def _kept_value(value: object, max_bytes: int) -> object:
    """A string cut to ``max_bytes``; a small number or null as is; anything else only by its type."""
    if isinstance(value, str):
        return _cut(value, max_bytes)
    if value is None or isinstance(value, float) or (isinstance(value, int) and abs(value) < 2**63):
        return value
    return f"<{type(value).__name__}>"


def reduce_agent_event(detail: Mapping[str, Any], *, max_value_bytes: int | None = None) -> dict[str, Any]:
    """The agent event reduced to the fields billing reads (BILLING.md section 2): no names, usernames,
    routing profiles or contacts. Absent fields stay absent; ``max_value_bytes`` bounds each string."""

    def kept(value: object) -> object:
        return value if max_value_bytes is None else _kept_value(value, max_value_bytes)

    reduced: dict[str, Any] = {name: kept(detail[name]) for name in BILLING_FIELDS if name in detail}
    snapshot = detail.get("CurrentAgentSnapshot")
    status = snapshot.get("AgentStatus") if isinstance(snapshot, Mapping) else None
    if isinstance(status, Mapping):
        reduced["CurrentAgentSnapshot"] = {
            "AgentStatus": {name: kept(status[name]) for name in AGENT_STATUS_FIELDS if name in status}
        }
    return reduced


def _reduced_json(detail: Mapping[str, Any]) -> str:
    """The reduced event as JSON of at most ``MAX_KEPT_REDUCED_BYTES``: values whose escaping blew it up
    (control characters, quotes) are cut shorter on a second pass."""
    for max_value_bytes in (MAX_KEPT_VALUE_BYTES, 16):
        text = json.dumps(
            reduce_agent_event(detail, max_value_bytes=max_value_bytes),
            separators=(",", ":"),
            sort_keys=True,
            ensure_ascii=False,
        )
        if len(text.encode()) <= MAX_KEPT_REDUCED_BYTES:
            return text
    return "{}"


def audit_record(
    rejection: Quarantined, *, message_id: str, body: str, received_ms: int, company: str | None
) -> QuarantinedEvent:
    """What quarantine keeps of a rejected message: bounded and PII-free whatever the body holds."""
    raw = body.encode()
    detail = rejection.detail or {}
    event_id = detail.get("EventId")
    return QuarantinedEvent(
        message_id=message_id,
        arrival_ms=rejection.arrival_ms if rejection.arrival_ms is not None else received_ms,
        reason=rejection.reason.value,
        message=_cut(rejection.message, MAX_KEPT_MESSAGE_BYTES),
        body_bytes=len(raw),
        body_sha256=hashlib.sha256(raw).hexdigest(),
        reduced=_reduced_json(detail),
        account=rejection.account,
        instance_arn=rejection.instance_arn,
        event_id=event_id[:MAX_KEPT_EVENT_ID_CHARS] if isinstance(event_id, str) and event_id else None,
        company=company,
    )


def metering_instant_ms(hour_ms: int, grace_ms: int) -> int:
    """BILLING.md section 6: hour H is metered at H + 1 h + grace."""
    return hour_ms + MS_PER_HOUR + grace_ms
