"""A forwarded agent event message of the common shape, admitted the short way.

Ingest reads every message with ``parse_envelope`` and ``parse_agent_event``, then checks its sender
(rule 4) and its timestamp (rule 5), each rule in BILLING.md order so the first broken one is the
reason. A message every rule accepts needs no order: ``read_common_message`` reads it with plain dict
access, checks all of those rules at once and answers what the long way answers; anything else (a
refused message, an unusual shape, a body not decoded yet) gets None, and the long way then reads it and
names the rule it breaks. ``tests/unit/test_common_messages.py`` holds the two to the same answer on
mutated messages.
"""

from __future__ import annotations

from typing import Any

from connect_metering.domain.agent_events import (
    _AGENTS,
    _KIND_BY_TYPE,
    AGENT_EVENT_DETAIL_TYPE,
    FORWARDER_SOURCE,
    MAX_BODY_BYTES,
    MAX_FUTURE_SKEW_MS,
    MAX_IDENTIFIER_LENGTH,
    AgentEvent,
    Envelope,
    _agent_instance,
    _resources,
)
from connect_metering.domain.instants import PARSED_MS, InstantError, parse_iso_ms
from connect_metering.domain.sessions import OFFLINE_STATUS_NAME, UNKNOWN_STATUS_START_MS

# A UTF-8 character is at most 4 bytes: a text this long or shorter is within ``MAX_BODY_BYTES``.
_SURELY_SMALL = MAX_BODY_BYTES // 4


def read_common_message(
    body: str | bytes, document: Any, *, max_event_age_ms: int
) -> tuple[Envelope, AgentEvent, str] | None:
    """``(parse_envelope(body, document=document), parse_agent_event(envelope.detail), InstanceARN)``
    when the message's envelope and event are plain objects of the common shape and it passes BILLING.md
    section 2 rules 1, 2, 4 and 5 (``check_sender``, ``check_timestamp``) and the size bound; None for
    any other. The InstanceARN is the text sent, which is ``event.instance.arn``. Rule 3 (the instance
    is a registered environment's) is the caller's.

    Written out in one function, on purpose: it runs once per line of a replay, where every call counts."""
    if type(document) is not dict or (len(body) > _SURELY_SMALL and _too_large(body)):
        return None
    # The common shape: every field there, each envelope and status a plain object (subscripts, not
    # ``get``: a missing field, or a list or a text where an object or a text belongs, raises here).
    try:
        detail, account, time = document["detail"], document["account"], document["time"]
        source, detail_type, resources = document["source"], document["detail-type"], document["resources"]
        event_id, stamp = detail["EventId"], detail["EventTimestamp"]
        agent_arn, instance_text, account_id = (
            detail["AgentARN"],
            detail["InstanceARN"],
            detail["AWSAccountId"],
        )
        kind = _KIND_BY_TYPE[detail["EventType"]]
        status = detail["CurrentAgentSnapshot"]["AgentStatus"]
        start, offline = status["StartTimestamp"], status["Name"] == OFFLINE_STATUS_NAME
        known = _AGENTS.get(agent_arn)
    except (KeyError, TypeError, IndexError):
        return None
    if (
        type(detail) is not dict
        or type(status) is not dict
        or type(event_id) is not str
        or not 0 < len(event_id) <= MAX_IDENTIFIER_LENGTH
        or not event_id.isascii()
        or type(time) is not str
        or type(stamp) is not str
        or type(start) is not str
        or source != FORWARDER_SOURCE
        or detail_type != AGENT_EVENT_DETAIL_TYPE
    ):
        return None
    instance = (
        known[1]
        if known is not None and known[0] == instance_text
        else _agent_instance(agent_arn, instance_text)
    )
    # Rule 4; an account equal to the instance's is 12 ASCII digits, as rule 1 wants AWSAccountId.
    if instance is None or not account == account_id == instance.account_id:
        return None
    try:
        arrival_ms = PARSED_MS.get(time) or parse_iso_ms(time)
        ts_ms = PARSED_MS.get(stamp) or parse_iso_ms(stamp)
    except InstantError:
        return None
    if not -max_event_age_ms <= ts_ms - arrival_ms <= MAX_FUTURE_SKEW_MS:
        return None
    try:
        status_start_ms = PARSED_MS.get(start) or parse_iso_ms(start)
    except InstantError:
        status_start_ms = UNKNOWN_STATUS_START_MS
    # ``Envelope(...)`` and ``AgentEvent(...)`` without the named tuples' Python-level ``__new__``: what
    # their ``_make`` does, with a tuple of exactly their fields.
    return (
        tuple.__new__(Envelope, (account, arrival_ms, detail, _resources(resources) if resources else ())),
        tuple.__new__(
            AgentEvent, (event_id, kind, ts_ms, agent_arn, instance, account_id, offline, status_start_ms)
        ),
        instance_text,
    )


def _too_large(body: str | bytes) -> bool:
    """``parse_envelope``'s size rule: more than ``MAX_BODY_BYTES`` of UTF-8."""
    size = len(body) if not isinstance(body, str) or body.isascii() else len(body.encode())
    return size > MAX_BODY_BYTES
